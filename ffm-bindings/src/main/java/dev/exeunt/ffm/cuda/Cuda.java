package dev.exeunt.ffm.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Status checks for the CUDA runtime and driver APIs. */
public final class Cuda {
    private Cuda() {
    }

    /** Throws {@link CudaException} carrying {@code cudaGetErrorName: cudaGetErrorString} unless {@code status == cudaSuccess}. */
    public static void check(int status, String call) {
        if (status != cuda_runtime_api_h.cudaSuccess()) {
            throw new CudaException("cudart", call, status, runtimeErrorString(status));
        }
    }

    /** Throws {@link CudaException} carrying {@code cuGetErrorName: cuGetErrorString} unless {@code status == CUDA_SUCCESS}. */
    public static void checkDriver(int status, String call) {
        if (status != cuda_h.CUDA_SUCCESS()) {
            throw new CudaException("cuda", call, status, driverErrorString(status));
        }
    }

    /** The runtime's text for a {@code cudaError_t}; never throws. */
    public static String runtimeErrorString(int status) {
        try {
            String name = cString(cuda_runtime_api_h.cudaGetErrorName(status));
            String text = cString(cuda_runtime_api_h.cudaGetErrorString(status));
            return name + ": " + text;
        } catch (RuntimeException | LinkageError e) {
            return "cudaError_t " + status;
        }
    }

    /** The driver's text for a {@code CUresult}; never throws. */
    public static String driverErrorString(int status) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment slot = arena.allocate(ValueLayout.ADDRESS);
            String name = cuda_h.cuGetErrorName(status, slot) == 0 ? cString(slot.get(ValueLayout.ADDRESS, 0)) : "CUresult " + status;
            String text = cuda_h.cuGetErrorString(status, slot) == 0 ? cString(slot.get(ValueLayout.ADDRESS, 0)) : "unrecognized error code";
            return name + ": " + text;
        } catch (RuntimeException | LinkageError e) {
            return "CUresult " + status;
        }
    }

    /** Reads a NUL-terminated string returned by native code (null pointer gives "(null)"). */
    static String cString(MemorySegment p) {
        if (p == null || p.equals(MemorySegment.NULL)) {
            return "(null)";
        }
        return p.reinterpret(Long.MAX_VALUE).getString(0);
    }
}
