package dev.exeunt.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The counter-based normal stream: a pure function of (seed, index), an accurate quantile, exact symmetry. */
class CounterNormalTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Test
    void elementIIsBuiltFromSplitMix64OutputIPlusOne() {
        var rng = new SplittableRandom(1234);
        for (long i = 0; i < 1000; i++) {
            assertEquals(CounterNormal.uniformToNormal(rng.nextLong()), CounterNormal.value(1234, i), "element " + i);
        }
    }

    /** Runs that cross parallel blocks, start at odd offsets and stride over gaps give each element's own value. */
    @Test
    void fillRunsWritesExactlyTheElementsOfTheStream() {
        long seed = -77, first = 13, stride = 70_001;
        int runs = 3;
        long runLength = 40_000; // crosses the 32768-element parallel blocks
        try (Arena arena = Arena.ofShared()) {
            MemorySegment dst = arena.allocate((runs * runLength + 5) * Float.BYTES);
            CounterNormal.fillRuns(seed, 0.5f, first, stride, runs, runLength, dst, 4 * Float.BYTES);
            for (int r = 0; r < runs; r++) {
                for (long j = 0; j < runLength; j += (j < 10 || runLength - j < 10 ? 1 : 997)) {
                    float expected = (float) (CounterNormal.value(seed, first + r * stride + j) * 0.5f);
                    float got = dst.get(F32, (4 + r * runLength + j) * Float.BYTES);
                    assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(got), "run " + r + " element " + j);
                }
            }
            assertEquals(0f, dst.get(F32, 3 * Float.BYTES), "wrote before the offset");
            assertEquals(0f, dst.get(F32, (4 + runs * runLength) * Float.BYTES), "wrote past the end");
        }
    }

    /** A confined segment is filled on the calling thread only; the bits must match the pool's. */
    @Test
    void parallelAndSingleThreadedFillsAgreeBitForBit() {
        int n = 200_000;
        try (Arena shared = Arena.ofShared(); Arena confined = Arena.ofConfined()) {
            MemorySegment a = shared.allocate((long) n * Float.BYTES), b = confined.allocate((long) n * Float.BYTES);
            CounterNormal.fill(99, 1f, 5, n, a, 0);
            CounterNormal.fill(99, 1f, 5, n, b, 0);
            assertEquals(-1, a.mismatch(b));
        }
    }

    /**
     * Acklam's quantile has relative error below 1.15e-9 in x, so the CDF at the returned x may be off
     * from p by at most phi(x) * |x| * 1.15e-9; checked against the CDF integrated numerically, across
     * the central region, the switch points and the deepest tails the 53-bit uniform reaches.
     */
    @Test
    void quantileIsAccurateAcrossTheWholeRange() {
        double[] centred = {0, 1e-6, 0.1, 0.3, 0.4749, 0.47575, 0.4758, 0.49, 0.499, 0.4999999, 0.5 - 0x1.0p-40, 0.5 - 0x1.0p-54};
        for (double c : centred) {
            for (double s : new double[] {-1, 1}) {
                double x = CounterNormal.inverseCdf(s * c);
                double tailMass = 0.5 - c; // the probability beyond x on its side
                double tail = lowerTail(-Math.abs(x));
                double bound = pdf(x) * Math.max(Math.abs(x), 1e-3) * 1.15e-9 * 2 + 1e-300;
                assertTrue(Math.abs(tail - tailMass) <= bound + 1e-15 * tailMass,
                        "centred " + s * c + ": x " + x + ", tail " + tail + " vs " + tailMass + " (bound " + bound + ")");
                assertTrue(Math.signum(x) == Math.signum(s * c), "sign of x for " + s * c);
            }
        }
    }

    @Test
    void streamIsExactlySymmetricAndFinite() {
        for (double c = 0; c < 0.5; c += 0.013) assertEquals(-CounterNormal.inverseCdf(c), CounterNormal.inverseCdf(-c));
        double most = CounterNormal.uniformToNormal(-1L), least = CounterNormal.uniformToNormal(0L);
        assertEquals(-most, least);
        assertTrue(most > 8.2 && most < 8.3, "largest value " + most);
    }

    @Test
    void badRangesAreRefusedWithTheNumbers() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dst = arena.allocate(16);
            var e = assertThrows(IndexOutOfBoundsException.class, () -> CounterNormal.fill(1, 1f, 0, 5, dst, 0));
            assertTrue(e.getMessage().contains("5 floats"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> CounterNormal.fill(1, 1f, -1, 2, dst, 0));
            assertThrows(IllegalArgumentException.class, () -> CounterNormal.value(1, -3));
        }
    }

    private static double pdf(double x) {
        return Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
    }

    /** P(X <= x) for x <= 0 by composite Simpson over [x - 12, x] (the mass below is under 1e-30). */
    private static double lowerTail(double x) {
        int n = 200_000;
        double a = x - 12, h = 12.0 / n, sum = pdf(a) + pdf(x);
        for (int i = 1; i < n; i++) sum += pdf(a + i * h) * (i % 2 == 1 ? 4 : 2);
        return sum * h / 3;
    }
}
