package dev.exeunt.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.testing.LeakCheck;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Storage sharing, scopes, alignment, limits and dtype conversions through the Tensor API. */
@ExtendWith(LeakCheck.class)
class TensorMemoryTest {

    @Test
    void scopeFreesEverythingCreatedInside() {
        long before = HostMemory.allocatedBytes();
        try (var s = Scope.open()) {
            Tensor a = Tensor.randn(new SplittableRandom(1), 1f, 64, 64);
            Tensor b = a.matmul(a).add(a).softmax();
            assertTrue(HostMemory.allocatedBytes() > before);
            assertEquals(64, b.dim(1));
        }
        assertEquals(before, HostMemory.allocatedBytes());
    }

    @Test
    void escapedTensorOutlivesItsScope() {
        Tensor kept;
        try (var s = Scope.open()) {
            kept = Tensor.ones(3, 3).scale(2f).escape();
        }
        assertFalse(kept.isClosed());
        assertEquals(2f, kept.get(1, 1));
        kept.close();
    }

    @Test
    void viewsShareStorageAndFreeWithTheLastReference() {
        Tensor a = Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3);
        Tensor t = a.transpose(0, 1);
        Tensor n = a.narrow(1, 1, 2);
        a.close();
        assertEquals(4f, t.get(1, 1) + 0f - 1f); // t[1,1] = a[1,1] = 5
        assertArrayEquals(new float[] {2, 3, 5, 6}, n.toFloatArray());
        assertFalse(t.isContiguous());
        try (Tensor c = t.contiguous()) {
            assertArrayEquals(new float[] {1, 4, 2, 5, 3, 6}, c.toFloatArray());
        }
        t.close();
        n.close();
    }

    @Test
    void storageIs64ByteAligned() {
        try (var s = Scope.open()) {
            for (int n = 1; n < 20; n++) assertEquals(0, Tensor.zeros(n).segment().address() % 64);
        }
    }

    @Test
    void allocationOverTheLimitGivesAClearError() {
        long old = HostMemory.limit();
        HostMemory.setLimit(HostMemory.allocatedBytes() + (1 << 20));
        try {
            var e = assertThrows(TensorAllocationException.class, () -> Tensor.empty(DType.F32, 1 << 20));
            assertTrue(e.getMessage().startsWith("out of host memory: allocating 4.0 MiB"), e.getMessage());
            assertTrue(e.getMessage().contains("-Dexeunt.memory.limit"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
            assertTrue(e.getMessage().contains("limit"), e.getMessage());
        } finally {
            HostMemory.setLimit(old);
        }
    }

    @Test
    void closedTensorCannotBeRead() {
        Tensor a = Tensor.ones(2);
        a.close();
        assertThrows(IllegalStateException.class, a::toFloatArray);
    }

    @Test
    void dtypeConversionsRoundTrip() {
        try (var s = Scope.open()) {
            float[] data = new float[96];
            var rng = new SplittableRandom(3);
            for (int i = 0; i < data.length; i++) data[i] = (float) (rng.nextDouble() * 4 - 2);
            Tensor x = Tensor.of(data, 3, 32);
            for (DType t : new DType[] {DType.BF16, DType.F16, DType.Q8_0, DType.Q4_0}) {
                float[] back = x.to(t).toFloatArray();
                double tol = switch (t) { case BF16 -> 2e-2; case F16 -> 2e-3; case Q8_0 -> 2.5e-2; default -> 0.3; };
                for (int i = 0; i < data.length; i++) assertEquals(data[i], back[i], tol, t + " at " + i);
            }
            assertEquals(3L * 34, x.to(DType.Q8_0).storage().bytes());
            Tensor ints = Tensor.of(new float[] {-128, -3, 0, 7, 127}, 5);
            assertArrayEquals(ints.toFloatArray(), ints.to(DType.I8).toFloatArray());
            assertThrows(IllegalArgumentException.class, () -> Tensor.of(new float[] {200}, 1).to(DType.I8));
            assertThrows(IllegalArgumentException.class, () -> Tensor.zeros(33).to(DType.Q8_0));
        }
    }

    @Test
    void broadcastingRejectsIncompatibleShapes() {
        try (var s = Scope.open()) {
            var e = assertThrows(IllegalArgumentException.class, () -> Tensor.zeros(3, 4).add(Tensor.zeros(5)));
            assertTrue(e.getMessage().contains("[3, 4] and [5]"), e.getMessage());
        }
    }
}
