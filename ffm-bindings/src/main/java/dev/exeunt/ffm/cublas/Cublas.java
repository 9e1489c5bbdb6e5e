package dev.exeunt.ffm.cublas;

import dev.exeunt.ffm.loader.NativeLibraries;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Checked calls over {@link cublas_api_h} (libcublas, v2 API: the {@code _v2} symbols that cublas_v2.h's macros name).
 * Matrices are column-major device pointers ({@code long}); scalars are passed from host memory (the default
 * CUBLAS_POINTER_MODE_HOST). A handle is an opaque {@link MemorySegment}.
 */
public final class Cublas {
    private Cublas() {
    }

    public static final String LIBRARY = "cublas";

    /** Whether libcublas (and libcublasLt) can be opened. Never throws. */
    public static boolean isAvailable() {
        return unavailableReason() == null;
    }

    /** Why cuBLAS cannot be used, or null. Never throws. */
    public static String unavailableReason() {
        return NativeLibraries.unavailableReason(LIBRARY);
    }

    /** Throws {@link CublasException} with cublasGetStatusName/String's text unless the status is CUBLAS_STATUS_SUCCESS. */
    public static void check(int status, String call) {
        if (status != cublas_api_h.CUBLAS_STATUS_SUCCESS()) {
            throw new CublasException(call, status, statusString(status));
        }
    }

    /** cublasGetStatusName: cublasGetStatusString; never throws. */
    public static String statusString(int status) {
        try {
            return cString(cublas_api_h.cublasGetStatusName(status)) + ": " + cString(cublas_api_h.cublasGetStatusString(status));
        } catch (RuntimeException | LinkageError e) {
            return "cublasStatus_t " + status;
        }
    }

    private static String cString(MemorySegment p) {
        return p.equals(MemorySegment.NULL) ? "(null)" : p.reinterpret(Long.MAX_VALUE).getString(0);
    }

    /** cublasCreate_v2 (needs a current device; allocates cuBLAS's resources on it). */
    public static MemorySegment create() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            check(cublas_api_h.cublasCreate_v2(out), "cublasCreate");
            return out.get(ValueLayout.ADDRESS, 0);
        }
    }

    public static void destroy(MemorySegment handle) {
        check(cublas_api_h.cublasDestroy_v2(handle), "cublasDestroy");
    }

    /** cublasGetVersion_v2: e.g. 120402 for 12.4.2. */
    public static int version(MemorySegment handle) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            check(cublas_api_h.cublasGetVersion_v2(handle, out), "cublasGetVersion");
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    public static void setStream(MemorySegment handle, MemorySegment stream) {
        check(cublas_api_h.cublasSetStream_v2(handle, stream), "cublasSetStream");
    }

    /** cublasSetMathMode, e.g. {@code CUBLAS_TF32_TENSOR_OP_MATH()}. */
    public static void setMathMode(MemorySegment handle, int mode) {
        check(cublas_api_h.cublasSetMathMode(handle, mode), "cublasSetMathMode");
    }

    /** cublasSetWorkspace_v2 (a user workspace, e.g. for CUDA graph capture). */
    public static void setWorkspace(MemorySegment handle, long workspace, long bytes) {
        check(cublas_api_h.cublasSetWorkspace_v2(handle, MemorySegment.ofAddress(workspace), bytes), "cublasSetWorkspace");
    }

    /** C = alpha * op(A) op(B) + beta * C in FP32 (cublasSgemm_v2), column-major. */
    public static void sgemm(MemorySegment handle, int transa, int transb, int m, int n, int k, float alpha, long a, int lda,
                             long b, int ldb, float beta, long c, int ldc) {
        try (Arena arena = Arena.ofConfined()) {
            check(cublas_api_h.cublasSgemm_v2(handle, transa, transb, m, n, k, arena.allocateFrom(ValueLayout.JAVA_FLOAT, alpha),
                    MemorySegment.ofAddress(a), lda, MemorySegment.ofAddress(b), ldb, arena.allocateFrom(ValueLayout.JAVA_FLOAT, beta),
                    MemorySegment.ofAddress(c), ldc), "cublasSgemm");
        }
    }

    /**
     * cublasGemmEx with float scalars: valid for the CUBLAS_COMPUTE_32F* compute types (for CUBLAS_COMPUTE_16F the
     * scalars must be halves; use {@link cublas_api_h#cublasGemmEx} directly). Types are {@code CUDA_R_*} constants.
     */
    public static void gemmEx(MemorySegment handle, int transa, int transb, int m, int n, int k, float alpha,
                              long a, int aType, int lda, long b, int bType, int ldb, float beta,
                              long c, int cType, int ldc, int computeType, int algo) {
        try (Arena arena = Arena.ofConfined()) {
            check(cublas_api_h.cublasGemmEx(handle, transa, transb, m, n, k, arena.allocateFrom(ValueLayout.JAVA_FLOAT, alpha),
                    MemorySegment.ofAddress(a), aType, lda, MemorySegment.ofAddress(b), bType, ldb,
                    arena.allocateFrom(ValueLayout.JAVA_FLOAT, beta), MemorySegment.ofAddress(c), cType, ldc, computeType, algo),
                    "cublasGemmEx");
        }
    }

    /** cublasGemmStridedBatchedEx with float scalars (see {@link #gemmEx}); strides are in elements. */
    public static void gemmStridedBatchedEx(MemorySegment handle, int transa, int transb, int m, int n, int k, float alpha,
                                            long a, int aType, int lda, long strideA, long b, int bType, int ldb, long strideB,
                                            float beta, long c, int cType, int ldc, long strideC, int batchCount,
                                            int computeType, int algo) {
        try (Arena arena = Arena.ofConfined()) {
            check(cublas_api_h.cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k,
                    arena.allocateFrom(ValueLayout.JAVA_FLOAT, alpha), MemorySegment.ofAddress(a), aType, lda, strideA,
                    MemorySegment.ofAddress(b), bType, ldb, strideB, arena.allocateFrom(ValueLayout.JAVA_FLOAT, beta),
                    MemorySegment.ofAddress(c), cType, ldc, strideC, batchCount, computeType, algo), "cublasGemmStridedBatchedEx");
        }
    }
}
