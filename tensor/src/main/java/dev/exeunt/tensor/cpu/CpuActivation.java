package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Elementwise activations over {@code n} contiguous F32 elements, forward {@code (x, y, n)} and backward
 * {@code (x or y, dy, dx, n)}.
 *
 * <p>Conventions: little-endian F32 segments with element offsets; outputs ({@code y}, {@code dx}) are
 * <b>overwritten</b> and may alias an input at the same offset (in place). Large inputs are split over
 * {@link CpuThreads}, so segments must be accessible from any thread. Each backward names what it reads:
 * tanh and exp read the forward <em>output</em> y, the others read the forward <em>input</em> x.
 *
 * <p>No kernel produces NaN for finite input (GELU and SiLU use overflow-safe sigmoid forms). GELU erf
 * is evaluated in F64 with the Numerical Recipes {@code erfc} Chebyshev-fitted approximation, whose
 * relative error is below 1.2e-7 everywhere, so the F32 result is accurate in both tails.
 */
public final class CpuActivation {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    /** Doubles for the erf GELU, and the float species with the same lane count. */
    private static final VectorSpecies<Double> DS =
            DoubleVector.SPECIES_PREFERRED.vectorBitSize() >= 128 ? DoubleVector.SPECIES_PREFERRED : DoubleVector.SPECIES_128;
    private static final VectorSpecies<Float> FH = VectorSpecies.of(float.class, VectorShape.forBitSize(DS.vectorBitSize() / 2));
    private static final int DL = DS.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final int BLOCK = 1 << 13;
    private static final int GRAIN_BLOCKS = 4;

    private static final float SQRT_2_OVER_PI = (float) Math.sqrt(2.0 / Math.PI);
    private static final float GELU_K = 0.044715f;
    private static final double INV_SQRT2 = 1.0 / Math.sqrt(2.0);
    private static final double INV_SQRT_2PI = 1.0 / Math.sqrt(2.0 * Math.PI);

    private CpuActivation() {}

