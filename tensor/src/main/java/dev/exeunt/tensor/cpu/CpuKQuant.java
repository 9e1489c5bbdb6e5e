package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuHalf.F32;
import static dev.exeunt.tensor.cpu.CpuHalf.FS;
import static dev.exeunt.tensor.cpu.CpuHalf.I16;
import static dev.exeunt.tensor.cpu.CpuHalf.LE;

import dev.exeunt.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * llama.cpp's k-quant weight types Q2_K, Q4_K, Q5_K and Q6_K over native segments: dequantization to F32 and
 * products {@code Y[t] = W X[t]} with [out, in] weights whose rows are consecutive super-blocks. F32 data is
 * addressed by element offsets, quantized data by byte offsets. These types are read (from GGUF files), never
 * produced here.
 *
 * <h2>Layouts</h2>
 * Byte for byte ggml's ({@code block_q4_K} etc. in ggml-common.h, decoded as {@code dequantize_row_q4_K} etc. in
 * ggml-quants.c do): super-blocks of {@value #QK_K} weights.
 * <ul>
 *   <li><b>Q4_K</b>, 144 bytes: F16 {@code d}, F16 {@code dmin}, 12 bytes packing eight 6-bit scales and eight
 *       6-bit mins (one pair per 32 weights), 128 bytes of nibbles. Weights 64k..64k+31 are the low nibbles of
 *       bytes 32k..32k+31, weights 64k+32..64k+63 their high nibbles; {@code x = (d * sc) * q - dmin * m}.</li>
 *   <li><b>Q5_K</b>, 176 bytes: as Q4_K with 32 bytes {@code qh} before the nibbles: bit 2k of {@code qh[l]} is
 *       the fifth bit of weight 64k+l, bit 2k+1 that of weight 64k+32+l.</li>
 *   <li><b>Q6_K</b>, 210 bytes: 128 bytes {@code ql} (low 4 bits), 64 bytes {@code qh} (high 2 bits), 16 int8
 *       scales (one per 16 weights), F16 {@code d}; in each half of 128 weights {@code x = (d * sc) * (q - 32)}.</li>
 *   <li><b>Q2_K</b>, 84 bytes: 16 bytes each packing a 4-bit scale (low) and a 4-bit min (high) for 16 weights,
 *       64 bytes of 2-bit weights, F16 {@code d}, F16 {@code dmin}. In each half of 128 weights, 16-weight group
 *       2j + i holds bits 2j..2j+1 of the half's 32 bytes 16i..16i+15; {@code x = (d * sc) * q - dmin * m}.</li>
 * </ul>
 * The arithmetic is the reference's, operation for operation (products rounded to float, no fused multiply-add),
 * so the F32 values equal llama.cpp's and gguf-py's exactly.
 *
 * <h2>Products</h2>
 * Factored as llama.cpp's are for Q4_K / Q5_K: per block of 32 weights the integer weights dot X, the block's scale
 * multiplies that sum, and the block's minimum times X's sum over the block is subtracted. Q6_K and Q2_K (a scale
 * per 16 weights) are dequantized in registers and dotted with X. One X row streams W through a kernel that unpacks
 * the weights in registers; several X rows share W rows unpacked four at a time. Both follow the same steps per X row, so a token's result is bit for bit the
 * same alone or in a batch (the decode path verifies speculative drafts relying on that).
 */
public final class CpuKQuant {
    private CpuKQuant() {}

    /** Weights per super-block. */
    public static final int QK_K = 256;

    private static final int FL = FS.length();
    // Q6_K's 32 weights of a group are unpacked with byte-lane operations on one 32-byte vector (two 16-byte ones
    // where vectors are 128 bits wide), each of its seven bit operations shared by 2 to 4 float vectors of weights:
    // 2.2-2.7x the speed of unpacking them in int lanes.
    private static final int GL = Math.min(32, ByteVector.SPECIES_PREFERRED.length());
    @SuppressWarnings("unchecked")
    private static final VectorSpecies<Byte> GS = (VectorSpecies<Byte>) VectorSpecies.of(byte.class, VectorShape.forBitSize(GL * 8));
    /** Float vectors per GL bytes of weights. */
    private static final int GPARTS = GL / FL;
    // Q4_K / Q5_K's bits take one or two operations per weight: they are unpacked in int lanes from byte loads
    // as wide as a float vector's lane count, as Q4_0's are (byte lanes and wider loads measured 0.82-0.94x).
    private static final int BL = CpuQuant.BL;
    private static final int PARTS = CpuQuant.PARTS;
    private static final VectorSpecies<Integer> IS = CpuQuant.IS;
    private static final VectorSpecies<Byte> BS = CpuQuant.BS;
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    /** Weights per thread at least before work is split. */
    private static final int MIN_WORK = 1 << 16;

    // ================================================================= sizes and checks

    /** Bytes per super-block of a k-quant type. */
    public static int blockBytes(DType t) {
        if (!t.isKQuant()) throw new IllegalArgumentException(t + " is not a k-quant type (Q2_K, Q4_K, Q5_K, Q6_K)");
        return (int) t.byteSize(QK_K);
    }

    /** Bytes that {@code count} weights (a multiple of 256) take as type t. */
    public static long bytes(DType t, long count) {
        if (count < 0 || count % QK_K != 0) {
            throw new IllegalArgumentException(t + ": the element count must be a non-negative multiple of " + QK_K
                    + " (one super-block), got " + count);
        }
        return count / QK_K * blockBytes(t);
    }

    private static void checkBytes(String what, MemorySegment seg, long byteOff, long bytes) {
        if (byteOff < 0) throw new IllegalArgumentException(what + ": negative byte offset " + byteOff);
        if (byteOff + bytes > seg.byteSize()) {
            throw new IndexOutOfBoundsException(what + ": bytes [" + byteOff + ", " + (byteOff + bytes)
                    + ") exceed a segment of " + seg.byteSize() + " bytes");
        }
    }

    // ================================================================= dequantize

    /** Dequantizes {@code count} weights (a multiple of 256) of type t at {@code src + srcByteOff} into {@code dst[dstOff..]}. */
    public static void dequantize(DType t, MemorySegment src, long srcByteOff, MemorySegment dst, long dstOff, long count) {
        long bytes = bytes(t, count);
        checkBytes("dequantize " + t + " src", src, srcByteOff, bytes);
        CpuHalf.checkRange("dequantize " + t + " dst", dst, dstOff, count, 4);
        long blocks = count / QK_K;
        if (blocks > Integer.MAX_VALUE) throw new IllegalArgumentException("too many super-blocks: " + blocks);
        int bb = blockBytes(t);
        CpuThreads.RangeBody body = (from, to) -> {
            for (long b = from; b < to; b++) block(t, src, srcByteOff + b * bb, dst, (dstOff + b * QK_K) * 4);
        };
        if (CpuHalf.shareable(src, dst)) CpuThreads.parallelFor((int) blocks, MIN_WORK / QK_K, body);
        else body.run(0, (int) blocks);
    }

    /** One super-block of type t at byte s of src to 256 floats at byte o of dst. */
    private static void block(DType t, MemorySegment src, long s, MemorySegment dst, long o) {
        switch (t) {
            case Q4_K -> blockK45(false, src, s, dst, o);
            case Q5_K -> blockK45(true, src, s, dst, o);
            case Q6_K -> blockQ6_K(src, s, dst, o);
            case Q2_K -> blockQ2_K(src, s, dst, o);
            default -> throw new IllegalArgumentException(t + " is not a k-quant type");
        }
    }

    private static float f16(MemorySegment seg, long off) {
        return Float.float16ToFloat(seg.get(I16, off));
    }

    /** The 8 bytes at byte s of seg as a little-endian long (one access instead of eight). */
    private static long word(MemorySegment seg, long s) {
        return seg.get(I64, s);
    }

    // Q4_K / Q5_K headers: d (bytes 0-1), dmin (2-3), then 12 bytes packing eight 6-bit scales and eight 6-bit
    // mins (4-15), read as two longs and unpacked with plain arithmetic, as ggml's get_scale_min_k4 defines
    // them: a byte read per scale used up so much of C2's inlining budget in the product kernels that their
    // Vector API calls were left to the allocating fallback.

    /** The eight 6-bit scales, one per byte (scale j in byte j), of a header held as words h0, h1. */
    private static long scalesK4(long h0, long h1) {
        int u0 = (int) (h0 >>> 32), u2 = (int) (h1 >>> 32);
        return (u0 & 0x3F3F3F3FL) | (long) ((u2 & 0x0F0F0F0F) | ((u0 >>> 6) & 0x03030303) << 4) << 32;
    }

    /** The eight 6-bit mins, one per byte, of a header held as words h0, h1. */
    private static long minsK4(long h1) {
        int u1 = (int) h1, u2 = (int) (h1 >>> 32);
        return (u1 & 0x3F3F3F3FL) | (long) (((u2 >>> 4) & 0x0F0F0F0F) | ((u1 >>> 6) & 0x03030303) << 4) << 32;
    }

    /** Unsigned byte j (0..7) of v. */
    private static int byteAt(long v, int j) {
        return (int) (v >>> (8 * j)) & 0xFF;
    }

    /** The F16 in bits shift..shift + 15 of a little-endian word. */
    private static float f16Of(long h0, int shift) {
        return Float.float16ToFloat((short) (h0 >>> shift));
    }

    /** Part p (FL lanes) of the unpacked weight bytes q as floats. */
    private static FloatVector part(ByteVector q, int p) {
        return (FloatVector) q.convertShape(VectorOperators.B2F, FS, p);
    }

    private static ByteVector load(MemorySegment seg, long byteOff) {
        return ByteVector.fromMemorySegment(GS, seg, byteOff, LE);
    }

    /**
     * One Q4_K (Q5_K when five) super-block at byte s of src to 256 floats at byte o of dst: (d * sc_j) * q - dmin * m_j
     * for each block j of 32 weights, with the reference's rounding.
     */
    private static void blockK45(boolean five, MemorySegment src, long s, MemorySegment dst, long o) {
        long h0 = word(src, s), h1 = word(src, s + 8), scales = scalesK4(h0, h1), mins = minsK4(h1);
        float d = f16Of(h0, 0), dmin = f16Of(h0, 16);
        long qs = s + (five ? 48 : 16);
        for (int j = 0; j < 8; j++) {
            FloatVector dsc = FloatVector.broadcast(FS, d * byteAt(scales, j)), dm = FloatVector.broadcast(FS, dmin * byteAt(mins, j));
            long q = qs + 16L * (j & ~1), out = o + 32L * j * 4;
            for (int c = 0; c < 32; c += BL) {
                ByteVector bq = ByteVector.fromMemorySegment(BS, src, q + c, LE);
                ByteVector bh = five ? ByteVector.fromMemorySegment(BS, src, s + 16 + c, LE) : bq;
                for (int p = 0; p < PARTS; p++) quant45(five, bq, bh, p, j).mul(dsc).sub(dm).intoMemorySegment(dst, out + (c + p * FL) * 4L, LE);
            }
        }
    }

    /**
     * One Q6_K super-block at byte s of src to 256 floats at byte o of dst: (d * sc) * (q - 32) for each 16 weights,
     * with the reference's rounding.
     */
    private static void blockQ6_K(MemorySegment src, long s, MemorySegment dst, long o) {
        float d = f16(src, s + 208);
        for (int half = 0; half < 2; half++) {
            long sc = word(src, s + 192 + 8L * half), qh = s + 128 + 32L * half;
            for (int g = 0; g < 4; g++) {
                long ql = s + 64L * half + 32L * (g & 1), out = o + (128L * half + 32L * g) * 4;
                for (int c = 0; c < 32; c += GL) {
                    ByteVector v = quant6(load(src, ql + c), load(src, qh + c), g);
                    for (int p = 0; p < GPARTS; p++) {
                        int l = c + p * FL; // a part never straddles two 16-weight scale groups (FL <= 16)
                        part(v, p).mul(d * scale6(sc, l / 16 + 2 * g)).intoMemorySegment(dst, out + l * 4L, LE);
                    }
                }
            }
        }
    }

    /**
     * One Q2_K super-block at byte s of src to 256 floats at byte o of dst: (d * sc) * q - dmin * m for each 16
     * weights, with the reference's rounding.
     */
    private static void blockQ2_K(MemorySegment src, long s, MemorySegment dst, long o) {
        float d = f16(src, s + 80), dmin = f16(src, s + 82);
        for (int g = 0; g < 16; g++) {
            int sm = src.get(ValueLayout.JAVA_BYTE, s + g) & 0xFF;
            FloatVector dl = FloatVector.broadcast(FS, d * (sm & 0xF)), ml = FloatVector.broadcast(FS, dmin * (sm >> 4));
            long q = q2Bytes(s, g), out = o + 16L * g * 4;
            for (int c = 0; c < 16; c += BL) {
                ByteVector bq = ByteVector.fromMemorySegment(BS, src, q + c, LE);
                for (int p = 0; p < PARTS; p++) quant2(bq, p, g).mul(dl).sub(ml).intoMemorySegment(dst, out + (c + p * FL) * 4L, LE);
            }
        }
    }

    /** Byte offset of the 16 bytes holding Q2_K group g's weights in the super-block at byte s. */
    private static long q2Bytes(long s, int g) {
        return s + 16 + 32L * (g >> 3) + 16L * (g & 1);
    }

    /** Q2_K group g's 2-bit weights of part p of the loaded bytes bq, as floats. */
    private static FloatVector quant2(ByteVector bq, int p, int g) {
        IntVector v = ((IntVector) bq.convertShape(VectorOperators.B2I, IS, p)).lanewise(VectorOperators.ASHR, 2 * ((g & 7) >> 1)).and(3);
        return (FloatVector) v.convert(VectorOperators.I2F, 0);
    }

    /**
     * Block j's weights (0..15, or 0..31 for Q5_K) of part p of the loaded bytes bq, as floats: low nibbles for
     * even j, high for odd; for Q5_K with bit j of the qh bytes bh as the fifth bit.
     */
    private static FloatVector quant45(boolean five, ByteVector bq, ByteVector bh, int p, int j) {
        IntVector v = ((IntVector) bq.convertShape(VectorOperators.B2I, IS, p)).lanewise(VectorOperators.ASHR, 4 * (j & 1)).and(0xF);
        if (five) {
            IntVector h = (IntVector) bh.convertShape(VectorOperators.B2I, IS, p);
            v = v.or(h.lanewise(VectorOperators.ASHR, j).and(1).lanewise(VectorOperators.LSHL, 4));
        }
        return (FloatVector) v.convert(VectorOperators.I2F, 0);
    }

    /** Group g's 6-bit weights minus 32 of 32 loaded ql bytes bl and qh bytes bh (byte lanes as in {@link #quant45}). */
    private static ByteVector quant6(ByteVector bl, ByteVector bh, int g) {
        ShortVector lo = bl.reinterpretAsShorts().lanewise(VectorOperators.LSHR, 4 * (g >> 1)).and((short) 0x0F0F);
        ShortVector hi = bh.reinterpretAsShorts().lanewise(VectorOperators.LSHR, 2 * g).and((short) 0x0303).lanewise(VectorOperators.LSHL, 4);
        return lo.or(hi).reinterpretAsBytes().sub((byte) 32);
    }

    /** Q6_K's int8 scale j (0..7) of a half's eight scales held as one little-endian word. */
    private static int scale6(long scales, int j) {
        return (byte) (scales >>> (8 * j));
    }

    // ================================================================= products

    /** X rows (tokens) a product kernel takes at once, sharing every weight load. */
    private static final int TOKENS = 4;
    /**
     * Each calling thread's heap scratch: [0] the sums of X over each 32 weights (the Q4_K / Q5_K minimum terms),
     * [1] a copy of a lone X row for the one-row Q4_K / Q5_K kernel, which reads heap arrays faster than segments (C2 hoists
     * an array's bounds checks out of their short inner loops, where each segment load kept its own). The pool's
     * workers only read them, after the job that hands them over starts.
     */
    private static final ThreadLocal<float[][]> X_HEAP = ThreadLocal.withInitial(() -> new float[][] {new float[0], new float[0]});
    /** Each thread's four unpacked W rows for {@link #tokens}. */
    private static final ThreadScratch ROWS = new ThreadScratch();

    /**
     * y[yOff + i] = sum_j W[i][j] x[xOff + j] for i in [0, m): W an m x n matrix of type t (n a multiple of 256)
     * whose rows are consecutive super-blocks from {@code w + wByteOff}.
     */
    public static void gemv(DType t, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff,
                            MemorySegment y, long yOff) {
        gemm(t, 1, m, n, w, wByteOff, x, xOff, n, y, yOff, m);
    }

    /**
     * Y[r][i] = sum_j W[i][j] X[r][j] for r in [0, rows), i in [0, m): X rows {@code ldx} floats apart from
     * {@code x[xOff..]}, Y rows {@code ldy} apart from {@code y[yOff..]}, W as in {@link #gemv}. W streams row
     * by row, each weight load shared by up to {@value #TOKENS} X rows; a Y row's values do not depend on the
     * other X rows.
     */
    public static void gemm(DType t, int rows, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff, int ldx,
                            MemorySegment y, long yOff, int ldy) {
        String what = "linear " + t;
        if (rows < 0 || m < 0) throw new IllegalArgumentException(what + ": negative size (rows " + rows + ", out " + m + ")");
        long rowBytes = bytes(t, n);
        if (rows > 1 && (ldx < n || ldy < m)) { // strides matter only between rows
            throw new IllegalArgumentException(what + ": leading dimensions " + ldx + " / " + ldy + " are below " + n + " / " + m);
        }
        checkBytes(what + " w", w, wByteOff, m * rowBytes);
        if (rows == 0 || m == 0) return;
        CpuHalf.checkRange(what + " x", x, xOff, (long) (rows - 1) * ldx + n, 4);
        CpuHalf.checkRange(what + " y", y, yOff, (long) (rows - 1) * ldy + m, 4);
        if (n == 0) {
            for (int r = 0; r < rows; r++) for (int i = 0; i < m; i++) y.setAtIndex(F32, yOff + (long) r * ldy + i, 0f);
            return;
        }
        int nb = n / QK_K, groups = n / 32;
        float[][] heap = X_HEAP.get();
        boolean mins = t == DType.Q4_K || t == DType.Q5_K;
        if (mins && heap[0].length < (long) rows * groups) heap[0] = new float[Math.multiplyExact(rows, groups)];
        if (mins && heap[1].length < n) heap[1] = new float[n];
        float[] sums = heap[0], xRow = heap[1];
        if (mins) for (int r = 0; r < rows; r++) sums32(x, (xOff + (long) r * ldx) * 4, groups, sums, r * groups);
        boolean shareable = CpuHalf.shareable(w, x, y);
        for (int r0 = 0; r0 < rows; r0 += TOKENS) {
            int count = Math.min(TOKENS, rows - r0);
            if (count == 1 && mins) MemorySegment.copy(x, F32, (xOff + (long) r0 * ldx) * 4, xRow, 0, n); // rowsK45's input
            Kernel k = new Kernel(t, nb, w, wByteOff, rowBytes, x, (xOff + (long) r0 * ldx) * 4, 4L * ldx, xRow, sums, r0 * groups,
                    groups, y, (yOff + (long) r0 * ldy) * 4, 4L * ldy);
            CpuThreads.RangeBody body = (from, to) -> k.run(count, from, to);
            if (shareable) CpuThreads.parallelFor(m, (int) Math.max(1, MIN_WORK / ((long) n * count)), body);
            else body.run(0, m);
        }
    }

    /** The sum of each 32 floats of x from byte xb (groups of them) into sums from index sb. */
    private static void sums32(MemorySegment x, long xb, int groups, float[] sums, int sb) {
        for (int g = 0; g < groups; g++) {
            FloatVector acc = FloatVector.zero(FS);
            for (int j = 0; j < 32; j += FL) acc = acc.add(xAt(x, xb + (32L * g + j) * 4));
            sums[sb + g] = VectorMath.sum(acc);
        }
    }

    /**
     * One product's operands, as byte offsets: W rows of type t rb bytes apart from wOff (nb super-blocks each);
     * X rows xs apart from xb (the first also copied to xRow when it is alone); their sums over each 32 weights (Q4_K,
     * Q5_K) ss floats apart from index sb; Y rows ys apart from yb.
     */
    private record Kernel(DType t, int nb, MemorySegment w, long wOff, long rb, MemorySegment x, long xb, long xs, float[] xRow,
                          float[] sums, int sb, int ss, MemorySegment y, long yb, long ys) {
        /** W rows [r0, r1) times `count` (1 to 4) X rows. */
        void run(int count, int r0, int r1) {
            if (count > 1) tokens(count, r0, r1, this);
            else if (t == DType.Q6_K) rowsQ6_K(r0, r1, nb, w, wOff, rb, x, xb, y, yb); // heap x: 0.92x here
            else if (t == DType.Q2_K) rowsQ2_K(r0, r1, nb, w, wOff, rb, x, xb, y, yb);
            else rowsK45(t == DType.Q5_K, r0, r1, nb, w, wOff, rb, xRow, sums, sb, y, yb);
        }
    }

    // Q4_K / Q5_K products are factored as llama.cpp's are: per 32 weights the integer weights dot X, the block's
    // scale multiplies that sum, and the block's minimum times X's sum over the block is subtracted. Q6_K's
    // weights (a scale per 16) are dequantized in registers, as blockQ6_K writes them, and dotted with X 32 at a
    // time. Several X rows share W rows unpacked four at a time into a buffer and dotted in the same order, so a
    // token's result is bit for bit the same alone or in a batch (the decode path verifies speculative drafts
    // relying on that).
    //
    // The kernels write each Vector API operation once, in loops over a block's parts, and hold their row loop:
    // C2 stops inlining a method's callees past a node count (NodeCountInliningCutoff, not a product flag), and a
    // Vector API call it does not inline runs the allocating Java fallback (a helper returning a block's dot, not
    // inlined, made the Q6_K product 150x slower; two blocks per step in Q4_K's, 4x slower). A vector that may be
    // null (no qh bytes for Q4_K) is boxed too: hence bh = bq there. Tried and dropped: two accumulators (even and
    // odd blocks; no faster, and AVX2's four-row dot spilled), dequantizing Q4_K in registers (0.83x), a second
    // code path in the four-row dot for Q6_K's unscaled rows (0.7x on AVX2; they get scales of 1 instead).

    private static FloatVector xAt(MemorySegment x, long byteOff) {
        return FloatVector.fromMemorySegment(FS, x, byteOff, LE);
    }

    /**
     * Q4_K (or Q5_K when five) rows [r0, r1) times one X row x: per 32-weight block j of each super-block,
     * (d * sc_j) * sum(q x) into a vector, minus (dmin * m_j) * sum(x) into a scalar. Blocks 2i and 2i + 1 are the
     * low and high nibbles of the same 32 bytes, so they share each load (1.15x over a load per block).
     */
    private static void rowsK45(boolean five, int r0, int r1, int nb, MemorySegment w, long wOff, long rb, float[] x,
                                float[] sums, int sb, MemorySegment y, long yb) {
        int bytes = five ? 176 : 144, qs = five ? 48 : 16;
        for (int r = r0; r < r1; r++) {
            FloatVector acc = FloatVector.zero(FS);
            float minTerm = 0;
            for (int b = 0; b < nb; b++) {
                long s = wOff + r * rb + (long) b * bytes, h0 = word(w, s), h1 = word(w, s + 8), scales = scalesK4(h0, h1), mins = minsK4(h1);
                float d = f16Of(h0, 0), dmin = f16Of(h0, 16);
                for (int i = 0; i < 4; i++) {
                    int j = 2 * i, xo = 256 * b + 32 * j;
                    FloatVector lo = FloatVector.zero(FS), hi = lo;
                    for (int c = 0; c < 32; c += BL) {
                        ByteVector bq = ByteVector.fromMemorySegment(BS, w, s + qs + 16L * j + c, LE);
                        ByteVector bh = five ? ByteVector.fromMemorySegment(BS, w, s + 16 + c, LE) : bq;
                        for (int p = 0; p < PARTS; p++) {
                            int e = xo + c + p * FL;
                            lo = quant45(five, bq, bh, p, j).fma(FloatVector.fromArray(FS, x, e), lo);
                            hi = quant45(five, bq, bh, p, j + 1).fma(FloatVector.fromArray(FS, x, e + 32), hi);
                        }
                    }
                    acc = lo.fma(FloatVector.broadcast(FS, d * byteAt(scales, j)), acc);
                    acc = hi.fma(FloatVector.broadcast(FS, d * byteAt(scales, j + 1)), acc);
                    minTerm += dmin * byteAt(mins, j) * sums[sb + 8 * b + j];
                    minTerm += dmin * byteAt(mins, j + 1) * sums[sb + 8 * b + j + 1];
                }
            }
            y.set(F32, yb + r * 4L, VectorMath.sum(acc) - minTerm);
        }
    }

    /** Q6_K rows [r0, r1) times one X row; in each half of 128 weights, group g of 32 is dequantized as {@link #blockQ6_K} does. */
    private static void rowsQ6_K(int r0, int r1, int nb, MemorySegment w, long wOff, long rb, MemorySegment x, long xb,
                                 MemorySegment y, long yb) {
        for (int r = r0; r < r1; r++) {
            FloatVector acc = FloatVector.zero(FS);
            for (int b = 0; b < nb; b++) {
                long s = wOff + r * rb + (long) b * 210;
                float d = f16(w, s + 208);
                for (int half = 0; half < 2; half++) {
                    long sc = word(w, s + 192 + 8L * half), qh = s + 128 + 32L * half;
                    for (int g = 0; g < 4; g++) {
                        long ql = s + 64L * half + 32L * (g & 1), xo = xb + (256L * b + 128L * half + 32L * g) * 4;
                        FloatVector dot = FloatVector.zero(FS);
                        for (int c = 0; c < 32; c += GL) {
                            ByteVector v = quant6(load(w, ql + c), load(w, qh + c), g);
                            for (int p = 0; p < GPARTS; p++) {
                                int l = c + p * FL;
                                dot = part(v, p).mul(d * scale6(sc, l / 16 + 2 * g)).fma(xAt(x, xo + l * 4L), dot);
                            }
                        }
                        acc = acc.add(dot);
                    }
                }
            }
            y.set(F32, yb + r * 4L, VectorMath.sum(acc));
        }
    }

    /**
     * Q2_K rows [r0, r1) times one X row: each 16 weights dequantized as {@link #blockQ2_K} does, dotted with X 32 at
     * a time (the order {@link #dot1} adds dequantized rows in).
     */
    private static void rowsQ2_K(int r0, int r1, int nb, MemorySegment w, long wOff, long rb, MemorySegment x, long xb,
                                 MemorySegment y, long yb) {
        for (int r = r0; r < r1; r++) {
            FloatVector acc = FloatVector.zero(FS);
            for (int b = 0; b < nb; b++) {
                long s = wOff + r * rb + (long) b * 84;
                float d = f16(w, s + 80), dmin = f16(w, s + 82);
                for (int g = 0; g < 16; g += 2) {
                    FloatVector dot = FloatVector.zero(FS);
                    for (int i = g; i < g + 2; i++) {
                        int sm = w.get(ValueLayout.JAVA_BYTE, s + i) & 0xFF;
                        float dl = d * (sm & 0xF), ml = dmin * (sm >> 4);
                        long q = q2Bytes(s, i), xo = xb + (256L * b + 16L * i) * 4;
                        for (int c = 0; c < 16; c += BL) {
                            ByteVector bq = ByteVector.fromMemorySegment(BS, w, q + c, LE);
                            for (int p = 0; p < PARTS; p++) dot = quant2(bq, p, i).mul(dl).sub(ml).fma(xAt(x, xo + (c + p * FL) * 4L), dot);
                        }
                    }
                    acc = acc.add(dot);
                }
            }
            y.set(F32, yb + r * 4L, VectorMath.sum(acc));
        }
    }

    /**
     * W rows [r0, r1) times 2 to 4 X rows, with exactly the arithmetic of {@link #rowsK45}, {@link #rowsQ6_K} and {@link #rowsQ2_K}
     * for each: W rows are unpacked four at a time into this thread's buffer (Q4_K / Q5_K: their integer weights
     * as floats, their blocks' scales and mins; Q6_K, Q2_K: dequantized, with scales of 1, whose products are exact),
     * then dotted with each X row block by block in the same order, four W rows sharing each X load. Written out
     * for several X rows as the one-row kernels are, these kernels outgrew C2's inlining budget.
     */
    private static void tokens(int count, int r0, int r1, Kernel k) {
        int n = k.nb * QK_K, blocks = n / 32;
        boolean q6 = k.t == DType.Q6_K || k.t == DType.Q2_K; // dequantized in full, scales of 1, no min terms
        long rowBytes = 4L * n + 8L * blocks; // weights, then scales, then mins
        MemorySegment rows = ROWS.get(4 * rowBytes);
        for (int r = r0; r < r1; r += 4) {
            int m = Math.min(4, r1 - r);
            for (int i = 0; i < m; i++) {
                long s = k.wOff + (r + i) * k.rb, o = i * rowBytes;
                if (!q6) unpackK45(k.t == DType.Q5_K, k.w, s, k.nb, rows, o, o + 4L * n, o + 4L * n + 4L * blocks);
                else {
                    for (int b = 0; b < k.nb; b++) block(k.t, k.w, s + (long) blockBytes(k.t) * b, rows, o + 4L * QK_K * b);
                    for (int b = 0; b < blocks; b++) rows.set(F32, o + 4L * n + 4L * b, 1f);
                }
            }
            for (int i = 0; i < count; i++) {
                long xb = k.xb + i * k.xs, yb = k.yb + i * k.ys + r * 4L;
                int sb = q6 ? -1 : k.sb + i * k.ss;
                if (m == 4) dot4(rows, rowBytes, n, k.x, xb, k.sums, sb, k.y, yb);
                else for (int j = 0; j < m; j++) dot1(rows, j * rowBytes, n, k.x, xb, k.sums, sb, k.y, yb + 4L * j);
            }
        }
    }

    /**
     * One unpacked W row (n floats from byte w of rows, then per-block scales, then mins when sb >= 0) times X from
     * byte xb (its block sums from index sb of sums) into y at byte yb.
     */
    private static void dot1(MemorySegment rows, long w, int n, MemorySegment x, long xb, float[] sums, int sb,
                             MemorySegment y, long yb) {
        int blocks = n / 32;
        long scales = w + 4L * n, mins = scales + 4L * blocks;
        FloatVector acc = FloatVector.zero(FS);
        float minTerm = 0;
        for (int bl = 0; bl < blocks; bl++) {
            FloatVector dot = FloatVector.zero(FS);
            for (int h = 0; h < 32; h += 16) { // a loop of constant length inside: C2 unrolls it whole
                for (int c = 0; c < 16; c += FL) {
                    long e = (long) (bl * 32 + h + c) * 4;
                    dot = xAt(rows, w + e).fma(xAt(x, xb + e), dot);
                }
            }
            acc = dot.fma(FloatVector.broadcast(FS, rows.get(F32, scales + bl * 4L)), acc);
            if (sb >= 0) minTerm += rows.get(F32, mins + bl * 4L) * sums[sb + bl];
        }
        y.set(F32, yb, VectorMath.sum(acc) - minTerm);
    }

    /** {@link #dot1} for four unpacked W rows rb bytes apart from byte 0 of rows, into four consecutive outputs. */
    private static void dot4(MemorySegment rows, long rb, int n, MemorySegment x, long xb, float[] sums, int sb,
                             MemorySegment y, long yb) {
        int blocks = n / 32;
        long scales = 4L * n, mins = scales + 4L * blocks;
        FloatVector a0 = FloatVector.zero(FS), a1 = a0, a2 = a0, a3 = a0;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        for (int bl = 0; bl < blocks; bl++) {
            FloatVector d0 = FloatVector.zero(FS), d1 = d0, d2 = d0, d3 = d0;
            for (int h = 0; h < 32; h += 16) {
                for (int c = 0; c < 16; c += FL) {
                    long e = (long) (bl * 32 + h + c) * 4;
                    FloatVector xv = xAt(x, xb + e);
                    d0 = xAt(rows, e).fma(xv, d0);
                    d1 = xAt(rows, rb + e).fma(xv, d1);
                    d2 = xAt(rows, 2 * rb + e).fma(xv, d2);
                    d3 = xAt(rows, 3 * rb + e).fma(xv, d3);
                }
            }
            long sc = scales + bl * 4L;
            a0 = d0.fma(FloatVector.broadcast(FS, rows.get(F32, sc)), a0);
            a1 = d1.fma(FloatVector.broadcast(FS, rows.get(F32, rb + sc)), a1);
            a2 = d2.fma(FloatVector.broadcast(FS, rows.get(F32, 2 * rb + sc)), a2);
            a3 = d3.fma(FloatVector.broadcast(FS, rows.get(F32, 3 * rb + sc)), a3);
            if (sb >= 0) {
                float xs = sums[sb + bl];
                long mn = mins + bl * 4L;
                m0 += rows.get(F32, mn) * xs;
                m1 += rows.get(F32, rb + mn) * xs;
                m2 += rows.get(F32, 2 * rb + mn) * xs;
                m3 += rows.get(F32, 3 * rb + mn) * xs;
            }
        }
        y.set(F32, yb, VectorMath.sum(a0) - m0);
        y.set(F32, yb + 4, VectorMath.sum(a1) - m1);
        y.set(F32, yb + 8, VectorMath.sum(a2) - m2);
        y.set(F32, yb + 12, VectorMath.sum(a3) - m3);
    }

    // The unpacker below repeats the dequantizer's loop without the scales: sharing one loop (scales of 1 and 0)
    // made the multi-token products about 2x slower.

    /** A Q4_K (Q5_K when five) row's integer weights as floats from byte out0 of row, (d * sc_j) from byte scales, (dmin * m_j) from byte mins. */
    private static void unpackK45(boolean five, MemorySegment w, long row0, int nb, MemorySegment row, long out0, long scales, long mins) {
        int bytes = five ? 176 : 144, qs = five ? 48 : 16;
        for (int b = 0; b < nb; b++) {
            long s = row0 + (long) b * bytes, h0 = word(w, s), h1 = word(w, s + 8), sc = scalesK4(h0, h1), mn = minsK4(h1);
            float d = f16Of(h0, 0), dmin = f16Of(h0, 16);
            for (int j = 0; j < 8; j++) {
                row.set(F32, scales + (8L * b + j) * 4, d * byteAt(sc, j));
                row.set(F32, mins + (8L * b + j) * 4, dmin * byteAt(mn, j));
                long q = s + qs + 16L * (j & ~1), out = out0 + (256L * b + 32L * j) * 4;
                for (int c = 0; c < 32; c += BL) {
                    ByteVector bq = ByteVector.fromMemorySegment(BS, w, q + c, LE);
                    ByteVector bh = five ? ByteVector.fromMemorySegment(BS, w, s + 16 + c, LE) : bq;
                    for (int p = 0; p < PARTS; p++) quant45(five, bq, bh, p, j).intoMemorySegment(row, out + (c + p * FL) * 4L, LE);
                }
            }
        }
    }
}
