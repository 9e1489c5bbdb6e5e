package dev.exeunt.parallel.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.function.Consumer;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * An exception on one rank ends every rank: the others, blocked in a collective or a receive when it
 * happens, wake with a CommException naming the failing rank and its message, and run() reports it.
 */
@ExtendWith(LeakCheck.class)
class LocalFailureTest {
    private static final int RANKS = 4;
    private static final int FAILING = 1;

    enum Blocked {
        ALL_REDUCE(pg -> {
            try (Tensor t = TypedValues.filled(DType.F32, 1 << 16, i -> i)) {
                pg.allReduce(t, ReduceOp.SUM);
            }
        }),
        BARRIER(ProcessGroup::barrier),
        RECV_FROM_THE_FAILING_RANK(pg -> {
            try (Tensor t = TypedValues.filled(DType.I32, 8, i -> i)) {
                pg.recv(t, FAILING, 0);
            }
        }),
        SEND_TO_THE_FAILING_RANK(pg -> {
            try (Tensor t = TypedValues.filled(DType.I32, 8, i -> i)) {
                pg.send(t, FAILING, 0);
            }
        }),
        ASYNC_ALL_GATHER_AWAITED(pg -> {
            try (Tensor in = TypedValues.filled(DType.BF16, 5, i -> i); Tensor out = Tensor.empty(DType.BF16, 5 * RANKS)) {
                Work w = pg.allGatherAsync(in, out);
                w.await();
            }
        }),
        SUBGROUP_ALL_REDUCE(pg -> {
            // ranks 0 and 1 form one group; the failing rank 1 is in it and never calls the all-reduce
            try (ProcessGroup sub = pg.split(pg.rank() < 2 ? 0 : 1, 0); Tensor t = TypedValues.filled(DType.I8, 3, i -> 1)) {
                if (pg.rank() == FAILING) throw new IllegalStateException("disk full on purpose");
                sub.allReduce(t, ReduceOp.MAX);
                if (pg.rank() >= 2) pg.barrier();
            }
        });

        final Consumer<ProcessGroup> call;

        Blocked(Consumer<ProcessGroup> call) {
            this.call = call;
        }
    }

    @ParameterizedTest
    @EnumSource(Blocked.class)
    void anExceptionOnOneRankWakesEveryOtherRank(Blocked blocked) {
        AtomicReferenceArray<Thread> threads = new AtomicReferenceArray<>(RANKS);
        String[] seen = new String[RANKS];
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(RANKS, pg -> {
            threads.set(pg.rank(), Thread.currentThread());
            if (pg.rank() == FAILING && blocked != Blocked.SUBGROUP_ALL_REDUCE) {
                waitUntilTheOthersWait(threads);
                throw new IllegalStateException("disk full on purpose");
            }
            try {
                blocked.call.accept(pg);
            } catch (CommException c) {
                seen[pg.rank()] = c.getMessage();
                throw c;
            }
        }));
        assertEquals("rank 1 failed: IllegalStateException: disk full on purpose", e.getMessage());
        for (int r = 0; r < RANKS; r++) {
            if (r == FAILING) continue;
            String m = seen[r];
            assertTrue(m != null && m.contains("rank 1 failed") && m.contains("disk full on purpose"),
                    "rank " + r + " should fail naming rank 1 and its message; it saw: " + m);
        }
    }

    /**
     * Spins (no sleeping, no timeout) until every other rank's thread is parked, normally inside its
     * blocking call; should one still be on its way in, the failure reaches it at its next call instead.
     */
    private static void waitUntilTheOthersWait(AtomicReferenceArray<Thread> threads) {
        for (int r = 0; r < threads.length(); r++) {
            if (r == FAILING) continue;
            while (threads.get(r) == null || threads.get(r).getState() != Thread.State.WAITING) Thread.onSpinWait();
        }
    }
}
