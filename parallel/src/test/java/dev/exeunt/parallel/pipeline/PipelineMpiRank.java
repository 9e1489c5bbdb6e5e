package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.comm.MpiProcessGroup;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One rank of the mpirun job {@link PipelineMpiTest} starts: {@code FAMILY TP PP OUT} trains
 * {@link PipelineTrainingTest}'s model at tp x (world / (tp pp)) x pp through the trainer with the 1F1B
 * runner: 1 step, saved to OUT, then resumed for the other 2. Prints each step's losses, and fails when
 * the tensor memory held after the resumed run differs from the memory after the first step (each
 * step's microbatch tensors must all be freed within it).
 */
public final class PipelineMpiRank {
    private PipelineMpiRank() {}

    public static void main(String[] args) throws Exception {
        ModelConfig mc = args[0].equals("gpt2") ? PipelineTrainingTest.gpt2() : PipelineTrainingTest.llama();
        int tp = Integer.parseInt(args[1]), pp = Integer.parseInt(args[2]);
        Path out = Path.of(args[3]);
        var world = MpiProcessGroup.world();
        PipelineTrainingTest.data();
        var windows = TokenWindows.of(PipelineTrainingTest.tokens, PipelineTrainingTest.SEQ);
        List<double[]> steps = new ArrayList<>();
        try (var state = ParallelState.create(world, tp, world.size() / (tp * pp), pp).validate(mc);
             var dpSync = new DataParallelGradientSync(state.dpGroup())) {
            var pipeline = new ProcessGroupPipelineParallel(state.ppGroup());
            try (var model = EarlyExitModel.createStage(mc, Device.CPU, 3, ProcessGroupTensorParallel.of(state), pipeline,
                    PipelineStage.balanced(mc.nLayers(), pp, state.ppRank()));
                 var runner = new OneFOneBRunner(model, pipeline)) {
                long afterFirst, afterAll;
                var sync = new dev.exeunt.parallel.RecordingSync(dpSync);
                try (var trainer = new Trainer(model, null, windows, PipelineTrainingTest.config(), out, null, sync)) {
                    trainer.runMicroBatchesWith(runner).stopAfter(1);
                    trainer.train();
                    afterFirst = HostMemory.allocatedBytes();
                }
                world.barrier(); // rank 0 has published the checkpoint every stage resumes from
                try (var trainer = new Trainer(model, null, windows, PipelineTrainingTest.config(), out, null, sync)) {
                    trainer.runMicroBatchesWith(runner).resumeFrom(out);
                    trainer.train();
                    afterAll = HostMemory.allocatedBytes();
                }
                if (afterAll != afterFirst) {
                    throw new IllegalStateException("rank " + world.rank() + ": " + afterAll + " bytes held after 3 steps, " + afterFirst + " after 1");
                }
                steps.addAll(sync.steps);
            }
        }
        for (int s = 0; s < steps.size(); s++) System.out.println("rank " + world.rank() + " step " + s + " losses " + Arrays.toString(steps.get(s)));
        world.barrier();
        if (HostMemory.allocatedBytes() != 0) throw new IllegalStateException("rank " + world.rank() + " leaked tensor memory");
        System.out.println("rank " + world.rank() + " of " + world.size() + ": trained");
        MpiProcessGroup.finish();
    }
}
