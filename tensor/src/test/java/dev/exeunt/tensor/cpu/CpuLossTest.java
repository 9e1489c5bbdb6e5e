package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuNormTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuLossTest {
    static final int IGNORE = -100;

    /** Per-row loss logsumexp(z/T) - z_t/T, 0 for ignored rows. */
    static double[] rowLossRef(double[] z, int rows, int vocab, int[] tgt, double temp) {
        double[] loss = new double[rows];
        for (int r = 0; r < rows; r++) {
            if (tgt[r] == IGNORE) continue;
            double m = Double.NEGATIVE_INFINITY, s = 0;
            for (int j = 0; j < vocab; j++) m = Math.max(m, z[r * vocab + j] / temp);
            for (int j = 0; j < vocab; j++) s += Math.exp(z[r * vocab + j] / temp - m);
            loss[r] = m + Math.log(s) - z[r * vocab + tgt[r]] / temp;
        }
        return loss;
    }

    /** coef_i * (softmax(z/T) - onehot) / T, zero rows for ignored targets. */
    static double[] gradRef(double[] z, int rows, int vocab, int[] tgt, double temp, double[] coef) {
        double[] d = new double[z.length];
        for (int r = 0; r < rows; r++) {
            if (tgt[r] == IGNORE) continue;
            double m = Double.NEGATIVE_INFINITY, s = 0;
            for (int j = 0; j < vocab; j++) m = Math.max(m, z[r * vocab + j] / temp);
            for (int j = 0; j < vocab; j++) s += Math.exp(z[r * vocab + j] / temp - m);
            for (int j = 0; j < vocab; j++) {
                double p = Math.exp(z[r * vocab + j] / temp - m) / s;
                d[r * vocab + j] = coef[r] * (p - (j == tgt[r] ? 1 : 0)) / temp;
            }
        }
        return d;
    }

    record Case(double[] z, int rows, int vocab, int[] tgt, double[] mask, double[] w, double temp) {}

    static Case randomCase(Random rnd, int rows, int vocab, double scale, double temp, boolean withMask, boolean withWeights) {
        double[] z = rand(rnd, rows * vocab, -scale, scale);
        int[] tgt = new int[rows];
        for (int r = 0; r < rows; r++) tgt[r] = rnd.nextInt(7) == 0 ? IGNORE : rnd.nextInt(vocab);
        double[] mask = null, w = null;
        if (withMask) {
            mask = new double[rows];
            for (int r = 0; r < rows; r++) mask[r] = rnd.nextInt(4) == 0 ? 0 : (float) rnd.nextDouble();
        }
        if (withWeights) w = rand(rnd, rows, 0.1, 2);
        return new Case(z, rows, vocab, tgt, mask, w, temp);
    }

    /** Runs forward and backward on the kernels and checks every output against the references. */
    static void check(String what, Case c, boolean useStats, double atol, double rtol) {
        int rows = c.rows, vocab = c.vocab;
        var logits = f32(c.z);
        var rowLoss = f32(rows);
        var maxProb = f32(rows);
        var argmax = i32(new int[rows]);
        var stats = f32(2 * rows);
        var ce = CpuLoss.crossEntropy(logits, OFF, rows, vocab, i32(c.tgt), OFF).ignoreIndex(IGNORE)
                .temperature((float) c.temp).rowLoss(rowLoss, OFF).maxProb(maxProb, OFF).argmax(argmax, OFF);
        if (c.mask != null) ce.mask(f32(c.mask), OFF);
        if (c.w != null) ce.weights(f32(c.w), OFF);
        if (useStats) ce.stats(stats, OFF);
        var sums = ce.forward();

        double[] loss = rowLossRef(c.z, rows, vocab, c.tgt, c.temp);
        assertClose(what + " row loss", loss, read(rowLoss, rows), atol, rtol);
        double num = 0, den = 0;
        double[] mp = new double[rows];
        int[] am = new int[rows];
        for (int r = 0; r < rows; r++) {
            double mk = c.mask == null ? 1 : c.mask[r], w = c.w == null ? 1 : c.w[r];
            if (c.tgt[r] != IGNORE) {
                num += mk * w * loss[r];
                den += mk;
            }
            double m = Double.NEGATIVE_INFINITY, s = 0;
            for (int j = 0; j < vocab; j++) {
                if (c.z[r * vocab + j] > m) {
                    m = c.z[r * vocab + j];
                    am[r] = j;
                }
            }
            for (int j = 0; j < vocab; j++) s += Math.exp((c.z[r * vocab + j] - m) / c.temp);
            mp[r] = 1 / s;
        }
        assertEquals(num, sums.numerator(), atol * rows + rtol * Math.abs(num), what + " numerator");
        assertEquals(den, sums.denominator(), 1e-9, what + " denominator");
        assertClose(what + " max prob", mp, read(maxProb, rows), 1e-7, 1e-5);
        assertArrayEquals(am, readInts(argmax, rows), what + " argmax");

        // backward: mean reduction scale and a per-row upstream gradient
        double scale = den == 0 ? 1 : 1 / den;
        double[] rowGrad = rand(new Random(rows * 31L + vocab), rows, 0.5, 1.5);
        double[] coef = new double[rows];
        for (int r = 0; r < rows; r++) {
            coef[r] = (float) scale * rowGrad[r] * (c.mask == null ? 1 : c.mask[r]) * (c.w == null ? 1 : c.w[r]);
        }
        var dl = f32(rows * vocab);
        ce.backward((float) scale, f32(rowGrad), OFF, dl, OFF);
        assertClose(what + " dlogits", gradRef(c.z, rows, vocab, c.tgt, c.temp, coef), read(dl, rows * vocab), 1e-7 * scale, 1e-5);
    }

    @Test
    void forwardAndBackwardMatchFloat64() {
        var rnd = new Random(51);
        double[] temps = {1, 0.7, 2.5};
        int k = 0;
        for (int vocab : COLS) {
            for (int rows : ROWS) {
                double temp = temps[k % 3];
                boolean mask = k % 2 == 0, weights = k % 4 < 2;
                var c = randomCase(rnd, rows, vocab, 6, temp, mask, weights);
                String what = rows + "x" + vocab + " T=" + temp + (mask ? " mask" : "") + (weights ? " weights" : "");
                check(what, c, k % 3 != 1, 1e-5, 1e-5);
                k++;
            }
        }
    }

    @Test
    void analyticGradientMatchesFiniteDifferences() {
        var rnd = new Random(52);
        for (int vocab : new int[] {1, 3, 16, 17}) {
            for (double temp : new double[] {1, 0.6, 3}) {
                var c = randomCase(rnd, 4, vocab, 3, temp, true, true);
                double[] coef = rand(rnd, 4, -1, 1);
                assertVjp("cross-entropy V=" + vocab + " T=" + temp, z -> rowLossRef(z, 4, vocab, c.tgt, temp), c.z, coef,
                        gradRef(c.z, 4, vocab, c.tgt, temp, coef));
            }
        }
    }

    @Test
    void hugeLogitsStayFinite() {
        var rnd = new Random(53);
        for (double temp : new double[] {1, 0.5, 4}) {
            int rows = 6, vocab = 100;
            var c = randomCase(rnd, rows, vocab, 1e4, temp, true, true);
            for (int r = 0; r < rows; r++) {
                c.z[r * vocab + 3] = 1e4;
                c.z[r * vocab + 9] = -1e4;
            }
            c.tgt[0] = 9; // the least likely token: loss 2e4 / T
            c.tgt[1] = 3;
            c.tgt[2] = IGNORE;
            check("huge logits T=" + temp, c, true, 1e-4, 1e-5);
            check("huge logits T=" + temp + " recomputed", c, false, 1e-4, 1e-5);
        }
    }

    @Test
    void ignoreIndexAndMaskZerosGiveNoLossNoGradientNoCount() {
        int vocab = 5;
        double[] z = {1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0};
        int[] tgt = {IGNORE, 1, 2};
        double[] mask = {1, 0, 1};
        var logits = f32(z);
        var rowLoss = f32(3);
        var ce = CpuLoss.crossEntropy(logits, OFF, 3, vocab, i32(tgt), OFF).mask(f32(mask), OFF).rowLoss(rowLoss, OFF);
        var sums = ce.forward();
        assertEquals(Math.log(5), sums.numerator(), 1e-6);
        assertEquals(1, sums.denominator());
        assertEquals(Math.log(5), sums.mean(), 1e-6);
        double[] rl = read(rowLoss, 3);
        assertEquals(0, rl[0]);
        assertTrue(rl[1] > 0, "masked rows still report their raw loss");
        ce.backward(1f, null, 0, logits, OFF); // in place
        double[] g = read(logits, 15);
        for (int j = 0; j < 10; j++) assertEquals(0, g[j], "ignored and masked rows get no gradient");
        for (int j = 10; j < 15; j++) assertEquals(j == 12 ? 0.2 - 1 : 0.2, g[j], 1e-6);
        // a custom ignore index
        var sums2 = CpuLoss.crossEntropy(f32(z), OFF, 3, vocab, i32(new int[] {4, 4, 2}), OFF).ignoreIndex(4).forward();
        assertEquals(1, sums2.denominator());
        assertEquals(0, new CpuLoss.Sums(0, 0).mean());
    }

    @Test
    void badTargetsAndTemperaturesAreRejected() {
        var logits = f32(12);
        for (int bad : new int[] {4, -1, 1000}) {
            var ex = assertThrows(IllegalArgumentException.class,
                    () -> CpuLoss.crossEntropy(logits, OFF, 3, 4, i32(new int[] {0, bad, 1}), OFF).forward());
            String m = ex.getMessage();
            assertTrue(m.contains("target " + bad) && m.contains("row 1") && m.contains("4"), m);
            assertThrows(IllegalArgumentException.class, () -> CpuLoss.crossEntropy(logits, OFF, 3, 4, i32(new int[] {0, bad, 1}), OFF)
                    .backward(1f, null, 0, f32(12), OFF));
        }
        for (float t : new float[] {0f, -1f, Float.NaN, Float.POSITIVE_INFINITY}) {
            assertThrows(IllegalArgumentException.class, () -> CpuLoss.crossEntropy(logits, OFF, 3, 4, i32(new int[3]), OFF).temperature(t));
        }
    }

    @Test
    void parallelRows() {
        var rnd = new Random(54);
        check("parallel 70x1000", randomCase(rnd, 70, 1000, 8, 1.3, true, true), true, 1e-5, 1e-5);
    }
}
