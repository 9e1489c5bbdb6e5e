package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.model.train.TrainingState;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
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
 * Tensor parallelism (with data parallelism) over the local engine gives the one-rank run: layouts
 * tp in {1, 2, 4} x dp in {1, 2} train GPT-2 (tied head, exits of every kind, shared and own heads) and
 * Llama (untied, grouped kv heads that tp 4 must replicate, dynamic token weights) for 3 AdamW steps
 * with clipping (tp 2 and tp 4 x dp 2 also with sequence parallelism), and give the same per-step total, final and exit losses, the same weights on every
 * rank (each rank's shard equal to its slice of the one-rank weights) and the same consolidated
 * checkpoint (weights and optimizer moments) as one rank.
 *
 * <p>Tolerance as in {@link DataParallelTrainingTest} (1e-5 relative on losses, 5e-5 absolute on
 * weights) and for the same reason: a row-parallel product sums its partial products over ranks, the
 * vocabulary-parallel loss its partial sums of exponentials, so only the order of float additions
 * differs. A wrong shard (a head read by the wrong rank, a missing all-reduce of an input gradient, a
 * partial kv gradient not summed) changes the losses after the first step by far more.
 */
@ExtendWith(LeakCheck.class)
public class TensorParallelTrainingTest {
    static final int SEQ = 8;
    static final double LOSS_REL = 1e-5, WEIGHT_ABS = 5e-5;
    static int[] tokens;
    /** A vocabulary divisible by 4 (tp must divide it); the data uses all of it. */
    static final int VOCAB = 96;

    @BeforeAll
    static void data() {
        Random rnd = new Random(11);
        tokens = new int[2000];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(VOCAB);
    }

    static ExitConfig exit(int layer, ExitConfig.Placement at, ExitKind kind, boolean shared, double w, double temperature) {
        return new ExitConfig(layer, at, kind, shared, WeightSchedule.constant(w), temperature);
    }

    /** Tied: an embedding exit and an mlp exit share the embedding as head; a norm and a layer exit have their own. */
    static ModelConfig gpt2() {
        return ModelConfig.gpt2(VOCAB, 32, 3, 4, SEQ, List.of(
                exit(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, true, 0.2, 1.0),
                exit(1, ExitConfig.Placement.POST, ExitKind.NORM, false, 0.5, 1.0),
                exit(2, ExitConfig.Placement.POST, ExitKind.MLP, true, 0.3, 2.0),
                exit(2, ExitConfig.Placement.POST, ExitKind.LAYER, false, 0.4, 1.0)));
    }

    /** Untied, 4 heads over 2 kv heads (split at tp 2, replicated at tp 4), every exit kind, dynamic token weights. */
    static ModelConfig llama() {
        return ModelConfig.llama(VOCAB, 32, 3, 4, 2, 48, SEQ, List.of(
                exit(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, false, 0.2, 1.0),
                exit(1, ExitConfig.Placement.POST, ExitKind.MLP, false, 0.4, 1.5),
                exit(2, ExitConfig.Placement.POST, ExitKind.NORM, false, 0.6, 1.0),
                exit(2, ExitConfig.Placement.POST, ExitKind.LAYER, false, 0.3, 1.0)))
                .withDynamicTokenWeights(true);
    }

    static TrainConfig config() {
        return new TrainConfig(SEQ, 8, 2, 3, 1e-2, 1e-3, 1, 0.01, 0.9, 0.95, 0.5, 7, 0, 1, 0, 1, 0.0);
    }

    /** One rank's logged losses per step and its (sharded) weights with their shards. */
    record RankResult(List<double[]> steps, Map<String, float[]> weights, Map<String, Shard> shards) {}

    static RankResult trainRank(ModelConfig mc, TensorParallel tp, GradientSync sync, Path out) {
        return trainRank(mc, tp, sync, out, config(), Integer.MAX_VALUE, false);
    }

    /** {@code stopAfter} iterations of {@code cfg}, continuing the checkpoint in {@code out} when {@code resume}. */
    static RankResult trainRank(ModelConfig mc, TensorParallel tp, GradientSync sync, Path out, TrainConfig cfg, int stopAfter,
                                boolean resume) {
        var rec = new RecordingSync(sync);
        // A resumed rank starts from other random weights (seed 99): everything must come from the checkpoint.
        try (var model = EarlyExitModel.create(mc, Device.CPU, resume ? 99 : 3, tp);
             var trainer = new Trainer(model, null, TokenWindows.of(tokens, SEQ), cfg, out, null, rec)) {
            if (resume) trainer.resumeFrom(out);
            trainer.stopAfter(stopAfter);
            try (var s = Scope.open(); var g = GradMode.noGrad()) {
                // Under sequence parallelism the activations between regions hold this rank's positions only.
                int positions = model.embed(Tensor.ofInts(new int[2 * SEQ], 2, SEQ), 0).dim(1);
                assertEquals(tp.sequenceParallel() ? SEQ / tp.size() : SEQ, positions);
            }
            trainer.train();
            Map<String, float[]> w = new LinkedHashMap<>();
            Map<String, Shard> shards = new LinkedHashMap<>();
            model.parameters().all().forEach((k, v) -> {
                w.put(k, v.toFloatArray());
                shards.put(k, model.parameters().shard(k));
            });
            return new RankResult(rec.steps, w, shards);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static List<RankResult> train(ModelConfig mc, int tp, int dp, boolean sequenceParallel, Path out) {
        return train(mc, tp, dp, sequenceParallel, out, config(), Integer.MAX_VALUE, false);
    }

    static List<RankResult> train(ModelConfig mc, int tp, int dp, boolean sequenceParallel, Path out, TrainConfig cfg, int stopAfter,
                                  boolean resume) {
        return LocalWorld.run(tp * dp, pg -> {
            try (var state = ParallelState.create(pg, tp, dp, 1).validate(mc);
                 var sync = new DataParallelGradientSync(state.dpGroup())) {
                return trainRank(mc, ProcessGroupTensorParallel.of(state, sequenceParallel), sync, out, cfg, stopAfter, resume);
            }
        });
    }

    void assertLayoutsMatchOneRank(ModelConfig mc, Path dir) throws IOException {
        // {tp, dp, sequence parallel}
        assertLayoutsMatchOneRank(mc, dir, new int[][] {{2, 1, 0}, {4, 1, 0}, {1, 2, 0}, {2, 2, 0}, {4, 2, 0}, {2, 1, 1}, {4, 2, 1}});
    }

    void assertLayoutsMatchOneRank(ModelConfig mc, Path dir, int[][] layouts) throws IOException {
        RankResult one = trainRank(mc, TensorParallel.NONE, GradientSync.SINGLE, dir.resolve("one"));
        assertTrue(DataParallelTrainingTest.changedBy(mc, new DataParallelTrainingTest.RankResult(one.steps(), one.weights()))
                > 100 * WEIGHT_ABS, "training moved the weights by more than the tolerance, so the comparison can fail");
        for (int[] layout : layouts) {
            int tp = layout[0], dp = layout[1];
            boolean sp = layout[2] == 1;
            String name = mc.family() + " tp=" + tp + " dp=" + dp + (sp ? " sequence-parallel" : "");
            Path out = dir.resolve("tp" + tp + "dp" + dp + (sp ? "sp" : ""));
            List<RankResult> ranks = train(mc, tp, dp, sp, out);
            double maxLossRel = 0, maxWeightAbs = 0;
            for (int r = 0; r < ranks.size(); r++) {
                RankResult rank = ranks.get(r);
                assertEquals(3, rank.steps().size(), name);
                for (int s = 0; s < 3; s++) {
                    double[] a = one.steps().get(s), b = rank.steps().get(s);
                    for (int i = 0; i < a.length; i++) {
                        double rel = Math.abs(a[i] - b[i]) / Math.abs(a[i]);
                        maxLossRel = Math.max(maxLossRel, rel);
                        assertTrue(rel <= LOSS_REL, name + " rank " + r + " step " + s + " loss[" + i + "] " + b[i] + " vs one rank " + a[i]);
                    }
                }
                for (var e : one.weights().entrySet()) {
                    Shard shard = rank.shards().get(e.getKey());
                    float[] want = slice(e.getValue(), shard), got = rank.weights().get(e.getKey());
                    assertEquals(want.length, got.length, name + " " + e.getKey());
                    for (int i = 0; i < want.length; i++) maxWeightAbs = Math.max(maxWeightAbs, Math.abs(want[i] - got[i]));
                }
                // Ranks that hold the same shard (data-parallel replicas) hold it bit for bit.
                RankResult replica = ranks.get(r % tp);
                for (var e : rank.weights().entrySet()) assertArrayEquals(replica.weights().get(e.getKey()), e.getValue(), 0f, e.getKey());
            }
            System.out.printf("%s: max relative loss difference %.3g, max absolute weight difference %.3g%n", name, maxLossRel, maxWeightAbs);
            assertTrue(maxWeightAbs <= WEIGHT_ABS, name + ": weights differ from one rank by " + maxWeightAbs);
            assertSameCheckpoint(dir.resolve("one"), out, name);
        }
    }

    /** The layout's checkpoint holds the one-rank tensors, whole, under the same names. */
    public static void assertSameCheckpoint(Path one, Path layout, String name) throws IOException {
        assertSameCheckpoint(one, layout, name, WEIGHT_ABS);
    }

    /** {@link #assertSameCheckpoint(Path, Path, String)} with weights within weightAbs. */
    public static void assertSameCheckpoint(Path one, Path layout, String name, double weightAbs) throws IOException {
        for (String file : new String[] {"model.safetensors", TrainingState.OPTIMIZER}) {
            try (var a = SafetensorsCheckpoint.open(one.resolve(file)); var b = SafetensorsCheckpoint.open(layout.resolve(file))) {
                assertEquals(a.names(), b.names(), name + " " + file);
                for (String t : a.names()) {
                    assertArrayEquals(a.tensor(t).shape(), b.tensor(t).shape(), name + " " + file + " " + t);
                    try (Tensor x = TensorFiles.load(a, t, Device.CPU); Tensor y = TensorFiles.load(b, t, Device.CPU)) {
                        float[] u = x.toFloatArray(), v = y.toFloatArray();
                        // Moments of squared gradients are tiny; compare them relative to their scale.
                        double tol = file.equals(TrainingState.OPTIMIZER) ? 1e-3 * maxAbs(u) + 1e-12 : weightAbs;
                        for (int i = 0; i < u.length; i++) assertEquals(u[i], v[i], tol, name + " " + file + " " + t + "[" + i + "]");
                    }
                }
            }
        }
        assertTrue(Files.exists(layout.resolve(Trainer.LOG)));
    }

    static double maxAbs(float[] a) {
        double m = 0;
        for (float x : a) m = Math.max(m, Math.abs(x));
        return m;
    }

    /** This shard's part of a full row-major tensor's values. */
    static float[] slice(float[] full, Shard shard) {
        try (Tensor t = Tensor.of(full, shard.fullShape()); Tensor s = shard.sliceOf(t)) {
            return s.toFloatArray();
        }
    }

    /**
     * 2 steps at tp 2 (sequence parallel), saved; 2 more resumed at tp 4 x dp 2; then 1 more resumed at
     * one rank: the same 5 steps as one rank alone, and the same weights.
     */
    @Test
    void aRunResumedInOtherLayoutsContinuesAsOneRankWould(@TempDir Path dir) throws IOException {
        ModelConfig mc = llama();
        TrainConfig cfg = config().withIters(5);
        RankResult one = trainRank(mc, TensorParallel.NONE, GradientSync.SINGLE, dir.resolve("one"), cfg, Integer.MAX_VALUE, false);
        Path out = dir.resolve("resharded");
        List<double[]> steps = new ArrayList<>(train(mc, 2, 1, true, out, cfg, 2, false).get(0).steps());
        steps.addAll(train(mc, 4, 2, false, out, cfg, 2, true).get(0).steps());
        RankResult last = trainRank(mc, TensorParallel.NONE, GradientSync.SINGLE, out, cfg, Integer.MAX_VALUE, true);
        steps.addAll(last.steps());
        assertEquals(5, steps.size());
        for (int s = 0; s < 5; s++) {
            for (int i = 0; i < steps.get(s).length; i++) {
                double a = one.steps().get(s)[i], b = steps.get(s)[i];
                assertTrue(Math.abs(a - b) <= LOSS_REL * Math.abs(a), "step " + s + " loss[" + i + "] " + b + " vs one rank " + a);
            }
        }
        for (var e : one.weights().entrySet()) {
            float[] a = e.getValue(), b = last.weights().get(e.getKey());
            for (int i = 0; i < a.length; i++) assertEquals(a[i], b[i], WEIGHT_ABS, e.getKey() + "[" + i + "]");
        }
        assertSameCheckpoint(dir.resolve("one"), out, "resharded");
    }

    @Test
    void gpt2LayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        assertLayoutsMatchOneRank(gpt2(), dir);
    }

    @Test
    void withoutExitsLayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        int[][] layouts = {{2, 2, 0}, {4, 1, 1}};
        assertLayoutsMatchOneRank(gpt2().withExits(List.of()), dir.resolve("gpt2"), layouts);
        assertLayoutsMatchOneRank(llama().withExits(List.of()), dir.resolve("llama"), layouts);
    }

    @Test
    void llamaLayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        assertLayoutsMatchOneRank(llama(), dir);
    }

    /**
     * Llama's relatives under tensor parallelism (Qwen3 with attention_bias): q/k/v biases (column-parallel, and whole with summed
     * gradients where tp 4 replicates the 2 kv heads), Qwen3's head_dim and q/k norms (one weight every
     * rank's heads share), Llama 3's scaled RoPE.
     */
    @Test
    void llamaRelativesLayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        var o = dev.exeunt.model.config.AttentionOptions.LLAMA.withHeadDim(12).withQkNorm(true).withBiases(true, true)
                .withRopeScaling(dev.exeunt.tensor.RopeScaling.llama3(4, 1, 4, 8));
        assertLayoutsMatchOneRank(llama().withAttention(o), dir, new int[][] {{2, 1, 0}, {4, 1, 0}, {2, 2, 1}});
    }

    /** Mistral's sliding window (6 of the SEQ = 8 positions) under tensor and sequence parallelism. */
    @Test
    void slidingWindowLayoutsMatchOneRank(@TempDir Path dir) throws IOException {
        var o = dev.exeunt.model.config.AttentionOptions.LLAMA.withSlidingWindow(6);
        assertLayoutsMatchOneRank(llama().withAttention(o), dir, new int[][] {{2, 1, 0}, {2, 2, 1}});
    }
}
