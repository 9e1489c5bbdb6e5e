package dev.exeunt.parallel;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.parallel.comm.ProcessGroup;
import java.util.ArrayList;
import java.util.List;

/**
 * Megatron's parallel state (megatron/core/parallel_state.py): the world of tp x dp x pp ranks with the
 * tensor-parallel rank fastest, then the data-parallel rank, then the pipeline stage, so world rank
 * {@code r = ppRank * (tp * dp) + dpRank * tp + tpRank}; and the groups built from the world group with
 * {@link ProcessGroup#split}, each ordered by world rank:
 * <ul>
 *   <li>tensor-parallel group: the tp ranks of one (dp, pp) position, consecutive world ranks;</li>
 *   <li>data-parallel group: the dp ranks holding the same shard of the same stage;</li>
 *   <li>pipeline group: the pp stages of one (tp, dp) position, world ranks {@code tp * dp} apart;</li>
 *   <li>model-parallel group: the tp x pp ranks of one data-parallel replica;</li>
 *   <li>embedding group: the first and the last stage of each pipeline (where the tied input embedding
 *       and output head live), just the rank itself when pp = 1; middle stages are in none.</li>
 * </ul>
 * Every rank of the world constructs it at the same point (the splits are collective). It owns the
 * groups it made, not the world group.
 */
public final class ParallelState implements AutoCloseable {
    private final ProcessGroup world;
    private final int tp;
    private final int dp;
    private final int pp;
    private final ProcessGroup tpGroup;
    private final ProcessGroup dpGroup;
    private final ProcessGroup ppGroup;
    private final ProcessGroup modelParallelGroup;
    private final ProcessGroup embeddingGroup;

    private ParallelState(ProcessGroup world, int tp, int dp, int pp) {
        this.world = world;
        this.tp = tp;
        this.dp = dp;
        this.pp = pp;
        int r = world.rank();
        int tpRank = r % tp, dpRank = r / tp % dp, ppRank = r / (tp * dp);
        List<ProcessGroup> made = new ArrayList<>();
        try {
            tpGroup = keep(made, world.split(r / tp, r));
            dpGroup = keep(made, world.split(ppRank * tp + tpRank, r));
            ppGroup = keep(made, world.split(r % (tp * dp), r));
            modelParallelGroup = keep(made, world.split(dpRank, r));
            boolean embedding = ppRank == 0 || ppRank == pp - 1;
            // middle stages still take part in the split (it is collective), each in a group of its own, then drop it
            ProcessGroup e = world.split(embedding ? r % (tp * dp) : tp * dp + r, r);
            if (embedding) {
                embeddingGroup = keep(made, e);
            } else {
                e.close();
                embeddingGroup = null;
            }
        } catch (RuntimeException ex) {
            made.forEach(ProcessGroup::close);
            throw ex;
        }
    }

    private static ProcessGroup keep(List<ProcessGroup> made, ProcessGroup g) {
        made.add(g);
        return g;
    }

    /** The layout tp x dp x pp over {@code world}, whose size must be exactly their product. */
    public static ParallelState create(ProcessGroup world, int tp, int dp, int pp) {
        checkLayout(world.size(), tp, dp, pp);
        return new ParallelState(world, tp, dp, pp);
    }

    /** As Megatron's initialize_model_parallel: dp is what the world leaves, world / (tp x pp). */
    public static ParallelState create(ProcessGroup world, int tp, int pp) {
        requirePositive("tp", tp);
        requirePositive("pp", pp);
        int n = world.size();
        if (n % ((long) tp * pp) != 0) {
            throw new IllegalArgumentException(pp == 1
                    ? "world size " + n + " is not divisible by tp " + tp
                    : "world size " + n + " is not divisible by tp " + tp + " x pp " + pp + " = " + (long) tp * pp);
        }
        return create(world, tp, (int) (n / ((long) tp * pp)), pp);
    }

    /** Refuses a layout whose product is not the world size, naming the numbers. */
    public static void checkLayout(int worldSize, int tp, int dp, int pp) {
        requirePositive("tp", tp);
        requirePositive("dp", dp);
        requirePositive("pp", pp);
        long product = (long) tp * dp * pp;
        if (product != worldSize) {
            throw new IllegalArgumentException("world size " + worldSize + " is not tp " + tp + " x dp " + dp + " x pp " + pp
                    + " = " + product);
        }
    }

