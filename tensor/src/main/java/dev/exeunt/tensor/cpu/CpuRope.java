package dev.exeunt.tensor.cpu;

import dev.exeunt.tensor.RopeScaling;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.ConcurrentHashMap;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Rotary position embedding in Hugging Face's {@code rotate_half} convention (Llama, Mistral, Qwen,
 * GPT-NeoX in transformers): for a rotary dim {@code R} (usually the head dim {@code D}) and
 * {@code i < R/2}, the pair {@code (i, i + R/2)} is rotated by {@code pos * invFreq[i]}, with
 * {@code invFreq[i] = theta^(-2i/R)}:
 * <pre>
 *   y[i]       = x[i] cos - x[i + R/2] sin
 *   y[i + R/2] = x[i + R/2] cos + x[i] sin
 * </pre>
 * Elements {@code [R, D)} of a head (partial rotary) pass through unchanged. Backward is the rotation by
 * the opposite angle.
 *
 * <p>Layout: {@code tokens x heads} head vectors of {@code headDim} contiguous F32 elements; head
 * {@code (t, h)} starts at element {@code off + t * tokenStride + h * headStride}, so the kernels run on a
 * view of a fused QKV buffer. Outputs are overwritten; in place is allowed when source and destination
 * have identical offset and strides. Angles are computed in F64 ({@code pos * invFreq}, then cos/sin)
 * and stored in F32 tables, which are cached per {@code (rotaryDim, theta)} and grown on demand.
 * Segments must be accessible from any thread.
 */
public final class CpuRope {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final int GRAIN_ELEMS = 1 << 14;

    /** Default theta (Llama 1/2, GPT-NeoX); Llama 3 uses 500000. */
    public static final double DEFAULT_THETA = 10000.0;

    private record Key(int rotaryDim, double theta, RopeScaling scaling) {}

    private static final ConcurrentHashMap<Key, Table> CACHE = new ConcurrentHashMap<>();

    private CpuRope() {}

    /** An immutable cos/sin table for positions {@code [0, maxPositions)}: {@code [maxPositions, R/2]} each. */
    public static final class Table {
        private final int half, maxPositions;
        private final double[] invFreq;
        private final float[] cos, sin;

        private Table(double[] invFreq, int maxPositions) {
            if (invFreq.length < 1) throw new IllegalArgumentException("empty invFreq");
            if (maxPositions < 1) throw new IllegalArgumentException("maxPositions must be >= 1, got " + maxPositions);
            this.half = invFreq.length;
            this.maxPositions = maxPositions;
            this.invFreq = invFreq.clone();
            this.cos = new float[Math.multiplyExact(maxPositions, half)];
            this.sin = new float[cos.length];
            for (int p = 0; p < maxPositions; p++) {
                for (int i = 0; i < half; i++) {
                    double a = p * invFreq[i];
                    cos[p * half + i] = (float) Math.cos(a);
                    sin[p * half + i] = (float) Math.sin(a);
                }
            }
        }

        /** Standard frequencies {@code theta^(-2i/rotaryDim)}; rotaryDim must be even. */
        public static Table create(int rotaryDim, double theta, int maxPositions) {
            return new Table(CpuRope.invFreq(rotaryDim, theta), maxPositions);
        }

        /**
         * Caller-supplied inverse frequencies (e.g. Llama 3.1 "llama3" rope scaling, NTK/YaRN variants);
         * the rotary dim is {@code 2 * invFreq.length}.
         */
        public static Table fromInvFreq(double[] invFreq, int maxPositions) {
            return new Table(invFreq, maxPositions);
        }

        public int rotaryDim() {
            return 2 * half;
        }

        public int maxPositions() {
            return maxPositions;
        }

        /** A copy of the inverse frequencies. */
        public double[] invFreq() {
            return invFreq.clone();
        }
    }

    /** {@code theta^(-2i/rotaryDim)} for {@code i < rotaryDim/2}, as in HF's {@code _compute_default_rope_parameters}. */
    public static double[] invFreq(int rotaryDim, double theta) {
        if (rotaryDim < 2 || (rotaryDim & 1) != 0) throw new IllegalArgumentException("rotary dim must be even and >= 2, got " + rotaryDim);
        if (!(theta > 0)) throw new IllegalArgumentException("theta must be > 0, got " + theta);
        double[] f = new double[rotaryDim / 2];
        for (int i = 0; i < f.length; i++) f[i] = 1.0 / Math.pow(theta, (2.0 * i) / rotaryDim);
        return f;
    }

    /** A cached standard table covering at least {@code minPositions} positions. */
    public static Table table(int rotaryDim, double theta, int minPositions) {
        return table(rotaryDim, theta, RopeScaling.NONE, minPositions);
    }

    /** A cached table with scaled frequencies ({@link RopeScaling}) covering at least {@code minPositions} positions. */
    public static Table table(int rotaryDim, double theta, RopeScaling scaling, int minPositions) {
        var key = new Key(rotaryDim, theta, scaling);
        Table t = CACHE.get(key);
        if (t != null && t.maxPositions >= minPositions) return t;
        return CACHE.compute(key, (k, old) -> {
            if (old != null && old.maxPositions >= minPositions) return old;
            // grow by at least 1.5x, in multiples of 1024 positions
            long want = Math.max(minPositions, old == null ? 0 : old.maxPositions + (old.maxPositions >> 1));
            want = Math.max(1024, (want + 1023) & ~1023L);
            return Table.fromInvFreq(scaling.invFreq(rotaryDim, theta), (int) Math.min(want, Integer.MAX_VALUE - 1));
        });
    }

