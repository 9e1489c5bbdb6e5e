package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class CpuGemmTest {
    static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final int[][] SHAPES = {
        {1, 1, 1}, {7, 13, 5}, {2, 40, 9}, {33, 65, 17}, {100, 3, 250}, {64, 64, 64}, {257, 129, 300},
        {5, 300, 77}, {130, 41, 513}, {48, 96, 256},
    };
    final SplittableRandom rnd = new SplittableRandom(42);

    static MemorySegment random(Arena arena, long n, SplittableRandom r) {
        MemorySegment s = arena.allocate(Math.max(1, n) * 4, 64);
        for (long i = 0; i < n; i++) s.setAtIndex(F, i, (float) (r.nextDouble() * 2 - 1));
        return s;
    }

    /** float64 reference: C = alpha op(A) op(B) + beta C (beta == 0 ignores C). */
    static double[] reference(boolean tA, boolean tB, int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                              MemorySegment b, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        double[] out = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) {
                    double av = a.getAtIndex(F, aOff + (tA ? (long) p * lda + i : (long) i * lda + p));
                    double bv = b.getAtIndex(F, bOff + (tB ? (long) j * ldb + p : (long) p * ldb + j));
                    s += av * bv;
                }
                double old = beta == 0 ? 0 : beta * (double) c.getAtIndex(F, cOff + (long) i * ldc + j);
                out[i * n + j] = alpha * s + old;
            }
        return out;
    }

    static void compare(String what, double[] ref, MemorySegment c, long cOff, int ldc, int m, int n, int k) {
        double tol = 1e-5 * Math.sqrt(Math.max(k, 1)) * 4;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double want = ref[i * n + j];
                double got = c.getAtIndex(F, cOff + (long) i * ldc + j);
                if (!(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want))))
                    fail(what + " C[" + i + "," + j + "] = " + got + ", want " + want);
            }
    }

    void check(boolean tA, boolean tB, int m, int n, int k, float alpha, float beta, int pad, long off, int mr, int threads) {
        try (Arena arena = Arena.ofShared()) {
            int lda = (tA ? m : k) + pad, ldb = (tB ? k : n) + pad, ldc = n + pad;
            MemorySegment a = random(arena, off + (long) (tA ? k : m) * lda, rnd);
            MemorySegment b = random(arena, off + (long) (tB ? n : k) * ldb, rnd);
            MemorySegment c = random(arena, off + (long) m * ldc, rnd);
            if (beta == 0f) for (long i = 0; i < c.byteSize() / 4; i++) c.setAtIndex(F, i, Float.NaN);
            // padding past each C row must survive
            double[] ref = reference(tA, tB, m, n, k, alpha, a, off, lda, b, off, ldb, beta, c, off, ldc);
            float guard = beta == 0f ? Float.NaN : c.getAtIndex(F, off + n);
            if (mr == 0) CpuGemm.sgemm(tA, tB, m, n, k, alpha, a, off, lda, b, off, ldb, beta, c, off, ldc);
            else CpuGemm.gemm(tA, tB, m, n, k, alpha, a, off, lda, b, off, ldb, beta, c, off, ldc, mr, threads);
            String what = "tA=" + tA + " tB=" + tB + " m=" + m + " n=" + n + " k=" + k + " mr=" + mr + " pad=" + pad;
            compare(what, ref, c, off, ldc, m, n, k);
            if (pad > 0 && m > 1) {
                float after = c.getAtIndex(F, off + n);
                assertTrue(Float.compare(guard, after) == 0, what + ": wrote into the leading-dimension padding");
            }
        }
    }

    @Test
    void allTransposesAndShapes() {
        for (int[] s : SHAPES)
            for (int t = 0; t < 4; t++) {
                boolean tA = (t & 1) != 0, tB = (t & 2) != 0;
                check(tA, tB, s[0], s[1], s[2], 1f, 0f, 0, 0, 0, 0);
                check(tA, tB, s[0], s[1], s[2], 0.75f, -1.5f, 3, 5, 0, 0);
            }
    }

    @Test
    void packedPathEveryMicrokernelAndThreadCount() {
        int[][] shapes = {{67, 71, 300}, {24, 64, 16}, {13, 200, 40}, {200, 13, 40}};
        for (int mr : new int[] {4, 6, 8, 12, 14})
            for (int threads : new int[] {1, 2, 3})
                for (int[] s : shapes)
                    for (int t = 0; t < 4; t++) {
                        boolean tA = (t & 1) != 0, tB = (t & 2) != 0;
                        try (Arena arena = Arena.ofShared()) {
                            int m = s[0], n = s[1], k = s[2];
                            int lda = (tA ? m : k) + 1, ldb = (tB ? k : n) + 2, ldc = n + 3;
                            MemorySegment a = random(arena, (long) (tA ? k : m) * lda + 1, rnd);
                            MemorySegment b = random(arena, (long) (tB ? n : k) * ldb + 1, rnd);
                            MemorySegment c = random(arena, (long) m * ldc + 1, rnd);
                            double[] ref = reference(tA, tB, m, n, k, 1.25f, a, 1, lda, b, 1, ldb, 0.5f, c, 1, ldc);
                            CpuGemm.packed(tA, tB, m, n, k, 1.25f, a, 1, lda, b, 1, ldb, 0.5f, c, 1, ldc, mr, threads);
                            compare("packed mr=" + mr + " threads=" + threads + " tA=" + tA + " tB=" + tB + " " + m + "x" + n + "x" + k,
                                    ref, c, 1, ldc, m, n, k);
                        }
                    }
    }

    @Test
    void largerThanOneBlock() {
        // crosses KC (256) and MC and has tails in every dimension
        check(false, false, 517, 263, 531, 1f, 0f, 0, 0, 0, 0);
        check(true, true, 300, 290, 600, -0.5f, 2f, 1, 3, 0, 0);
    }

    @Test
    void confinedSegmentsRunOnTheCaller() {
        try (Arena arena = Arena.ofConfined()) {
            int m = 150, n = 140, k = 130;
            MemorySegment a = random(arena, (long) m * k, rnd), b = random(arena, (long) k * n, rnd), c = arena.allocate(4L * m * n);
            double[] ref = reference(false, false, m, n, k, 1f, a, 0, k, b, 0, n, 0f, c, 0, n);
            CpuGemm.sgemm(false, false, m, n, k, 1f, a, 0, k, b, 0, n, 0f, c, 0, n);
            compare("confined", ref, c, 0, n, m, n, k);
        }
    }

    @Test
    void callsFromInsidePoolTasks() {
        // sgemm/sgemv nested in CpuThreads tasks: per-thread buffers must not be shared by concurrent calls
        int jobs = 6, m = 90, n = 100, k = 300;
        try (Arena arena = Arena.ofShared()) {
            MemorySegment[] as = new MemorySegment[jobs], bs = new MemorySegment[jobs], cs = new MemorySegment[jobs];
            double[][] refs = new double[jobs][];
            for (int q = 0; q < jobs; q++) {
                as[q] = random(arena, (long) m * k, rnd);
                bs[q] = random(arena, (long) k * n, rnd);
                cs[q] = arena.allocate(4L * m * n);
                refs[q] = reference(false, q % 2 == 1, m, n, k, 1f, as[q], 0, k, bs[q], 0, q % 2 == 1 ? k : n, 0f, cs[q], 0, n);
            }
            CpuThreads.parallelFor(jobs, 1, (f, t) -> {
                for (int q = f; q < t; q++)
                    CpuGemm.sgemm(false, q % 2 == 1, m, n, k, 1f, as[q], 0, k, bs[q], 0, q % 2 == 1 ? k : n, 0f, cs[q], 0, n);
            });
            for (int q = 0; q < jobs; q++) compare("nested job " + q, refs[q], cs[q], 0, n, m, n, k);
        }
    }

    @Test
    void kZeroScalesC() {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment a = arena.allocate(4), b = arena.allocate(4);
            MemorySegment c = random(arena, 6 * 5, rnd);
            float[] old = c.toArray(F);
            CpuGemm.sgemm(false, false, 6, 5, 0, 1f, a, 0, 1, b, 0, 5, 2f, c, 0, 5);
            for (int i = 0; i < 30; i++) assertEquals(2f * old[i], c.getAtIndex(F, i));
            for (int i = 0; i < 30; i++) c.setAtIndex(F, i, Float.NaN);
            CpuGemm.sgemm(false, false, 6, 5, 0, 1f, a, 0, 1, b, 0, 5, 0f, c, 0, 5);
            for (int i = 0; i < 30; i++) assertEquals(0f, c.getAtIndex(F, i));
        }
    }

    @Test
    void betaZeroIgnoresNaN() {
        for (int[] s : new int[][] {{3, 4, 5}, {64, 80, 70}, {129, 66, 33}})
            check(false, true, s[0], s[1], s[2], 1f, 0f, 2, 0, 0, 0);
    }

    @Test
    void batchedStrided() {
        for (int[] s : new int[][] {{7, 9, 11}, {70, 90, 33}})
            for (int t = 0; t < 4; t++) {
                boolean tA = (t & 1) != 0, tB = (t & 2) != 0;
                int m = s[0], n = s[1], k = s[2], batch = 5;
                int lda = (tA ? m : k) + 1, ldb = (tB ? k : n), ldc = n + 2;
                long sa = (long) (tA ? k : m) * lda + 3, sb = (long) (tB ? n : k) * ldb + 1, sc = (long) m * ldc + 4;
                try (Arena arena = Arena.ofShared()) {
                    MemorySegment a = random(arena, 2 + sa * batch, rnd), b = random(arena, 1 + sb * batch, rnd);
                    MemorySegment c = random(arena, 3 + sc * batch, rnd);
                    double[][] refs = new double[batch][];
                    for (int i = 0; i < batch; i++)
                        refs[i] = reference(tA, tB, m, n, k, 0.5f, a, 2 + i * sa, lda, b, 1 + i * sb, ldb, 1f, c, 3 + i * sc, ldc);
                    CpuGemm.sgemmBatched(tA, tB, m, n, k, 0.5f, a, 2, lda, sa, b, 1, ldb, sb, 1f, c, 3, ldc, sc, batch);
                    for (int i = 0; i < batch; i++) compare("batch " + i + " " + m + "x" + n + "x" + k, refs[i], c, 3 + i * sc, ldc, m, n, k);
                }
            }
    }

    @Test
    void gemvBothTransposes() {
        int[][] shapes = {{1, 1}, {5, 3}, {17, 33}, {100, 257}, {301, 67}, {515, 1030}, {2048, 70}};
        for (int[] s : shapes)
            for (boolean trans : new boolean[] {false, true})
                for (float beta : new float[] {0f, 0.5f}) {
                    int m = s[0], n = s[1], lda = n + 3;
                    int xl = trans ? m : n, yl = trans ? n : m;
                    try (Arena arena = Arena.ofShared()) {
                        MemorySegment a = random(arena, 1 + (long) m * lda, rnd), x = random(arena, 2 + xl, rnd), y = random(arena, 3 + yl, rnd);
                        if (beta == 0f) for (int i = 0; i < yl; i++) y.setAtIndex(F, 3 + i, Float.NaN);
                        double[] want = new double[yl];
                        for (int o = 0; o < yl; o++) {
                            double sum = 0;
                            for (int q = 0; q < xl; q++) {
                                long idx = trans ? (long) q * lda + o : (long) o * lda + q;
                                sum += (double) a.getAtIndex(F, 1 + idx) * x.getAtIndex(F, 2 + q);
                            }
                            want[o] = -1.5 * sum + (beta == 0f ? 0 : beta * (double) y.getAtIndex(F, 3 + o));
                        }
                        CpuGemm.sgemv(trans, m, n, -1.5f, a, 1, lda, x, 2, beta, y, 3);
                        double tol = 1e-5 * Math.sqrt(xl) * 4;
                        for (int o = 0; o < yl; o++) {
                            double got = y.getAtIndex(F, 3 + o);
                            if (!(Math.abs(got - want[o]) <= tol * Math.max(1, Math.abs(want[o]))))
                                fail("gemv trans=" + trans + " " + m + "x" + n + " y[" + o + "]=" + got + " want " + want[o]);
                        }
                    }
                }
    }
}
