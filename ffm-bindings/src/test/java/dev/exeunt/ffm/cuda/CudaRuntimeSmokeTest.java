package dev.exeunt.ffm.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Runs only where libcudart and a GPU are present; skips itself otherwise. */
class CudaRuntimeSmokeTest {

    @BeforeEach
    void needDevice() {
        assumeTrue(CudaRuntime.hasDevice(), CudaRuntime::noDeviceReason);
        CudaRuntime.setDevice(0);
    }

    @Test
    void versionsAndDeviceAttributes() {
        assertTrue(CudaRuntime.runtimeVersion() >= 11000);
        assertTrue(CudaRuntime.driverVersion() >= CudaRuntime.runtimeVersion() / 1000 * 1000, "driver older than runtime");
        assertTrue(CudaRuntime.deviceCount() >= 1);
        assertEquals(0, CudaRuntime.getDevice());
        int[] cc = CudaRuntime.computeCapability(0);
        assertTrue(cc[0] >= 5, "compute capability " + cc[0] + "." + cc[1]);
        assertEquals(32, CudaRuntime.deviceAttribute(cuda_runtime_api_h.cudaDevAttrWarpSize(), 0));
        assertTrue(CudaRuntime.deviceAttribute(cuda_runtime_api_h.cudaDevAttrMultiProcessorCount(), 0) > 0);
        assertTrue(CudaRuntime.deviceAttribute(cuda_runtime_api_h.cudaDevAttrMaxThreadsPerBlock(), 0) >= 1024);
        assertTrue(CudaRuntime.deviceAttribute(cuda_runtime_api_h.cudaDevAttrMaxSharedMemoryPerBlockOptin(), 0) >= 48 * 1024);
        CudaRuntime.MemInfo mem = CudaRuntime.memGetInfo();
        assertTrue(mem.total() > 0 && mem.free() > 0 && mem.free() <= mem.total(), mem.toString());
        System.out.printf("CUDA runtime %d, driver %d, sm_%d%d, %d SMs, %.1f GiB%n", CudaRuntime.runtimeVersion(),
                CudaRuntime.driverVersion(), cc[0], cc[1],
                CudaRuntime.deviceAttribute(cuda_runtime_api_h.cudaDevAttrMultiProcessorCount(), 0), mem.total() / 1073741824.0);
    }

    @Test
    void memoryRoundTripStreamsAndEvents() {
        int n = 1 << 16;
        float[] values = new float[n];
        for (int i = 0; i < n; i++) {
            values[i] = i * 0.5f - 7f;
        }
        long a = CudaRuntime.malloc(4L * n);
        long b = CudaRuntime.malloc(4L * n);
        MemorySegment stream = CudaRuntime.streamCreate(cuda_runtime_api_h.cudaStreamNonBlocking());
        MemorySegment start = CudaRuntime.eventCreate();
        MemorySegment end = CudaRuntime.eventCreate();
        try {
            CudaRuntime.memset(a, 0, 4L * n);
            assertArrayEquals(new float[n], CudaRuntime.copyFloatsToHost(a, n));
            CudaRuntime.copyToDevice(a, values);
            CudaRuntime.eventRecord(start, stream);
            CudaRuntime.memcpyAsync(b, a, 4L * n, cuda_runtime_api_h.cudaMemcpyDeviceToDevice(), stream);
            CudaRuntime.eventRecord(end, stream);
            CudaRuntime.streamSynchronize(stream);
            CudaRuntime.eventSynchronize(end);
            assertTrue(CudaRuntime.eventElapsedMillis(start, end) >= 0f);
            assertArrayEquals(values, CudaRuntime.copyFloatsToHost(b, n));
            CudaRuntime.memsetAsync(b, 0, 4L * n, stream);
            CudaRuntime.streamSynchronize(stream);
            assertArrayEquals(new float[n], CudaRuntime.copyFloatsToHost(b, n));
            if (CudaRuntime.deviceAttribute(cuda_runtime_api_h.cudaDevAttrMemoryPoolsSupported(), 0) != 0) {
                long c = CudaRuntime.mallocAsync(4096, stream);
                CudaRuntime.memsetAsync(c, 1, 4096, stream);
                CudaRuntime.freeAsync(c, stream);
                CudaRuntime.streamSynchronize(stream);
            }
            MemorySegment pinned = CudaRuntime.mallocHost(4L * n);
            CudaRuntime.copyToHost(pinned, a);
            assertEquals(values[n - 1], pinned.getAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT, n - 1));
            CudaRuntime.freeHost(pinned);
            CudaRuntime.deviceSynchronize();
            assertEquals(0, CudaRuntime.getLastError());
        } finally {
            CudaRuntime.eventDestroy(start);
            CudaRuntime.eventDestroy(end);
            CudaRuntime.streamDestroy(stream);
            CudaRuntime.free(a);
            CudaRuntime.free(b);
        }
    }

    /** cudaEventQuery: true once the work before the record has run; an untimed event from cudaEventCreateWithFlags. */
    @Test
    void eventQueryFollowsTheStream() {
        long bytes = 64L << 20;
        long a = CudaRuntime.malloc(bytes);
        MemorySegment stream = CudaRuntime.streamCreate(cuda_runtime_api_h.cudaStreamNonBlocking());
        MemorySegment done = CudaRuntime.eventCreate(cuda_runtime_api_h.cudaEventDisableTiming());
        try {
            assertTrue(CudaRuntime.eventQuery(done), "a never-recorded event counts as completed");
            for (int i = 0; i < 20; i++) {
                CudaRuntime.memsetAsync(a, i, bytes, stream);
            }
            CudaRuntime.eventRecord(done, stream);
            CudaRuntime.streamSynchronize(stream);
            assertTrue(CudaRuntime.eventQuery(done), "the event's work has run after the stream synchronised");
        } finally {
            CudaRuntime.eventDestroy(done);
            CudaRuntime.streamDestroy(stream);
            CudaRuntime.free(a);
        }
    }

    @Test
    void failuresCarryTheRuntimesErrorString() {
        CudaException e = assertThrows(CudaException.class, () -> CudaRuntime.setDevice(9999));
        assertEquals(cuda_runtime_api_h.cudaErrorInvalidDevice(), e.status());
        assertTrue(e.getMessage().contains("cudaErrorInvalidDevice"), e.getMessage());
        CudaRuntime.getLastError(); // clear
        CudaRuntime.setDevice(0);
    }
}
