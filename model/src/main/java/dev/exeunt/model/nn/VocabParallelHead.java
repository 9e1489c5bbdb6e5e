package dev.exeunt.model.nn;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

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

    /**
     * The whole vocabulary's logits [N, V] on every rank from each rank's slice [N, V/tp] (the slice
     * itself with one rank): generation decides on whole rows, the same on every rank.
     */
    public static Tensor gather(Tensor logits, TensorParallel tp) {
        if (tp.size() == 1) return logits;
        int n = logits.dim(0), slice = logits.dim(1);
        Tensor all = Tensor.empty(DType.F32, logits.device(), tp.size(), n, slice);
        tp.allGather(logits.contiguous(), all);
        return Ops.permute(all, 1, 0, 2).contiguous().reshape(n, tp.size() * slice);
    }
}
