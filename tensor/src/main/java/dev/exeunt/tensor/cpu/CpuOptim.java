package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Optimizer kernels over contiguous F32 buffers: the AdamW step, the sum of squares (for global-norm
 * gradient clipping) and in-place scaling.
 *
 * <p>Conventions: little-endian F32 segments with element offsets; {@code p}, {@code m}, {@code v} are
 * updated in place; segments must be accessible from any thread. Work is split in fixed blocks, so
 * results do not depend on the thread count.
 */
public final class CpuOptim {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final int BLOCK = 1 << 13;
    private static final int GRAIN_BLOCKS = 4;

    private CpuOptim() {}

    /**
     * One AdamW step (PyTorch {@code torch.optim.AdamW}, amsgrad off), with {@code g = grad * gradScale}:
     * <pre>
     *   p -= lr * weightDecay * p                      (decoupled decay)
     *   m  = beta1 * m + (1 - beta1) * g
     *   v  = beta2 * v + (1 - beta2) * g^2
     *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
     * </pre>
     * p, m and v are updated in place; grad is only read.
     *
     * @param step      the 1-based step count t, after incrementing for this update
     * @param gradScale multiplies the gradient (e.g. the clipping factor or 1 / loss scale); 1 for none
     */
    public static void adamW(MemorySegment p, long pOff, MemorySegment grad, long gOff, MemorySegment m, long mOff,
                             MemorySegment v, long vOff, long n, float lr, float beta1, float beta2, float eps,
                             float weightDecay, long step, float gradScale) {
        if (step < 1) throw new IllegalArgumentException("step must be >= 1, got " + step);
        double bc1 = 1.0 - Math.pow(beta1, step);
        double bc2 = 1.0 - Math.pow(beta2, step);
        float stepSize = (float) (lr / bc1);
        float invSqrtBc2 = (float) (1.0 / Math.sqrt(bc2));
        float decay = 1f - lr * weightDecay;
        float b1 = beta1, c1 = 1f - beta1, b2 = beta2, c2 = 1f - beta2;
        blocks(n, (st, len) -> {
            long pb = 4 * (pOff + st), gb = 4 * (gOff + st), mb = 4 * (mOff + st), vb = 4 * (vOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) {
                long o = 4L * i;
                var g = FloatVector.fromMemorySegment(S, grad, gb + o, LE).mul(gradScale);
                var mv = FloatVector.fromMemorySegment(S, m, mb + o, LE).mul(b1).add(g.mul(c1));
                var vv = FloatVector.fromMemorySegment(S, v, vb + o, LE).mul(b2).add(g.mul(g).mul(c2));
                var denom = vv.sqrt().mul(invSqrtBc2).add(eps);
                var pv = FloatVector.fromMemorySegment(S, p, pb + o, LE).mul(decay).sub(mv.div(denom).mul(stepSize));
                mv.intoMemorySegment(m, mb + o, LE);
                vv.intoMemorySegment(v, vb + o, LE);
                pv.intoMemorySegment(p, pb + o, LE);
            }
            for (; i < len; i++) {
                long o = 4L * i;
                float g = grad.get(F, gb + o) * gradScale;
                float mv = m.get(F, mb + o) * b1 + g * c1;
                float vv = v.get(F, vb + o) * b2 + g * g * c2;
                float denom = (float) Math.sqrt(vv) * invSqrtBc2 + eps;
                m.set(F, mb + o, mv);
                v.set(F, vb + o, vv);
                p.set(F, pb + o, p.get(F, pb + o) * decay - mv / denom * stepSize);
            }
        });
    }

    /** {@link #adamW(MemorySegment, long, MemorySegment, long, MemorySegment, long, MemorySegment, long, long, float, float, float, float, float, long, float)} with gradScale 1. */
    public static void adamW(MemorySegment p, long pOff, MemorySegment grad, long gOff, MemorySegment m, long mOff,
                             MemorySegment v, long vOff, long n, float lr, float beta1, float beta2, float eps,
                             float weightDecay, long step) {
        adamW(p, pOff, grad, gOff, m, mOff, v, vOff, n, lr, beta1, beta2, eps, weightDecay, step, 1f);
    }

    /** sum(x^2) over n elements: F32 within fixed blocks, F64 across blocks in order (deterministic). */
    public static double sumOfSquares(MemorySegment x, long off, long n) {
        if (n < 0) throw new IllegalArgumentException("n < 0: " + n);
        if (n == 0) return 0;
        int nb = Math.toIntExact((n + BLOCK - 1) / BLOCK);
        double[] part = new double[nb];
        CpuThreads.parallelFor(nb, GRAIN_BLOCKS, (b0, b1) -> {
            for (int b = b0; b < b1; b++) {
                long st = (long) b * BLOCK;
                int len = (int) Math.min(BLOCK, n - st);
                long xb = 4 * (off + st);
                int i = 0, bound = S.loopBound(len);
                float s = 0f;
                if (bound > 0) {
                    var acc = FloatVector.zero(S);
                    for (; i < bound; i += L) {
                        var a = FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE);
                        acc = a.fma(a, acc);
                    }
                    s = VectorMath.sum(acc);
                }
                for (; i < len; i++) {
                    float a = x.get(F, xb + 4L * i);
                    s += a * a;
                }
                part[b] = s;
            }
        });
        double total = 0;
        for (double d : part) total += d;
        return total;
    }

    /** x *= s over n elements, in place. */
    public static void scale(MemorySegment x, long off, long n, float s) {
        blocks(n, (st, len) -> {
            long xb = 4 * (off + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) {
                FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).mul(s).intoMemorySegment(x, xb + 4L * i, LE);
            }
            for (; i < len; i++) x.set(F, xb + 4L * i, x.get(F, xb + 4L * i) * s);
        });
    }

    @FunctionalInterface
    private interface Range {
        void run(long start, int len);
    }

    private static void blocks(long n, Range body) {
        if (n < 0) throw new IllegalArgumentException("n < 0: " + n);
        if (n == 0) return;
        if (n <= BLOCK) {
            body.run(0, (int) n);
            return;
        }
        int nb = Math.toIntExact((n + BLOCK - 1) / BLOCK);
        CpuThreads.parallelFor(nb, GRAIN_BLOCKS, (b0, b1) -> {
            for (int b = b0; b < b1; b++) {
                long st = (long) b * BLOCK;
                body.run(st, (int) Math.min(BLOCK, n - st));
            }
        });
    }
}
