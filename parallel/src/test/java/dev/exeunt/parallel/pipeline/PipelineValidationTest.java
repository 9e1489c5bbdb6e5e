package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.EvalReport;
import dev.exeunt.model.train.Evaluator;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Validation under pipeline parallelism gives the one-rank validation: pp 2 and 4, tp 2 x pp 2 (with
 * and without sequence parallelism) and dp 2 x pp 2 of {@link PipelineTrainingTest}'s GPT-2 (exits on
 * every stage, a tied head on the last) and Llama, validated after each of 3 steps. Every rank's report and the logging rank's
 * {@code eval_log.jsonl} equal the one-rank run's (1e-5 relative: the weights differ by float rounding).
 */
@ExtendWith(LeakCheck.class)
class PipelineValidationTest {
    static final double REL = 1e-5;
    private static final Pattern NUMBER = Pattern.compile("-?\\d+(\\.\\d+)?([eE][-+]?\\d+)?|null");

    @BeforeAll
    static void data() {
        PipelineTrainingTest.data();
    }

    /** {@link PipelineTrainingTest#config()} holding out 10% of the windows, validated on 3 batches after every step. */
    static TrainConfig config() {
        return new TrainConfig(PipelineTrainingTest.SEQ, 4, 4, 3, 1e-2, 1e-3, 1, 0.01, 0.9, 0.95, 0.5, 7, 1, 3, 0, 1, 0.1);
    }

    static TokenWindows windows() {
        return TokenWindows.of(PipelineTrainingTest.tokens, PipelineTrainingTest.SEQ);
    }

    static TokenWindows windows(int[] tokens) {
        return TokenWindows.of(tokens, PipelineTrainingTest.SEQ);
    }

    static EvalReport oneRank(ModelConfig mc, Path out) throws IOException {
        try (var model = EarlyExitModel.create(mc, Device.CPU, 3); var trainer = new Trainer(model, null, windows(), config(), out, null)) {
            return trainer.train().lastEval();
        }
    }

    /** Each rank's last report, every stage training through 1F1B and validating with the stages. */
    static List<EvalReport> pipeline(ModelConfig mc, int tp, int dp, int pp, Path out) {
        return pipeline(mc, tp, dp, pp, false, out, PipelineTrainingTest.tokens);
    }

    static List<EvalReport> pipeline(ModelConfig mc, int tp, int dp, int pp, Path out, int[] tokens) {
        return pipeline(mc, tp, dp, pp, false, out, tokens);
    }

