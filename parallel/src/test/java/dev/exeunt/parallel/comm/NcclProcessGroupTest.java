package dev.exeunt.parallel.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** What the nccl engine decides without a GPU: type and op codes, chunking, argument checks, the missing-library error. */
@ExtendWith(LeakCheck.class)
class NcclProcessGroupTest {

    /** The ncclDataType_t / ncclRedOp_t values of nccl.h (an ABI: they are the same in every NCCL 2.x). */
    @Test
    void dtypesAndOpsMapToNcclsCodes() {
        assertEquals(7, NcclProcessGroup.ncclType(DType.F32), "ncclFloat32");
        assertEquals(9, NcclProcessGroup.ncclType(DType.BF16), "ncclBfloat16");
        assertEquals(6, NcclProcessGroup.ncclType(DType.F16), "ncclFloat16");
        assertEquals(2, NcclProcessGroup.ncclType(DType.I32), "ncclInt32");
        assertEquals(0, NcclProcessGroup.ncclType(DType.I8), "ncclInt8");
        assertEquals(0, NcclProcessGroup.ncclOp(ReduceOp.SUM), "ncclSum");
        assertEquals(2, NcclProcessGroup.ncclOp(ReduceOp.MAX), "ncclMax");
        CommException e = assertThrows(CommException.class, () -> NcclProcessGroup.ncclType(DType.Q8_0));
        assertTrue(e.getMessage().contains("Q8_0") && e.getMessage().contains("not supported"), e.getMessage());
    }

    @Test
    void chunksCoverEveryElementWithNoCountOverTheLimit() {
        assertChunks(NcclProcessGroup.chunks(0, 4), new long[][] {{0, 0}});
        assertChunks(NcclProcessGroup.chunks(4, 4), new long[][] {{0, 4}});
        assertChunks(NcclProcessGroup.chunks(9, 4), new long[][] {{0, 4}, {4, 4}, {8, 1}});
        long big = (1L << 31) + 5;
        assertChunks(NcclProcessGroup.chunks(big, NcclProcessGroup.MAX_COUNT),
                new long[][] {{0, Integer.MAX_VALUE}, {Integer.MAX_VALUE, 6}});
        assertThrows(IllegalArgumentException.class, () -> NcclProcessGroup.chunks(-1, 4));
        assertThrows(IllegalArgumentException.class, () -> NcclProcessGroup.chunks(4, 0));
    }

    private static void assertChunks(List<long[]> got, long[][] want) {
        assertEquals(want.length, got.size(), "number of chunks");
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i][0], got.get(i)[0], "offset of chunk " + i);
            assertEquals(want[i][1], got.get(i)[1], "length of chunk " + i);
        }
    }

    @Test
    void aHostTensorIsRefusedNamingTheEngineAndBothDevices() {
        try (Tensor t = Tensor.empty(DType.F32, 4)) {
            CommException e = assertThrows(CommException.class,
                    () -> NcclProcessGroup.checkTensor("allReduce SUM of 4 F32", Device.cuda(1), t));
            String m = e.getMessage();
            assertTrue(m.contains("allReduce SUM of 4 F32") && m.contains("nccl engine") && m.contains("cuda:1")
                    && m.contains("cpu"), m);
        }
    }

    @Test
    void closedNonContiguousAndQuantizedTensorsAreRefused() {
        // Device.CPU stands in for the rank's GPU here, so that the checks after the device's are reached.
        Tensor closed = Tensor.empty(DType.F32, 4);
        closed.close();
        assertRefused(closed, "closed");
        try (Tensor m = Tensor.empty(DType.F32, 2, 3); Tensor mt = m.transpose(0, 1)) {
            assertRefused(mt, "not contiguous");
        }
        try (Tensor q = Tensor.empty(DType.Q8_0, 32)) {
            assertRefused(q, "Q8_0");
        }
        CommException e = assertThrows(CommException.class, () -> NcclProcessGroup.checkTensor("op", Device.CPU, null));
        assertTrue(e.getMessage().contains("null"), e.getMessage());
        try (Tensor ok = Tensor.empty(DType.BF16, 4)) {
            NcclProcessGroup.checkTensor("op", Device.CPU, ok);
        }
    }

    private static void assertRefused(Tensor t, String mustMention) {
        CommException e = assertThrows(CommException.class, () -> NcclProcessGroup.checkTensor("op", Device.CPU, t));
        assertTrue(e.getMessage().contains(mustMention), e.getMessage());
    }

    /** Where CUDA, NVRTC or libnccl is missing (this CI), create() says which, on every rank, before any communication. */
    @Test
    void createWithoutCudaOrNcclNamesWhatIsMissing() {
        String reason = NcclProcessGroup.unavailableReason();
        assumeTrue(reason != null, "CUDA and NCCL are available here: the GPU tests run instead");
        LocalWorld.runEach(2, boot -> {
            CommException e = assertThrows(CommException.class, () -> NcclProcessGroup.create(boot, boot.rank()));
            String m = e.getMessage();
            assertTrue(m.contains("the nccl engine cannot start on nccl rank " + boot.rank() + " of 2 (cuda:" + boot.rank() + ")")
                    && m.contains(reason), m);
            boot.barrier(); // the bootstrap is untouched: no rank is left waiting in a broadcast of the unique id
        });
        assertNotNull(reason);
        assertTrue(reason.contains("CUDA") || reason.contains("NVRTC") || reason.contains("libnccl"), reason);
    }
}