    @FunctionalInterface
    private interface Range {
        /** Processes elements [0, len) of a block whose first element is at element offset start. */
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
                long s = (long) b * BLOCK;
                body.run(s, (int) Math.min(BLOCK, n - s));
            }
        });
    }

    private static FloatVector ld(MemorySegment s, long byteOff) {
        return FloatVector.fromMemorySegment(S, s, byteOff, LE);
    }

    private static FloatVector ld(MemorySegment s, long byteOff, VectorMask<Float> m) {
        return FloatVector.fromMemorySegment(S, s, byteOff, LE, m);
    }

    // ---------------------------------------------------------------------------------------------
    // GELU, tanh approximation: y = x * sigmoid(2u), u = sqrt(2/pi) * (x + 0.044715 x^3)
    // (identical to 0.5 x (1 + tanh u), without the cancellation for negative x). u is evaluated at x
    // clamped to [-10, 10], where |2u| < 88 cannot overflow exp: beyond it gelu(x) is x or 0 and its
    // derivative 1 or 0 to F32 precision (the omitted terms are below 1e-36).

    private static final float GELU_CLAMP = 10f;

    private static FloatVector geluTanhV(FloatVector x) {
        var xc = x.max(-GELU_CLAMP).min(GELU_CLAMP);
        var u = xc.mul(xc).mul(GELU_K).add(1f).mul(xc).mul(SQRT_2_OVER_PI);
        var e = VectorMath.exp(u.mul(-2f));
        return x.div(e.add(1f)).blend(0f, x.lt(-GELU_CLAMP));
    }

    private static FloatVector geluTanhGradV(FloatVector x, FloatVector dy) {
        var xc = x.max(-GELU_CLAMP).min(GELU_CLAMP);
        var x2 = xc.mul(xc);
        var u = x2.mul(GELU_K).add(1f).mul(xc).mul(SQRT_2_OVER_PI);
        var du = x2.mul(3f * GELU_K).add(1f).mul(SQRT_2_OVER_PI);
        var e = VectorMath.exp(u.mul(-2f));
        var s = FloatVector.broadcast(S, 1f).div(e.add(1f));
        // d/dx [x s(2u)] = s + x * 2 u' s (1 - s), with 1 - s = e * s (accurate when s ~ 1)
        var grad = xc.mul(du).mul(2f).mul(s).mul(e.mul(s)).add(s);
        return dy.mul(grad);
    }

    /** GELU with the tanh approximation (GPT-2's "gelu_new"). y overwritten. */
    public static void geluTanh(MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), yb = 4 * (yOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) geluTanhV(ld(x, xb + 4L * i)).intoMemorySegment(y, yb + 4L * i, LE);
            if (i < len) {
                var m = S.indexInRange(i, len);
                geluTanhV(ld(x, xb + 4L * i, m)).intoMemorySegment(y, yb + 4L * i, LE, m);
            }
        });
    }

    /** Backward of {@link #geluTanh}: dx = dy * gelu'(x). Reads x. dx overwritten. */
    public static void geluTanhBackward(MemorySegment x, long xOff, MemorySegment dy, long dyOff,
                                        MemorySegment dx, long dxOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), dyb = 4 * (dyOff + st), dxb = 4 * (dxOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) {
                geluTanhGradV(ld(x, xb + 4L * i), ld(dy, dyb + 4L * i)).intoMemorySegment(dx, dxb + 4L * i, LE);
            }
            if (i < len) {
                var m = S.indexInRange(i, len);
                geluTanhGradV(ld(x, xb + 4L * i, m), ld(dy, dyb + 4L * i, m)).intoMemorySegment(dx, dxb + 4L * i, LE, m);
            }
        });
    }

    // ---------------------------------------------------------------------------------------------
    // GELU, exact: y = x * Phi(x), Phi(x) = 0.5 erfc(-x / sqrt 2), evaluated in doubles.

    /** 0.5 * erfc(a) for a >= 0 (Numerical Recipes erfcc, relative error below 1.2e-7). */
    private static DoubleVector halfErfcV(DoubleVector a) {
        var t = a.mul(0.5).add(1.0);
        t = DoubleVector.broadcast(DS, 1.0).div(t);
        var p = t.mul(0.17087277).add(-0.82215223)
                .mul(t).add(1.48851587)
                .mul(t).add(-1.13520398)
                .mul(t).add(0.27886807)
                .mul(t).add(-0.18628806)
                .mul(t).add(0.09678418)
                .mul(t).add(0.37409196)
                .mul(t).add(1.00002368)
                .mul(t).add(-1.26551223);
        return t.mul(0.5).mul(VectorMath.exp(p.sub(a.mul(a))));
    }

    private static double halfErfc(double a) {
        double t = 1.0 / (1.0 + 0.5 * a);
        double p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
                + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
        return 0.5 * t * VectorMath.exp(p - a * a);
    }

    /** Standard normal CDF Phi(x) (relative error below 1.2e-7), exposed for tests and other kernels. */
    public static double normalCdf(double x) {
        double a = Math.abs(x) * INV_SQRT2;
        double q = halfErfc(a);
        return x >= 0 ? 1.0 - q : q;
    }

    private static DoubleVector phiV(DoubleVector x, DoubleVector a) {
        var q = halfErfcV(a);
        return DoubleVector.broadcast(DS, 1.0).sub(q).blend(q, x.lt(0.0));
    }

    private static FloatVector geluErfV(FloatVector xf) {
        var x = (DoubleVector) xf.convertShape(VectorOperators.F2D, DS, 0);
        var a = x.abs().mul(INV_SQRT2);
        return (FloatVector) x.mul(phiV(x, a)).convertShape(VectorOperators.D2F, FH, 0);
    }

    private static FloatVector geluErfGradV(FloatVector xf, FloatVector dyf) {
        var x = (DoubleVector) xf.convertShape(VectorOperators.F2D, DS, 0);
        var dy = (DoubleVector) dyf.convertShape(VectorOperators.F2D, DS, 0);
        var a = x.abs().mul(INV_SQRT2);
        var em = VectorMath.exp(a.mul(a).neg()); // exp(-x^2 / 2)
        var g = x.mul(em).mul(INV_SQRT_2PI).add(phiV(x, a));
        return (FloatVector) dy.mul(g).convertShape(VectorOperators.D2F, FH, 0);
    }

    /** Exact GELU x * Phi(x) (PyTorch's default "gelu"). y overwritten. */
    public static void geluErf(MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), yb = 4 * (yOff + st);
            int i = 0, bound = FH.loopBound(len);
            for (; i < bound; i += DL) {
                geluErfV(FloatVector.fromMemorySegment(FH, x, xb + 4L * i, LE)).intoMemorySegment(y, yb + 4L * i, LE);
            }
            for (; i < len; i++) {
                double v = x.get(F, xb + 4L * i);
                y.set(F, yb + 4L * i, (float) (v * normalCdf(v)));
            }
        });
    }

    /** Backward of {@link #geluErf}: dx = dy * (Phi(x) + x phi(x)). Reads x. dx overwritten. */
    public static void geluErfBackward(MemorySegment x, long xOff, MemorySegment dy, long dyOff,
                                       MemorySegment dx, long dxOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), dyb = 4 * (dyOff + st), dxb = 4 * (dxOff + st);
            int i = 0, bound = FH.loopBound(len);
            for (; i < bound; i += DL) {
                geluErfGradV(FloatVector.fromMemorySegment(FH, x, xb + 4L * i, LE),
                        FloatVector.fromMemorySegment(FH, dy, dyb + 4L * i, LE)).intoMemorySegment(dx, dxb + 4L * i, LE);
            }
            for (; i < len; i++) {
                // the operations of geluErfGradV, in the same order
                double v = x.get(F, xb + 4L * i);
                double a = Math.abs(v) * INV_SQRT2;
                double g = v * VectorMath.exp(-(a * a)) * INV_SQRT_2PI + normalCdf(v);
                dx.set(F, dxb + 4L * i, (float) (dy.get(F, dyb + 4L * i) * g));
            }
        });
    }

    // ---------------------------------------------------------------------------------------------
    // SiLU: y = x * sigmoid(x) = x / (1 + exp(-x))

    private static FloatVector siluV(FloatVector x) {
        return x.div(VectorMath.exp(x.neg()).add(1f));
    }

    private static FloatVector siluGradV(FloatVector x, FloatVector dy) {
        var s = FloatVector.broadcast(S, 1f).div(VectorMath.exp(x.neg()).add(1f));
        // s * (1 + x (1 - s)); exp overflow gives s = 0 and a finite product
        return dy.mul(s).mul(x.mul(s.neg().add(1f)).add(1f));
    }

    /** SiLU (swish) x * sigmoid(x). y overwritten. */
    public static void silu(MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), yb = 4 * (yOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) siluV(ld(x, xb + 4L * i)).intoMemorySegment(y, yb + 4L * i, LE);
            if (i < len) {
                var m = S.indexInRange(i, len);
                siluV(ld(x, xb + 4L * i, m)).intoMemorySegment(y, yb + 4L * i, LE, m);
            }
        });
    }

    /** Backward of {@link #silu}: dx = dy * s (1 + x (1 - s)), s = sigmoid(x). Reads x. dx overwritten. */
    public static void siluBackward(MemorySegment x, long xOff, MemorySegment dy, long dyOff,
                                    MemorySegment dx, long dxOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), dyb = 4 * (dyOff + st), dxb = 4 * (dxOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) {
                siluGradV(ld(x, xb + 4L * i), ld(dy, dyb + 4L * i)).intoMemorySegment(dx, dxb + 4L * i, LE);
            }
            if (i < len) {
                var m = S.indexInRange(i, len);
                siluGradV(ld(x, xb + 4L * i, m), ld(dy, dyb + 4L * i, m)).intoMemorySegment(dx, dxb + 4L * i, LE, m);
            }
        });
    }

    // ---------------------------------------------------------------------------------------------
    // ReLU

    /** ReLU max(x, 0). y overwritten. */
    public static void relu(MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), yb = 4 * (yOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) ld(x, xb + 4L * i).max(0f).intoMemorySegment(y, yb + 4L * i, LE);
            for (; i < len; i++) y.set(F, yb + 4L * i, Math.max(x.get(F, xb + 4L * i), 0f));
        });
    }

    /** Backward of {@link #relu}: dx = x > 0 ? dy : 0. Reads x. dx overwritten. */
    public static void reluBackward(MemorySegment x, long xOff, MemorySegment dy, long dyOff,
                                    MemorySegment dx, long dxOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), dyb = 4 * (dyOff + st), dxb = 4 * (dxOff + st);
            int i = 0, bound = S.loopBound(len);
            var zero = FloatVector.zero(S);
            for (; i < bound; i += L) {
                var pos = ld(x, xb + 4L * i).compare(VectorOperators.GT, 0f);
                zero.blend(ld(dy, dyb + 4L * i), pos).intoMemorySegment(dx, dxb + 4L * i, LE);
            }
            for (; i < len; i++) dx.set(F, dxb + 4L * i, x.get(F, xb + 4L * i) > 0f ? dy.get(F, dyb + 4L * i) : 0f);
        });
    }

    // ---------------------------------------------------------------------------------------------
    // tanh, exp, log

    /** tanh(x). y overwritten. */
    public static void tanh(MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), yb = 4 * (yOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) VectorMath.tanh(ld(x, xb + 4L * i)).intoMemorySegment(y, yb + 4L * i, LE);
            for (; i < len; i++) y.set(F, yb + 4L * i, VectorMath.tanh(x.get(F, xb + 4L * i)));
        });
    }

    /** Backward of {@link #tanh} from its output y: dx = dy * (1 - y^2). dx overwritten. */
    public static void tanhBackward(MemorySegment y, long yOff, MemorySegment dy, long dyOff,
                                    MemorySegment dx, long dxOff, long n) {
        blocks(n, (st, len) -> {
            long yb = 4 * (yOff + st), dyb = 4 * (dyOff + st), dxb = 4 * (dxOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) {
                var v = ld(y, yb + 4L * i);
                v.neg().fma(v, FloatVector.broadcast(S, 1f)).mul(ld(dy, dyb + 4L * i)).intoMemorySegment(dx, dxb + 4L * i, LE);
            }
            for (; i < len; i++) {
                float v = y.get(F, yb + 4L * i);
                dx.set(F, dxb + 4L * i, (1f - v * v) * dy.get(F, dyb + 4L * i));
            }
        });
    }

    /** exp(x). y overwritten. */
    public static void exp(MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), yb = 4 * (yOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) VectorMath.exp(ld(x, xb + 4L * i)).intoMemorySegment(y, yb + 4L * i, LE);
            for (; i < len; i++) y.set(F, yb + 4L * i, VectorMath.exp(x.get(F, xb + 4L * i)));
        });
    }

    /** Backward of {@link #exp} from its output y: dx = dy * y. dx overwritten. */
    public static void expBackward(MemorySegment y, long yOff, MemorySegment dy, long dyOff,
                                   MemorySegment dx, long dxOff, long n) {
        blocks(n, (st, len) -> {
            long yb = 4 * (yOff + st), dyb = 4 * (dyOff + st), dxb = 4 * (dxOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) ld(y, yb + 4L * i).mul(ld(dy, dyb + 4L * i)).intoMemorySegment(dx, dxb + 4L * i, LE);
            for (; i < len; i++) dx.set(F, dxb + 4L * i, y.get(F, yb + 4L * i) * dy.get(F, dyb + 4L * i));
        });
    }

    /** Natural log(x). y overwritten. */
    public static void log(MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), yb = 4 * (yOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) VectorMath.log(ld(x, xb + 4L * i)).intoMemorySegment(y, yb + 4L * i, LE);
            for (; i < len; i++) y.set(F, yb + 4L * i, VectorMath.log(x.get(F, xb + 4L * i)));
        });
    }

    /** Backward of {@link #log}: dx = dy / x. Reads x. dx overwritten. */
    public static void logBackward(MemorySegment x, long xOff, MemorySegment dy, long dyOff,
                                   MemorySegment dx, long dxOff, long n) {
        blocks(n, (st, len) -> {
            long xb = 4 * (xOff + st), dyb = 4 * (dyOff + st), dxb = 4 * (dxOff + st);
            int i = 0, bound = S.loopBound(len);
            for (; i < bound; i += L) ld(dy, dyb + 4L * i).div(ld(x, xb + 4L * i)).intoMemorySegment(dx, dxb + 4L * i, LE);
            for (; i < len; i++) dx.set(F, dxb + 4L * i, dy.get(F, dyb + 4L * i) / x.get(F, xb + 4L * i));
        });
    }
}
