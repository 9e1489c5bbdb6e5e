package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.HostMemory;

/**
 * One rank of an mpirun job started by {@link MpiCollectivesTest}. {@code args[0]} is the scenario:
 * <ul>
 *   <li>{@code collectives}: the shared contract ({@link CollectiveChecks}), the mpi engine's own checks
 *       ({@link MpiEngineChecks}), then a leak check; prints {@code rank R of N: all checks passed};
 *   <li>{@code abort}: {@link CollectiveChecks#abortFromLastRank}: the last rank aborts, which under mpirun ends
 *       the job (the others are ended by mpirun rather than seeing a CommException);
 *   <li>{@code throw R}: rank R throws (the others wait in a barrier that can never complete);
 *   <li>{@code noFinish}: every rank returns from main without {@link MpiProcessGroup#finish()};
 *   <li>{@code exit R}: rank R calls System.exit(3), as a command-line error path would (the others wait likewise);
 *   <li>{@code halt R}: rank R ends itself with Runtime.halt, as a killed process would (the others wait likewise).
 * </ul>
 * A failure on any rank reaches the uncaught-exception handler {@link MpiProcessGroup#world()} installed,
 * which prints it with the rank and ends the whole job through MPI_Abort.
 */
public final class MpiRankMain {
    private MpiRankMain() {
    }

    public static void main(String[] args) {
        MpiProcessGroup world = MpiProcessGroup.world();
        int rank = world.rank();
        switch (args[0]) {
            case "collectives" -> {
                CollectiveChecks.runAll(world);
                MpiEngineChecks.runAll(world);
                world.barrier();
                long live = HostMemory.allocatedBytes();
                if (live != 0) {
                    throw new IllegalStateException("rank " + rank + " leaked " + live + " bytes of tensor memory");
                }
                System.out.println("rank " + rank + " of " + world.size() + ": all checks passed");
                MpiProcessGroup.finish();
            }
            case "abort" -> CollectiveChecks.abortFromLastRank(world);
            case "throw" -> {
                if (rank == Integer.parseInt(args[1])) {
                    throw new IllegalStateException("rank " + rank + " fails on purpose (exception test)");
                }
                world.barrier();
            }
            case "noFinish" -> {
                world.barrier();
                System.out.println("rank " + rank + " returns from main without finish()");
            }
            case "exit" -> {
                if (rank == Integer.parseInt(args[1])) {
                    System.err.println("rank " + rank + " calls System.exit(3) on purpose (exit test)");
                    System.exit(3);
                }
                world.barrier();
            }
            case "halt" -> {
                if (rank == Integer.parseInt(args[1])) {
                    System.err.println("rank " + rank + " halts on purpose (killed-process test)");
                    Runtime.getRuntime().halt(9);
                }
                world.barrier();
            }
            default -> throw new IllegalArgumentException("unknown scenario " + args[0]);
        }
    }
}
