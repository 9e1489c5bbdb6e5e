package dev.exeunt.parallel;

import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.comm.ReduceOp;
import dev.exeunt.tensor.Tensor;

/** The model's {@link TensorParallel} seam over a tensor-parallel {@link ProcessGroup} (e.g. {@link ParallelState#tpGroup()}). */
public final class ProcessGroupTensorParallel implements TensorParallel {
    private final ProcessGroup group;
    private final boolean sequenceParallel;

    /** {@code sequenceParallel}: Megatron's sequence parallelism ({@link TensorParallel#sequenceParallel()}). */
    public ProcessGroupTensorParallel(ProcessGroup tpGroup, boolean sequenceParallel) {
        this.group = tpGroup;
        this.sequenceParallel = sequenceParallel;
    }

    /** The seam for {@code state}'s tensor-parallel group; {@link TensorParallel#NONE} when tp is 1. */
    public static TensorParallel of(ParallelState state) {
        return of(state, false);
    }

    /** As {@link #of(ParallelState)}, with sequence parallelism when {@code sequenceParallel} (and tp > 1). */
    public static TensorParallel of(ParallelState state, boolean sequenceParallel) {
        return state.tpSize() == 1 ? TensorParallel.NONE : new ProcessGroupTensorParallel(state.tpGroup(), sequenceParallel);
    }

    @Override
    public boolean sequenceParallel() {
        return sequenceParallel;
    }

    @Override
    public void reduceScatter(Tensor input, Tensor output) {
        group.reduceScatter(input, output, ReduceOp.SUM);
    }

    @Override
    public int rank() {
        return group.rank();
    }

    @Override
    public int size() {
        return group.size();
    }

    @Override
    public void allReduceSum(Tensor t) {
        group.allReduce(t, ReduceOp.SUM);
    }

    @Override
    public void allReduceMax(Tensor t) {
        group.allReduce(t, ReduceOp.MAX);
    }

    @Override
    public void allGather(Tensor input, Tensor output) {
        group.allGather(input, output);
    }

    @Override
    public String toString() {
        return "tensor parallel rank " + rank() + " of " + size() + (sequenceParallel ? ", sequence parallel" : "") + " (" + group.engine() + ")";
    }
}
