package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.parallel.pipeline.OneFOneBRunner;
import dev.exeunt.parallel.pipeline.PipelineTrainingTest;
import dev.exeunt.parallel.pipeline.ProcessGroupPipelineParallel;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * The distributed optimizer (ZeRO-1) under pipeline parallelism: dp 2 x pp 2 (and tp 2 x dp 2 x pp 2),
 * each stage's optimizer sharding that stage's parameters over its data-parallel group, trains as one
 * rank does: the same per-step losses, the same weights on every rank, and stage 0 writes the one-rank
 * checkpoint (every stage's weights and whole moments, a tied head's copy once); a run saved after 2 steps
 * resumes on the same layout and continues as one rank's 4 steps. GPT-2 with a tied head (the last stage
 * holds a copy of the embedding, whose gradient norm must count once) and shared exit heads, and Llama.
 * Tolerances as in {@link DistributedOptimizerTrainingTest}: only the order of float sums differs.
 */
@ExtendWith(LeakCheck.class)
class DistributedOptimizerPipelineTest {
    record Run(List<double[]> steps, Map<String, float[]> weights, Map<String, Shard> shards) {}

    @BeforeAll
    static void data() {
        PipelineTrainingTest.data();
    }

    static TokenWindows windows() {
        return TokenWindows.of(PipelineTrainingTest.tokens, PipelineTrainingTest.SEQ);
    }

