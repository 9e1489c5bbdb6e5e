package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * 1F1B pipeline training over the local engine gives the one-rank run with gradient accumulation over
 * the same 4 microbatches: pp 2 and 4, tp 2 x pp 2, dp 2 x pp 2 and tp 2 x dp 2 x pp 2, for GPT-2 (tied
 * head, so the last stage holds a copy of the embedding; shared exit heads on later stages) and Llama,
 * with exits on the first, a middle and the last stage. Same per-step total, final and exit losses
 * (1e-5 relative) and the same weights (2e-4 absolute) after 3 AdamW steps with clipping, for the
 * reasons {@code TensorParallelTrainingTest} gives: only the order of float sums differs. The weights' bound
 * is wider than that test's 5e-5 because Adam normalises an element whose gradient is as small as its
 * rounding error to about lr: tp 2 pp 2 measured 6.9e-5 on an AVX2 machine (8-lane sums, AMD Zen 3) against
 * under 5e-5 with AVX-512. A stage updated from the wrong gradients moves weights by O(lr) = 1e-2.
 */
@ExtendWith(LeakCheck.class)
public class PipelineTrainingTest {
    public static final int SEQ = 8, VOCAB = 96;
    static final double LOSS_REL = 1e-5, WEIGHT_ABS = 2e-4;
    public static int[] tokens;

    @BeforeAll
    public static void data() {
        Random rnd = new Random(13);
        tokens = new int[2000];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(VOCAB);
    }

    static ExitConfig exit(int layer, ExitConfig.Placement at, ExitKind kind, boolean shared, double w) {
        return new ExitConfig(layer, at, kind, shared, WeightSchedule.constant(w), 1.0);
    }

    public static ModelConfig gpt2() {
        return ModelConfig.gpt2(VOCAB, 32, 4, 4, SEQ, List.of(exit(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, true, 0.2),
                exit(2, ExitConfig.Placement.POST, ExitKind.MLP, false, 0.4), exit(3, ExitConfig.Placement.POST, ExitKind.NORM, true, 0.3),
                exit(4, ExitConfig.Placement.PRE, ExitKind.LAYER, false, 0.5)));
    }

