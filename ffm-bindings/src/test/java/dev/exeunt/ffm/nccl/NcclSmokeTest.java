package dev.exeunt.ffm.nccl;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.ffm.cuda.CudaRuntime;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

/** One-rank NCCL communicators on device 0; skips without libnccl or a GPU. */
class NcclSmokeTest {

    @Test
    void oneRankCollectives() {
        assumeTrue(Nccl.isAvailable(), Nccl::unavailableReason);
        assumeTrue(CudaRuntime.hasDevice(), CudaRuntime::noDeviceReason);
        CudaRuntime.setDevice(0);
        int version = Nccl.version();
        assertTrue(version >= 2000, "NCCL version code " + version);
        System.out.println("NCCL version code " + version);

        MemorySegment comm = Nccl.commInitRank(1, Nccl.uniqueId(), 0);
        int n = 1024;
        float[] values = new float[n];
        for (int i = 0; i < n; i++) {
            values[i] = i - 100.25f;
        }
        long send = CudaRuntime.malloc(4L * n);
        long recv = CudaRuntime.malloc(4L * n);
        MemorySegment stream = CudaRuntime.streamCreate();
        try {
            assertEquals(1, Nccl.commCount(comm));
            assertEquals(0, Nccl.commUserRank(comm));
            CudaRuntime.copyToDevice(send, values);

            Nccl.allReduce(send, recv, n, nccl_h.ncclFloat32(), nccl_h.ncclSum(), comm, stream);
            CudaRuntime.streamSynchronize(stream);
            assertArrayEquals(values, CudaRuntime.copyFloatsToHost(recv, n));

            CudaRuntime.memset(recv, 0, 4L * n);
            Nccl.allGather(send, recv, n, nccl_h.ncclFloat32(), comm, stream);
            Nccl.reduceScatter(send, recv, n, nccl_h.ncclFloat32(), nccl_h.ncclMax(), comm, stream);
            Nccl.broadcast(send, recv, n, nccl_h.ncclFloat32(), 0, comm, stream);
            CudaRuntime.streamSynchronize(stream);
            assertArrayEquals(values, CudaRuntime.copyFloatsToHost(recv, n));

            CudaRuntime.memset(recv, 0, 4L * n);
            Nccl.groupStart();
            Nccl.send(send, n, nccl_h.ncclFloat32(), 0, comm, stream);
            Nccl.recv(recv, n, nccl_h.ncclFloat32(), 0, comm, stream);
            Nccl.groupEnd();
            CudaRuntime.streamSynchronize(stream);
            assertArrayEquals(values, CudaRuntime.copyFloatsToHost(recv, n));
        } finally {
            Nccl.commDestroy(comm);
            CudaRuntime.streamDestroy(stream);
            CudaRuntime.free(send);
            CudaRuntime.free(recv);
        }
    }

    @Test
    void commInitAllOnOneDevice() {
        assumeTrue(Nccl.isAvailable(), Nccl::unavailableReason);
        assumeTrue(CudaRuntime.hasDevice(), CudaRuntime::noDeviceReason);
        MemorySegment[] comms = Nccl.commInitAll(0);
        assertEquals(1, comms.length);
        assertEquals(1, Nccl.commCount(comms[0]));
        Nccl.commDestroy(comms[0]);
    }

    @Test
    void errorStringsComeFromNccl() {
        assumeTrue(Nccl.isAvailable(), Nccl::unavailableReason);
        assertTrue(Nccl.errorString(nccl_h.ncclInvalidArgument()).toLowerCase().contains("invalid"));
    }

    /** ncclCommGetAsyncError on a healthy communicator, ncclCommSplit (where the library has it), ncclCommAbort. */
    @Test
    void asyncErrorSplitAndAbort() {
        assumeTrue(Nccl.isAvailable(), Nccl::unavailableReason);
        assumeTrue(CudaRuntime.hasDevice(), CudaRuntime::noDeviceReason);
        CudaRuntime.setDevice(0);
        MemorySegment comm = Nccl.commInitRank(1, Nccl.uniqueId(), 0);
        try {
            assertEquals(nccl_h.ncclSuccess(), Nccl.commGetAsyncError(comm));
            if (Nccl.hasCommSplit()) {
                MemorySegment child = Nccl.commSplit(comm, 3, 0);
                assertEquals(1, Nccl.commCount(child));
                assertEquals(0, Nccl.commUserRank(child));
                Nccl.commDestroy(child);
            } else {
                System.out.println("NCCL " + Nccl.version() + " has no ncclCommSplit (added in 2.18)");
            }
        } finally {
            Nccl.commAbort(comm);
        }
    }

    /** Without libnccl the probe answers false instead of throwing (the engine then shares new unique ids). */
    @Test
    void commSplitProbeNeverThrows() {
        boolean has = Nccl.hasCommSplit();
        if (!Nccl.isAvailable()) {
            assertTrue(!has, "hasCommSplit() is true although libnccl is missing");
        }
    }
}
