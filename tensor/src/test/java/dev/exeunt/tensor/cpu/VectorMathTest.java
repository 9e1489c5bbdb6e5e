package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import java.util.function.DoubleUnaryOperator;
import java.util.function.UnaryOperator;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.junit.jupiter.api.Test;

/** Accuracy of the deterministic vector math against double {@code Math}, vector/scalar agreement, sums. */
class VectorMathTest {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Double> DS = DoubleVector.SPECIES_PREFERRED;

    /** Result of a sweep: the largest error in float ulps of the reference, and where. */
    record Err(double maxUlp, float at) {}

    /**
     * Evaluates f (vector) and fs (scalar twin) on every float bit pattern between lo and hi with the given
     * stride (plus the extra values), asserts they agree bitwise, and measures the error against ref.
     */
    static Err sweep(UnaryOperator<FloatVector> f, UnaryOperator<Float> fs, DoubleUnaryOperator ref,
                     float lo, float hi, int stride, float... extra) {
        int n = 1 << 16;
        float[] xs = new float[n], ys = new float[n];
        double worst = 0;
        float at = Float.NaN;
        var it = new FloatWalk(lo, hi, stride, extra);
        while (true) {
            int m = it.fill(xs);
            if (m == 0) break;
            int i = 0;
            for (; i + S.length() <= m; i += S.length()) f.apply(FloatVector.fromArray(S, xs, i)).intoArray(ys, i);
            for (; i < m; i++) ys[i] = fs.apply(xs[i]);
            for (int j = 0; j < m; j++) {
                float x = xs[j], y = ys[j];
                float ys1 = fs.apply(x);
                if (Float.floatToRawIntBits(ys1) != Float.floatToRawIntBits(y) && !(Float.isNaN(y) && Float.isNaN(ys1))) {
                    throw new AssertionError("vector and scalar differ at x=" + x + ": " + y + " vs " + ys1);
                }
                double r = ref.applyAsDouble(x);
                double e = ulpError(y, r);
                if (e > worst) {
                    worst = e;
                    at = x;
                }
            }
        }
        return new Err(worst, at);
    }

    /** |y - r| in units of the float ulp at r (NaN/infinity must match exactly, else infinite error). */
    static double ulpError(float y, double r) {
        if (Double.isNaN(r)) return Float.isNaN(y) ? 0 : Double.POSITIVE_INFINITY;
        float rf = (float) r;
        if (Float.isInfinite(rf)) {
            if (y == rf) return 0;
            // the true value is above MAX_VALUE but rounds to it or not: compare against MAX_VALUE's ulp
            return Math.abs(y - r) / Math.ulp(Float.MAX_VALUE);
        }
        if (Float.isInfinite(y)) return Double.POSITIVE_INFINITY;
        return Math.abs(y - r) / Math.ulp(Math.abs(rf) == 0 ? Float.MIN_VALUE : rf);
    }

    /** Walks float bit patterns from lo to hi (ordered by value) with a stride, then some extra values. */
    static final class FloatWalk {
        long k;
        final long end;
        final int stride;
        final float[] extra;
        int e;

        FloatWalk(float lo, float hi, int stride, float[] extra) {
            this.k = ordered(lo);
            this.end = ordered(hi);
            this.stride = stride;
            this.extra = extra;
        }

        static long ordered(float f) {
            int b = Float.floatToRawIntBits(f);
            return b >= 0 ? b : -(long) (b & 0x7fffffff);
        }

        static float unordered(long o) {
            return o >= 0 ? Float.intBitsToFloat((int) o) : Float.intBitsToFloat((int) (-o) | 0x80000000);
        }

        int fill(float[] out) {
            int m = 0;
            while (m < out.length && k <= end) {
                out[m++] = unordered(k);
                k += stride;
            }
            while (m < out.length && e < extra.length) out[m++] = extra[e++];
            return m;
        }
    }

    static final float[] SPECIAL = {0f, -0f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY,
            Float.MIN_VALUE, -Float.MIN_VALUE, Float.MIN_NORMAL, -Float.MIN_NORMAL, Float.MAX_VALUE, -Float.MAX_VALUE,
            1f, -1f, 88.72283f, 88.72284f, 88.7229f, -87.33655f, -103.97208f, -103.9721f, -104f, -150f, 1e-30f, -1e-30f,
            0.5f, -0.5f, 9f, -9f, 10f, 20f, 1e-8f, Math.nextUp(1f), Math.nextDown(1f)};

