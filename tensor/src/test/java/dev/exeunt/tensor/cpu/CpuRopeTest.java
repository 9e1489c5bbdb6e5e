package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuNormTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuRopeTest {

    /**
     * A literal transcription of HF transformers' Llama rotary embedding on one head vector:
     * emb = cat(freqs, freqs); x * cos(emb) + rotate_half(x) * sin(emb), rotate_half(x) = cat(-x2, x1),
     * applied to the first rotaryDim elements; sign = -1 rotates by the negative angle.
     */
    static double[] ropeHeadRef(double[] x, int rotaryDim, double theta, int pos, double sign) {
        int half = rotaryDim / 2;
        double[] y = x.clone();
        double[] cos = new double[rotaryDim], sin = new double[rotaryDim], rot = new double[rotaryDim];
        for (int i = 0; i < half; i++) {
            double invFreq = 1.0 / Math.pow(theta, (2.0 * i) / rotaryDim);
            double a = sign * pos * invFreq;
            cos[i] = cos[i + half] = Math.cos(a);
            sin[i] = sin[i + half] = Math.sin(a);
            rot[i] = -x[i + half];
            rot[i + half] = x[i];
        }
        for (int i = 0; i < rotaryDim; i++) y[i] = x[i] * cos[i] + rot[i] * sin[i];
        return y;
    }

    /** Rope over a dense [T, H, D] array. */
    static double[] ropeRef(double[] x, int tokens, int heads, int headDim, int rotaryDim, double theta, int[] pos, double sign) {
        double[] y = new double[x.length];
        for (int t = 0; t < tokens; t++) {
            for (int h = 0; h < heads; h++) {
                int o = (t * heads + h) * headDim;
                double[] r = ropeHeadRef(Arrays.copyOfRange(x, o, o + headDim), rotaryDim, theta, pos[t], sign);
                System.arraycopy(r, 0, y, o, headDim);
            }
        }
        return y;
    }

    static int[] iota(int start, int n) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = start + i;
        return p;
    }

    @Test
    void denseForwardAndBackwardMatchFloat64() {
        var rnd = new Random(31);
        for (int headDim : new int[] {2, 4, 16, 34, 64, 128}) {
            for (int tokens : new int[] {1, 5, 37}) {
                int heads = 3, n = tokens * heads * headDim, start = 7;
                double[] x = rand(rnd, n, -2, 2);
                double theta = headDim == 128 ? 500000 : 10000;
                int[] pos = iota(start, tokens);
                var s = f32(x);
                CpuRope.forward(s, OFF, (long) heads * headDim, headDim, tokens, heads, headDim, null, start, theta);
                double[] y = read(s, n);
                assertClose("rope D=" + headDim + " T=" + tokens, ropeRef(x, tokens, heads, headDim, headDim, theta, pos, 1), y, 1e-6, 1e-5);
                // backward: the transpose, i.e. rotation by -angle
                double[] dy = rand(rnd, n, -1, 1);
                var d = f32(dy);
                CpuRope.backward(d, OFF, (long) heads * headDim, headDim, tokens, heads, headDim, null, start, theta);
                assertClose("rope backward D=" + headDim, ropeRef(dy, tokens, heads, headDim, headDim, theta, pos, -1), read(d, n), 1e-6, 1e-5);
            }
        }
    }

    @Test
    void backwardIsTheTransposeByFiniteDifferences() {
        var rnd = new Random(32);
        for (int headDim : new int[] {2, 6, 16}) {
            int tokens = 3, heads = 2, n = tokens * heads * headDim;
            int[] pos = {0, 5, 2};
            double[] x = rand(rnd, n, -2, 2), dy = rand(rnd, n, -1, 1);
            assertVjp("rope D=" + headDim, v -> ropeRef(v, tokens, heads, headDim, headDim, 10000, pos, 1), x, dy,
                    ropeRef(dy, tokens, heads, headDim, headDim, 10000, pos, -1));
        }
    }

    @Test
    void inPlaceOnFusedQkvViewsWithExplicitPositions() {
        var rnd = new Random(33);
        int tokens = 9, heads = 4, headDim = 32, hd = heads * headDim, n = tokens * 3 * hd;
        double[] qkv = rand(rnd, n, -1, 1);
        int[] pos = {3, 0, 17, 17, 2, 100, 5, 6, 1};
        var s = f32(qkv);
        long tokenStride = 3L * hd;
        CpuRope.forward(s, OFF, tokenStride, headDim, tokens, heads, headDim, pos, 0, 10000);      // q
        CpuRope.forward(s, OFF + hd, tokenStride, headDim, tokens, heads, headDim, pos, 0, 10000); // k
        double[] got = read(s, n);
        for (int t = 0; t < tokens; t++) {
            for (int part = 0; part < 3; part++) {
                double[] src = Arrays.copyOfRange(qkv, t * 3 * hd + part * hd, t * 3 * hd + (part + 1) * hd);
                double[] exp = part == 2 ? src : ropeRef(src, 1, heads, headDim, headDim, 10000, new int[] {pos[t]}, 1);
                double[] act = Arrays.copyOfRange(got, t * 3 * hd + part * hd, t * 3 * hd + (part + 1) * hd);
                assertClose("qkv token " + t + " part " + part, exp, act, 1e-6, 1e-5);
            }
        }
    }

    @Test
    void partialRotaryOutOfPlaceAndCustomTables() {
        var rnd = new Random(34);
        int tokens = 6, heads = 2, headDim = 40, rotary = 20, n = tokens * heads * headDim;
        double[] x = rand(rnd, n, -1, 1);
        int start = 11;
        var table = CpuRope.Table.create(rotary, 10000, 64);
        var src = f32(x);
        var dst = f32(n);
        CpuRope.apply(table, src, OFF, (long) heads * headDim, headDim, dst, OFF, (long) heads * headDim, headDim,
                tokens, heads, headDim, null, start, false);
        assertClose("partial rotary", ropeRef(x, tokens, heads, headDim, rotary, 10000, iota(start, tokens), 1), read(dst, n), 1e-6, 1e-5);
        assertClose("source untouched", x, read(src, n), 0, 0);
        // a caller-supplied frequency table equal to the default gives the same result
        var custom = CpuRope.Table.fromInvFreq(CpuRope.invFreq(rotary, 10000), 64);
        var dst2 = f32(n);
        CpuRope.apply(custom, src, OFF, (long) heads * headDim, headDim, dst2, OFF, (long) heads * headDim, headDim,
                tokens, heads, headDim, null, start, false);
        assertClose("custom table", read(dst, n), read(dst2, n), 0, 0);
        assertEquals(20, custom.rotaryDim());
    }

    @Test
    void longPositionsLlama3ThetaAndErrors() {
        var rnd = new Random(35);
        int headDim = 128, tokens = 4, n = tokens * headDim;
        double[] x = rand(rnd, n, -1, 1);
        int[] pos = {0, 4095, 8191, 20000};
        var s = f32(x);
        CpuRope.forward(s, OFF, headDim, headDim, tokens, 1, headDim, pos, 0, 500000);
        assertClose("llama3 long positions", ropeRef(x, tokens, 1, headDim, headDim, 500000, pos, 1), read(s, n), 1e-6, 1e-5);
        assertTrue(CpuRope.table(headDim, 500000, 1).maxPositions() > 20000);

        var ex = assertThrows(IllegalArgumentException.class,
                () -> CpuRope.forward(f32(n), OFF, headDim, headDim, tokens, 1, headDim, new int[] {0, -1, 0, 0}, 0, 10000));
        assertTrue(ex.getMessage().contains("-1"), ex.getMessage());
        var small = CpuRope.Table.create(headDim, 10000, 8);
        assertThrows(IllegalArgumentException.class, () -> CpuRope.apply(small, f32(n), OFF, headDim, headDim, f32(n), OFF,
                headDim, headDim, tokens, 1, headDim, null, 5, false));
        assertThrows(IllegalArgumentException.class, () -> CpuRope.Table.create(7, 10000, 8));
    }
}
