package dev.exeunt.parallel.comm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The mpi engine for real: each test launches an mpirun job of 2 to 4 JVMs running {@link MpiRankMain}. Skipped
 * when mpirun is not on the PATH (CI installs openmpi-bin, so there it runs).
 */
class MpiCollectivesTest {
    /** Generous for N JVMs starting on a loaded 2-core machine; a hang is caught by it, never waited out. */
    private static final Duration LIMIT = Duration.ofSeconds(120);

    @BeforeAll
    static void needsMpirun() {
        MpiJob.requireMpirun();
    }

    @ParameterizedTest(name = "{0} ranks")
    @ValueSource(ints = {2, 3, 4})
    void collectivesPassOnEveryRank(int ranks) throws Exception {
        MpiJob.Result job = MpiJob.run(ranks, LIMIT, "collectives");
        System.out.println(ranks + " ranks: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        for (int r = 0; r < ranks; r++) {
            assertTrue(job.output().contains("rank " + r + " of " + ranks + ": all checks passed"), job::toString);
        }
    }

    /** A plain JVM, no mpirun: world() is MPI's singleton, a group of one, and the same checks pass. */
    @Test
    void withoutMpirunTheWorldIsAGroupOfOne() throws Exception {
        MpiJob.Result job = MpiJob.run(0, LIMIT, "collectives");
        System.out.println("singleton: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("rank 0 of 1: all checks passed"), job::toString);
    }

    @Test
    void anExceptionOnOneRankEndsTheWholeJobWithItsMessage() throws Exception {
        MpiJob.Result job = MpiJob.run(3, LIMIT, "throw", "1");
        System.out.println("exception on rank 1: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("rank 1 fails on purpose (exception test)"), job::toString);
        assertTrue(job.output().contains("mpi rank 1 of 3 aborts the job"), job::toString);
    }

    @Test
    void abortOnTheLastRankEndsTheWholeJobWithItsReason() throws Exception {
        MpiJob.Result job = MpiJob.run(3, LIMIT, "abort");
        System.out.println("abort on rank 2: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("mpi rank 2 of 3 aborts the job: abort check from rank 2"), job::toString);
    }

    /** An error path that calls System.exit while the other ranks wait in a collective: the job ends, it does not hang. */
    @Test
    void systemExitOnOneRankEndsTheWholeJob() throws Exception {
        MpiJob.Result job = MpiJob.run(3, LIMIT, "exit", "1");
        System.out.println("System.exit on rank 1: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("rank 1 calls System.exit(3) on purpose"), job::toString);
        assertTrue(job.output().contains("mpi rank 1 of 3 aborts the job: exiting"), job::toString);
    }

    /** Every rank ending main without MpiProcessGroup.finish(): the exit hook finalises MPI and the job succeeds. */
    @Test
    void ranksThatAllExitWithoutFinishEndCleanly() throws Exception {
        MpiJob.Result job = MpiJob.run(2, LIMIT, "noFinish");
        System.out.println("no finish(): " + job);
        assertFalse(job.timedOut(), job::toString);
        assertEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("rank 0 returns from main without finish()"), job::toString);
    }

    @Test
    void aKilledRankEndsTheWholeJob() throws Exception {
        MpiJob.Result job = MpiJob.run(3, LIMIT, "halt", "2");
        System.out.println("rank 2 halted: " + job);
        assertFalse(job.timedOut(), job::toString);
        assertNotEquals(0, job.exitCode(), job::toString);
        assertTrue(job.output().contains("rank 2 halts on purpose"), job::toString);
    }
}
