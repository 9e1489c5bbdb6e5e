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
        int[][] shapes = {{2, 1, 1}, {3, 17, 5}, {4, 33, 64}, {5, 100, 37}, {8, 257, 129}, {7, 1024, 300}, {2, 4096, 256}};
        for (boolean transB : new boolean[] {true, false}) {
            for (int[] sh : shapes) {
                int m = sh[0], n = sh[1], k = sh[2];
                int lda = k + 3, ldb = (transB ? k : n) + 5, ldc = n + 2;
                try (Arena arena = Arena.ofShared()) {
                    MemorySegment a = random(arena, (long) m * lda + 1, rng);
                    MemorySegment b = random(arena, (long) (transB ? n : k) * ldb + 1, rng);
                    MemorySegment c = random(arena, (long) m * ldc + 1, rng);
                    CpuSkinnyGemm.gemm(transB, m, n, k, a, 1, lda, b, 1, ldb, c, 1, ldc);
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
                                    "transB=" + transB + " shape " + m + "x" + n + "x" + k + " at " + r + "," + j);
                        }
                    }
                }
            }
        }
    }
}
