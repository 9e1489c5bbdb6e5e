package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.parallel.ExactSums;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.tensor.Tensor;

/** The model's {@link PipelineParallel} seam over a pipeline {@link ProcessGroup} ({@link ParallelState#ppGroup()}). */
public final class ProcessGroupPipelineParallel implements PipelineParallel {
    /** The tag of checkpoint streams, apart from the schedule's activation and gradient tags. */
    private static final int TAG = 1 << 30;
    private final ProcessGroup group;

    public ProcessGroupPipelineParallel(ProcessGroup ppGroup) {
        this.group = ppGroup;
    }

    /** The seam for {@code state}'s pipeline group; {@link PipelineParallel#NONE} when pp is 1. */
    public static PipelineParallel of(ParallelState state) {
        return state.ppSize() == 1 ? PipelineParallel.NONE : new ProcessGroupPipelineParallel(state.ppGroup());
    }

    public ProcessGroup group() {
        return group;
    }

    @Override
    public int stage() {
        return group.rank();
    }

    @Override
    public int stages() {
        return group.size();
    }

    /** Exact double sums in stage order, the same bits on every stage ({@link ExactSums}). */
    @Override
    public void sumOverStages(double[] values) {
        if (values.length == 0 || group.size() == 1) return;
        double[] sums = ExactSums.overRanks(values, group.size(), group::allGather);
        System.arraycopy(sums, 0, values, 0, values.length);
    }

    @Override
    public void send(Tensor t, int to) {
        group.send(t, to, TAG);
    }

    @Override
    public void recv(Tensor t, int from) {
        group.recv(t, from, TAG);
    }

    @Override
    public String toString() {
        return "pipeline stage " + stage() + " of " + stages() + " (" + group.engine() + ")";
    }
}
