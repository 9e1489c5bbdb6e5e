package dev.exeunt.cli;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.comm.CommException;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.parallel.comm.MpiProcessGroup;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.tensor.cpu.CpuThreads;
import java.io.PrintStream;
import java.util.Optional;
import java.util.function.IntConsumer;

/**
 * Runs a command's per-rank body on every rank of a {@link RankLayout}, each with its {@link ParallelState}
 * (tp x dp x pp):
 * <ul>
 *   <li>local: tp x dp ranks as threads of this JVM over the local engine, sharing its CPU pool. A failure
 *       on any rank ends the others' communication; the first failing rank's own exception is rethrown,
 *       so the command reports it as it would for one rank.</li>
 *   <li>mpi: this process is one rank of the mpirun job ({@code MPI_COMM_WORLD}), dp = processes / tp. A
 *       bad layout is refused on every process alike, before any rank starts, and every process exits
 *       with the message. After that, a rank that fails prints {@code rank R: <message>} and ends the whole
 *       job (MPI_Abort), so no other rank waits for it forever; a successful run ends with
 *       {@link MpiProcessGroup#finish()}.</li>
 * </ul>
 */
final class RankLauncher {
    private RankLauncher() {}

    /** What one rank runs. */
    @FunctionalInterface
    interface RankBody<T> {
        T run(ParallelState state) throws Exception;
    }

    /**
     * Runs {@code body} on every rank of {@code layout} after checking that the layout can shard {@code model}
     * and that {@code checkDp} accepts its data-parallel size (it throws to refuse, e.g. a batch dp cannot split);
     * world rank 0 prints the layout to {@code console} (when not null and there is more than one rank).
     * Returns world rank 0's result in the process that holds world rank 0, empty in every other process.
     */
    static <T> Optional<T> run(RankLayout layout, ModelConfig model, IntConsumer checkDp, PrintStream console, RankBody<T> body)
            throws Exception {
        return run(layout, layout.pp(), model, checkDp, console, body);
    }

    /**
     * {@link #run(RankLayout, ModelConfig, IntConsumer, PrintStream, RankBody)} on the first {@code runningStages}
     * of the layout's pipeline stages only (EE-Tuning does not start the stages past its last exit): each
     * rank's {@link ParallelState} has that many stages. Local: only their ranks are started. Under mpirun
     * the job still has every stage's processes (the layout is checked against them); those of the later
     * stages print that they have nothing to do and wait in {@link MpiProcessGroup#finish()} for the others.
     */
    static <T> Optional<T> run(RankLayout layout, int runningStages, ModelConfig model, IntConsumer checkDp, PrintStream console,
                               RankBody<T> body) throws Exception {
        if (runningStages < 1 || runningStages > layout.pp()) {
            throw new IllegalArgumentException("running stages " + runningStages + " outside 1.." + layout.pp());
        }
        return layout.engine() == RankLayout.Engine.MPI ? runMpi(layout, runningStages, model, checkDp, console, body)
                : runLocal(layout, runningStages, model, checkDp, console, body);
    }

