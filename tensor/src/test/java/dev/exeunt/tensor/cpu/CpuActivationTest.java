package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuNormTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.Random;
import java.util.function.DoubleUnaryOperator;
import org.junit.jupiter.api.Test;

class CpuActivationTest {

    interface Fwd {
        void run(MemorySegment x, long xo, MemorySegment y, long yo, long n);
    }

    interface Bwd {
        void run(MemorySegment xOrY, long o, MemorySegment dy, long dyo, MemorySegment dx, long dxo, long n);
    }

    /** An activation: kernels, float64 forward and derivative, input range, and whether backward reads y. */
    record Act(String name, Fwd fwd, Bwd bwd, DoubleUnaryOperator f, DoubleUnaryOperator df, double lo, double hi,
               boolean backwardReadsY, double atol, double rtol) {}

    static final double C = Math.sqrt(2 / Math.PI), K = 0.044715;

    static double sigmoid(double z) {
        return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
    }

    static double geluTanhRef(double x) {
        return x * sigmoid(2 * C * (x + K * x * x * x));
    }

    static double geluTanhGradRef(double x) {
        double s = sigmoid(2 * C * (x + K * x * x * x));
        return s + x * 2 * C * (1 + 3 * K * x * x) * s * (1 - s);
    }

    static final Act[] ACTS = {
        new Act("geluTanh", CpuActivation::geluTanh, CpuActivation::geluTanhBackward,
                CpuActivationTest::geluTanhRef, CpuActivationTest::geluTanhGradRef, -8, 8, false, 1e-6, 1e-5),
        new Act("geluErf", CpuActivation::geluErf, CpuActivation::geluErfBackward,
                x -> x * phiRef(x), x -> phiRef(x) + x * Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI), -8, 8, false, 1e-7, 1e-6),
        new Act("silu", CpuActivation::silu, CpuActivation::siluBackward,
                x -> x * sigmoid(x), x -> sigmoid(x) * (1 + x * (1 - sigmoid(x))), -10, 10, false, 1e-6, 1e-5),
        new Act("relu", CpuActivation::relu, CpuActivation::reluBackward,
                x -> Math.max(x, 0), x -> x > 0 ? 1 : 0, -5, 5, false, 0, 1e-7),
        new Act("tanh", CpuActivation::tanh, CpuActivation::tanhBackward,
                Math::tanh, x -> 1 - Math.tanh(x) * Math.tanh(x), -5, 5, true, 1e-6, 1e-5),
        new Act("exp", CpuActivation::exp, CpuActivation::expBackward,
                Math::exp, Math::exp, -10, 10, true, 1e-7, 2e-6),
        new Act("log", CpuActivation::log, CpuActivation::logBackward,
                Math::log, x -> 1 / x, 1e-3, 100, false, 1e-6, 2e-6),
    };

    static double[] map(DoubleUnaryOperator f, double[] x) {
        double[] y = new double[x.length];
        for (int i = 0; i < x.length; i++) y[i] = f.applyAsDouble(x[i]);
        return y;
    }

    @Test
    void forwardAndBackwardMatchFloat64() {
        var rnd = new Random(21);
        int[] sizes = {1, 3, 16, 17, 33, 100, 1000, 20011}; // the last runs over several blocks in parallel
        for (Act a : ACTS) {
            for (int n : sizes) {
                double[] x = rand(rnd, n, a.lo, a.hi), dy = rand(rnd, n, -1, 1);
                double[] y = map(a.f, x);
                var ys = f32(n);
                a.fwd.run(f32(x), OFF, ys, OFF, n);
                double[] yk = read(ys, n);
                assertClose(a.name + " forward n=" + n, y, yk, a.atol, a.rtol);
                double[] dx = new double[n];
                for (int i = 0; i < n; i++) dx[i] = dy[i] * a.df.applyAsDouble(x[i]);
                var dxs = f32(n);
                // backward from y feeds the kernel's own F32 output, as autograd would
                a.bwd.run(a.backwardReadsY ? ys : f32(x), OFF, f32(dy), OFF, dxs, OFF, n);
                assertClose(a.name + " backward n=" + n, dx, read(dxs, n), a.atol, Math.max(a.rtol, 2e-6));
            }
        }
    }

    @Test
    void analyticDerivativesMatchFiniteDifferences() {
        var rnd = new Random(22);
        for (Act a : ACTS) {
            double[] x = rand(rnd, 64, a.lo, a.hi), dy = rand(rnd, 64, -1, 1);
            for (int i = 0; i < x.length; i++) if (Math.abs(x[i]) < 1e-3) x[i] = 0.5; // away from ReLU's kink
            double[] dx = new double[x.length];
            for (int i = 0; i < x.length; i++) dx[i] = dy[i] * a.df.applyAsDouble(x[i]);
            assertVjp(a.name, v -> map(a.f, v), x, dy, dx);
        }
    }

    @Test
    void extremeInputsGiveNoNaN() {
        double[] x = {-1e30, -1e4, -200, -100, -90, -88, -20, -10, -1e-30, 0, 1e-30, 10, 20, 88, 90, 100, 200, 1e4, 1e30};
        int n = x.length;
        for (Act a : ACTS) {
            if (a.name.equals("exp") || a.name.equals("log")) continue; // overflow / domain by definition
            var ys = f32(n);
            a.fwd.run(f32(x), OFF, ys, OFF, n);
            double[] y = read(ys, n);
            var dxs = f32(n);
            double[] ones = new double[n];
            java.util.Arrays.fill(ones, 1);
            a.bwd.run(a.backwardReadsY ? ys : f32(x), OFF, f32(ones), OFF, dxs, OFF, n);
            double[] dx = read(dxs, n);
            for (int i = 0; i < n; i++) {
                assertTrue(!Double.isNaN(y[i]) && !Double.isNaN(dx[i]), a.name + " NaN at x=" + x[i] + ": y=" + y[i] + " dx=" + dx[i]);
                double ref = a.f.applyAsDouble(x[i]);
                assertEquals(ref, y[i], 1e-6 + 1e-5 * Math.abs(ref), a.name + " at x=" + x[i]);
            }
        }
    }

    @Test
    void erfGeluIsAccurateInTheTails() {
        // the reference itself against Python's math.erfc
        double[][] known = {{0.1, 0.8875370839817152}, {0.5, 0.4795001221869535}, {1.0, 0.15729920705028513},
            {2.0, 0.004677734981047265}, {2.9, 4.109787809945886e-05}, {3.0, 2.2090496998585438e-05},
            {3.5, 7.430983723414128e-07}, {5.0, 1.5374597944280351e-12}, {8.0, 1.1224297172982928e-29}};
        for (double[] k : known) assertEquals(k[1], erfcRef(k[0]), 1e-13 * k[1], "erfcRef(" + k[0] + ")");
        // the kernel's CDF: relative error below 1.2e-7 everywhere, including far into the lower tail
        for (double x = -12; x <= 6; x += 0.01) {
            double ref = phiRef(x);
            assertEquals(ref, CpuActivation.normalCdf(x), 1.3e-7 * ref, "Phi(" + x + ")");
        }
        double[] x = {-12, -9.5, -7, -5.25, -3, -1e-3, 1e-3, 3};
        var ys = f32(x.length);
        CpuActivation.geluErf(f32(x), OFF, ys, OFF, x.length);
        double[] y = read(ys, x.length);
        for (int i = 0; i < x.length; i++) {
            double ref = x[i] * phiRef(x[i]);
            assertEquals(ref, y[i], 3e-7 * Math.abs(ref), "gelu(" + x[i] + ")");
        }
    }

    @Test
    void inPlace() {
        var rnd = new Random(23);
        double[] x = rand(rnd, 37, -4, 4);
        var s = f32(x);
        CpuActivation.silu(s, OFF, s, OFF, x.length);
        assertClose("silu in place", map(v -> v * sigmoid(v), x), read(s, x.length), 1e-6, 1e-5);
    }

    @Test
    void masksStayInsideExactlySizedSegments() {
        // no guard elements after the data: a masked tail must not touch bytes past the end
        var rnd = new Random(24);
        for (int n : new int[] {1, 17, 33}) {
            double[] x = rand(rnd, n, -4, 4);
            var xs = java.lang.foreign.Arena.ofAuto().allocate(4L * n);
            var ys = java.lang.foreign.Arena.ofAuto().allocate(4L * n);
            for (int i = 0; i < n; i++) xs.setAtIndex(F, i, (float) x[i]);
            for (Act a : ACTS) {
                if (a.name.equals("log")) continue;
                a.fwd.run(xs, 0, ys, 0, n);
                a.bwd.run(a.backwardReadsY ? ys : xs, 0, xs, 0, ys, 0, n);
            }
            assertThrows(IndexOutOfBoundsException.class, () -> CpuActivation.silu(xs, 0, ys, 0, n + 1));
        }
    }
}
