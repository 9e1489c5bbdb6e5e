package dev.exeunt.tensor.testing;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Checks a kernel's Y = X W^T against a float64 product, within 1e-5 of the sum of the products' magnitudes. */
public final class ProductCheck {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private ProductCheck() {}

    /** Row {@code row} of Y (rows ldy floats apart) against W (m x n, row-major) times row {@code row} of X (ldx apart). */
    public static void assertRowMatchesFloat64(float[] w, int m, int n, MemorySegment x, int ldx, MemorySegment y, int ldy, int row, String what) {
        for (int i = 0; i < m; i++) {
            double ref = 0, mag = 0;
            for (int j = 0; j < n; j++) {
                double p = (double) w[i * n + j] * x.getAtIndex(F32, (long) row * ldx + j);
                ref += p;
                mag += Math.abs(p);
            }
            float got = y.getAtIndex(F32, (long) row * ldy + i);
            assertTrue(Math.abs(got - ref) <= 1e-5 * mag + 1e-30, what + ", row " + row + " out " + i + ": " + got + " vs " + ref);
        }
    }
}
