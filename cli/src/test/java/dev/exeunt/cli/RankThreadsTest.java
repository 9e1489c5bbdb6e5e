package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** Threads per rank under mpirun: a bound process keeps its own cores, unbound ones share the machine's. */
class RankThreadsTest {
    @Test
    void unboundRanksShareTheCoresTheyMayUse() {
        assertEquals(4, RankThreads.perRank(16, 4, false));
        assertEquals(2, RankThreads.perRank(8, 3, false)); // rounded down: never more threads than cores
        assertEquals(1, RankThreads.perRank(2, 3, false)); // oversubscribed: at least one
        assertEquals(8, RankThreads.perRank(8, 1, false));
    }

    @Test
    void aBoundRankUsesTheCoresItWasBoundTo() {
        assertEquals(1, RankThreads.perRank(1, 2, true)); // Open MPI's bind-to-core for 2 ranks
        assertEquals(4, RankThreads.perRank(4, 2, true)); // --map-by slot:PE=4
    }

    @Test
    void linuxCpuListsAreCounted() {
        assertEquals(1, RankThreads.cpuCount("0"));
        assertEquals(2, RankThreads.cpuCount("0-1\n"));
        assertEquals(7, RankThreads.cpuCount(" 0-3,8,10-11"));
    }
}
