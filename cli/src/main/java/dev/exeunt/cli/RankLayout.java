package dev.exeunt.cli;

import dev.exeunt.parallel.comm.MpiProcessGroup;
import java.util.HashSet;
import java.util.Set;

/**
 * The parallel layout a command was asked for: {@code --tp T} (Megatron's
 * {@code --tensor-model-parallel-size}), {@code --dp D} ({@code --data-parallel-size}) and {@code --engine
 * local|mpi}, {@code --sequence-parallel} and {@code --distributed-optimizer} (Megatron's
 * {@code --use-distributed-optimizer}). {@code dp} is 0 when not given: under mpi it is then
 * what the world leaves, N / T.
 */
record RankLayout(Engine engine, int tp, int dp, int pp, int[] pipelineLayers, boolean sequenceParallel, boolean distributedOptimizer) {
    enum Engine { LOCAL, MPI }

    static final String[] KEYS = {"tp", "tensor-model-parallel-size", "dp", "data-parallel-size", "pp", "pipeline-model-parallel-size",
            "pipeline-layers", "engine"};
    /** The layout's flags (options without a value). */
    static final Set<String> FLAGS = Set.of("sequence-parallel", "distributed-optimizer", "use-distributed-optimizer");

    static final String HELP = """
              --tp T (--tensor-model-parallel-size)  tensor-parallel ranks (default 1)
              --dp D (--data-parallel-size)  data-parallel ranks; under mpirun it defaults to processes / T
              --pp P (--pipeline-model-parallel-size)  pipeline stages (default 1), trained with 1F1B over the
                                  micro-batches of each step; --pipeline-layers 3,3,2 chooses each stage's layers
              --engine local|mpi  local: T x D x P ranks as threads of this process; mpi: one process per rank
                                  (the default under mpirun: mpirun -np N ./exeunt train ... --tp T)
              --sequence-parallel  Megatron's sequence parallelism: norms and residuals hold T/tp positions
                                  per rank (all-gather / reduce-scatter in place of the all-reduces)
              --distributed-optimizer (--use-distributed-optimizer)  ZeRO-1: AdamW moments sharded over the
                                  data-parallel ranks (gradients reduce-scattered, weights all-gathered)
            """;

    RankLayout(Engine engine, int tp, int dp) {
        this(engine, tp, dp, 1, null, false, false);
    }

    /** Pipeline stage {@code index}'s layers: --pipeline-layers when given (checked against the model), else balanced. */
    dev.exeunt.model.nn.PipelineStage pipelineStage(int layers, int index) {
        if (pipelineLayers == null) return dev.exeunt.model.nn.PipelineStage.balanced(layers, pp, index);
        if (java.util.Arrays.stream(pipelineLayers).sum() != layers) {
            throw new IllegalArgumentException("--pipeline-layers " + java.util.Arrays.toString(pipelineLayers) + " adds up to "
                    + java.util.Arrays.stream(pipelineLayers).sum() + " layers but the model has " + layers);
        }
        return dev.exeunt.model.nn.PipelineStage.of(pipelineLayers, index);
    }

    /** {@code flags} and the layout's {@link #FLAGS}, for a command's {@link Args}. */
    static Set<String> withFlags(Set<String> flags) {
        Set<String> all = new HashSet<>(flags);
        all.addAll(FLAGS);
        return all;
    }

    RankLayout {
        if (tp < 1) throw new IllegalArgumentException("--tp must be >= 1, got " + tp);
        if (dp < 0) throw new IllegalArgumentException("--dp must be >= 1, got " + dp);
        if (pp < 1) throw new IllegalArgumentException("--pp must be >= 1, got " + pp);
        if (pipelineLayers != null && pipelineLayers.length != pp) {
            throw new Args.UsageException("--pipeline-layers gives " + pipelineLayers.length + " stages but --pp is " + pp);
        }
    }

    /** Reads the layout options; the engine defaults to mpi under mpirun (seen in the environment), else local. */
    static RankLayout parse(Args a) {
        int tp = aliased(a, "tp", "tensor-model-parallel-size", 1);
        int dp = aliased(a, "dp", "data-parallel-size", 0);
        if (dp == 0 && (a.has("dp") || a.has("data-parallel-size"))) {
            throw new IllegalArgumentException("--dp must be >= 1, got 0");
        }
        String e = a.get("engine", MpiProcessGroup.isUnderMpirun() ? "mpi" : "local");
        Engine engine = switch (e) {
            case "local" -> Engine.LOCAL;
            case "mpi" -> Engine.MPI;
            default -> throw new Args.UsageException("--engine must be local or mpi, got '" + e + "'");
        };
        boolean sp = a.getBool("sequence-parallel", false);
        if (sp && tp == 1) throw new Args.UsageException("--sequence-parallel needs --tp > 1 (it splits the sequence over the tensor-parallel ranks)");
        boolean zero = a.getBool("distributed-optimizer", false) || a.getBool("use-distributed-optimizer", false);
        int pp = aliased(a, "pp", "pipeline-model-parallel-size", 1);
        int[] layers = a.getInts("pipeline-layers", null);
        return new RankLayout(engine, tp, dp, pp, layers, sp, zero);
    }

    /** {@code key} or its Megatron spelling {@code alias}; both given with different values is an error. */
    private static int aliased(Args a, String key, String alias, int def) {
        boolean hasKey = a.has(key), hasAlias = a.has(alias);
        int v = a.getInt(key, def), w = a.getInt(alias, def);
        if (hasKey && hasAlias && v != w) {
            throw new Args.UsageException("--" + key + " " + v + " and --" + alias + " " + w + " disagree (they are the same option)");
        }
        return hasAlias ? w : v;
    }

    /** The data-parallel size in a world of {@code worldSize} ranks, refusing a given --dp that disagrees. */
    int dpIn(int worldSize) {
        if (worldSize % (tp * pp) != 0) {
            throw new IllegalArgumentException("world size " + worldSize + " is not divisible by --tp " + tp
                    + (pp > 1 ? " x --pp " + pp : "") + ": every tensor-parallel group needs " + tp + " ranks"
                    + (pp > 1 ? " on each of " + pp + " stages" : ""));
        }
        int derived = worldSize / (tp * pp);
        if (dp != 0 && dp != derived) {
            throw new IllegalArgumentException("--dp " + dp + " does not match the world: " + worldSize + " processes / --tp " + tp
                    + (pp > 1 ? " / --pp " + pp : "") + " = " + derived + " data-parallel ranks (drop --dp or start " + (long) tp * dp * pp
                    + " processes)");
        }
        return derived;
    }

    /** Whether this is one rank in this process (no layout options, not under mpirun). */
    boolean isOneRank() {
        return tp == 1 && pp == 1 && localDp() == 1 && engine == Engine.LOCAL;
    }

    /** The data-parallel size of a local (threads) run: --dp, default 1. */
    int localDp() {
        return dp == 0 ? 1 : dp;
    }
}
