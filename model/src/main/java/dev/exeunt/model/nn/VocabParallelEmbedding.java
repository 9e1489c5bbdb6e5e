package dev.exeunt.model.nn;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;

/**
 * Megatron's VocabParallelEmbedding: rank r holds rows [r*V/tp, (r+1)*V/tp) of the token embedding; it
 * looks up the ids it owns, contributes zeros for the others, and the sum over ranks is the full
 * lookup (under sequence parallelism, reduce-scattered: each rank keeps its positions). The backward
 * touches only the owned rows (the zeroed positions carry no gradient).
 */
public final class VocabParallelEmbedding {
    private VocabParallelEmbedding() {}

    /**
     * Rows of the sharded table [V/tp, D] for I32 ids of any shape: [ids..., D], replicated on every rank
     * (ids [B, T] give this rank's [B, T/tp, D] under sequence parallelism).
     */
    public static Tensor lookup(Tensor table, Tensor ids, TensorParallel tp) {
        if (tp.size() == 1) return NN.embedding(table, ids);
        requireI32(ids);
        int rows = table.dim(0), start = tp.rank() * rows;
        int[] global = ids.toIntArray();
        int[] local = new int[global.length];
        float[] owned = new float[global.length];
        int vocab = rows * tp.size();
        for (int i = 0; i < global.length; i++) {
            // Checked here, on every rank: an id no rank owns would otherwise sum to a silent zero embedding.
            if (global[i] < 0 || global[i] >= vocab) {
                throw new IllegalArgumentException("token id " + global[i] + " at position " + i + " is out of range [0, " + vocab + ")");
            }
            boolean mine = global[i] >= start && global[i] < start + rows;
            local[i] = mine ? global[i] - start : 0;
            owned[i] = mine ? 1f : 0f;
        }
        int[] maskShape = java.util.Arrays.copyOf(ids.shape(), ids.rank() + 1);
        maskShape[ids.rank()] = 1;
        Tensor localIds = Tensor.ofInts(local, ids.shape());
        Tensor mask = Tensor.of(owned, maskShape);
        if (!mask.device().equals(table.device())) mask = mask.to(table.device());
        Tensor partial = Ops.mul(NN.embedding(table, localIds), mask);
        return TensorParallelRegions.leave(partial, tp);
    }

    private static void requireI32(Tensor ids) {
        if (ids.dtype() != DType.I32) throw new IllegalArgumentException("embedding ids must be I32, got " + ids.dtype());
    }
}
