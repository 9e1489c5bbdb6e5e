package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** A head row's argmax and top probability, and attention's weighted value rows, vectorized, against plain scalar loops in double. */
class DecodeVectorsTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private static int scalarArgmax(float[] x) {
        int best = 0;
        for (int j = 1; j < x.length; j++) if (x[j] > x[best]) best = j;
        return best;
    }

    @Test
    void argmaxAndTopProbabilityMatchScalarLoops() {
        var rng = new SplittableRandom(17);
        try (Arena arena = Arena.ofConfined()) {
            for (int n : new int[] {1, 5, 16, 17, 33, 100, 1024, 1031}) {
                for (int trial = 0; trial < 20; trial++) {
                    float[] x = new float[n];
                    for (int j = 0; j < n; j++) x[j] = (float) (rng.nextGaussian() * 4);
                    if (trial % 3 == 0 && n > 2) x[n - 1] = x[rng.nextInt(n - 1)]; // a tie: the lower index wins
                    MemorySegment seg = arena.allocate(4L * (n + 3));
                    MemorySegment.copy(x, 0, seg, F, 12, n); // at an offset of 3 floats
                    int best = DecodeVectors.argmax(seg, 3, n);
                    assertEquals(scalarArgmax(x), best, "argmax of " + n);
                    double sum = 0;
                    for (float v : x) sum += Math.exp((double) v - x[best]);
                    assertEquals(1 / sum, DecodeVectors.topProbability(seg, 3, n, x[best]), 2e-6 / sum, "top probability of " + n);
                }
            }
        }
    }

    @Test
    void nanLogitsGiveNanProbabilityAndTheScalarArgmax() {
        try (Arena arena = Arena.ofConfined()) {
            float[] x = new float[40];
            for (int j = 0; j < x.length; j++) x[j] = j % 7;
            x[20] = Float.NaN;
            MemorySegment seg = arena.allocate(4L * x.length);
            MemorySegment.copy(x, 0, seg, F, 0, x.length);
            assertEquals(scalarArgmax(x), DecodeVectors.argmax(seg, 0, x.length));
            assertTrue(Float.isNaN(DecodeVectors.topProbability(seg, 0, x.length, 6f)));
            x[0] = Float.NaN;
            MemorySegment.copy(x, 0, seg, F, 0, x.length);
            assertEquals(0, DecodeVectors.argmax(seg, 0, x.length), "a NaN first entry stays the choice, as the scalar scan leaves it");
        }
    }

    @Test
    void weightedRowsMatchAFloat64Sum() {
        var rng = new SplittableRandom(23);
        try (Arena arena = Arena.ofConfined()) {
            for (int n : new int[] {1, 16, 48, 64, 80, 131}) {
                int rows = 37, ld = n + 5, j0 = 3, j1 = 30;
                float[] p = new float[rows];
                for (int j = 0; j < rows; j++) p[j] = (float) rng.nextDouble();
                MemorySegment x = arena.allocate(4L * (2 + rows * ld)), out = arena.allocate(4L * (n + 1));
                for (long i = 0; i < x.byteSize() / 4; i++) x.setAtIndex(F, i, (float) (rng.nextDouble() * 2 - 1));
                out.fill((byte) 0x7f); // stale contents are overwritten, not added to
                float scale = 0.37f;
                DecodeVectors.weightedRows(p, j0, j1, scale, x, 2, ld, out, 1, n);
                for (int i = 0; i < n; i++) {
                    double ref = 0, mag = 0;
                    for (int j = j0; j < j1; j++) {
                        double t = (double) p[j] * scale * x.getAtIndex(F, 2 + (long) j * ld + i);
                        ref += t;
                        mag += Math.abs(t);
                    }
                    assertEquals(ref, out.getAtIndex(F, 1 + i), 1e-6 * mag + 1e-7, "element " + i + " of " + n);
                }
            }
        }
    }
}
