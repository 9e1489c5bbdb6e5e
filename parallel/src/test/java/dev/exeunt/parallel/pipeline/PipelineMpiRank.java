package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.comm.MpiProcessGroup;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import java.util.Arrays;

/**
 * One rank of the mpirun job {@link PipelineMpiTest} starts: {@code FAMILY TP PP} trains
 * {@link PipelineTrainingTest}'s model for 3 steps at tp x (world / (tp pp)) x pp, prints each step's
 * losses, and fails when a step leaves more tensor memory allocated than the step before (the
 * microbatches' tensors must all be freed within their step).
 */
public final class PipelineMpiRank {
    private PipelineMpiRank() {}

    public static void main(String[] args) {
        ModelConfig mc = args[0].equals("gpt2") ? PipelineTrainingTest.gpt2() : PipelineTrainingTest.llama();
        int tp = Integer.parseInt(args[1]), pp = Integer.parseInt(args[2]);
        var world = MpiProcessGroup.world();
        PipelineTrainingTest.data();
        try (var state = ParallelState.create(world, tp, world.size() / (tp * pp), pp).validate(mc);
             var sync = new DataParallelGradientSync(state.dpGroup());
             var model = EarlyExitModel.createStage(mc, Device.CPU, 3, ProcessGroupTensorParallel.of(state),
                     PipelineStage.balanced(mc.nLayers(), pp, state.ppRank()));
             var trainer = new PipelineTrainer(model, state, sync, TokenWindows.of(PipelineTrainingTest.tokens, PipelineTrainingTest.SEQ),
                     PipelineTrainingTest.config())) {
            long afterFirst = 0;
            for (int it = 0; it < 3; it++) {
                var l = trainer.step(it);
                long live = HostMemory.allocatedBytes();
                if (it == 0) afterFirst = live;
                else if (live != afterFirst) {
                    throw new IllegalStateException("rank " + world.rank() + ": step " + it + " left " + live + " bytes allocated, step 0 " + afterFirst);
                }
                double[] row = new double[2 + l.exitLosses().length];
                row[0] = l.total();
                row[1] = l.finalLoss();
                System.arraycopy(l.exitLosses(), 0, row, 2, l.exitLosses().length);
                System.out.println("rank " + world.rank() + " step " + it + " losses " + Arrays.toString(row));
            }
        }
        world.barrier();
        if (HostMemory.allocatedBytes() != 0) throw new IllegalStateException("rank " + world.rank() + " leaked tensor memory");
        System.out.println("rank " + world.rank() + " of " + world.size() + ": trained");
        MpiProcessGroup.finish();
    }
}