    /** In-place forward rotation of a full head (rotary dim = headDim) with standard frequencies. */
    public static void forward(MemorySegment x, long off, long tokenStride, long headStride, int tokens, int heads,
                               int headDim, int[] positions, int startPos, double theta) {
        forward(x, off, tokenStride, headStride, tokens, heads, headDim, positions, startPos, theta, RopeScaling.NONE);
    }

    /** As above with scaled frequencies. */
    public static void forward(MemorySegment x, long off, long tokenStride, long headStride, int tokens, int heads,
                               int headDim, int[] positions, int startPos, double theta, RopeScaling scaling) {
        var t = table(headDim, theta, scaling, maxPosition(positions, tokens, startPos) + 1);
        apply(t, x, off, tokenStride, headStride, x, off, tokenStride, headStride, tokens, heads, headDim, positions, startPos, false);
    }

    /** In-place backward (rotation by the negative angle) of {@link #forward}. */
    public static void backward(MemorySegment dx, long off, long tokenStride, long headStride, int tokens, int heads,
                                int headDim, int[] positions, int startPos, double theta) {
        backward(dx, off, tokenStride, headStride, tokens, heads, headDim, positions, startPos, theta, RopeScaling.NONE);
    }

    /** As above with scaled frequencies. */
    public static void backward(MemorySegment dx, long off, long tokenStride, long headStride, int tokens, int heads,
                                int headDim, int[] positions, int startPos, double theta, RopeScaling scaling) {
        var t = table(headDim, theta, scaling, maxPosition(positions, tokens, startPos) + 1);
        apply(t, dx, off, tokenStride, headStride, dx, off, tokenStride, headStride, tokens, heads, headDim, positions, startPos, true);
    }

    /**
     * The general form. Rotates the first {@code table.rotaryDim()} elements of every head of src into dst
     * (elements up to headDim are copied unchanged unless in place).
     *
     * @param positions per-token positions ({@code positions[t]}, length >= tokens), or null for
     *                  {@code startPos + t}
     * @param inverse   false for the forward rotation, true for its transpose (the backward)
     */
    public static void apply(Table table, MemorySegment src, long srcOff, long srcTokenStride, long srcHeadStride,
                             MemorySegment dst, long dstOff, long dstTokenStride, long dstHeadStride,
                             int tokens, int heads, int headDim, int[] positions, int startPos, boolean inverse) {
        int half = table.half;
        if (2 * half > headDim) throw new IllegalArgumentException("rotary dim " + 2 * half + " > head dim " + headDim);
        if (tokens < 0 || heads < 0) throw new IllegalArgumentException("bad shape tokens=" + tokens + " heads=" + heads);
        if (positions != null && positions.length < tokens) {
            throw new IllegalArgumentException("positions has " + positions.length + " entries for " + tokens + " tokens");
        }
        int maxPos = maxPosition(positions, tokens, startPos);
        if (maxPos >= table.maxPositions) {
            throw new IllegalArgumentException("position " + maxPos + " beyond the table's " + table.maxPositions + " positions");
        }
        boolean inPlace = src.equals(dst) && srcOff == dstOff && srcTokenStride == dstTokenStride && srcHeadStride == dstHeadStride;
        float[] cos = table.cos, sin = table.sin;
        int grain = Math.max(1, GRAIN_ELEMS / Math.max(1, heads * headDim));
        CpuThreads.parallelFor(tokens, grain, (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                int pos = positions == null ? startPos + t : positions[t];
                int tb = pos * half;
                for (int h = 0; h < heads; h++) {
                    long sb = 4 * (srcOff + t * srcTokenStride + h * srcHeadStride);
                    long db = 4 * (dstOff + t * dstTokenStride + h * dstHeadStride);
                    rotate(src, sb, dst, db, cos, sin, tb, half, inverse);
                    if (!inPlace && headDim > 2 * half) {
                        MemorySegment.copy(src, sb + 8L * half, dst, db + 8L * half, 4L * (headDim - 2 * half));
                    }
                }
            }
        });
    }

    private static void rotate(MemorySegment src, long sb, MemorySegment dst, long db, float[] cos, float[] sin, int tb,
                               int half, boolean inverse) {
        long hb = 4L * half;
        int i = 0, bound = S.loopBound(half);
        for (; i < bound; i += L) {
            var x1 = FloatVector.fromMemorySegment(S, src, sb + 4L * i, LE);
            var x2 = FloatVector.fromMemorySegment(S, src, sb + hb + 4L * i, LE);
            var c = FloatVector.fromArray(S, cos, tb + i);
            var s = FloatVector.fromArray(S, sin, tb + i);
            if (inverse) s = s.neg();
            x1.mul(c).sub(x2.mul(s)).intoMemorySegment(dst, db + 4L * i, LE);
            x2.mul(c).add(x1.mul(s)).intoMemorySegment(dst, db + hb + 4L * i, LE);
        }
        for (; i < half; i++) {
            float x1 = src.get(F, sb + 4L * i), x2 = src.get(F, sb + hb + 4L * i);
            float c = cos[tb + i], s = inverse ? -sin[tb + i] : sin[tb + i];
            dst.set(F, db + 4L * i, x1 * c - x2 * s);
            dst.set(F, db + hb + 4L * i, x2 * c + x1 * s);
        }
    }

    private static int maxPosition(int[] positions, int tokens, int startPos) {
        if (positions == null) {
            if (startPos < 0) throw new IllegalArgumentException("startPos must be >= 0, got " + startPos);
            return tokens == 0 ? startPos : Math.addExact(startPos, tokens - 1);
        }
        int max = 0;
        for (int t = 0; t < tokens; t++) {
            int p = positions[t];
            if (p < 0) throw new IllegalArgumentException("negative position " + p + " at token " + t);
            max = Math.max(max, p);
        }
        return max;
    }
}
