package dev.exeunt.ffm.cublas;

import static dev.exeunt.ffm.cublas.cublas_api_h.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.ffm.cuda.CudaRuntime;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** cuBLAS GEMMs against a CPU loop (column-major); skips without libcublas or a GPU. */
class CublasSmokeTest {

    static final int N = 64;
    MemorySegment handle;

    @BeforeEach
    void setUp() {
        assumeTrue(Cublas.isAvailable(), Cublas::unavailableReason);
        assumeTrue(CudaRuntime.hasDevice(), CudaRuntime::noDeviceReason);
        CudaRuntime.setDevice(0);
        handle = Cublas.create();
    }

    @AfterEach
    void tearDown() {
        if (handle != null) {
            Cublas.destroy(handle);
        }
    }

    static float[] random(int n, long seed) {
        Random r = new Random(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = r.nextFloat() * 2f - 1f;
        }
        return v;
    }

    /** C = op(A) * B, column-major N x N; transA transposes A. */
    static float[] reference(float[] a, float[] b, boolean transA) {
        float[] c = new float[N * N];
        for (int j = 0; j < N; j++) {
            for (int i = 0; i < N; i++) {
                double s = 0;
                for (int p = 0; p < N; p++) {
                    float aip = transA ? a[p + i * N] : a[i + p * N];
                    s += (double) aip * b[p + j * N];
                }
                c[i + j * N] = (float) s;
            }
        }
        return c;
    }

    static void assertClose(float[] expected, float[] actual) {
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], actual[i], 1e-3f, "element " + i);
        }
    }

    @Test
    void sgemmGemmExAndStridedBatched() {
        float[] a = random(N * N, 1);
        float[] b = random(N * N, 2);
        long da = CudaRuntime.malloc(4L * N * N * 2);
        long db = CudaRuntime.malloc(4L * N * N * 2);
        long dc = CudaRuntime.malloc(4L * N * N * 2);
        MemorySegment stream = CudaRuntime.streamCreate();
        try {
            assertTrue(Cublas.version(handle) > 0);
            Cublas.setStream(handle, stream);
            Cublas.setMathMode(handle, CUBLAS_DEFAULT_MATH());
            CudaRuntime.copyToDevice(da, a);
            CudaRuntime.copyToDevice(db, b);

            Cublas.sgemm(handle, CUBLAS_OP_N(), CUBLAS_OP_N(), N, N, N, 1f, da, N, db, N, 0f, dc, N);
            CudaRuntime.streamSynchronize(stream);
            assertClose(reference(a, b, false), CudaRuntime.copyFloatsToHost(dc, N * N));

            Cublas.gemmEx(handle, CUBLAS_OP_T(), CUBLAS_OP_N(), N, N, N, 1f, da, CUDA_R_32F(), N, db, CUDA_R_32F(), N, 0f,
                    dc, CUDA_R_32F(), N, CUBLAS_COMPUTE_32F(), CUBLAS_GEMM_DEFAULT());
            CudaRuntime.streamSynchronize(stream);
            assertClose(reference(a, b, true), CudaRuntime.copyFloatsToHost(dc, N * N));

            // batch 2: second A is -A, so the second C is -A*B
            float[] negA = new float[N * N];
            for (int i = 0; i < negA.length; i++) {
                negA[i] = -a[i];
            }
            CudaRuntime.copyToDevice(da + 4L * N * N, negA);
            CudaRuntime.copyToDevice(db + 4L * N * N, b);
            Cublas.gemmStridedBatchedEx(handle, CUBLAS_OP_N(), CUBLAS_OP_N(), N, N, N, 1f, da, CUDA_R_32F(), N, (long) N * N,
                    db, CUDA_R_32F(), N, (long) N * N, 0f, dc, CUDA_R_32F(), N, (long) N * N, 2, CUBLAS_COMPUTE_32F(),
                    CUBLAS_GEMM_DEFAULT());
            CudaRuntime.streamSynchronize(stream);
            float[] both = CudaRuntime.copyFloatsToHost(dc, 2 * N * N);
            float[] ref = reference(a, b, false);
            for (int i = 0; i < N * N; i++) {
                assertEquals(ref[i], both[i], 1e-3f);
                assertEquals(-ref[i], both[N * N + i], 1e-3f);
            }
        } finally {
            CudaRuntime.streamDestroy(stream);
            CudaRuntime.free(da);
            CudaRuntime.free(db);
            CudaRuntime.free(dc);
        }
    }

    @Test
    void invalidArgumentsCarryCublasText() {
        CublasException e = assertThrows(CublasException.class,
                () -> Cublas.sgemm(handle, CUBLAS_OP_N(), CUBLAS_OP_N(), -1, N, N, 1f, 0, N, 0, N, 0f, 0, N));
        assertEquals(CUBLAS_STATUS_INVALID_VALUE(), e.status());
        assertTrue(e.getMessage().contains("CUBLAS_STATUS_INVALID_VALUE"), e.getMessage());
    }
}
