package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.exeunt.tensor.cpu.CpuAttention.Dims;
import dev.exeunt.tensor.cpu.CpuAttention.View;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuAttentionTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    // ---------------------------------------------------------------------------------------------
    // float64 reference on dense logical arrays: q [B,T,Hq,D], k/v [B,S,Hkv,D], o [B,T,Hq,D], lse [B,Hq,T]

    /** W: a sliding window (each query sees its last W keys), 0 for none. */
    record Shape(int B, int T, int past, int Hq, int Hkv, int D, int W) {
        Shape(int B, int T, int past, int Hq, int Hkv, int D) { this(B, T, past, Hq, Hkv, D, 0); }
        int first(int t) { return W == 0 ? 0 : Math.max(0, past + t - W + 1); }
        int S() { return past + T; }
        int G() { return Hq / Hkv; }
        int qi(int b, int t, int h, int d) { return ((b * T + t) * Hq + h) * D + d; }
        int ki(int b, int j, int h, int d) { return ((b * S() + j) * Hkv + h) * D + d; }
        int qSize() { return B * T * Hq * D; }
        int kSize() { return B * S() * Hkv * D; }
        Dims dims() { return new Dims(B, T, past, Hq, Hkv, D, (float) (1.0 / Math.sqrt(D)), W); }
    }

    /** Softmax probabilities P[b][h][t][j] (zero where masked), scale = 1/sqrt(D) as in Dims.of. */
    static double[][][][] refProbs(Shape s, double[] q, double[] k, double[] lseOut) {
        double scale = s.dims().scale();
        double[][][][] p = new double[s.B][s.Hq][s.T][s.S()];
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.Hq; h++) {
                int kh = h / s.G();
                for (int t = 0; t < s.T; t++) {
                    int lim = s.past + t, lo = s.first(t); // keys before lo are outside the window: p = 0
                    double max = Double.NEGATIVE_INFINITY;
                    double[] sc = new double[lim + 1];
                    for (int j = lo; j <= lim; j++) {
                        double dot = 0;
                        for (int d = 0; d < s.D; d++) dot += q[s.qi(b, t, h, d)] * k[s.ki(b, j, kh, d)];
                        sc[j] = scale * dot;
                        max = Math.max(max, sc[j]);
                    }
                    double sum = 0;
                    for (int j = lo; j <= lim; j++) sum += Math.exp(sc[j] - max);
                    for (int j = lo; j <= lim; j++) p[b][h][t][j] = Math.exp(sc[j] - max) / sum;
                    if (lseOut != null) lseOut[(b * s.Hq + h) * s.T + t] = max + Math.log(sum);
                }
            }
        return p;
    }

    static double[] refForward(Shape s, double[] q, double[] k, double[] v, double[] lseOut) {
        double[][][][] p = refProbs(s, q, k, lseOut);
        double[] o = new double[s.qSize()];
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.Hq; h++)
                for (int t = 0; t < s.T; t++)
                    for (int j = 0; j <= s.past + t; j++)
                        for (int d = 0; d < s.D; d++) o[s.qi(b, t, h, d)] += p[b][h][t][j] * v[s.ki(b, j, h / s.G(), d)];
        return o;
    }

    /** Analytic float64 gradients of sum(o * g): {dq, dk, dv}. */
    static double[][] refBackward(Shape s, double[] q, double[] k, double[] v, double[] g) {
        double scale = s.dims().scale();
        double[][][][] p = refProbs(s, q, k, null);
        double[] dq = new double[s.qSize()], dk = new double[s.kSize()], dv = new double[s.kSize()];
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.Hq; h++) {
                int kh = h / s.G();
                for (int t = 0; t < s.T; t++) {
                    int lim = s.past + t;
                    double[] dp = new double[lim + 1];
                    double rowDot = 0;
                    for (int j = 0; j <= lim; j++) {
                        for (int d = 0; d < s.D; d++) dp[j] += g[s.qi(b, t, h, d)] * v[s.ki(b, j, kh, d)];
                        rowDot += p[b][h][t][j] * dp[j];
                    }
                    for (int j = 0; j <= lim; j++) {
                        double pj = p[b][h][t][j], ds = pj * (dp[j] - rowDot);
                        for (int d = 0; d < s.D; d++) {
                            dv[s.ki(b, j, kh, d)] += pj * g[s.qi(b, t, h, d)];
                            dq[s.qi(b, t, h, d)] += scale * ds * k[s.ki(b, j, kh, d)];
                            dk[s.ki(b, j, kh, d)] += scale * ds * q[s.qi(b, t, h, d)];
                        }
                    }
                }
            }
        return new double[][] {dq, dk, dv};
    }

    static double loss(Shape s, double[] q, double[] k, double[] v, double[] g) {
        double[] o = refForward(s, q, k, v, null);
        double sum = 0;
        for (int i = 0; i < o.length; i++) sum += o[i] * g[i];
        return sum;
    }

    // ---------------------------------------------------------------------------------------------
    // Segment layouts

    /** Where the kernel's q, k, v live: dense tensors, a fused qkv projection, or a head-major KV cache. */
    enum Layout { DENSE, FUSED_QKV, HEAD_MAJOR_CACHE }

    record Views(View q, View k, View v) {}

    static Views makeViews(Arena arena, Shape s, Layout layout) {
        int B = s.B, T = s.T, S = s.S(), Hq = s.Hq, Hkv = s.Hkv, D = s.D;
        switch (layout) {
            case DENSE -> {
                MemorySegment q = floats(arena, 3 + s.qSize()), k = floats(arena, 5 + s.kSize()), v = floats(arena, s.kSize());
                return new Views(View.contiguous(q, 3, T, Hq, D), View.contiguous(k, 5, S, Hkv, D), View.contiguous(v, 0, S, Hkv, D));
            }
            case FUSED_QKV -> { // [B, S, (Hq + 2 Hkv) D]; q uses the last T tokens' rows
                if (s.past != 0) throw new IllegalArgumentException();
                long w = (long) (Hq + 2 * Hkv) * D;
                MemorySegment qkv = floats(arena, B * S * w);
                return new Views(new View(qkv, 0, S * w, w, D), new View(qkv, (long) Hq * D, S * w, w, D),
                        new View(qkv, (long) (Hq + Hkv) * D, S * w, w, D));
            }
            case HEAD_MAJOR_CACHE -> { // k/v caches [B, Hkv, Smax, D] with Smax > S; q padded rows
                int smax = S + 3;
                MemorySegment q = floats(arena, B * T * (Hq * D + 2));
                MemorySegment k = floats(arena, B * Hkv * smax * D), v = floats(arena, B * Hkv * smax * D);
                return new Views(new View(q, 1, (long) T * (Hq * D + 2), Hq * D + 2, D),
                        new View(k, 0, (long) Hkv * smax * D, D, (long) smax * D),
                        new View(v, 0, (long) Hkv * smax * D, D, (long) smax * D));
            }
        }
        throw new AssertionError();
    }

    /**
     * Most checks use a shared arena so the kernel runs on the pool; every third seed uses a confined
     * arena, which makes the kernel run serially on the caller.
     */
    static Arena arenaFor(long seed) {
        return seed % 3 == 0 ? Arena.ofConfined() : Arena.ofShared();
    }

    static MemorySegment floats(Arena arena, long n) {
        return arena.allocate(n * 4, 64);
    }

    static void fill(View x, int B, int tokens, int heads, int D, double[] src) {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < tokens; t++)
                for (int h = 0; h < heads; h++)
                    for (int d = 0; d < D; d++)
                        x.seg().setAtIndex(F32, x.at(b, t, h) + d, (float) src[((b * tokens + t) * heads + h) * D + d]);
    }

    static double[] read(View x, int B, int tokens, int heads, int D) {
        double[] out = new double[B * tokens * heads * D];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < tokens; t++)
                for (int h = 0; h < heads; h++)
                    for (int d = 0; d < D; d++)
                        out[((b * tokens + t) * heads + h) * D + d] = x.seg().getAtIndex(F32, x.at(b, t, h) + d);
        return out;
    }

    /** Random values already rounded to float, so the float64 reference sees the kernel's inputs. */
    static double[] random(Random rnd, int n, double amp) {
        double[] x = new double[n];
        for (int i = 0; i < n; i++) x[i] = (float) (amp * (2 * rnd.nextDouble() - 1));
        return x;
    }

    static void assertClose(String what, double[] ref, double[] got, double rtol) {
        assertEquals(ref.length, got.length, what + " length");
        double maxAbs = 0;
        for (double r : ref) maxAbs = Math.max(maxAbs, Math.abs(r));
        double atol = rtol * Math.max(maxAbs, 1e-6);
        for (int i = 0; i < ref.length; i++) {
            double err = Math.abs(ref[i] - got[i]);
            if (!(err <= atol + rtol * Math.abs(ref[i])))
                fail(what + "[" + i + "]: expected " + ref[i] + " got " + got[i] + " (err " + err + ", max|ref| " + maxAbs + ")");
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Forward

    private void checkForward(Shape s, Layout layout, int mode, long seed) {
        Random rnd = new Random(seed);
        double[] q = random(rnd, s.qSize(), 2), k = random(rnd, s.kSize(), 2), v = random(rnd, s.kSize(), 1);
        double[] lseRef = new double[s.B * s.Hq * s.T];
        double[] oRef = refForward(s, q, k, v, lseRef);
        try (Arena arena = arenaFor(seed)) {
            Views vw = makeViews(arena, s, layout);
            fill(vw.q(), s.B, s.T, s.Hq, s.D, q);
            fill(vw.k(), s.B, s.S(), s.Hkv, s.D, k);
            fill(vw.v(), s.B, s.S(), s.Hkv, s.D, v);
            View o = View.contiguous(floats(arena, s.qSize()), 0, s.T, s.Hq, s.D);
            MemorySegment lse = floats(arena, 2 + lseRef.length);
            o.seg().fill((byte) 0x7f);
            CpuAttention.forward(s.dims(), vw.q(), vw.k(), vw.v(), o, lse, 2, mode);
            String tag = s + " " + layout + " mode " + mode;
            assertClose("o " + tag, oRef, read(o, s.B, s.T, s.Hq, s.D), 1e-5);
            double[] lseGot = new double[lseRef.length];
            for (int i = 0; i < lseGot.length; i++) lseGot[i] = lse.getAtIndex(F32, 2 + i);
            assertClose("lse " + tag, lseRef, lseGot, 1e-5);
            // lse is optional
            View o2 = View.contiguous(floats(arena, s.qSize()), 0, s.T, s.Hq, s.D);
            CpuAttention.forward(s.dims(), vw.q(), vw.k(), vw.v(), o2, null, 0, mode);
            assertClose("o (no lse) " + tag, oRef, read(o2, s.B, s.T, s.Hq, s.D), 1e-5);
        }
    }

    @Test
    void forwardMatchesReferenceAcrossShapes() {
        int[][] heads = {{4, 4}, {4, 2}, {6, 1}};
        long seed = 1;
        for (int D : new int[] {1, 7, 16, 64, 80})
            for (int T : new int[] {1, 5, 33})
                for (int[] hh : heads) {
                    int B = (D + T) % 2 == 0 ? 2 : 1;
                    int past = T == 33 ? 0 : (T == 5 ? 3 : 70);
                    Shape s = new Shape(B, T, past, hh[0], hh[1], D);
                    checkForward(s, Layout.DENSE, CpuAttention.MODE_AUTO, seed++);
                }
    }

    @Test
    void forwardBothScorePathsAndStridedLayouts() {
        long seed = 100;
        for (int mode : new int[] {CpuAttention.MODE_DOT, CpuAttention.MODE_TRANSPOSED}) {
            checkForward(new Shape(2, 33, 0, 4, 2, 80), Layout.FUSED_QKV, mode, seed++);
            checkForward(new Shape(1, 70, 0, 6, 1, 7), Layout.FUSED_QKV, mode, seed++);
            checkForward(new Shape(2, 5, 67, 4, 2, 64), Layout.HEAD_MAJOR_CACHE, mode, seed++);
            checkForward(new Shape(1, 1, 130, 4, 4, 16), Layout.HEAD_MAJOR_CACHE, mode, seed++);
            checkForward(new Shape(1, 9, 1, 6, 1, 1), Layout.DENSE, mode, seed++);
        }
    }

    @Test
    void decodeMatchesFullPrefillLastRow() {
        // The last row of a causal prefill equals a T=1 decode step over the same keys.
        Shape full = new Shape(1, 40, 0, 4, 2, 16), step = new Shape(1, 1, 39, 4, 2, 16);
        Random rnd = new Random(7);
        double[] q = random(rnd, full.qSize(), 1), k = random(rnd, full.kSize(), 1), v = random(rnd, full.kSize(), 1);
        try (Arena arena = Arena.ofConfined()) {
            Views vw = makeViews(arena, full, Layout.DENSE);
            fill(vw.q(), 1, 40, 4, 16, q);
            fill(vw.k(), 1, 40, 2, 16, k);
            fill(vw.v(), 1, 40, 2, 16, v);
            View o = View.contiguous(floats(arena, full.qSize()), 0, 40, 4, 16);
            CpuAttention.forward(full.dims(), vw.q(), vw.k(), vw.v(), o, null, 0);
            View qLast = new View(vw.q().seg(), vw.q().at(0, 39, 0), vw.q().batchStride(), vw.q().tokenStride(), 16);
            View o1 = View.contiguous(floats(arena, 4 * 16), 0, 1, 4, 16);
            CpuAttention.forward(step.dims(), qLast, vw.k(), vw.v(), o1, null, 0);
            double[] a = read(o1, 1, 1, 4, 16);
            double[] all = read(o, 1, 40, 4, 16);
            double[] b = java.util.Arrays.copyOfRange(all, 39 * 4 * 16, 40 * 4 * 16);
            assertClose("decode vs prefill", b, a, 1e-6);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Backward

    @Test
    void referenceGradientMatchesFiniteDifferences() {
        Shape s = new Shape(2, 3, 2, 4, 2, 3);
        Random rnd = new Random(11);
        double[] q = random(rnd, s.qSize(), 1), k = random(rnd, s.kSize(), 1), v = random(rnd, s.kSize(), 1);
        double[] g = random(rnd, s.qSize(), 1);
        double[][] an = refBackward(s, q, k, v, g);
        double[][] inputs = {q, k, v};
        double h = 1e-5;
        for (int which = 0; which < 3; which++) {
            double[] x = inputs[which];
            double[] fd = new double[x.length];
            for (int i = 0; i < x.length; i++) {
                double keep = x[i];
                x[i] = keep + h;
                double lp = loss(s, q, k, v, g);
                x[i] = keep - h;
                double lm = loss(s, q, k, v, g);
                x[i] = keep;
                fd[i] = (lp - lm) / (2 * h);
            }
            assertClose("fd vs analytic " + "qkv".charAt(which), fd, an[which], 1e-7);
        }
    }

    private void checkBackward(Shape s, Layout layout, int chunks, long seed) {
        Random rnd = new Random(seed);
        double[] q = random(rnd, s.qSize(), 2), k = random(rnd, s.kSize(), 2), v = random(rnd, s.kSize(), 1);
        double[] g = random(rnd, s.qSize(), 1);
        double[][] ref = refBackward(s, q, k, v, g);
        try (Arena arena = arenaFor(seed)) {
            Views vw = makeViews(arena, s, layout);
            fill(vw.q(), s.B, s.T, s.Hq, s.D, q);
            fill(vw.k(), s.B, s.S(), s.Hkv, s.D, k);
            fill(vw.v(), s.B, s.S(), s.Hkv, s.D, v);
            View o = View.contiguous(floats(arena, s.qSize()), 0, s.T, s.Hq, s.D);
            MemorySegment lse = floats(arena, s.B * s.Hq * s.T + 1);
            CpuAttention.forward(s.dims(), vw.q(), vw.k(), vw.v(), o, lse, 1);
            View dO = View.contiguous(floats(arena, s.qSize()), 0, s.T, s.Hq, s.D);
            fill(dO, s.B, s.T, s.Hq, s.D, g);
            // Gradients land in the same strided layouts as the inputs; pre-fill with garbage to prove overwrite.
            Views grads = makeViews(arena, s, layout);
            grads.q().seg().fill((byte) 0x7f);
            grads.k().seg().fill((byte) 0x7f);
            grads.v().seg().fill((byte) 0x7f);
            CpuAttention.backward(s.dims(), vw.q(), vw.k(), vw.v(), o, lse, 1, dO, grads.q(), grads.k(), grads.v(), chunks);
            String tag = s + " " + layout + " chunks " + chunks;
            assertClose("dq " + tag, ref[0], read(grads.q(), s.B, s.T, s.Hq, s.D), 1e-4);
            assertClose("dk " + tag, ref[1], read(grads.k(), s.B, s.S(), s.Hkv, s.D), 1e-4);
            assertClose("dv " + tag, ref[2], read(grads.v(), s.B, s.S(), s.Hkv, s.D), 1e-4);
        }
    }

    @Test
    void backwardMatchesReferenceAcrossShapes() {
        int[][] heads = {{4, 4}, {4, 2}, {6, 1}};
        long seed = 1000;
        for (int D : new int[] {1, 7, 16, 64, 80})
            for (int T : new int[] {1, 5, 33})
                for (int[] hh : heads) {
                    int B = (D + T + hh[1]) % 2 == 0 ? 2 : 1;
                    int past = T == 33 ? 0 : (T == 5 ? 3 : 70);
                    checkBackward(new Shape(B, T, past, hh[0], hh[1], D), Layout.DENSE, 0, seed++);
                }
    }

    /** Mistral's sliding window: windows shorter and longer than a key block, with a cache before the queries. */
    @Test
    void slidingWindowForwardAndBackwardMatchTheReference() {
        long seed = 3000;
        for (int W : new int[] {2, 3, CpuAttention.BLOCK_KEYS - 1, CpuAttention.BLOCK_KEYS + 5, 200}) {
            for (int[] tp : new int[][] {{33, 0}, {5, 40}, {1, 90}, {70, 0}}) {
                Shape s = new Shape(2, tp[0], tp[1], 4, 2, 16, W);
                checkForward(s, Layout.DENSE, CpuAttention.MODE_AUTO, seed++);
                checkForward(s, tp[1] == 0 ? Layout.FUSED_QKV : Layout.HEAD_MAJOR_CACHE, CpuAttention.MODE_DOT, seed++);
                checkBackward(s, Layout.DENSE, 0, seed++);
                checkBackward(s, Layout.HEAD_MAJOR_CACHE, 3, seed++);
            }
        }
    }

    @Test
    void backwardKeyChunksAndStridedLayouts() {
        long seed = 2000;
        for (int chunks : new int[] {1, 2, 5}) {
            checkBackward(new Shape(2, 70, 0, 4, 2, 16), Layout.FUSED_QKV, chunks, seed++);
            checkBackward(new Shape(1, 33, 0, 6, 1, 80), Layout.FUSED_QKV, chunks, seed++);
            checkBackward(new Shape(1, 40, 100, 4, 2, 7), Layout.HEAD_MAJOR_CACHE, chunks, seed++);
            checkBackward(new Shape(2, 1, 150, 4, 4, 16), Layout.HEAD_MAJOR_CACHE, chunks, seed++);
        }
    }

    @Test
    void zigzagIsAPermutation() {
        for (int n = 1; n <= 9; n++) {
            boolean[] seen = new boolean[n];
            for (int i = 0; i < n; i++) seen[CpuAttention.zigzag(i, n)] = true;
            for (boolean b : seen) assertTrue(b, "n=" + n);
        }
    }

    @Test
    void rejectsBadHeadGrouping() {
        try {
            Dims.of(1, 1, 0, 6, 4, 8);
            fail("expected IllegalArgumentException");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("kvHeads"));
        }
    }
}
