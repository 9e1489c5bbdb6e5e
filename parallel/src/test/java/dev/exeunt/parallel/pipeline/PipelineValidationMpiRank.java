package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.train.EvalReport;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.comm.MpiProcessGroup;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import java.nio.file.Path;

/**
 * One rank of the mpirun job {@link PipelineValidationMpiTest} starts: {@code FAMILY TP PP OUT} trains
 * {@link PipelineValidationTest}'s run (validated after every step) at tp x (world / (tp pp)) x pp with
 * the 1F1B runner and the {@link PipelineEvaluator}, and prints its last validation report.
 */
public final class PipelineValidationMpiRank {
    private PipelineValidationMpiRank() {}

    public static void main(String[] args) throws Exception {
        ModelConfig mc = args[0].equals("gpt2") ? PipelineTrainingTest.gpt2() : PipelineTrainingTest.llama();
        int tp = Integer.parseInt(args[1]), pp = Integer.parseInt(args[2]);
        Path out = Path.of(args[3]);
        var world = MpiProcessGroup.world();
        PipelineTrainingTest.data();
        EvalReport last;
        try (var state = ParallelState.create(world, tp, world.size() / (tp * pp), pp).validate(mc);
             var sync = new DataParallelGradientSync(state.dpGroup())) {
            var pipeline = new ProcessGroupPipelineParallel(state.ppGroup());
            try (var model = EarlyExitModel.createStage(mc, Device.CPU, 3, ProcessGroupTensorParallel.of(state), pipeline,
                    PipelineStage.balanced(mc.nLayers(), pp, state.ppRank()));
                 var runner = new OneFOneBRunner(model, pipeline);
                 var trainer = new Trainer(model, null, PipelineValidationTest.windows(), PipelineValidationTest.config(), out, null, sync)) {
                last = trainer.runMicroBatchesWith(runner).validateWith(new PipelineEvaluator(pipeline)).train().lastEval();
            }
        }
        world.barrier();
        if (HostMemory.allocatedBytes() != 0) throw new IllegalStateException("rank " + world.rank() + " leaked tensor memory");
        System.out.println("rank " + world.rank() + " eval " + last.toJson());
        MpiProcessGroup.finish();
    }
}
