package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.TrainingOptimizer;
import dev.exeunt.parallel.comm.CommException;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.optim.AdamW;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * The distributed optimizer on parameters whose sizes do not split evenly over 3 ranks (2, 7 and 4
 * elements: parts of 1/1/0, 3/3/1 and 2/2/0, so some ranks own nothing of a parameter) gives what plain
 * AdamW gives one rank holding the mean gradient, with clipping active, on every rank, and saves the same
 * whole moments; and a saved moment
 * of the wrong size is refused naming both shapes.
 */
@ExtendWith(LeakCheck.class)
class DistributedOptimizerTest {
    static final AdamW.Settings SETTINGS = new AdamW.Settings(0.9f, 0.95f, 1e-8f, 0.1f);
    static final int RANKS = 3, STEPS = 3;
    static final double MAX_NORM = 0.5;

    static Parameters parameters() {
        var params = new Parameters(Device.CPU, 21);
        params.normal("a", 0.5f, 2);
        params.normal("b", 0.5f, 7, 1); // rank 2: weight decay applies although each part is a flat range
        params.normal("c", 0.5f, 2, 2);
        return params;
    }

    /** Rank r's gradient of {@code name} at {@code step}: distinct per rank, element and step. */
    static float[] grad(String name, int n, int rank, int step) {
        float[] g = new float[n];
        for (int i = 0; i < n; i++) g[i] = (float) Math.sin(1 + i * 0.7 + rank * 1.3 + step * 0.9 + name.charAt(0));
        return g;
    }

    static void setGrad(Tensor p, float[] g) {
        p.clearGrad();
        try (Tensor t = Tensor.of(g, p.shape())) {
            p.accumulateGrad(t);
        }
    }

    @Test
    void unevenPartsUpdateAsOneRankWithTheMeanGradient(@TempDir Path dir) throws IOException {
        Map<String, float[]> want = new LinkedHashMap<>(), wantMoments = new LinkedHashMap<>();
        try (var params = parameters(); var adamw = new AdamW(SETTINGS)) {
            Map<String, Tensor> trainable = params.trainable();
            for (int s = 0; s < STEPS; s++) {
                for (var e : trainable.entrySet()) {
                    int n = (int) e.getValue().numel();
                    float[] mean = new float[n];
                    for (int r = 0; r < RANKS; r++) {
                        float[] g = grad(e.getKey(), n, r, s);
                        for (int i = 0; i < n; i++) mean[i] += g[i];
                    }
                    for (int i = 0; i < n; i++) mean[i] *= 1f / RANKS;
                    setGrad(e.getValue(), mean);
                }
                double norm = AdamW.clipGradNorm(trainable, MAX_NORM);
                assertTrue(norm > MAX_NORM, "clipping is active");
                adamw.step(trainable, 0.01f);
            }
            trainable.forEach((k, v) -> want.put(k, v.toFloatArray()));
            adamw.state().forEach((k, v) -> wantMoments.put(k, v.toFloatArray()));
        }
        Path file = dir.resolve("optimizer.safetensors");
        List<Map<String, float[]>> ranks = LocalWorld.run(RANKS, pg -> {
            try (var params = parameters(); var sync = new DataParallelGradientSync(pg);
                 var opt = DistributedOptimizer.over(pg).create(SETTINGS, params, sync)) {
                Map<String, Tensor> trainable = params.trainable();
                for (int s = 0; s < STEPS; s++) {
                    for (var e : trainable.entrySet()) setGrad(e.getValue(), grad(e.getKey(), (int) e.getValue().numel(), pg.rank(), s));
                    opt.step(trainable, MAX_NORM, 0.01f);
                }
                assertEquals(STEPS, opt.stepCount());
                // Parts of ceil(n/3) elements: 1 + 3 + 2, two F32 moments each, on every rank.
                TrainingOptimizer.Memory memory = opt.memory(trainable);
                assertEquals(8 * (1 + 3 + 2), memory.bytesOnThisRank());
                assertEquals(8 * (2 + 7 + 4), memory.replicatedBytes());
                assertEquals(memory.bytesOnThisRank(), ((DistributedOptimizer) opt).heldBytes());
                // Every rank joins the gathers of the whole moments, rank 0 writes.
                try {
                    opt.saveMoments(name -> null, TensorParallel.NONE, pg.rank() == 0 ? file : null);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
                Map<String, float[]> w = new LinkedHashMap<>();
                trainable.forEach((k, v) -> w.put(k, v.toFloatArray()));
                return w;
            }
        });
        for (Map<String, float[]> rank : ranks) {
            for (var e : want.entrySet()) assertArrayEquals(e.getValue(), rank.get(e.getKey()), 1e-6f, e.getKey());
            for (var e : rank.entrySet()) assertArrayEquals(ranks.get(0).get(e.getKey()), e.getValue(), 0f, "ranks agree bit for bit");
        }
        try (var saved = SafetensorsCheckpoint.open(file)) {
            assertEquals(new java.util.TreeSet<>(wantMoments.keySet()), new java.util.TreeSet<>(saved.names()));
            for (var e : wantMoments.entrySet()) {
                try (Tensor t = TensorFiles.load(saved, e.getKey(), Device.CPU)) {
                    assertArrayEquals(e.getValue(), t.toFloatArray(), 1e-6f, e.getKey());
                }
            }
        }
    }

    @Test
    void aSavedMomentOfTheWrongSizeIsRefusedNamingBothShapes() {
        var e = assertThrows(CommException.class, () -> LocalWorld.run(2, pg -> {
            try (var params = parameters(); var sync = new DataParallelGradientSync(pg);
                 var opt = DistributedOptimizer.over(pg).create(SETTINGS, params, sync);
                 Tensor m = Tensor.zeros(3, 1); Tensor v = Tensor.zeros(7, 1)) {
                opt.load(Map.of("b.exp_avg", m, "b.exp_avg_sq", v), 1, params.trainable());
                return null;
            }
        }));
        assertTrue(e.getMessage().contains("saved moment of b is [3, 1] but the parameter is [7, 1]"), e.getMessage());
    }
}