    /** {@code sp}: Megatron's sequence parallelism over the tp ranks (the stages' activations are split along the sequence). */
    static List<EvalReport> pipeline(ModelConfig mc, int tp, int dp, int pp, boolean sp, Path out, int[] tokens) {
        return LocalWorld.run(tp * dp * pp, pg -> {
            try (var state = ParallelState.create(pg, tp, dp, pp).validate(mc);
                 var sync = new DataParallelGradientSync(state.dpGroup())) {
                var pipeline = new ProcessGroupPipelineParallel(state.ppGroup());
                try (var model = EarlyExitModel.createStage(mc, Device.CPU, 3, ProcessGroupTensorParallel.of(state, sp), pipeline,
                        PipelineStage.balanced(mc.nLayers(), pp, state.ppRank()));
                     var runner = new OneFOneBRunner(model, pipeline);
                     var trainer = new Trainer(model, null, windows(tokens), config(), out, null, sync)) {
                    return trainer.runMicroBatchesWith(runner).validateWith(new PipelineEvaluator(pipeline)).train().lastEval();
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    static void assertClose(double want, double got, double slack, String what) {
        assertTrue(Double.isFinite(got), what + " is " + got);
        assertEquals(want, got, REL * Math.abs(want) + slack, what);
    }

    static void assertSameReport(EvalReport want, EvalReport got, String name) {
        assertEquals(want.tokens(), got.tokens(), name + " tokens");
        assertEquals(want.exitLoss().length, got.exitLoss().length, name + " exits");
        assertClose(want.finalLoss(), got.finalLoss(), 0, name + " final loss");
        for (int i = 0; i < want.exitLoss().length; i++) {
            assertEquals(want.exitLayers()[i], got.exitLayers()[i], name + " exit layer");
            assertClose(want.exitLoss()[i], got.exitLoss()[i], 0, name + " exit " + i + " loss");
            assertClose(want.exitAgreement()[i], got.exitAgreement()[i], 0, name + " exit " + i + " agreement");
        }
    }

    /** The logs have the same lines with the same numbers (printed to 6 decimals, hence the slack). */
    static void assertSameEvalLog(Path one, Path layout, String name) throws IOException {
        List<String> want = Files.readAllLines(one.resolve(Trainer.EVAL_LOG)), got = Files.readAllLines(layout.resolve(Trainer.EVAL_LOG));
        assertEquals(config().iters(), want.size(), "one validation per step");
        assertEquals(want.size(), got.size(), name + ": eval_log.jsonl lines (only the logging rank writes)");
        for (int l = 0; l < want.size(); l++) assertSameJson(want.get(l), got.get(l), name + " line " + l);
    }

    /** Two JSON lines of the same shape whose numbers agree (1e-5 relative plus the 6-decimal printing); no null (NaN). */
    static void assertSameJson(String want, String got, String name) {
        assertEquals(NUMBER.matcher(want).replaceAll("#"), NUMBER.matcher(got).replaceAll("#"), name);
        Matcher a = NUMBER.matcher(want), b = NUMBER.matcher(got);
        int numbers = 0;
        while (a.find()) {
            assertTrue(b.find());
            assertFalse(a.group().equals("null") || b.group().equals("null"), name + ": " + got);
            assertClose(Double.parseDouble(a.group()), Double.parseDouble(b.group()), 1e-6, name + " number " + numbers++);
        }
        assertTrue(numbers > 10, want);
    }

    void assertValidationMatchesOneRank(ModelConfig mc, Path dir) throws IOException {
        EvalReport one = oneRank(mc, dir.resolve("one"));
        assertTrue(one.tokens() > 0 && one.exitLoss().length == mc.exits().size());
        System.out.println(mc.family() + " one rank: " + one.toJson());
        // {tp, dp, pp, sequence parallel}
        for (int[] layout : new int[][] {{1, 1, 2, 0}, {1, 1, 4, 0}, {2, 1, 2, 0}, {1, 2, 2, 0}, {2, 1, 2, 1}}) {
            int tp = layout[0], dp = layout[1], pp = layout[2];
            boolean sp = layout[3] == 1;
            String name = mc.family() + " tp=" + tp + (sp ? " sp" : "") + " dp=" + dp + " pp=" + pp;
            Path out = dir.resolve("tp" + tp + (sp ? "sp" : "") + "dp" + dp + "pp" + pp);
            List<EvalReport> ranks = pipeline(mc, tp, dp, pp, sp, out, PipelineTrainingTest.tokens);
            for (int r = 0; r < ranks.size(); r++) assertSameReport(one, ranks.get(r), name + " rank " + r);
            assertSameEvalLog(dir.resolve("one"), out, name);
            System.out.printf("%s: validation as one rank: final loss %.6f vs %.6f%n", name, ranks.get(0).finalLoss(), one.finalLoss());
        }
    }

    @Test
    void gpt2ValidationUnderPipelineMatchesOneRank(@TempDir Path dir) throws IOException {
        assertValidationMatchesOneRank(PipelineTrainingTest.gpt2(), dir);
    }

    @Test
    void llamaValidationUnderPipelineMatchesOneRank(@TempDir Path dir) throws IOException {
        assertValidationMatchesOneRank(PipelineTrainingTest.llama(), dir);
    }

    /**
     * A token id out of the vocabulary in the validation windows only (training never reads it): stage 0
     * refuses it at the embedding and the stage waiting for its activation fails too, naming it, instead
     * of hanging.
     */
    @Test
    @Timeout(120)
    void aBadTokenInTheValidationDataFailsEveryStageNamingIt(@TempDir Path dir) throws IOException {
        int[] tokens = PipelineTrainingTest.tokens.clone();
        int windows = windows(tokens).windowCount(), firstValidation = windows(tokens).split(config().valFraction()).validation()[0];
        assertTrue(firstValidation > windows / 2);
        tokens[tokens.length * (firstValidation + 2) / windows] = PipelineTrainingTest.VOCAB + 5; // inside the first validation batch
        var e = assertThrows(RuntimeException.class, () -> pipeline(PipelineTrainingTest.gpt2(), 1, 1, 2, dir, tokens));
        assertTrue(e.getMessage().contains("token id " + (PipelineTrainingTest.VOCAB + 5)) && e.getMessage().contains("out of range"),
                e.toString());
        assertEquals(1, Files.readAllLines(dir.resolve(Trainer.LOG)).size(), "the first step trained; its validation failed");
        System.out.println("bad validation token under pp 2: " + e);
    }

    /** A stage validated as if it were the whole model is refused before the first step, naming the fix. */
    @Test
    void aStageWithoutThePipelineEvaluatorRefusesToValidate(@TempDir Path dir) throws IOException {
        ModelConfig mc = PipelineTrainingTest.gpt2();
        try (var model = EarlyExitModel.createStage(mc, Device.CPU, 3, TensorParallel.NONE, PipelineStage.balanced(mc.nLayers(), 2, 0));
             var trainer = new Trainer(model, null, windows(), config(), dir, null)) {
            var e = assertThrows(IllegalStateException.class, trainer::train);
            assertTrue(e.getMessage().contains("validateWith"), e.getMessage());
            assertFalse(Files.exists(dir.resolve(Trainer.LOG)), "nothing trained");
            var direct = assertThrows(IllegalStateException.class, () -> Evaluator.evaluate(model, windows(), new int[] {0, 1}, 2, 1));
            assertTrue(direct.getMessage().contains("evaluateStage"), direct.getMessage());
        }
    }
}
