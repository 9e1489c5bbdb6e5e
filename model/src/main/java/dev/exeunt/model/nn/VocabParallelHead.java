package dev.exeunt.model.nn;

import dev.exeunt.tensor.Tensor;

/**
 * An output head [V, D] split along the vocabulary like {@link VocabParallelEmbedding} (and, when tied
 * or shared, the very same tensor): each rank computes the logits of its V / tp tokens, which
 * {@link VocabParallelCrossEntropy} consumes without gathering them.
 */
public final class VocabParallelHead {
    private VocabParallelHead() {}

    /** Logits [.., V/tp] of this rank's vocabulary slice (all V with one rank; a quantized head stays quantized). */
    public static Tensor logits(Tensor hidden, Tensor head, TensorParallel tp) {
        Linear.Split split = tp.size() == 1 ? Linear.Split.NONE : Linear.Split.COLUMN;
        return new Linear(head, null, false, split, tp).forward(TensorParallelRegions.enter(hidden, tp));
    }
}
