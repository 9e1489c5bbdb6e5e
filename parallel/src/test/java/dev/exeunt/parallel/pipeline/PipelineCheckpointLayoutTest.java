package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.model.train.TrainingState;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.RecordingSync;
import dev.exeunt.parallel.TensorParallelTrainingTest;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Checkpoints do not depend on the layout (EARLY-EXIT.md section 2): 2 steps of {@link PipelineTrainingTest}'s
 * run at pp 4, saved, then resumed for the third step at one rank and, from a copy, at tp 2 x pp 2, give
 * the uninterrupted one-rank run's third-step losses (1e-5 relative), weights (5e-5 absolute) and
 * checkpoint. The resumed models start from another seed, so nothing but the checkpoint can make them agree.
 */
@ExtendWith(LeakCheck.class)
class PipelineCheckpointLayoutTest {
    private static final long OTHER_SEED = 11;

    @BeforeAll
    static void data() {
        PipelineTrainingTest.data();
    }

    static TokenWindows windows() {
        return TokenWindows.of(PipelineTrainingTest.tokens, PipelineTrainingTest.SEQ);
    }

    /** One rank of tp x pp (dp 1): trains from seed {@code seed}, resuming from {@code out} when {@code resume}, for at most {@code steps}. */
    static PipelineTrainingTest.Run stage(ModelConfig mc, ParallelState state, long seed, Path out, boolean resume, int steps) throws IOException {
        var pipeline = new ProcessGroupPipelineParallel(state.ppGroup());
        try (var dpSync = new DataParallelGradientSync(state.dpGroup());
             var model = EarlyExitModel.createStage(mc, Device.CPU, seed, ProcessGroupTensorParallel.of(state), pipeline,
                     PipelineStage.balanced(mc.nLayers(), state.ppSize(), state.ppRank()));
             var runner = new OneFOneBRunner(model, pipeline)) {
            var sync = new RecordingSync(dpSync);
            try (var trainer = new Trainer(model, null, windows(), PipelineTrainingTest.config(), out, null, sync)) {
                trainer.runMicroBatchesWith(runner).stopAfter(steps);
                if (resume) trainer.resumeFrom(out);
                trainer.train();
            }
            return snapshot(model, sync.steps);
        }
    }

    static PipelineTrainingTest.Run snapshot(EarlyExitModel model, List<double[]> steps) {
        Map<String, float[]> w = new LinkedHashMap<>();
        Map<String, Shard> shards = new LinkedHashMap<>();
        model.parameters().all().forEach((k, v) -> {
            w.put(k, v.toFloatArray());
            shards.put(k, model.parameters().shard(k));
        });
        return new PipelineTrainingTest.Run(steps, w, shards, 0);
    }

