package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.comm.CommException;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
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
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Data-parallel training over the local engine gives the one-rank run: the same per-step loss, final
 * loss and exit losses, and the same weights after 3 AdamW steps with clipping, for GPT-2 and Llama with
 * norm and mlp exits (Llama also with dynamic token weights).
 *
 * <p>Tolerance: the ranks compute the same sums in a different order (each rank's mean over B/D rows,
 * then the sum over ranks), so only float rounding differs: a few ulps per reduction, measured ~4e-8
 * relative on a loss, so 1e-5 relative on losses and the gradient norm. Weights are more sensitive:
 * Adam's update m/(sqrt(v)+eps) normalises every gradient element to about lr, so an element whose
 * gradient is near zero (as small as its own rounding error) moves by a visibly different fraction of
 * lr; measured up to ~1e-5 = 1e-3 lr after 3 steps at lr 1e-2, hence 5e-5 absolute (0.5% of one step).
 * An error in the data split (a missing row, a rank's rows read twice) changes the gradient direction
 * and moves weights by O(lr) and the later losses by far more than 1e-5; a wrong scale (a sum over ranks
 * instead of the mean) shows in the logged gradient norm.
 */
@ExtendWith(LeakCheck.class)
class DataParallelTrainingTest {
    static final int SEQ = 8;
    static final double LOSS_REL = 1e-5, WEIGHT_ABS = 5e-5;
    static BpeTokenizer tokenizer;
    static int[] tokens;

    @BeforeAll
    static void data() {
        tokenizer = BpeTrainer.train(List.of("data parallel ranks all reduce the gradients of every replica in buckets"),
                300, List.of("<|endoftext|>"));
        Random rnd = new Random(10);
        tokens = new int[2000];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(tokenizer.vocabSize());
    }

    static ModelConfig gpt2() {
        return ModelConfig.gpt2(tokenizer.vocabSize(), 32, 3, 2, SEQ,
                List.of(ExitConfig.post(1, ExitKind.NORM, 0.5), ExitConfig.post(2, ExitKind.MLP, 0.3)));
    }

    static ModelConfig llama() {
        return ModelConfig.llama(tokenizer.vocabSize(), 32, 3, 4, 2, 48, SEQ,
                List.of(ExitConfig.post(1, ExitKind.MLP, 0.4), ExitConfig.post(2, ExitKind.NORM, 0.6)))
                .withDynamicTokenWeights(true);
    }

    /** Global micro-batch 8 (divisible by 2 and 4), 2 micro-batches, clipping active (random tokens give norms > 0.5). */
    static TrainConfig config() {
        return new TrainConfig(SEQ, 8, 2, 3, 1e-2, 1e-3, 1, 0.01, 0.9, 0.95, 0.5, 7, 0, 1, 0, 1, 0.0);
    }

    /** What one rank ended with: its averaged losses per step [total, final, exits...] and its weights. */
    record RankResult(List<double[]> steps, Map<String, float[]> weights) {}

    static RankResult trainRank(ModelConfig mc, TokenWindows windows, GradientSync sync, Path out) {
        return trainRank(mc, windows, sync, out, config(), Integer.MAX_VALUE, false);
    }

    /** {@code stopAfter} iterations of {@code cfg} (then a checkpoint), continuing the checkpoint in {@code out} when {@code resume}. */
    static RankResult trainRank(ModelConfig mc, TokenWindows windows, GradientSync sync, Path out, TrainConfig cfg, int stopAfter,
                                boolean resume) {
        var rec = new RecordingSync(sync);
        try (var model = EarlyExitModel.create(mc, Device.CPU, resume ? 99 : 3);
             var trainer = new Trainer(model, tokenizer, windows, cfg, out, null, rec)) {
            if (resume) trainer.resumeFrom(out);
            trainer.stopAfter(stopAfter);
            trainer.train();
            Map<String, float[]> w = new LinkedHashMap<>();
            model.parameters().all().forEach((k, v) -> w.put(k, v.toFloatArray()));
            return new RankResult(rec.steps, w);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static List<RankResult> trainDp(ModelConfig mc, int dp, long bucketBytes, Path out) {
        var windows = TokenWindows.of(tokens, SEQ);
        return LocalWorld.run(dp, pg -> {
            try (var sync = new DataParallelGradientSync(pg, bucketBytes)) {
                RankResult r = trainRank(mc, windows, sync, out);
                // Steps 2 and 3 overlap their all-reduces with the backward (step 1 learns the bucket layout).
                if (bucketBytes < 1 << 16) assertTrue(sync.bucketsStartedDuringBackward() > 0, "no bucket left during the backward");
                return r;
            }
        });
    }

    void assertSameAsOneRank(ModelConfig mc, Path dir) throws IOException {
        RankResult one = trainRank(mc, TokenWindows.of(tokens, SEQ), GradientSync.SINGLE, dir.resolve("one"));
        List<String> oneLog = Files.readAllLines(dir.resolve("one").resolve(Trainer.LOG));
        // dp=2 with Megatron's default 25 MB bucket (one bucket); dp=4 with 4 KB buckets, so gradients span buckets.
        for (int dp : new int[] {2, 4}) {
            long bucket = dp == 2 ? DataParallelGradientSync.DEFAULT_BUCKET_BYTES : 4096;
            Path out = dir.resolve("dp" + dp);
            List<RankResult> ranks = trainDp(mc, dp, bucket, out);
            double maxLossRel = 0, maxWeightAbs = 0;
            for (RankResult r : ranks) {
                assertEquals(3, r.steps().size());
                for (int s = 0; s < 3; s++) {
                    double[] a = one.steps().get(s), b = r.steps().get(s);
                    assertEquals(a.length, b.length);
                    // Every rank reports the same averaged losses, bit for bit.
                    assertArrayEquals(ranks.get(0).steps().get(s), b, 0.0);
                    for (int i = 0; i < a.length; i++) {
                        double rel = Math.abs(a[i] - b[i]) / Math.abs(a[i]);
                        maxLossRel = Math.max(maxLossRel, rel);
                        assertTrue(rel <= LOSS_REL, "dp=" + dp + " step " + s + " loss[" + i + "] " + b[i] + " vs one rank " + a[i]);
                    }
                }
                for (var e : one.weights().entrySet()) {
                    float[] a = e.getValue(), b = r.weights().get(e.getKey());
                    // Every rank holds the same weights, bit for bit.
                    assertArrayEquals(ranks.get(0).weights().get(e.getKey()), b, 0f, e.getKey());
                    for (int i = 0; i < a.length; i++) maxWeightAbs = Math.max(maxWeightAbs, Math.abs(a[i] - b[i]));
                }
            }
            System.out.printf("%s dp=%d: max relative loss difference %.3g, max absolute weight difference %.3g%n",
                    mc.family(), dp, maxLossRel, maxWeightAbs);
            assertTrue(maxWeightAbs <= WEIGHT_ABS, "dp=" + dp + " weights differ from one rank by " + maxWeightAbs);
            // Training changed the weights by far more than the tolerance, so the comparison can fail.
            assertTrue(changedBy(mc, one) > 100 * WEIGHT_ABS);
            // Rank 0 alone wrote the log and the checkpoint, with the same losses as one rank's log.
            List<String> log = Files.readAllLines(out.resolve(Trainer.LOG));
            assertEquals(oneLog.size(), log.size());
            for (int s = 0; s < log.size(); s++) {
                double[] a = logged(oneLog.get(s)), b = logged(log.get(s));
                assertEquals(a.length, b.length);
                // The log prints 6 decimals, so allow its rounding (5e-7) on top of the tolerance.
                for (int i = 0; i < a.length; i++) {
                    assertEquals(a[i], b[i], LOSS_REL * Math.abs(a[i]) + 1e-6, "dp=" + dp + " log line " + s + ": " + log.get(s));
                }
            }
            assertTrue(Files.exists(out.resolve("model.safetensors")));
        }
    }

    static final Pattern NUMBER = Pattern.compile("-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?");

    /**
     * A log line's loss, final loss, exit losses and gradient norm (the norm catches a wrong gradient scale,
     * e.g. a sum over ranks instead of the mean, which clipping and Adam's normalisation would otherwise hide).
     */
    static double[] logged(String line) {
        String losses = line.substring(line.indexOf("\"loss\""), line.indexOf(",\"exit_weights\""));
        String norm = line.substring(line.indexOf("\"grad_norm\""), line.indexOf(",\"tokens_per_s\""));
        return NUMBER.matcher(losses + " " + norm).results().mapToDouble(m -> Double.parseDouble(m.group())).toArray();
    }

    static double changedBy(ModelConfig mc, RankResult trained) {
        double max = 0;
        try (var init = EarlyExitModel.create(mc, Device.CPU, 3)) {
            for (var e : init.parameters().all().entrySet()) {
                float[] a = e.getValue().toFloatArray(), b = trained.weights().get(e.getKey());
                for (int i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
            }
        }
        return max;
    }

    @Test
    void gpt2WithNormAndMlpExitsMatchesOneRank(@TempDir Path dir) throws IOException {
        assertSameAsOneRank(gpt2(), dir);
    }

    @Test
    void llamaWithMlpAndNormExitsAndTokenWeightsMatchesOneRank(@TempDir Path dir) throws IOException {
        assertSameAsOneRank(llama(), dir);
    }

    @Test
    void aRunSavedAtDp2ResumesAtDp4AsOneRankWouldContinue(@TempDir Path dir) {
        var windows = TokenWindows.of(tokens, SEQ);
        TrainConfig cfg = config().withIters(4);
        ModelConfig mc = gpt2();
        RankResult one = trainRank(mc, windows, GradientSync.SINGLE, dir.resolve("one"), cfg, Integer.MAX_VALUE, false);
        Path out = dir.resolve("dp");
        List<RankResult> first = LocalWorld.run(2, pg -> {
            try (var sync = new DataParallelGradientSync(pg)) {
                return trainRank(mc, windows, sync, out, cfg, 2, false);
            }
        });
        // The resumed ranks start from other random weights (seed 99): everything must come from the checkpoint.
        List<RankResult> rest = LocalWorld.run(4, pg -> {
            try (var sync = new DataParallelGradientSync(pg, 4096)) {
                return trainRank(mc, windows, sync, out, cfg, Integer.MAX_VALUE, true);
            }
        });
        List<double[]> steps = new ArrayList<>(first.get(0).steps());
        steps.addAll(rest.get(0).steps());
        assertEquals(4, steps.size());
        for (int s = 0; s < 4; s++) {
            for (int i = 0; i < steps.get(s).length; i++) {
                double a = one.steps().get(s)[i], b = steps.get(s)[i];
                assertTrue(Math.abs(a - b) <= LOSS_REL * Math.abs(a), "step " + s + " loss[" + i + "] " + b + " vs one rank " + a);
            }
        }
        for (RankResult r : rest) {
            for (var e : one.weights().entrySet()) {
                float[] a = e.getValue(), b = r.weights().get(e.getKey());
                for (int i = 0; i < a.length; i++) assertEquals(a[i], b[i], WEIGHT_ABS, e.getKey() + "[" + i + "]");
            }
        }
    }

    @Test
    void aRankWithBadDataEndsTheRunOnEveryRankWithItsMessage(@TempDir Path dir) {
        int[] bad = tokens.clone();
        for (int i = 0; i < bad.length; i++) bad[i] = tokenizer.vocabSize() + 5;
        var good = TokenWindows.of(tokens, SEQ);
        var broken = TokenWindows.of(bad, SEQ);
        var e = assertThrows(CommException.class, () -> LocalWorld.run(2, pg -> {
            try (var sync = new DataParallelGradientSync(pg)) {
                return trainRank(gpt2(), pg.rank() == 1 ? broken : good, sync, dir.resolve("out"));
            }
        }));
        assertTrue(e.getMessage().contains("rank 1 failed"), e.getMessage());
        assertTrue(e.getMessage().contains("out of range"), e.getMessage());
        // Rank 0 stopped in the first exchange: no log line, no checkpoint.
        assertFalse(Files.exists(dir.resolve("out/model.safetensors")));
    }

    @Test
    void aBatchNotDivisibleByTheRanksIsRefusedNamingBoth(@TempDir Path dir) {
        var windows = TokenWindows.of(tokens, SEQ);
        var e = assertThrows(CommException.class, () -> LocalWorld.run(3, pg -> {
            try (var sync = new DataParallelGradientSync(pg)) {
                return trainRank(gpt2(), windows, sync, dir.resolve("out"));
            }
        }));
        assertTrue(e.getMessage().contains("batch size 8 is not divisible by the 3 data-parallel ranks"), e.getMessage());
    }
}
