package dev.exeunt.model.nn;

import dev.exeunt.tensor.Tensor;

/**
 * This rank's place in its tensor-parallel group and the collectives the sharded layers need: the
 * seam that keeps {@code model} free of any communication engine ({@code parallel} implements it over
 * a process group). Every call is collective: all ranks of the group make the same calls in the same
 * order. Tensors are F32 or I32; reductions overwrite their argument in place and leave every rank
 * with the same bits.
 *
 * <p>{@link #NONE} is one rank holding the whole model; with it every sharded layer is the dense one.
 */
public interface TensorParallel {
    /** This rank's index in the tensor-parallel group, 0..size()-1. */
    int rank();

    /** Number of ranks the model is sharded over. */
    int size();

    /** Sums {@code t} (contiguous) over the group, in place. */
    void allReduceSum(Tensor t);

    /** Element-wise maximum of {@code t} (contiguous) over the group, in place. */
    void allReduceMax(Tensor t);

    /** {@code output} (size() * n elements, contiguous) becomes every rank's {@code input} (n elements) in rank order. */
    void allGather(Tensor input, Tensor output);

    /** {@code output} (n elements) becomes the sum over ranks of elements [rank*n, (rank+1)*n) of {@code input}. */
    void reduceScatter(Tensor input, Tensor output);

    /**
     * Megatron's sequence parallelism: outside the tensor-parallel regions (norms, residuals, the
     * embedding's output) each rank holds only its T / size() positions of every sequence, and the
     * regions are entered by an all-gather and left by a reduce-scatter along the sequence instead of
     * the identity and all-reduce. It saves activation memory, not bytes: an all-reduce is a
     * reduce-scatter plus an all-gather.
     */
    default boolean sequenceParallel() {
        return false;
    }

    /** One rank, nothing to exchange. */
    TensorParallel NONE = new TensorParallel() {
        @Override
        public int rank() {
            return 0;
        }

        @Override
        public int size() {
            return 1;
        }

        @Override
        public void allReduceSum(Tensor t) {}

        @Override
        public void allReduceMax(Tensor t) {}

        @Override
        public void allGather(Tensor input, Tensor output) {
            output.copyFrom(input.reshape(output.shape()));
        }

        @Override
        public void reduceScatter(Tensor input, Tensor output) {
            output.copyFrom(input.reshape(output.shape()));
        }

        @Override
        public String toString() {
            return "no tensor parallelism";
        }
    };
}