    @Test
    void expIsWithinAboutOneUlpEverywhere() {
        // every 3rd float of the whole domain where exp is neither 0 nor infinite, plus special values
        Err e = sweep(VectorMath::exp, VectorMath::exp, Math::exp, -104f, 89f, 101, SPECIAL);
        System.out.printf("exp: max error %.3f ulp at %s%n", e.maxUlp(), e.at());
        assertTrue(e.maxUlp() <= 1.1, "exp error " + e);
        // every float where the reduced argument is largest, and a dense stretch of ordinary arguments
        Err d = sweep(VectorMath::exp, VectorMath::exp, Math::exp, 15f, 16f, 1);
        System.out.printf("exp on [15, 16]: max error %.3f ulp at %s%n", d.maxUlp(), d.at());
        assertTrue(d.maxUlp() <= 1.1, "exp error " + d);
        assertEquals(0f, VectorMath.exp(Float.NEGATIVE_INFINITY));
        assertEquals(Float.POSITIVE_INFINITY, VectorMath.exp(Float.POSITIVE_INFINITY));
        assertEquals(Float.POSITIVE_INFINITY, VectorMath.exp(88.7229f));
        assertTrue(Float.isNaN(VectorMath.exp(Float.NaN)));
        assertEquals(1f, VectorMath.exp(0f));
        assertEquals(1f, VectorMath.exp(-0f));
        assertEquals(0f, VectorMath.exp(-104f));
        assertEquals(0f, VectorMath.exp(-1e30f));
        assertEquals(Float.MIN_VALUE, VectorMath.exp(-103.27893f)); // exp ~ 1.4e-45
    }

    @Test
    void expIsMonotoneThroughTheSubnormals() {
        float prev = 0f;
        for (float x = -110f; x < -80f; x = Math.nextUp(x)) {
            float y = VectorMath.exp(x);
            assertTrue(y >= prev, "exp not monotone at " + x);
            prev = y;
        }
    }

    @Test
    void tanhIsWithinTwoAndAHalfUlpEverywhere() {
        Err e = sweep(VectorMath::tanh, VectorMath::tanh, Math::tanh, -12f, 12f, 101, SPECIAL);
        System.out.printf("tanh: max error %.3f ulp at %s%n", e.maxUlp(), e.at());
        assertTrue(e.maxUlp() <= 2.5, "tanh error " + e);
        Err d = sweep(VectorMath::tanh, VectorMath::tanh, Math::tanh, -0.65f, -0.3f, 1);
        System.out.printf("tanh on [-0.65, -0.3]: max error %.3f ulp at %s%n", d.maxUlp(), d.at());
        assertTrue(d.maxUlp() <= 2.5, "tanh error " + d);
        assertEquals(1f, VectorMath.tanh(Float.POSITIVE_INFINITY));
        assertEquals(-1f, VectorMath.tanh(Float.NEGATIVE_INFINITY));
        assertEquals(1f, VectorMath.tanh(Float.MAX_VALUE));
        assertEquals(Float.floatToRawIntBits(-0f), Float.floatToRawIntBits(VectorMath.tanh(-0f)));
        assertEquals(Float.floatToRawIntBits(0f), Float.floatToRawIntBits(VectorMath.tanh(0f)));
        assertEquals(Float.MIN_VALUE, VectorMath.tanh(Float.MIN_VALUE));
        assertTrue(Float.isNaN(VectorMath.tanh(Float.NaN)));
    }

    @Test
    void logIsWithinOneUlpEverywhere() {
        Err e = sweep(VectorMath::log, VectorMath::log, Math::log, 0f, Float.POSITIVE_INFINITY, 101, SPECIAL);
        System.out.printf("log: max error %.3f ulp at %s%n", e.maxUlp(), e.at());
        assertTrue(e.maxUlp() <= 1.0, "log error " + e);
        assertEquals(Float.NEGATIVE_INFINITY, VectorMath.log(0f));
        assertEquals(Float.NEGATIVE_INFINITY, VectorMath.log(-0f));
        assertEquals(Float.POSITIVE_INFINITY, VectorMath.log(Float.POSITIVE_INFINITY));
        assertTrue(Float.isNaN(VectorMath.log(-1f)));
        assertTrue(Float.isNaN(VectorMath.log(Float.NEGATIVE_INFINITY)));
        assertTrue(Float.isNaN(VectorMath.log(Float.NaN)));
        assertEquals(0f, VectorMath.log(1f));
    }

