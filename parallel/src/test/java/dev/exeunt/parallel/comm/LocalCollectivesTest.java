package dev.exeunt.parallel.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The shared contract on the local engine, plus its own semantics (integer wrap, one rounding, results). */
@ExtendWith(LeakCheck.class)
class LocalCollectivesTest {

    @ParameterizedTest(name = "{0} ranks")
    @ValueSource(ints = {1, 2, 3, 4})
    void runAllPasses(int ranks) {
        LocalWorld.runEach(ranks, CollectiveChecks::runAll);
    }

    @ParameterizedTest(name = "{0} ranks")
    @ValueSource(ints = {2, 3, 4})
    void abortFromTheLastRankEndsTheJobWithItsReason(int ranks) {
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(ranks, CollectiveChecks::abortFromLastRank));
        assertEquals("rank " + (ranks - 1) + " aborted: abort check from rank " + (ranks - 1), e.getMessage());
    }

    @Test
    void runReturnsEachRanksResultInRankOrder() {
        assertEquals(List.of(0, 10, 20), LocalWorld.run(3, pg -> pg.rank() * 10));
        assertThrows(IllegalArgumentException.class, () -> LocalWorld.run(0, pg -> 1));
    }

    @Test
    void integerSumsWrapInTwosComplement() {
        LocalWorld.runEach(2, pg -> {
            try (Tensor i8 = TypedValues.filled(DType.I8, 3, i -> 100);
                 Tensor i32 = Tensor.ofInts(new int[] {Integer.MAX_VALUE, -5})) {
                pg.allReduce(i8, ReduceOp.SUM);
                pg.allReduce(i32, ReduceOp.SUM);
                for (int i = 0; i < 3; i++) assertEquals(-56.0, TypedValues.get(i8, i), "100 + 100 in I8 wraps to -56");
                assertEquals(Integer.MAX_VALUE + Integer.MAX_VALUE, i32.toIntArray()[0]);
                assertEquals(-10, i32.toIntArray()[1]);
            }
        });
    }

    /** 1 + 2^-8 + 2^-8: rounding after each step (ties to even) would give 1; float accumulation gives 1 + 2^-7. */
    @Test
    void halfPrecisionSumsRoundOnceAtTheEnd() {
        LocalWorld.runEach(3, pg -> {
            try (Tensor t = TypedValues.filled(DType.BF16, 1, i -> pg.rank() == 0 ? 1.0 : Math.scalb(1.0, -8))) {
                pg.allReduce(t, ReduceOp.SUM);
                assertEquals(1.0 + Math.scalb(1.0, -7), TypedValues.get(t, 0));
            }
        });
    }

    @Test
    void workNeverAwaitedIsReleasedWhenTheRunEnds() {
        LocalWorld.runEach(2, pg -> {
            Tensor t = TypedValues.filled(DType.F32, 1000, i -> i);
            pg.allReduceAsync(t, ReduceOp.SUM);
            t.close();
            if (pg.rank() == 0) {
                Tensor m = TypedValues.filled(DType.F32, 10, i -> i);
                pg.sendAsync(m, 1, 3);
                m.close();
            }
        });
    }

    @Test
    void aClosedGroupRefusesCalls() {
        LocalWorld.runEach(1, pg -> {
            ProcessGroup sub = pg.split(0, 0);
            sub.close();
            CommException e = assertThrows(CommException.class, sub::barrier);
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
        });
    }

    @Test
    void mismatchedCollectivesFailOnEveryRankNamingBothCalls() {
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(2, pg -> {
            try (Tensor t = TypedValues.filled(DType.F32, 4, i -> i)) {
                if (pg.rank() == 0) pg.allReduce(t, ReduceOp.SUM);
                else pg.broadcast(t, 0);
            }
        }));
        assertTrue(e.getMessage().contains("collective mismatch at call #0"), e.getMessage());
        assertTrue(e.getMessage().contains("allReduce(SUM, F32 x 4)") && e.getMessage().contains("broadcast(root 0, F32 x 4)"),
                e.getMessage());
    }

    @Test
    void aReceiveOfTheWrongSizeFailsBothSides() {
        String[] seen = new String[2];
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(2, pg -> {
            try (Tensor t = TypedValues.filled(DType.F32, pg.rank() == 0 ? 4 : 5, i -> i)) {
                if (pg.rank() == 0) pg.send(t, 1, 9);
                else pg.recv(t, 0, 9);
            } catch (CommException c) {
                seen[pg.rank()] = c.getMessage();
                throw c;
            }
        }));
        assertTrue(e.getMessage().contains("send of F32 x 4 from rank 0 with tag 9 does not match the receive of F32 x 5 on rank 1"),
                e.getMessage());
        assertTrue(seen[0] != null && seen[1] != null, "both sides fail");
    }

    @Test
    void aRankThatReturnsWithoutTheCollectiveEndsTheOthersWait() {
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(3, pg -> {
            if (pg.rank() != 2) pg.barrier();
        }));
        assertTrue(e.getMessage().contains("rank 2 returned from its body without making call #0 (barrier)"), e.getMessage());
    }

    @Test
    void aRankThatReturnsWithoutReceivingEndsTheSendersWait() {
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(2, pg -> {
            if (pg.rank() == 0) {
                try (Tensor t = TypedValues.filled(DType.I32, 2, i -> i)) {
                    pg.send(t, 1, 4);
                }
            }
        }));
        assertTrue(e.getMessage().contains("send to rank 1 (tag 4) on rank 0: rank 1 returned from its body without a matching receive"),
                e.getMessage());
    }

    @Test
    void aDeadlockEndsTheJobSayingWhatEachRankWaitsFor() {
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(2, pg -> {
            if (pg.rank() == 0) {
                pg.barrier();
            } else {
                try (Tensor t = Tensor.ofInts(new int[] {1})) {
                    pg.recv(t, 0, 5);
                }
            }
        }));
        assertEquals("deadlock: every rank still running waits for another: rank 0 in barrier (call #0 on the group of world"
                + " ranks [0, 1]); rank 1 in recv from rank 0 (tag 5)", e.getMessage());
    }

    @Test
    void aCycleOfReceivesIsADeadlock() {
        CommException e = assertThrows(CommException.class, () -> LocalWorld.runEach(3, pg -> {
            try (Tensor t = Tensor.ofInts(new int[] {1})) {
                pg.recv(t, (pg.rank() + 1) % 3, 0);
            }
        }));
        assertTrue(e.getMessage().startsWith("deadlock: every rank still running waits for another: rank 0 in recv from rank 1"),
                e.getMessage());
    }
}