    public static ModelConfig llama() {
        return ModelConfig.llama(VOCAB, 32, 4, 4, 2, 48, SEQ, List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM, false, 0.5),
                exit(2, ExitConfig.Placement.POST, ExitKind.LAYER, false, 0.3), exit(4, ExitConfig.Placement.POST, ExitKind.MLP, false, 0.4)))
                .withDynamicTokenWeights(true);
    }

    /** Micro-batch 4 rows, 4 microbatches per step (the pipeline's), 3 steps, clipping active. */
    public static TrainConfig config() {
        return new TrainConfig(SEQ, 4, 4, 3, 1e-2, 1e-3, 1, 0.01, 0.9, 0.95, 0.5, 7, 0, 1, 0, 1, 0.0);
    }

    record Run(List<double[]> steps, Map<String, float[]> weights, Map<String, Shard> shards, long bucketsOverlapped) {}

    /** One rank through the ordinary trainer: its logged [total, final, exits...] per step and weights. */
    static Run oneRank(ModelConfig mc, Path out) {
        List<double[]> steps = new ArrayList<>();
        GradientSync recording = new GradientSync() {
            public int rank() { return 0; }
            public int ranks() { return 1; }
            public void reduceGradients(Map<String, Tensor> trainable) {}
            public void averageScalars(double[] values) { steps.add(values.clone()); }
        };
        try (var model = EarlyExitModel.create(mc, Device.CPU, 3);
             var trainer = new Trainer(model, null, TokenWindows.of(tokens, SEQ), config(), out, null, recording)) {
            trainer.train();
            Map<String, float[]> w = new LinkedHashMap<>();
            model.parameters().all().forEach((k, v) -> w.put(k, v.toFloatArray()));
            return new Run(steps, w, Map.of(), 0);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** One stage of a layout through the ordinary trainer with the 1F1B runner; the checkpoint goes to {@code out}. */
    static Run stage(ModelConfig mc, ParallelState state, Path out) {
        var pipeline = new ProcessGroupPipelineParallel(state.ppGroup());
        try (var dpSync = new DataParallelGradientSync(state.dpGroup(), 16 << 10); // small buckets: several per stage, so some overlap
             var model = EarlyExitModel.createStage(mc, Device.CPU, 3, ProcessGroupTensorParallel.of(state), pipeline,
                     PipelineStage.balanced(mc.nLayers(), state.ppSize(), state.ppRank()));
             var runner = new OneFOneBRunner(model, pipeline)) {
            var sync = new dev.exeunt.parallel.RecordingSync(dpSync);
            try (var trainer = new Trainer(model, null, TokenWindows.of(tokens, SEQ), config(), out, null, sync)) {
                trainer.runMicroBatchesWith(runner).train();
            }
            List<double[]> steps = sync.steps;
            Map<String, float[]> w = new LinkedHashMap<>();
            Map<String, Shard> shards = new LinkedHashMap<>();
            model.parameters().all().forEach((k, v) -> {
                w.put(k, v.toFloatArray());
                shards.put(k, model.parameters().shard(k));
            });
            return new Run(steps, w, shards, dpSync.bucketsStartedDuringBackward());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static List<Run> pipeline(ModelConfig mc, int tp, int dp, int pp, Path out) {
        return LocalWorld.run(tp * dp * pp, pg -> {
            try (var state = ParallelState.create(pg, tp, dp, pp).validate(mc)) {
                return stage(mc, state, out);
            }
        });
    }

    void assertLayoutsMatchOneRank(ModelConfig mc, Path dir) throws IOException {
        Run one = oneRank(mc, dir.resolve("one"));
        for (int[] layout : new int[][] {{1, 1, 2}, {1, 1, 4}, {2, 1, 2}, {1, 2, 2}, {2, 2, 2}}) {
            int tp = layout[0], dp = layout[1], pp = layout[2];
            String name = mc.family() + " tp=" + tp + " dp=" + dp + " pp=" + pp;
            Path out = dir.resolve("tp" + tp + "dp" + dp + "pp" + pp);
            List<Run> ranks = pipeline(mc, tp, dp, pp, out);
            double maxLoss = 0, maxWeight = 0;
            Map<String, Integer> holders = new LinkedHashMap<>();
            for (Run r : ranks) {
                for (int s = 0; s < 3; s++) {
                    double[] a = one.steps().get(s), b = r.steps().get(s);
                    assertEquals(a.length, b.length, name);
                    for (int i = 0; i < a.length; i++) {
                        double rel = Math.abs(a[i] - b[i]) / Math.abs(a[i]);
                        maxLoss = Math.max(maxLoss, rel);
                        assertTrue(rel <= LOSS_REL, name + " step " + s + " loss[" + i + "] " + b[i] + " vs one rank " + a[i]);
                    }
                }
                for (var e : r.weights().entrySet()) {
                    holders.merge(e.getKey(), 1, Integer::sum);
                    float[] want;
                    try (Tensor full = Tensor.of(one.weights().get(e.getKey()), r.shards().get(e.getKey()).fullShape());
                         Tensor slice = r.shards().get(e.getKey()).sliceOf(full)) {
                        want = slice.toFloatArray();
                    }
                    for (int i = 0; i < want.length; i++) maxWeight = Math.max(maxWeight, Math.abs(want[i] - e.getValue()[i]));
                }
            }
            assertEquals(one.weights().keySet(), holders.keySet(), name + ": every parameter lives on some stage");
            // The data-parallel all-reduce overlaps each stage's last backward (from the second step, which knows the buckets).
            if (dp > 1) assertTrue(ranks.stream().mapToLong(Run::bucketsOverlapped).sum() > 0, name + ": no bucket overlapped the backward");
            System.out.printf("%s: max relative loss difference %.3g, max absolute weight difference %.3g%n", name, maxLoss, maxWeight);
            assertTrue(maxWeight <= WEIGHT_ABS, name + ": weights differ from one rank by " + maxWeight);
            // Stage 0 wrote the one-rank checkpoint: every stage's tensors, each tied head once, and the moments.
            dev.exeunt.parallel.TensorParallelTrainingTest.assertSameCheckpoint(dir.resolve("one"), out, name, WEIGHT_ABS);
        }
    }

    @Test
    void gpt2PipelineLayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        assertLayoutsMatchOneRank(gpt2(), dir);
    }

    @Test
    void llamaPipelineLayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        assertLayoutsMatchOneRank(llama(), dir);
    }

    /** Qwen3 with attention biases (head_dim 12, q/k norms) and Llama 3's scaled RoPE, cut into stages. */
    @Test
    void llamaRelativesPipelineLayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        var o = dev.exeunt.model.config.AttentionOptions.LLAMA.withHeadDim(12).withQkNorm(true).withBiases(true, true)
                .withRopeScaling(dev.exeunt.tensor.RopeScaling.llama3(4, 1, 4, 8));
        assertLayoutsMatchOneRank(llama().withAttention(o), dir);
    }

    @Test
    void oneFOneBRunsEachMicrobatchForwardThenBackwardWithBoundedWarmup() {
        for (int p : new int[] {1, 2, 4}) {
            for (int m : new int[] {1, 3, 4, 8}) {
                for (int s = 0; s < p; s++) {
                    var actions = OneFOneB.schedule(s, p, m);
                    assertEquals(2 * m, actions.size());
                    int inFlight = 0, maxInFlight = 0, f = 0, b = 0;
                    for (var a : actions) {
                        if (a.forward()) assertEquals(f++, a.micro());
                        else assertEquals(b++, a.micro());
                        inFlight += a.forward() ? 1 : -1;
                        assertTrue(inFlight >= 0);
                        maxInFlight = Math.max(maxInFlight, inFlight);
                    }
                    assertEquals(Math.min(p - s, m), maxInFlight, "stage " + s + " of " + p + ", " + m + " microbatches");
                }
            }
        }
        assertEquals("[F0, F1, F2, F3, B0, B1, B2, B3]", OneFOneB.schedule(0, 4, 4).toString());
        assertEquals("[F0, F1, F2, B0, F3, B1, B2, B3]", OneFOneB.schedule(1, 4, 4).toString()); // 2 warm-up forwards
        assertEquals("[F0, B0, F1, B1, F2, B2, F3, B3]", OneFOneB.schedule(3, 4, 4).toString());
    }
}