    static List<PipelineTrainingTest.Run> layout(ModelConfig mc, int tp, int pp, long seed, Path out, boolean resume, int steps) {
        return LocalWorld.run(tp * pp, pg -> {
            try (var state = ParallelState.create(pg, tp, 1, pp).validate(mc)) {
                return stage(mc, state, seed, out, resume, steps);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** The third step at one rank, resumed from {@code out} into a model of another seed. */
    static PipelineTrainingTest.Run oneRankResumed(ModelConfig mc, Path out) throws IOException {
        var sync = new RecordingSync(GradientSync.SINGLE);
        try (var model = EarlyExitModel.create(mc, Device.CPU, OTHER_SEED);
             var trainer = new Trainer(model, null, windows(), PipelineTrainingTest.config(), out, null, sync)) {
            trainer.resumeFrom(out);
            assertEquals(2, trainer.startIteration());
            trainer.train();
            return snapshot(model, sync.steps);
        }
    }

    static void assertSteps(PipelineTrainingTest.Run one, int from, List<double[]> got, String name) {
        for (int s = 0; s < got.size(); s++) {
            double[] a = one.steps().get(from + s), b = got.get(s);
            assertEquals(a.length, b.length, name);
            for (int i = 0; i < a.length; i++) {
                assertEquals(a[i], b[i], PipelineTrainingTest.LOSS_REL * Math.abs(a[i]), name + " step " + (from + s) + " loss[" + i + "]");
            }
        }
    }

    /** Every rank's losses from step {@code from} on and its shards of the weights are the one-rank run's; every parameter is held. */
    static void assertRanksMatch(PipelineTrainingTest.Run one, int from, int steps, List<PipelineTrainingTest.Run> ranks, String name) {
        Map<String, Integer> holders = new LinkedHashMap<>();
        double maxWeight = 0;
        for (var r : ranks) {
            assertEquals(steps, r.steps().size(), name + " steps run");
            assertSteps(one, from, r.steps(), name);
            for (var e : r.weights().entrySet()) {
                holders.merge(e.getKey(), 1, Integer::sum);
                Shard shard = r.shards().get(e.getKey());
                float[] want;
                try (Tensor full = Tensor.of(one.weights().get(e.getKey()), shard.fullShape()); Tensor slice = shard.sliceOf(full)) {
                    want = slice.toFloatArray();
                }
                assertEquals(want.length, e.getValue().length, name + " " + e.getKey());
                for (int i = 0; i < want.length; i++) maxWeight = Math.max(maxWeight, Math.abs(want[i] - e.getValue()[i]));
            }
        }
        assertEquals(one.weights().keySet(), holders.keySet(), name + ": every parameter lives on some rank");
        System.out.printf("%s: max absolute weight difference from one rank %.3g%n", name, maxWeight);
        assertTrue(maxWeight <= PipelineTrainingTest.WEIGHT_ABS, name + ": weights differ from one rank by " + maxWeight);
    }

    static void copy(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (Stream<Path> files = Files.list(from)) {
            for (Path f : files.toList()) Files.copy(f, to.resolve(f.getFileName()));
        }
    }

    void assertPp4CheckpointResumesInOtherLayouts(ModelConfig mc, Path dir) throws IOException {
        var one = PipelineTrainingTest.oneRank(mc, dir.resolve("one"));
        Path saved = dir.resolve("pp4");
        assertRanksMatchSteps(one, layout(mc, 1, 4, 3, saved, false, 2), mc.family() + " pp=4, 2 steps");
        assertEquals(2, TrainingState.read(saved).nextIter());
        Path atOne = dir.resolve("at-one-rank"), atTp2Pp2 = dir.resolve("at-tp2-pp2");
        copy(saved, atOne);
        copy(saved, atTp2Pp2);

        String name = mc.family() + " pp=4 resumed at one rank";
        var resumed = oneRankResumed(mc, atOne);
        assertRanksMatch(one, 2, 1, List.of(resumed), name);
        TensorParallelTrainingTest.assertSameCheckpoint(dir.resolve("one"), atOne, name);

        name = mc.family() + " pp=4 resumed at tp=2 x pp=2";
        assertRanksMatch(one, 2, 1, layout(mc, 2, 2, OTHER_SEED, atTp2Pp2, true, Integer.MAX_VALUE), name);
        TensorParallelTrainingTest.assertSameCheckpoint(dir.resolve("one"), atTp2Pp2, name);
    }

    /** The first part's losses (its weights are checked through the resumed runs and its checkpoint through theirs). */
    static void assertRanksMatchSteps(PipelineTrainingTest.Run one, List<PipelineTrainingTest.Run> ranks, String name) {
        for (var r : ranks) {
            assertEquals(2, r.steps().size(), name);
            assertSteps(one, 0, r.steps(), name);
        }
    }

    @Test
    void gpt2Pp4CheckpointResumesAtOneRankAndAtTp2Pp2(@TempDir Path dir) throws IOException {
        assertPp4CheckpointResumesInOtherLayouts(PipelineTrainingTest.gpt2(), dir);
    }

    @Test
    void llamaPp4CheckpointResumesAtOneRankAndAtTp2Pp2(@TempDir Path dir) throws IOException {
        assertPp4CheckpointResumesInOtherLayouts(PipelineTrainingTest.llama(), dir);
    }
}
