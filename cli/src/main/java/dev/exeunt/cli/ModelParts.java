package dev.exeunt.cli;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.pipeline.ProcessGroupPipelineParallel;
import dev.exeunt.tensor.Device;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Inference over a model cut over ranks (generate, sweep and serve with --tp / --pp): every rank of the
 * layout loads its part of the checkpoint (its tensor-parallel shard of its pipeline stage's layers)
 * and runs the command's body on it. There is no data parallelism here: each replica would only repeat
 * the work.
 */
final class ModelParts {
    private ModelParts() {}

    /** What a rank does with its part; it owns {@code part} and closes it. */
    @FunctionalInterface
    interface Body {
        void run(ParallelState state, ModelCheckpoint.Loaded part) throws Exception;
    }

    static void run(String command, RankLayout layout, Path dir, boolean force, Body body) throws Exception {
        if (!Files.isDirectory(dir)) throw new IllegalArgumentException("--tp and --pp load a checkpoint directory; " + dir + " is not one");
        ModelConfig mc = ConfigJson.read(dir.resolve(ModelCheckpoint.CONFIG));
        RankLauncher.run(layout, mc, dp -> {
            if (dp != 1) {
                throw new IllegalArgumentException(command + " shards the model (--tp) and cuts it into stages (--pp); it has no use for " + dp
                        + " data-parallel replicas: start tp x pp ranks");
            }
        }, System.err, state -> {
            var tp = ProcessGroupTensorParallel.of(state, false);
            var pp = ProcessGroupPipelineParallel.of(state);
            var stage = layout.pipelineStage(mc.nLayers(), state.ppRank());
            body.run(state, ModelCheckpoint.load(dir, force, c -> EarlyExitModel.allocateStage(c, Device.CPU, tp, pp, stage)));
            return null;
        });
    }
}