    private static void requirePositive(String name, int v) {
        if (v < 1) throw new IllegalArgumentException(name + " must be >= 1, got " + v);
    }

    /**
     * Refuses a model this layout cannot shard, naming every problem: tp must divide n_heads, ffn_hidden
     * and vocab_size; it must divide n_kv_heads (each rank then holds n_kv_heads / tp of them) or be a
     * multiple of it (each kv head replicated on tp / n_kv_heads ranks); pp must not exceed n_layers.
     * The vocabulary is not padded (Megatron pads it to a multiple of tp): a padded vocabulary would
     * change the checkpoint's Hugging Face shapes, so a tp that does not divide it is refused.
     */
    public static void checkModel(ModelConfig c, int tp, int pp) {
        requirePositive("tp", tp);
        requirePositive("pp", pp);
        List<String> problems = new ArrayList<>();
        if (c.nHeads() % tp != 0) problems.add("n_heads " + c.nHeads() + " is not divisible by tp " + tp);
        if (c.nKvHeads() % tp != 0 && tp % c.nKvHeads() != 0) {
            problems.add("n_kv_heads " + c.nKvHeads() + " is neither divisible by tp " + tp
                    + " nor a divisor of it (kv heads are split when tp divides them, replicated when they divide tp)");
        }
        if (c.ffnHidden() % tp != 0) problems.add("ffn_hidden " + c.ffnHidden() + " is not divisible by tp " + tp);
        if (c.vocabSize() % tp != 0) {
            problems.add("vocab_size " + c.vocabSize() + " is not divisible by tp " + tp
                    + " (the vocabulary is not padded, so that checkpoints keep their shapes)");
        }
        if (pp > c.nLayers()) problems.add("pp " + pp + " exceeds n_layers " + c.nLayers() + " (every stage needs a layer)");
        if (!problems.isEmpty()) {
            throw new IllegalArgumentException("layout tp " + tp + " x pp " + pp + " cannot shard this model: " + String.join("; ", problems));
        }
    }

    /** {@link #checkModel} for this layout; returns this. */
    public ParallelState validate(ModelConfig c) {
        checkModel(c, tp, pp);
        return this;
    }

    // ---------------------------------------------------------------- accessors

    public int worldRank() {
        return world.rank();
    }

    public int worldSize() {
        return world.size();
    }

    public int tpRank() {
        return world.rank() % tp;
    }

    public int tpSize() {
        return tp;
    }

    public int dpRank() {
        return world.rank() / tp % dp;
    }

    public int dpSize() {
        return dp;
    }

    public int ppRank() {
        return world.rank() / (tp * dp);
    }

    public int ppSize() {
        return pp;
    }

    public boolean isFirstStage() {
        return ppRank() == 0;
    }

    public boolean isLastStage() {
        return ppRank() == pp - 1;
    }

    public ProcessGroup world() {
        return world;
    }

    public ProcessGroup tpGroup() {
        return tpGroup;
    }

    public ProcessGroup dpGroup() {
        return dpGroup;
    }

    public ProcessGroup ppGroup() {
        return ppGroup;
    }

    /** The tp x pp ranks of this rank's data-parallel replica. */
    public ProcessGroup modelParallelGroup() {
        return modelParallelGroup;
    }

    /** Whether this rank is a first or last pipeline stage, and so in an embedding group. */
    public boolean inEmbeddingGroup() {
        return embeddingGroup != null;
    }

    public ProcessGroup embeddingGroup() {
        if (embeddingGroup == null) {
            throw new IllegalStateException("rank " + worldRank() + " is pipeline stage " + ppRank() + " of " + pp
                    + ", a middle stage, and is in no embedding group");
        }
        return embeddingGroup;
    }

    @Override
    public String toString() {
        return "tp " + tp + " x dp " + dp + " x pp " + pp + " (rank " + worldRank() + ": tp " + tpRank() + ", dp " + dpRank()
                + ", pp " + ppRank() + ")";
    }

    /** Closes the groups this state made (not the world group). */
    @Override
    public void close() {
        tpGroup.close();
        dpGroup.close();
        ppGroup.close();
        modelParallelGroup.close();
        if (embeddingGroup != null) embeddingGroup.close();
    }
}
