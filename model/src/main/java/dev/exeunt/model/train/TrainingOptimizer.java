package dev.exeunt.model.train;

import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.optim.AdamW;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * The {@link Trainer}'s optimiser seam: what happens to the gradients of one rank between the backward
 * pass and the next step. It averages them over the data-parallel ranks, clips them to the global norm
 * and applies AdamW, so an implementation may shard the work and the state over the ranks (ZeRO-1, in
 * {@code parallel}) without {@code model} knowing any communication engine.
 *
 * <p>Moments are saved and loaded whole (as one rank holding the whole model would), named
 * {@code <param>.exp_avg} and {@code <param>.exp_avg_sq}, so a checkpoint does not depend on the
 * optimiser or the layout that wrote it. {@link #REPLICATED} is plain AdamW: every rank holds every moment.
 */
public interface TrainingOptimizer extends AutoCloseable {
    /** Makes the optimiser of one rank; the Trainer passes its AdamW settings, the model's parameters and its data-parallel sync. */
    @FunctionalInterface
    interface Factory {
        TrainingOptimizer create(AdamW.Settings settings, Parameters params, GradientSync sync);
    }

    /** Plain AdamW: gradients all-reduced by the {@link GradientSync}, every moment on every rank. */
    Factory REPLICATED = ReplicatedAdamW::new;

    /**
     * Bytes of AdamW moments this rank holds for {@code trainable} (once every parameter has had a step),
     * against what plain AdamW holds on each rank.
     */
    record Memory(long bytesOnThisRank, long replicatedBytes, String how) {
        @Override
        public String toString() {
            return String.format(Locale.ROOT, "optimizer state: %s of AdamW moments on this rank (%s; plain AdamW holds %s per rank)",
                    mib(bytesOnThisRank), how, mib(replicatedBytes));
        }

        private static String mib(long bytes) {
            return String.format(Locale.ROOT, "%.2f MiB", bytes / (1024.0 * 1024.0));
        }
    }

    /**
     * Replaces each trainable gradient by its mean over the data-parallel ranks, scales the gradients so the
     * global L2 norm (over the whole model, every layout) is at most {@code maxNorm} (0: no clipping) and
     * updates the parameters with AdamW at learning rate {@code lr}. Tensor-parallel partial gradients are
     * already summed. Returns the norm before clipping.
     */
    double step(Map<String, Tensor> trainable, double maxNorm, float lr);

    /** Number of steps taken (AdamW's bias correction depends on it). */
    int stepCount();

    /**
     * Whether every data-parallel rank holds part of the moments, and so must call {@link #saveMoments}
     * (with a null file) when data-parallel rank 0 saves.
     */
    boolean shardedOverDataParallel();

    /**
     * Writes the whole moments into {@code file} (on the one rank that writes; null elsewhere). Every
     * tensor-parallel rank of data-parallel rank 0 calls it, and every data-parallel rank when
     * {@link #shardedOverDataParallel()}; the tensors are gathered one at a time.
     */
    void saveMoments(Function<String, Shard> shardOf, TensorParallel tp, Path file) throws IOException;

    /**
     * Restores the moments from {@code moments} (this tensor-parallel rank's slice of each whole moment,
     * under the saved names) and the step count; parameters without saved moments start from zero.
     */
    void load(Map<String, Tensor> moments, int stepCount, Map<String, Tensor> trainable);

    /** What this rank holds (or will hold) for {@code trainable}; see {@link Memory}. */
    Memory memory(Map<String, Tensor> trainable);

    /** Frees the moments. */
    @Override
    void close();

    /** Bytes of plain AdamW's two F32 moments for {@code trainable}. */
    static long replicatedBytes(Map<String, Tensor> trainable) {
        long n = 0;
        for (Tensor p : trainable.values()) n += p.numel();
        return 2 * 4 * n;
    }
}
