package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;
import java.util.function.Function;

/**
 * Shared helpers for the CPU row-kernel tests (softmax, norms, activations, loss, rope, embedding,
 * optimizer): padded F32/I32 segments with guard values, float64 references and central finite
 * differences.
 */
final class CpuNormTestSupport {
    private CpuNormTestSupport() {}

    /** Element offset every test buffer is used at (exercises offsets and 4-byte-only alignment). */
    static final long OFF = 3;
    /** Guard elements after each buffer. */
    static final int GUARD = 5;
    static final float SENTINEL = 12345.678f;
    static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt I = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static final int[] COLS = {1, 3, 16, 17, 33, 100, 1000};
    static final int[] ROWS = {1, 4, 37};

    /** Shared so that pool threads may touch the segments; freed by the GC. */
    private static final Arena ARENA = Arena.ofAuto();

    /** An F32 buffer holding v at element offset OFF, with sentinel guards around it. */
    static MemorySegment f32(double[] v) {
        var s = ARENA.allocate(4L * (v.length + OFF + GUARD), 64);
        for (long i = 0; i < v.length + OFF + GUARD; i++) s.setAtIndex(F, i, SENTINEL);
        for (int i = 0; i < v.length; i++) s.setAtIndex(F, OFF + i, (float) v[i]);
        return s;
    }

    static MemorySegment f32(int n) {
        return f32(new double[n]);
    }

    static MemorySegment i32(int[] v) {
        var s = ARENA.allocate(4L * (v.length + OFF + GUARD), 64);
        for (int i = 0; i < v.length; i++) s.setAtIndex(I, OFF + i, v[i]);
        return s;
    }

    /** Reads n floats at OFF and checks the guards were not written. */
    static double[] read(MemorySegment s, int n) {
        for (long i = 0; i < OFF; i++) assertEquals(SENTINEL, s.getAtIndex(F, i), "guard before buffer overwritten");
        for (long i = 0; i < GUARD; i++) assertEquals(SENTINEL, s.getAtIndex(F, OFF + n + i), "guard after buffer overwritten");
        double[] r = new double[n];
        for (int i = 0; i < n; i++) r[i] = s.getAtIndex(F, OFF + i);
        return r;
    }

    static int[] readInts(MemorySegment s, int n) {
        int[] r = new int[n];
        for (int i = 0; i < n; i++) r[i] = s.getAtIndex(I, OFF + i);
        return r;
    }

    /** Uniform values in [lo, hi), rounded to float so that references see exactly the kernel's input. */
    static double[] rand(Random rnd, int n, double lo, double hi) {
        double[] r = new double[n];
        for (int i = 0; i < n; i++) r[i] = (float) (lo + (hi - lo) * rnd.nextDouble());
        return r;
    }

    static double[] roundToFloat(double[] v) {
        double[] r = new double[v.length];
        for (int i = 0; i < v.length; i++) r[i] = (float) v[i];
        return r;
    }

    /** |a - e| <= atol + rtol * |e| elementwise, both finite where expected is finite. */
    static void assertClose(String what, double[] expected, double[] actual, double atol, double rtol) {
        assertEquals(expected.length, actual.length, what + ": length");
        double worst = 0;
        int worstAt = -1;
        for (int i = 0; i < expected.length; i++) {
            double e = expected[i], a = actual[i];
            if (Double.isNaN(a) && !Double.isNaN(e)) fail(what + ": NaN at " + i + " (expected " + e + ")");
            if (Double.isInfinite(e) || Double.isInfinite(a)) {
                if (e != a) fail(what + ": at " + i + " expected " + e + " got " + a);
                continue;
            }
            double err = Math.abs(a - e) / (atol + rtol * Math.abs(e));
            if (err > worst) {
                worst = err;
                worstAt = i;
            }
        }
        if (worst > 1) {
            fail(String.format("%s: at %d expected %.10g got %.10g (%.3g x tolerance)", what, worstAt, expected[worstAt],
                    actual[worstAt], worst));
        }
    }

    static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    /**
     * Float64 central finite differences of the scalar {@code dot(dy, f(x))} with respect to x: the
     * vector-Jacobian product an analytic backward must reproduce.
     */
    static double[] numericVjp(Function<double[], double[]> f, double[] x, double[] dy, double h) {
        double[] g = new double[x.length];
        double[] xp = x.clone();
        for (int i = 0; i < x.length; i++) {
            double step = h * Math.max(1, Math.abs(x[i]));
            xp[i] = x[i] + step;
            double up = dot(dy, f.apply(xp));
            xp[i] = x[i] - step;
            double dn = dot(dy, f.apply(xp));
            xp[i] = x[i];
            g[i] = (up - dn) / (2 * step);
        }
        return g;
    }

    /** Checks an analytic float64 backward against finite differences of the float64 forward. */
    static void assertVjp(String what, Function<double[], double[]> f, double[] x, double[] dy, double[] analytic) {
        assertClose(what + " (analytic vs finite differences)", numericVjp(f, x, dy, 1e-5), analytic, 1e-6, 1e-5);
    }

    // ---------------------------------------------------------------------------------------------
    // float64 special functions for references

    /** erfc(a) to ~1e-15 relative: 1 - (positive series) below 1, continued fraction (200 terms) above. */
    static double erfcRef(double a) {
        if (a < 0) return 2 - erfcRef(-a);
        if (a < 1) {
            double term = a, sum = a, a2 = a * a;
            for (int n = 1; n < 500; n++) {
                term *= 2 * a2 / (2 * n + 1);
                sum += term;
                if (term < 1e-18 * sum) break;
            }
            return 1 - 2 / Math.sqrt(Math.PI) * Math.exp(-a2) * sum;
        }
        double t = a;
        for (int k = 200; k >= 1; k--) t = a + (k / 2.0) / t;
        return Math.exp(-a * a) / Math.sqrt(Math.PI) / t;
    }

    /** Standard normal CDF to float64 accuracy in both tails. */
    static double phiRef(double x) {
        return x < 0 ? 0.5 * erfcRef(-x / Math.sqrt(2)) : 1 - 0.5 * erfcRef(x / Math.sqrt(2));
    }
}