    private static <T> Optional<T> runLocal(RankLayout layout, int running, ModelConfig model, IntConsumer checkDp, PrintStream console,
                                            RankBody<T> body) throws Exception {
        String mpiSize = System.getenv("OMPI_COMM_WORLD_SIZE");
        if (mpiSize != null && !mpiSize.trim().equals("1")) {
            throw new IllegalArgumentException("--engine local under mpirun with " + mpiSize.trim() + " processes: each would run the "
                    + "whole job; drop --engine local (each process is then one rank) or run without mpirun");
        }
        int tp = layout.tp(), dp = layout.localDp(), pp = running;
        ParallelState.checkLayout(tp * dp * pp, tp, dp, pp);
        ParallelState.checkModel(model, tp, layout.pp());
        layout.pipelineStage(model.nLayers(), 0); // checks --pipeline-layers
        checkDp.accept(dp);
        if (console != null && tp * dp * pp > 1) {
            console.printf("layout: tp %d x dp %d%s = %d ranks as threads of this process (local engine), sharing %d CPU threads%n",
                    tp, dp, pp > 1 ? " x pp " + pp : "", tp * dp * pp, CpuThreads.threads());
        }
        if (console != null && running < layout.pp()) {
            console.printf("pipeline: stages %d..%d of %d hold no exit and are not started%n", running, layout.pp() - 1, layout.pp());
        }
        try {
            return Optional.ofNullable(LocalWorld.run(tp * dp * pp, pg -> {
                try (var state = ParallelState.create(pg, tp, dp, pp)) {
                    return body.run(state);
                } catch (Exception e) {
                    throw new BodyFailure(e);
                }
            }).get(0));
        } catch (CommException e) {
            // The first failing rank's exception is the job's failure; the others' are consequences of it.
            Throwable first = e.getCause() instanceof BodyFailure f ? f.getCause() : e.getCause();
            if (first instanceof Exception x && !(first instanceof CommException)) throw x;
            if (first instanceof Error x) throw x;
            throw e;
        }
    }

    /** Carries a body's checked exception through LocalWorld's Function. */
    private static final class BodyFailure extends RuntimeException {
        BodyFailure(Exception cause) {
            super(cause);
        }
    }

    private static <T> Optional<T> runMpi(RankLayout layout, int running, ModelConfig model, IntConsumer checkDp, PrintStream console,
                                          RankBody<T> body) {
        MpiProcessGroup world = MpiProcessGroup.world();
        // The same numbers on every process, so each refuses the layout alike and exits: no rank is left waiting.
        int dp = layout.dpIn(world.size());
        ParallelState.checkModel(model, layout.tp(), layout.pp());
        layout.pipelineStage(model.nLayers(), 0);
        checkDp.accept(dp);
        T result;
        // Pipeline stage is the slowest index, so the running stages are the first world ranks.
        int runningRanks = layout.tp() * dp * running;
        ProcessGroup ranks;
        try {
            ranks = running == layout.pp() ? world : world.split(world.rank() < runningRanks ? 0 : 1, world.rank());
        } catch (Throwable t) {
            throw failRank(world, t);
        }
        if (world.rank() >= runningRanks) {
            System.err.printf("exeunt: rank %d: pipeline stage %d of %d holds no exit and has nothing to do; waiting for the others%n",
                    world.rank(), world.rank() / (layout.tp() * dp), layout.pp());
            ranks.close();
            MpiProcessGroup.finish();
            return Optional.empty();
        }
        try (var state = ParallelState.create(ranks, layout.tp(), dp, running)) {
            if (console != null && state.worldRank() == 0) {
                console.printf("layout: tp %d x dp %d%s = %d mpi processes, %d CPU threads per process%n", state.tpSize(),
                        state.dpSize(), running > 1 ? " x pp " + running : "", state.worldSize(), CpuThreads.threads());
            }
            if (console != null && state.worldRank() == 0 && running < layout.pp()) {
                console.printf("pipeline: stages %d..%d of %d hold no exit; their %d processes wait for the others%n", running,
                        layout.pp() - 1, layout.pp(), world.size() - runningRanks);
            }
            result = body.run(state);
        } catch (Throwable t) {
            throw failRank(world, t);
        } finally {
            if (ranks != world) ranks.close();
        }
        MpiProcessGroup.finish();
        return world.rank() == 0 ? Optional.ofNullable(result) : Optional.empty();
    }

    /** Prints the rank's failure and ends the whole job; does not return. */
    private static RuntimeException failRank(MpiProcessGroup world, Throwable t) {
        System.out.flush();
        System.err.println("exeunt: rank " + world.rank() + ": " + Main.describe(t));
        if (System.getenv("EXEUNT_DEBUG") != null || Main.isUnexpected(t)) t.printStackTrace();
        System.err.flush();
        return world.abort("rank " + world.rank() + " failed (see its message above)");
    }
}