    @Test
    void doubleExpIsWithinOneUlp() {
        var rnd = new Random(7);
        double[] xs = new double[1 << 20], ys = new double[xs.length];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = switch (i % 4) {
                case 0 -> rnd.nextDouble(-745.2, 709.8);
                case 1 -> rnd.nextDouble(-1, 1);
                case 2 -> rnd.nextGaussian() * 1e-8;
                default -> rnd.nextDouble(-30, 30);
            };
        }
        int i = 0;
        for (; i + DS.length() <= xs.length; i += DS.length()) VectorMath.exp(DoubleVector.fromArray(DS, xs, i)).intoArray(ys, i);
        double worst = 0;
        for (int j = 0; j < xs.length; j++) {
            assertEquals(Double.doubleToRawLongBits(VectorMath.exp(xs[j])), Double.doubleToRawLongBits(ys[j]), "at " + xs[j]);
            double r = StrictMath.exp(xs[j]);
            if (Double.isInfinite(r) || Double.isInfinite(ys[j])) {
                assertEquals(r, ys[j], "at " + xs[j]);
                continue;
            }
            double e = Math.abs(ys[j] - r) / Math.ulp(r);
            worst = Math.max(worst, e);
        }
        System.out.printf("double exp: max error %.3f ulp (vs StrictMath)%n", worst);
        assertTrue(worst <= 2.0, "double exp error " + worst);
        assertEquals(0.0, VectorMath.exp(Double.NEGATIVE_INFINITY));
        assertEquals(Double.POSITIVE_INFINITY, VectorMath.exp(Double.POSITIVE_INFINITY));
        assertEquals(Double.POSITIVE_INFINITY, VectorMath.exp(709.8));
        assertEquals(Double.MIN_VALUE, VectorMath.exp(-744.44), 0.0);
        assertTrue(Double.isNaN(VectorMath.exp(Double.NaN)));
        assertEquals(1.0, VectorMath.exp(0.0));
    }

    @Test
    void sumFollowsTheFixedPairwiseOrder() {
        var rnd = new Random(3);
        for (VectorSpecies<Float> sp : new VectorSpecies[] {FloatVector.SPECIES_64, FloatVector.SPECIES_128,
                FloatVector.SPECIES_256, FloatVector.SPECIES_512, FloatVector.SPECIES_MAX}) {
            float[] a = new float[sp.length()];
            for (int trial = 0; trial < 20_000; trial++) {
                for (int i = 0; i < a.length; i++) a[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(9) - 4));
                float got = VectorMath.sum(FloatVector.fromArray(sp, a, 0));
                float want = VectorMath.sumReference(a);
                assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(got), sp + " trial " + trial);
            }
            // the explicit order for a few lengths: ((a0 + a2) + (a1 + a3)) for four lanes
            if (sp.length() == 4) {
                float[] b = {1e8f, 1f, -1e8f, 1f};
                assertEquals((b[0] + b[2]) + (b[1] + b[3]), VectorMath.sum(FloatVector.fromArray(sp, b, 0)));
            }
        }
        for (VectorSpecies<Double> sp : new VectorSpecies[] {DoubleVector.SPECIES_128, DoubleVector.SPECIES_256,
                DoubleVector.SPECIES_512}) {
            double[] a = new double[sp.length()];
            for (int trial = 0; trial < 20_000; trial++) {
                for (int i = 0; i < a.length; i++) a[i] = rnd.nextGaussian() * Math.pow(10, rnd.nextInt(17) - 8);
                assertEquals(Double.doubleToRawLongBits(VectorMath.sumReference(a)),
                        Double.doubleToRawLongBits(VectorMath.sum(DoubleVector.fromArray(sp, a, 0))));
            }
        }
    }
}
