package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Softmax and log-softmax over the last dimension of a contiguous {@code [rows, cols]} F32 matrix, and
 * their backward passes.
 *
 * <p>Conventions shared by all row kernels in this package: arguments are native little-endian F32
 * {@link MemorySegment}s addressed by <em>element</em> offsets; row {@code r} starts at
 * {@code off + r * cols}. Outputs are overwritten. Input and output may be the same memory (exactly the
 * same offset), never a partial overlap. Large inputs are split over rows on {@link CpuThreads}, so the
 * segments must be accessible from any thread (global, automatic or shared arena; not confined).
 *
 * <p>Forward passes are max-subtracted and never overflow for finite input. A row whose maximum is
 * {@code -inf} (every entry masked) gives all zeros from {@link #softmax} and all {@code -inf} from
 * {@link #logSoftmax}.
 */
public final class CpuSoftmax {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    /** Minimum elements of work per parallel range. */
    private static final int GRAIN_ELEMS = 1 << 14;

    private CpuSoftmax() {}

    /** y[r, :] = exp(x[r, :] - max) / sum(exp(x[r, :] - max)). y is overwritten; y may be x. */
    public static void softmax(MemorySegment x, long xOff, MemorySegment y, long yOff, int rows, int cols) {
        checkShape(rows, cols);
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                softmaxRow(x, 4 * (xOff + (long) r * cols), y, 4 * (yOff + (long) r * cols), cols);
            }
        });
    }

    /** y[r, :] = x[r, :] - max - log(sum(exp(x[r, :] - max))). y is overwritten; y may be x. */
    public static void logSoftmax(MemorySegment x, long xOff, MemorySegment y, long yOff, int rows, int cols) {
        checkShape(rows, cols);
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                logSoftmaxRow(x, 4 * (xOff + (long) r * cols), y, 4 * (yOff + (long) r * cols), cols);
            }
        });
    }

    /**
     * Backward of {@link #softmax} from its output y: dx = y * (dy - sum(dy * y)). dx is overwritten;
     * dx may be dy (in place).
     */
    public static void softmaxBackward(MemorySegment y, long yOff, MemorySegment dy, long dyOff,
                                       MemorySegment dx, long dxOff, int rows, int cols) {
        checkShape(rows, cols);
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                long ro = (long) r * cols;
                softmaxBackwardRow(y, 4 * (yOff + ro), dy, 4 * (dyOff + ro), dx, 4 * (dxOff + ro), cols);
            }
        });
    }

    /**
     * Backward of {@link #logSoftmax} from its output y: dx = dy - exp(y) * sum(dy). dx is overwritten;
     * dx may be dy (in place).
     */
    public static void logSoftmaxBackward(MemorySegment y, long yOff, MemorySegment dy, long dyOff,
                                          MemorySegment dx, long dxOff, int rows, int cols) {
        checkShape(rows, cols);
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                long ro = (long) r * cols;
                logSoftmaxBackwardRow(y, 4 * (yOff + ro), dy, 4 * (dyOff + ro), dx, 4 * (dxOff + ro), cols);
            }
        });
    }

    // ---------------------------------------------------------------------------------------------
    // Row bodies (byte offsets). Package-private so other row kernels can reuse them.

    /** Maximum of n floats starting at byte offset xb (NaN entries are ignored unless all are NaN). */
    static float rowMax(MemorySegment x, long xb, int n) {
        int i = 0;
        float max = Float.NEGATIVE_INFINITY;
        int bound = S.loopBound(n);
        if (bound > 0) {
            var acc = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
            for (; i < bound; i += L) acc = acc.max(FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE));
            max = acc.reduceLanes(VectorOperators.MAX);
        }
        for (; i < n; i++) max = Math.max(max, x.get(F, xb + 4L * i));
        return max;
    }

    /** Sum of exp((x - max) * scale) over n floats. */
    static float sumExpShifted(MemorySegment x, long xb, int n, float max, float scale) {
        int i = 0;
        float sum = 0f;
        int bound = S.loopBound(n);
        if (bound > 0) {
            var vmax = FloatVector.broadcast(S, max);
            var acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                acc = acc.add(VectorMath.exp(FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).sub(vmax).mul(scale)));
            }
            sum = VectorMath.sum(acc);
        }
        for (; i < n; i++) sum += VectorMath.exp((x.get(F, xb + 4L * i) - max) * scale);
        return sum;
    }

    static void softmaxRow(MemorySegment x, long xb, MemorySegment y, long yb, int n) {
        float max = rowMax(x, xb, n);
        if (max == Float.NEGATIVE_INFINITY) {
            y.asSlice(yb, 4L * n).fill((byte) 0);
            return;
        }
        int bound = S.loopBound(n);
        int i = 0;
        float sum = 0f;
        if (bound > 0) {
            var vmax = FloatVector.broadcast(S, max);
            var acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                var e = VectorMath.exp(FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).sub(vmax));
                acc = acc.add(e);
                e.intoMemorySegment(y, yb + 4L * i, LE);
            }
            sum = VectorMath.sum(acc);
        }
        for (; i < n; i++) {
            float e = VectorMath.exp(x.get(F, xb + 4L * i) - max);
            sum += e;
            y.set(F, yb + 4L * i, e);
        }
        float inv = 1f / sum;
        i = 0;
        for (; i < bound; i += L) {
            FloatVector.fromMemorySegment(S, y, yb + 4L * i, LE).mul(inv).intoMemorySegment(y, yb + 4L * i, LE);
        }
        for (; i < n; i++) y.set(F, yb + 4L * i, y.get(F, yb + 4L * i) * inv);
    }

    static void logSoftmaxRow(MemorySegment x, long xb, MemorySegment y, long yb, int n) {
        float max = rowMax(x, xb, n);
        if (max == Float.NEGATIVE_INFINITY) {
            for (int i = 0; i < n; i++) y.set(F, yb + 4L * i, Float.NEGATIVE_INFINITY);
            return;
        }
        float logSum = (float) Math.log(sumExpShifted(x, xb, n, max, 1f));
        int bound = S.loopBound(n);
        int i = 0;
        for (; i < bound; i += L) {
            // (x - max) - logSum: two roundings each relative to its own magnitude, exact for the top entry
            FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).sub(max).sub(logSum)
                    .intoMemorySegment(y, yb + 4L * i, LE);
        }
        for (; i < n; i++) y.set(F, yb + 4L * i, (x.get(F, xb + 4L * i) - max) - logSum);
    }

    static void softmaxBackwardRow(MemorySegment y, long yb, MemorySegment dy, long dyb, MemorySegment dx, long dxb, int n) {
        int bound = S.loopBound(n);
        int i = 0;
        float dot = 0f;
        if (bound > 0) {
            var acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                acc = FloatVector.fromMemorySegment(S, y, yb + 4L * i, LE)
                        .fma(FloatVector.fromMemorySegment(S, dy, dyb + 4L * i, LE), acc);
            }
            dot = VectorMath.sum(acc);
        }
        for (; i < n; i++) dot += y.get(F, yb + 4L * i) * dy.get(F, dyb + 4L * i);
        i = 0;
        for (; i < bound; i += L) {
            var vy = FloatVector.fromMemorySegment(S, y, yb + 4L * i, LE);
            vy.mul(FloatVector.fromMemorySegment(S, dy, dyb + 4L * i, LE).sub(dot)).intoMemorySegment(dx, dxb + 4L * i, LE);
        }
        for (; i < n; i++) dx.set(F, dxb + 4L * i, y.get(F, yb + 4L * i) * (dy.get(F, dyb + 4L * i) - dot));
    }

    static void logSoftmaxBackwardRow(MemorySegment y, long yb, MemorySegment dy, long dyb, MemorySegment dx, long dxb, int n) {
        int bound = S.loopBound(n);
        int i = 0;
        float sum = 0f;
        if (bound > 0) {
            var acc = FloatVector.zero(S);
            for (; i < bound; i += L) acc = acc.add(FloatVector.fromMemorySegment(S, dy, dyb + 4L * i, LE));
            sum = VectorMath.sum(acc);
        }
        for (; i < n; i++) sum += dy.get(F, dyb + 4L * i);
        i = 0;
        for (; i < bound; i += L) {
            var e = VectorMath.exp(FloatVector.fromMemorySegment(S, y, yb + 4L * i, LE));
            FloatVector.fromMemorySegment(S, dy, dyb + 4L * i, LE).sub(e.mul(sum)).intoMemorySegment(dx, dxb + 4L * i, LE);
        }
        for (; i < n; i++) {
            dx.set(F, dxb + 4L * i, dy.get(F, dyb + 4L * i) - VectorMath.exp(y.get(F, yb + 4L * i)) * sum);
        }
    }

    static int grain(int cols) {
        return Math.max(1, GRAIN_ELEMS / Math.max(1, cols));
    }

    static void checkShape(int rows, int cols) {
        if (rows < 0 || cols < 1) throw new IllegalArgumentException("bad shape rows=" + rows + " cols=" + cols);
    }
}
