package dev.exeunt.ffm.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.ffm.nvrtc.Nvrtc;
import dev.exeunt.ffm.nvrtc.NvrtcException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** NVRTC compiles a kernel, the driver API loads and launches it (driver API only: no cudart needed). */
class DriverNvrtcSmokeTest {

    static final String SAXPY = """
            extern "C" __global__ void saxpy(float a, const float* x, float* y, int n) {
                int i = blockIdx.x * blockDim.x + threadIdx.x;
                if (i < n) y[i] = a * x[i] + y[i];
            }
            """;

    @BeforeEach
    void needDriverAndDevice() {
        assumeTrue(CudaDriver.isAvailable(), CudaDriver::unavailableReason);
        assumeTrue(CudaDriver.deviceCount() > 0, "no CUDA device");
    }

    @Test
    void deviceQueries() {
        int dev = CudaDriver.device(0);
        String name = CudaDriver.deviceName(dev);
        assertFalse(name.isBlank());
        assertTrue(CudaDriver.totalMemory(dev) > 0);
        assertEquals(32, CudaDriver.deviceAttribute(cuda_h.CU_DEVICE_ATTRIBUTE_WARP_SIZE(), dev));
        int[] cc = CudaDriver.computeCapability(dev);
        assertTrue(CudaDriver.driverVersion() >= 11000);
        System.out.println("device 0: " + name + ", sm_" + cc[0] + cc[1] + ", driver " + CudaDriver.driverVersion());
    }

    @Test
    void compileLoadAndLaunch() {
        assumeTrue(Nvrtc.isAvailable(), Nvrtc::unavailableReason);
        int dev = CudaDriver.device(0);
        MemorySegment ctx = CudaDriver.usePrimaryContext(0);
        try {
            int[] cc = CudaDriver.computeCapability(dev);
            int target = cc[0] * 10 + cc[1];
            int[] archs = Nvrtc.supportedArchitectures();
            // a real architecture gives a CUBIN (no PTX JIT, so no "PTX newer than driver" trouble)
            String arch = Arrays.stream(archs).anyMatch(a -> a == target) ? "sm_" + target
                    : "compute_" + Arrays.stream(archs).filter(a -> a <= target).max().orElseThrow();
            Nvrtc.Program program = Nvrtc.compile(SAXPY, "saxpy.cu", "--gpu-architecture=" + arch);
            assertTrue(program.image().length > 0, "no PTX or CUBIN");
            int[] v = Nvrtc.version();
            System.out.println("NVRTC " + v[0] + "." + v[1] + " -> " + arch + ", cubin " + program.cubin().length
                    + " bytes, ptx " + program.ptx().length + " bytes");

            MemorySegment module = CudaDriver.moduleLoad(program.image());
            MemorySegment saxpy = CudaDriver.moduleGetFunction(module, "saxpy");
            int n = 1000;
            float a = 2.5f;
            long x = CudaDriver.memAlloc(4L * n);
            long y = CudaDriver.memAlloc(4L * n);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment hx = arena.allocate(ValueLayout.JAVA_FLOAT, n);
                MemorySegment hy = arena.allocate(ValueLayout.JAVA_FLOAT, n);
                for (int i = 0; i < n; i++) {
                    hx.setAtIndex(ValueLayout.JAVA_FLOAT, i, i);
                    hy.setAtIndex(ValueLayout.JAVA_FLOAT, i, 1f - i);
                }
                CudaDriver.copyToDevice(x, hx);
                CudaDriver.copyToDevice(y, hy);
                MemorySegment params = CudaDriver.kernelParams(arena, a, x, y, n);
                CudaDriver.launchKernel(saxpy, (n + 255) / 256, 1, 1, 256, 1, 1, 0, MemorySegment.NULL, params);
                CudaDriver.contextSynchronize();
                CudaDriver.copyToHost(hy, y);
                for (int i = 0; i < n; i++) {
                    assertEquals(a * i + (1f - i), hy.getAtIndex(ValueLayout.JAVA_FLOAT, i), 1e-4f, "y[" + i + "]");
                }
            } finally {
                CudaDriver.memFree(x);
                CudaDriver.memFree(y);
                CudaDriver.moduleUnload(module);
            }
            assertEquals(ctx.address(), CudaDriver.currentContext().address());
        } finally {
            CudaDriver.primaryContextRelease(dev);
        }
    }

    @Test
    void compileErrorsCarryTheLog() {
        assumeTrue(Nvrtc.isAvailable(), Nvrtc::unavailableReason);
        NvrtcException e = assertThrows(NvrtcException.class,
                () -> Nvrtc.compile("extern \"C\" __global__ void k() { undeclared_thing(); }", "bad.cu"));
        assertEquals(6, e.status()); // NVRTC_ERROR_COMPILATION
        assertTrue(e.log().contains("undeclared_thing"), e.log());
    }

    @Test
    void driverErrorsCarryTheDriversText() {
        CudaException e = assertThrows(CudaException.class, () -> CudaDriver.device(9999));
        assertTrue(e.getMessage().contains("CUDA_ERROR_INVALID_DEVICE"), e.getMessage());
    }
}
