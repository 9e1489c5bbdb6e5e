package dev.exeunt.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.ffm.cublas.Cublas;
import dev.exeunt.ffm.cublas.cublas_api_h;
import dev.exeunt.ffm.cuda.CudaDriver;
import dev.exeunt.ffm.cuda.CudaRuntime;
import dev.exeunt.ffm.cuda.cuda_h;
import dev.exeunt.ffm.cuda.cuda_runtime_api_h;
import dev.exeunt.ffm.loader.NativeLibraries;
import dev.exeunt.ffm.mpi.MPI_Status;
import dev.exeunt.ffm.mpi.Mpi;
import dev.exeunt.ffm.mpi.MpiHandles;
import dev.exeunt.ffm.mpi.mpi_h;
import dev.exeunt.ffm.nccl.Nccl;
import dev.exeunt.ffm.nccl.ncclUniqueId;
import dev.exeunt.ffm.nccl.nccl_h;
import dev.exeunt.ffm.nvrtc.Nvrtc;
import dev.exeunt.ffm.nvrtc.nvrtc_h;
import java.lang.foreign.MemorySegment;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Checks that need no device: constants, layouts, facades that never throw, and (where a library exists) symbol names. */
class BindingsTest {

    @Test
    void constantsAreReadableWithoutLoadingAnything() {
        assertEquals(1, cuda_runtime_api_h.cudaMemcpyHostToDevice());
        assertEquals(2, cuda_runtime_api_h.cudaMemcpyDeviceToHost());
        assertEquals(75, cuda_runtime_api_h.cudaDevAttrComputeCapabilityMajor());
        assertEquals(16, cuda_runtime_api_h.cudaDevAttrMultiProcessorCount());
        assertEquals(75, cuda_h.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR());
        assertEquals(0, cublas_api_h.CUDA_R_32F());
        assertEquals(2, cublas_api_h.CUDA_R_16F());
        assertEquals(14, cublas_api_h.CUDA_R_16BF());
        assertEquals(68, cublas_api_h.CUBLAS_COMPUTE_32F());
        assertEquals(77, cublas_api_h.CUBLAS_COMPUTE_32F_FAST_TF32());
        assertEquals(-1, cublas_api_h.CUBLAS_GEMM_DEFAULT());
        assertEquals(7, nccl_h.ncclFloat32());
        assertEquals(9, nccl_h.ncclBfloat16());
        assertEquals(0, nccl_h.ncclSum());
        assertEquals(6, nvrtc_h.NVRTC_ERROR_COMPILATION());
        assertEquals(-32766, mpi_h.MPI_UNDEFINED());
    }

    @Test
    void structLayoutsMatchTheHeaders() {
        assertEquals(128, ncclUniqueId.sizeof());
        // sizeof(MPI_Status) == 24, offsetof(MPI_ERROR) == 8, offsetof(_ucount) == 16 (checked with mpicc, Open MPI 4.1)
        assertEquals(24, MPI_Status.sizeof());
        assertEquals(8, MPI_Status.MPI_ERROR$offset());
        assertEquals(16, MPI_Status._ucount$offset());
        assertEquals(MemorySegment.NULL, MpiHandles.MPI_STATUS_IGNORE());
    }

    static Stream<Arguments> facades() {
        return Stream.of(
                Arguments.of("cudart", (BooleanSupplier) CudaRuntime::isAvailable, (Supplier<String>) CudaRuntime::unavailableReason),
                Arguments.of("cuda", (BooleanSupplier) CudaDriver::isAvailable, (Supplier<String>) CudaDriver::unavailableReason),
                Arguments.of("nvrtc", (BooleanSupplier) Nvrtc::isAvailable, (Supplier<String>) Nvrtc::unavailableReason),
                Arguments.of("cublas", (BooleanSupplier) Cublas::isAvailable, (Supplier<String>) Cublas::unavailableReason),
                Arguments.of("nccl", (BooleanSupplier) Nccl::isAvailable, (Supplier<String>) Nccl::unavailableReason),
                Arguments.of("mpi", (BooleanSupplier) Mpi::isAvailable, (Supplier<String>) Mpi::unavailableReason));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("facades")
    void facadesNeverThrowAndExplainAbsence(String library, BooleanSupplier available, Supplier<String> reason) {
        boolean ok = available.getAsBoolean();
        String why = reason.get();
        assertEquals(ok, why == null, "isAvailable and unavailableReason disagree: " + why);
        if (!NativeLibraries.isAvailable(library)) {
            assertFalse(ok);
            assertTrue(why.contains("Looked at") && why.contains("-Dexeunt." + library + ".path"), why);
        }
        System.out.println(library + ": " + (ok ? "available at " + NativeLibraries.loaded(library).path() : "unavailable"));
    }

    static Stream<Arguments> headers() {
        return Stream.of(
                Arguments.of("cudart", cuda_runtime_api_h.class),
                Arguments.of("cuda", cuda_h.class),
                Arguments.of("nvrtc", nvrtc_h.class),
                Arguments.of("cublas", cublas_api_h.class),
                Arguments.of("nccl", nccl_h.class),
                Arguments.of("mpi", mpi_h.class),
                Arguments.of("mpi", MpiHandles.class));
    }

    /** Every bound function (and Open MPI global) resolves in the real library: catches misspelt or un-_v2'd names. */
    @ParameterizedTest(name = "{1}")
    @MethodSource("headers")
    void everySymbolResolves(String library, Class<?> header) throws Exception {
        assumeTrue(NativeLibraries.isAvailable(library), () -> NativeLibraries.unavailableReason(library));
        var lookup = NativeLibraries.load(library);
        List<String> missing = new ArrayList<>();
        int checked = 0;
        for (Method m : header.getDeclaredMethods()) {
            if (!Modifier.isStatic(m.getModifiers()) || !Modifier.isPublic(m.getModifiers()) || m.getParameterCount() != 0
                    || m.getReturnType() != MemorySegment.class) {
                continue;
            }
            String symbol;
            if (m.getName().endsWith("$address")) {
                symbol = m.getName().substring(0, m.getName().length() - "$address".length());
            } else if (header == MpiHandles.class && m.getName().startsWith("ompi_")) {
                symbol = m.getName();
            } else {
                continue;
            }
            checked++;
            if (lookup.find(symbol).isEmpty()) {
                missing.add(symbol);
            } else {
                MemorySegment addr = (MemorySegment) m.invoke(null);
                assertFalse(addr.equals(MemorySegment.NULL), symbol);
            }
        }
        assertTrue(checked > 0);
        assertTrue(missing.isEmpty(), library + " at " + NativeLibraries.loaded(library).path() + " lacks " + missing);
    }
}
