package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuNormTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuOptimTest {

    @Test
    void adamWMatchesFloat64OverSeveralSteps() {
        var rnd = new Random(61);
        float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
        for (int n : new int[] {1, 3, 16, 17, 33, 100, 1000, 20011}) {
            for (float gradScale : new float[] {1f, 0.37f}) {
                double[] p = rand(rnd, n, -1, 1), m = new double[n], v = new double[n];
                var ps = f32(p);
                var ms = f32(n);
                var vs = f32(n);
                for (int t = 1; t <= 3; t++) {
                    double[] g = rand(rnd, n, -2, 2);
                    if (t == 2) g[0] = 0; // a zero gradient must not divide by zero
                    if (gradScale == 1f) {
                        CpuOptim.adamW(ps, OFF, f32(g), OFF, ms, OFF, vs, OFF, n, lr, b1, b2, eps, wd, t);
                    } else {
                        CpuOptim.adamW(ps, OFF, f32(g), OFF, ms, OFF, vs, OFF, n, lr, b1, b2, eps, wd, t, gradScale);
                    }
                    // float64 reference, the PyTorch AdamW formulas
                    double bc1 = 1 - Math.pow(b1, t), bc2 = 1 - Math.pow(b2, t);
                    for (int i = 0; i < n; i++) {
                        double gi = g[i] * gradScale;
                        p[i] *= 1 - (double) lr * wd;
                        m[i] = b1 * m[i] + (1 - (double) b1) * gi;
                        v[i] = b2 * v[i] + (1 - (double) b2) * gi * gi;
                        p[i] -= lr / bc1 * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps);
                    }
                    String what = "adamW n=" + n + " step " + t + " scale " + gradScale;
                    assertClose(what + " m", m, read(ms, n), 1e-7, 1e-5);
                    assertClose(what + " v", v, read(vs, n), 1e-9, 1e-5);
                    assertClose(what + " p", p, read(ps, n), 1e-7, 1e-6);
                }
            }
        }
    }

    @Test
    void sumOfSquaresAndScale() {
        var rnd = new Random(62);
        for (int n : new int[] {0, 1, 3, 16, 17, 33, 100, 1000, 8192, 8193, 50000}) {
            double[] x = rand(rnd, n, -3, 3);
            double ref = 0;
            for (double a : x) ref += a * a;
            var s = f32(x);
            double got = CpuOptim.sumOfSquares(s, OFF, n);
            assertEquals(ref, got, 1e-6 * (1 + ref), "sumOfSquares n=" + n);
            assertEquals(got, CpuOptim.sumOfSquares(s, OFF, n), "deterministic");
            CpuOptim.scale(s, OFF, n, 0.25f);
            double[] exp = new double[n];
            for (int i = 0; i < n; i++) exp[i] = x[i] * 0.25;
            assertClose("scale n=" + n, exp, read(s, n), 0, 0);
        }
        assertThrows(IllegalArgumentException.class, () -> CpuOptim.adamW(f32(1), OFF, f32(1), OFF, f32(1), OFF, f32(1), OFF, 1,
                1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 0));
    }
}
