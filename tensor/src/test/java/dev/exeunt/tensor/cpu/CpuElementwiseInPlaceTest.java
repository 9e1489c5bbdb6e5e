package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The in-place elementwise add and multiply (the decode path's residuals, biases and SwiGLU product) are the scalar loops bit for bit. */
class CpuElementwiseInPlaceTest {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Test
    void addAndMultiplyAreTheScalarLoopsBitForBit() {
        var rng = new SplittableRandom(3);
        // odd sizes and offsets; 100000 spans several of the pool's blocks
        for (int n : new int[] {1, 15, 16, 17, 100, 1000, 100_000}) {
            try (Arena arena = Arena.ofShared()) {
                MemorySegment a = arena.allocate(4L * (n + 2)), b = arena.allocate(4L * (n + 5));
                float[] x = new float[n], y = new float[n];
                for (int i = 0; i < n; i++) {
                    x[i] = (float) rng.nextGaussian();
                    y[i] = (float) rng.nextGaussian();
                    a.setAtIndex(F, 2 + i, x[i]);
                    b.setAtIndex(F, 5 + i, y[i]);
                }
                CpuElementwise.addInPlace(a, 2, b, 5, n);
                for (int i = 0; i < n; i++) assertEquals(x[i] + y[i], a.getAtIndex(F, 2 + i), 0f, "sum " + i + " of " + n);
                CpuElementwise.multiplyInPlace(a, 2, b, 5, n);
                for (int i = 0; i < n; i++) assertEquals((x[i] + y[i]) * y[i], a.getAtIndex(F, 2 + i), 0f, "product " + i + " of " + n);
            }
        }
    }
}
