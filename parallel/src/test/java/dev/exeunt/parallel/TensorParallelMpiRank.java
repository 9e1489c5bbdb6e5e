package dev.exeunt.parallel;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.parallel.comm.MpiProcessGroup;
import dev.exeunt.tensor.HostMemory;
import java.nio.file.Path;

/**
 * One rank of the mpirun job {@link TensorParallelMpiTest} starts: {@code FAMILY TP SEQUENCE_PARALLEL OUT}
 * trains {@link TensorParallelTrainingTest}'s model for 3 steps at tp x (world / tp) over the mpi engine
 * and writes the checkpoint and log to OUT (world rank 0), then prints each step's losses.
 */
public final class TensorParallelMpiRank {
    private TensorParallelMpiRank() {}

    public static void main(String[] args) {
        ModelConfig mc = args[0].equals("gpt2") ? TensorParallelTrainingTest.gpt2() : TensorParallelTrainingTest.llama();
        int tp = Integer.parseInt(args[1]);
        boolean sp = Boolean.parseBoolean(args[2]);
        var world = MpiProcessGroup.world();
        TensorParallelTrainingTest.data();
        try (var state = ParallelState.create(world, tp, 1).validate(mc);
             var sync = new DataParallelGradientSync(state.dpGroup(), DataParallelGradientSync.DEFAULT_BUCKET_BYTES, state.worldRank() == 0)) {
            var result = TensorParallelTrainingTest.trainRank(mc, ProcessGroupTensorParallel.of(state, sp), sync, Path.of(args[3]));
            for (double[] step : result.steps()) System.out.println("rank " + world.rank() + " losses " + java.util.Arrays.toString(step));
        }
        world.barrier();
        if (HostMemory.allocatedBytes() != 0) throw new IllegalStateException("rank " + world.rank() + " leaked tensor memory");
        System.out.println("rank " + world.rank() + " of " + world.size() + ": trained");
        MpiProcessGroup.finish();
    }
}