    static Run oneRank(ModelConfig mc, Path out, TrainConfig cfg) {
        var rec = new RecordingSync(GradientSync.SINGLE);
        try (var model = EarlyExitModel.create(mc, Device.CPU, 3); var trainer = new Trainer(model, null, windows(), cfg, out, null, rec)) {
            trainer.train();
            return result(rec, model);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Every rank of tp x dp x pp with the distributed optimizer: {@code stopAfter} iterations of {@code cfg},
     * then a checkpoint in {@code out}; resuming from it (from other random weights, seed 99) when {@code resume}.
     */
    static List<Run> pipeline(ModelConfig mc, int tp, int dp, int pp, Path out, TrainConfig cfg, int stopAfter, boolean resume) {
        return LocalWorld.run(tp * dp * pp, pg -> {
            try (var state = ParallelState.create(pg, tp, dp, pp).validate(mc);
                 var dpSync = new DataParallelGradientSync(state.dpGroup())) {
                var pipeline = new ProcessGroupPipelineParallel(state.ppGroup());
                var rec = new RecordingSync(dpSync);
                try (var model = EarlyExitModel.createStage(mc, Device.CPU, resume ? 99 : 3, ProcessGroupTensorParallel.of(state), pipeline,
                             PipelineStage.balanced(mc.nLayers(), pp, state.ppRank()));
                     var runner = new OneFOneBRunner(model, pipeline);
                     var trainer = new Trainer(model, null, windows(), cfg, out, null, rec, DistributedOptimizer.over(state.dpGroup()))) {
                    trainer.runMicroBatchesWith(runner);
                    if (resume) trainer.resumeFrom(out);
                    trainer.stopAfter(stopAfter);
                    trainer.train();
                    assertEquals(0, rec.gradientReductions, "the distributed optimizer replaces the gradient all-reduce");
                    assertTrue(trainer.optimizerMemory().bytesOnThisRank() < trainer.optimizerMemory().replicatedBytes(),
                            trainer.optimizerMemory().toString());
                    return result(rec, model);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    static Run result(RecordingSync rec, EarlyExitModel model) {
        Map<String, float[]> w = new LinkedHashMap<>();
        Map<String, Shard> shards = new LinkedHashMap<>();
        model.parameters().all().forEach((k, v) -> {
            w.put(k, v.toFloatArray());
            shards.put(k, model.parameters().shard(k));
        });
        return new Run(rec.steps, w, shards);
    }

    static double maxWeightDifference(Run one, Run rank, String name) {
        double max = 0;
        for (var e : rank.weights().entrySet()) {
            float[] want = TensorParallelTrainingTest.slice(one.weights().get(e.getKey()), rank.shards().get(e.getKey()));
            float[] got = e.getValue();
            assertEquals(want.length, got.length, name + " " + e.getKey());
            for (int i = 0; i < want.length; i++) max = Math.max(max, Math.abs(want[i] - got[i]));
        }
        return max;
    }

    void assertMatchesOneRank(ModelConfig mc, int tp, Path dir) throws IOException {
        TrainConfig cfg = PipelineTrainingTest.config();
        Run one = oneRank(mc, dir.resolve("one"), cfg);
        String name = mc.family() + " distributed optimizer tp=" + tp + " dp=2 pp=2";
        Path out = dir.resolve("zero");
        List<Run> ranks = pipeline(mc, tp, 2, 2, out, cfg, Integer.MAX_VALUE, false);
        double maxWeight = 0;
        for (int r = 0; r < ranks.size(); r++) {
            Run rank = ranks.get(r);
            DistributedOptimizerTrainingTest.maxLossDifference(one.steps(), rank.steps(), name + " rank " + r);
            maxWeight = Math.max(maxWeight, maxWeightDifference(one, rank, name));
            // The two data-parallel replicas of a stage hold the same weights bit for bit after the all-gather.
            Run replica = ranks.get(r % tp + (r / (2 * tp)) * 2 * tp);
            for (var e : rank.weights().entrySet()) assertArrayEquals(replica.weights().get(e.getKey()), e.getValue(), 0f, e.getKey());
        }
        System.out.printf("%s: max absolute weight difference from one rank %.3g%n", name, maxWeight);
        assertTrue(maxWeight <= DistributedOptimizerTrainingTest.ONE_RANK_WEIGHT_ABS, name + ": weights differ by " + maxWeight);
        DistributedOptimizerTrainingTest.assertSameLoggedLossesAndNorms(dir.resolve("one"), out, name);
        DistributedOptimizerTrainingTest.assertCheckpointsMatch(dir.resolve("one"), out, DistributedOptimizerTrainingTest.ONE_RANK_WEIGHT_ABS, name);
    }

    @Test
    void gpt2AtDp2Pp2MatchesOneRank(@TempDir Path dir) throws IOException {
        assertMatchesOneRank(PipelineTrainingTest.gpt2(), 1, dir);
    }

    @Test
    void llamaAtTp2Dp2Pp2MatchesOneRank(@TempDir Path dir) throws IOException {
        assertMatchesOneRank(PipelineTrainingTest.llama(), 2, dir);
    }

    @Test
    void savedAtDp2Pp2ResumesAndContinuesAsOneRank(@TempDir Path dir) throws IOException {
        ModelConfig mc = PipelineTrainingTest.gpt2();
        TrainConfig cfg = PipelineTrainingTest.config().withIters(4);
        Run one = oneRank(mc, dir.resolve("one"), cfg);
        Path out = dir.resolve("run");
        List<Run> a = pipeline(mc, 1, 2, 2, out, cfg, 2, false);
        List<Run> b = pipeline(mc, 1, 2, 2, out, cfg, Integer.MAX_VALUE, true);
        String name = "dp=2 pp=2 distributed optimizer, saved after 2 steps and resumed";
        for (int r = 0; r < b.size(); r++) {
            List<double[]> steps = new ArrayList<>(a.get(r).steps());
            steps.addAll(b.get(r).steps());
            DistributedOptimizerTrainingTest.maxLossDifference(one.steps(), steps, name + " rank " + r);
            double diff = maxWeightDifference(one, b.get(r), name);
            assertTrue(diff <= DistributedOptimizerTrainingTest.ONE_RANK_WEIGHT_ABS, name + ": weights differ from one rank by " + diff);
        }
        DistributedOptimizerTrainingTest.assertCheckpointsMatch(dir.resolve("one"), out, DistributedOptimizerTrainingTest.ONE_RANK_WEIGHT_ABS, name);
    }
}
