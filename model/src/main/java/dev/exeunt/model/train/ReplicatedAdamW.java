package dev.exeunt.model.train;

import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.optim.AdamW;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Function;

/**
 * Plain AdamW behind {@link TrainingOptimizer}: the {@link GradientSync} all-reduces the gradients, every
 * data-parallel rank then clips and updates the same way and holds every moment (of its tensor-parallel shard).
 */
final class ReplicatedAdamW implements TrainingOptimizer {
    private final AdamW adamw;
    private final Parameters params;
    private final GradientSync sync;

    ReplicatedAdamW(AdamW.Settings settings, Parameters params, GradientSync sync) {
        this.adamw = new AdamW(settings);
        this.params = params;
        this.sync = sync;
    }

    @Override
    public double step(Map<String, Tensor> trainable, double maxNorm, float lr) {
        sync.reduceGradients(trainable);
        double norm = TensorParallelGradients.clip(params, trainable, maxNorm);
        adamw.step(trainable, lr);
        return norm;
    }

    @Override
    public int stepCount() {
        return adamw.stepCount();
    }

    @Override
    public boolean shardedOverDataParallel() {
        return false;
    }

    @Override
    public void saveMoments(Function<String, Shard> shardOf, TensorParallel tp, Path file) throws IOException {
        // A pipeline stage saves the moments of the parameters it owns (a tied head's copy is stage 0's).
        Map<String, Tensor> owned = new java.util.LinkedHashMap<>();
        adamw.state().forEach((name, t) -> {
            String param = name.substring(0, name.lastIndexOf('.'));
            if (!params.isStageCopy(param)) owned.put(name, t);
        });
        TensorFiles.save(owned, shardOf, tp, params.pipeline(), file, Map.of());
    }

    @Override
    public void load(Map<String, Tensor> moments, int stepCount, Map<String, Tensor> trainable) {
        adamw.load(moments, stepCount, trainable);
    }

    @Override
    public Memory memory(Map<String, Tensor> trainable) {
        long bytes = TrainingOptimizer.replicatedBytes(trainable);
        return new Memory(bytes, bytes, "replicated on each of " + sync.ranks() + " data-parallel ranks");
    }

    @Override
    public void close() {
        adamw.close();
    }
}
