package dev.exeunt.parallel.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.ffm.cuda.CudaRuntime;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The shared contract on the {@code nccl} engine: one thread per GPU in one JVM ({@code local} bootstrap), one
 * {@link NcclProcessGroup} each, device tensors throughout ({@link EngineTensors}). Skips without a CUDA device,
 * NVRTC or libnccl; the multi-rank checks need at least 2 GPUs, the one-rank ones run on 1.
 *
 * <p>Two checks of {@link CollectiveChecks#runAll} are NCCL's semantics, not bugs, and are replaced here:
 * {@code sendRecvMatchesBySourceAndTag} (NCCL has no tags: messages between a pair match in issue order, checked by
 * {@link #pointToPointMatchesInIssueOrder}) and {@code testIsFalseUntilEveryRankHasCalled} (its token send is
 * queued behind the pending all-reduce on the rank's one stream, so under NCCL it deadlocks by construction).
 */
@ExtendWith(LeakCheck.class)
class NcclCollectivesTest {

    private static int gpus() {
        String why = NcclProcessGroup.unavailableReason();
        assumeTrue(why == null, () -> "nccl engine unavailable: " + why);
        return CudaRuntime.deviceCount();
    }

    private static void onEveryGpu(int ranks, Consumer<NcclProcessGroup> body) {
        LocalWorld.runEach(ranks, boot -> {
            try (NcclProcessGroup pg = NcclProcessGroup.create(boot, boot.rank())) {
                body.accept(pg);
            }
        });
    }

    /** Every contract check that holds for NCCL, on 2..all GPUs. */
    private static void contract(ProcessGroup pg) {
        CollectiveChecks.rejectsBadArguments(pg);
        CollectiveChecks.allReduceSumAndMax(pg);
        CollectiveChecks.allReduceBitIdenticalOnEveryRank(pg);
        CollectiveChecks.reduceScatter(pg);
        CollectiveChecks.allGather(pg);
        CollectiveChecks.broadcastFromEveryRoot(pg);
        CollectiveChecks.sendRecvEveryPair(pg);
        pointToPointMatchesInIssueOrder(pg);
        CollectiveChecks.barrierKeepsCollectivesInStep(pg);
        CollectiveChecks.splitUnevenColors(pg);
        CollectiveChecks.asyncWithTensorsClosedBeforeAwait(pg);
        CollectiveChecks.largeAllReduce(pg);
    }

    @Test
    void contractOnEveryGpu() {
        int n = gpus();
        assumeTrue(n >= 2, "needs 2 GPUs, " + n + " visible");
        for (int ranks = 2; ranks <= Math.min(n, 4); ranks++) {
            onEveryGpu(ranks, NcclCollectivesTest::contract);
        }
    }

    /** The chunked paths (several NCCL calls in one group, reduce/broadcast per root) with a 1021-element limit. */
    @Test
    void chunkedCallsGiveTheSameResults() {
        int n = gpus();
        assumeTrue(n >= 2, "needs 2 GPUs, " + n + " visible");
        onEveryGpu(Math.min(n, 3), pg -> {
            NcclProcessGroup small = pg.withMaxCount(1021);
            CollectiveChecks.allReduceSumAndMax(small);
            CollectiveChecks.reduceScatter(small);
            CollectiveChecks.allGather(small);
            CollectiveChecks.broadcastFromEveryRoot(small);
            CollectiveChecks.sendRecvEveryPair(small);
        });
    }

    @Test
    void abortFromTheLastRankEndsTheJobWithItsReason() {
        int n = gpus();
        assumeTrue(n >= 2, "needs 2 GPUs, " + n + " visible");
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(2, boot -> {
            NcclProcessGroup pg = NcclProcessGroup.create(boot, boot.rank());
            CollectiveChecks.abortFromLastRank(pg);
            pg.close();
        }));
        assertEquals("rank 1 aborted: abort check from rank 1", e.getMessage());
    }

    /** One GPU: every contract check means something on one rank (identity reductions, refusals, retention). */
    @Test
    void oneRankContract() {
        gpus();
        onEveryGpu(1, pg -> {
            CollectiveChecks.runAll(pg);
            CollectiveChecks.runAll(pg.withMaxCount(1021));
        });
    }

    @Test
    void hostTensorsAreRefusedNamingTheEngine() {
        gpus();
        onEveryGpu(1, pg -> {
            try (Tensor host = TypedValues.filled(DType.F32, 8, i -> i)) {
                CommException e = assertThrows(CommException.class, () -> pg.allReduce(host, ReduceOp.SUM));
                assertTrue(e.getMessage().contains("nccl engine") && e.getMessage().contains("cpu")
                        && e.getMessage().contains(pg.device().toString()), e.getMessage());
            }
        });
    }

    /** NCCL has no tags: messages from one rank to another arrive in the order they were sent. */
    private static void pointToPointMatchesInIssueOrder(ProcessGroup pg) {
        int r = pg.rank();
        int n = 17;
        if (r == 0) {
            List<Tensor> bufs = new ArrayList<>();
            List<Work> works = new ArrayList<>();
            for (int m = 1; m <= 3; m++) {
                int message = m;
                Tensor t = EngineTensors.filled(pg, DType.I32, n, i -> message * 100_000 + i);
                bufs.add(t);
                works.add(pg.sendAsync(t, 1, 5));
            }
            works.forEach(Work::await);
            bufs.forEach(Tensor::close);
        } else if (r == 1) {
            for (int m = 1; m <= 3; m++) {
                try (Tensor t = EngineTensors.filled(pg, DType.I32, n, i -> -1)) {
                    pg.recv(t, 0, 5);
                    int[] got = EngineTensors.toInts(t);
                    for (int i = 0; i < n; i++) {
                        assertEquals(m * 100_000 + i, got[i], "nccl rank 1: message " + m + " element " + i);
                    }
                }
            }
        }
    }
}
