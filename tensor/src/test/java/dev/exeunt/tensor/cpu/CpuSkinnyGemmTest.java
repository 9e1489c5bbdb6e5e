package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The few-rows GEMM against a float64 reference, both weight layouts, odd sizes and padded leading dims. */
class CpuSkinnyGemmTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private static MemorySegment random(Arena arena, long n, SplittableRandom rng) {
        MemorySegment s = arena.allocate(4 * n, 64);
        for (long i = 0; i < n; i++) s.setAtIndex(F, i, (float) (rng.nextDouble() * 2 - 1));
        return s;
    }

    @Test
    void matchesFloat64Reference() {
        var rng = new SplittableRandom(11);
        int[][] shapes = {{2, 1, 1}, {3, 17, 5}, {4, 33, 64}, {5, 100, 37}, {8, 257, 129}, {7, 1024, 300}, {2, 4096, 256},
            {1, 1030, 300}, {1, 7, 64}};
        for (boolean quads : new boolean[] {true, false}) for (boolean transB : new boolean[] {true, false}) {
            for (int[] sh : shapes) {
                int m = sh[0], n = sh[1], k = sh[2];
                int lda = k + 3, ldb = (transB ? k : n) + 5, ldc = n + 2;
                try (Arena arena = Arena.ofShared()) {
                    MemorySegment a = random(arena, (long) m * lda + 1, rng);
                    MemorySegment b = random(arena, (long) (transB ? n : k) * ldb + 1, rng);
                    MemorySegment c = random(arena, (long) m * ldc + 1, rng);
                    CpuSkinnyGemm.gemm(quads, transB, m, n, k, a, 1, lda, b, 1, ldb, c, 1, ldc);
                    for (int r = 0; r < m; r++) {
                        for (int j = 0; j < n; j++) {
                            double ref = 0, mag = 0;
                            for (int i = 0; i < k; i++) {
                                double x = a.getAtIndex(F, 1 + (long) r * lda + i);
                                double w = transB ? b.getAtIndex(F, 1 + (long) j * ldb + i) : b.getAtIndex(F, 1 + (long) i * ldb + j);
                                ref += x * w;
                                mag += Math.abs(x * w);
                            }
                            assertEquals(ref, c.getAtIndex(F, 1 + (long) r * ldc + j), 1e-6 * mag + 1e-7,
                                    "quads=" + quads + " transB=" + transB + " shape " + m + "x" + n + "x" + k + " at " + r + "," + j);
                        }
                    }
                }
            }
        }
    }

    /** A row's product is bit for bit the same alone, at any place in a batch, for any batch size, with either kernel set. */
    @Test
    void aRowsResultDoesNotDependOnTheRowsBesideIt() {
        var rng = new SplittableRandom(5);
        int[][] shapes = {{192, 576}, {100, 37}, {64, 1030}, {300, 77}, {160, 160}};
        for (boolean transB : new boolean[] {true, false}) {
            for (int[] sh : shapes) {
                int k = sh[0], n = sh[1], m = CpuSkinnyGemm.MAX_ROWS;
                try (Arena arena = Arena.ofShared()) {
                    MemorySegment a = random(arena, (long) m * k, rng);
                    MemorySegment b = random(arena, (long) n * k, rng);
                    MemorySegment all = arena.allocate(4L * m * n), part = arena.allocate(4L * m * n);
                    CpuSkinnyGemm.gemm(true, transB, m, n, k, a, 0, k, b, 0, transB ? k : n, all, 0, n);
                    for (int rows = 1; rows <= m; rows++) for (boolean quads : new boolean[] {true, false}) {
                        for (int r0 = 0; r0 + rows <= m; r0 += rows) {
                            CpuSkinnyGemm.gemm(quads, transB, rows, n, k, a, (long) r0 * k, k, b, 0, transB ? k : n, part, (long) r0 * n, n);
                        }
                        int covered = m / rows * rows;
                        for (long i = 0; i < (long) covered * n; i++) {
                            assertEquals(Float.floatToRawIntBits(all.getAtIndex(F, i)), Float.floatToRawIntBits(part.getAtIndex(F, i)),
                                    "transB=" + transB + " quads=" + quads + " k=" + k + " n=" + n + " in groups of " + rows + " at " + i);
                        }
                    }
                }
            }
        }
    }

    /** Both tests again with one-row products taking four streams wherever they can (the path of matrices larger than L2). */
    @Test
    void theFourStreamKernelGivesTheSameResults() {
        long saved = CpuSkinnyGemm.fourStreamsBytes;
        CpuSkinnyGemm.fourStreamsBytes = 0;
        try {
            matchesFloat64Reference();
            aRowsResultDoesNotDependOnTheRowsBesideIt();
        } finally {
            CpuSkinnyGemm.fourStreamsBytes = saved;
        }
    }
}
