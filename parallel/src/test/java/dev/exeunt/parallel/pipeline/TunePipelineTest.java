package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.tune.ExitTuner;
import dev.exeunt.model.tune.TuningStages;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * EE-Tuning under pipeline parallelism (local engine) gives the one-rank tune: the same per-step exit
 * losses in tune_log.jsonl and the same checkpoint (backbone copied byte for byte, every exit tensor
 * within float rounding), copy- and randomly initialised, at pp 2 and pp 4, tp 2 x pp 2 (also with sequence
 * parallelism: the activations between stages hold T/tp positions), tp 2 x pp 3 and dp 2 x pp 4,
 * for Llama and GPT-2 (tied head: the exits' heads are copied from the embedding on stages that do not
 * hold it). Cases: exits on every stage (at pp 4 the last stage holds only a pre-exit reading its input,
 * so it builds no layer), middle stages without an exit (they forward activations only and have no
 * optimizer), and last stages without an exit (not started; the last running stage builds its layers up
 * to the deepest exit only). A stage past the last exit is refused.
 */
@ExtendWith(LeakCheck.class)
class TunePipelineTest {
    static final int SEQ = 8, VOCAB = 96;
    static final Pattern NUMBER = Pattern.compile("-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?");
    static int[] tokens;

    @BeforeAll
    static void data() {
        Random rnd = new Random(12);
        tokens = new int[1500];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(VOCAB);
    }

    static ExitConfig exit(int layer, ExitConfig.Placement at, ExitKind kind, double w, double temperature) {
        return new ExitConfig(layer, at, kind, false, WeightSchedule.constant(w), temperature);
    }

    /** 4 rows per batch, 2 micro-batches, 3 iterations, clipping active (as TuneUnderLayoutsTest). */
    static TrainConfig config() {
        return new TrainConfig(SEQ, 4, 2, 3, 1e-2, 1e-3, 1, 0.01, 0.9, 0.95, 0.5, 7, 0, 1, 0, 1, 0.0);
    }

    static Path pretrained(Path dir, ModelConfig mc) throws IOException {
        Path p = dir.resolve("pretrained-" + mc.family());
        try (var model = EarlyExitModel.create(mc, Device.CPU, 3)) {
            ModelCheckpoint.save(model, null, p);
        }
        return p;
    }

    static ModelConfig llama() {
        return ModelConfig.llama(VOCAB, 32, 4, 4, 2, 48, SEQ, List.of());
    }

    static ModelConfig gpt2() {
        return ModelConfig.gpt2(VOCAB, 32, 4, 4, SEQ, List.of());
    }

    static void oneRank(Path pretrained, Path out, List<ExitConfig> exits, ExitTuner.Init init) {
        try (var tuner = new ExitTuner(pretrained, exits, init, true, 5, config(), TensorParallel.NONE, GradientSync.SINGLE)) {
            tuner.tune(TokenWindows.of(tokens, SEQ), config(), out, null);
            tuner.save(out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** What one stage's rank built: its layers and its exits. */
    record Built(int stage, int layers, int exits) {}

    /**
     * Tunes with tp x dp ranks on each running stage of the split {@code layersPerStage}: the stages past the
     * last exit are not started. Returns what each rank built, in world-rank order.
     */
    static List<Built> pipeline(Path pretrained, Path out, List<ExitConfig> exits, ExitTuner.Init init, int tp, int dp,
                                int[] layersPerStage, boolean sequenceParallel) {
        List<PipelineStage> stages = new ArrayList<>();
        for (int s = 0; s < layersPerStage.length; s++) stages.add(PipelineStage.of(layersPerStage, s));
        int running = TuningStages.running(exits, stages);
        return LocalWorld.run(tp * dp * running, pg -> {
            try (var state = ParallelState.create(pg, tp, dp, running); var sync = new DataParallelGradientSync(state.dpGroup());
                 var tuner = new ExitTuner(pretrained, exits, init, true, 5, config(), ProcessGroupTensorParallel.of(state, sequenceParallel),
                         ProcessGroupPipelineParallel.of(state), stages.get(state.ppRank()), sync)) {
                tuner.tune(TokenWindows.of(tokens, SEQ), config(), out, null);
                tuner.save(out);
                return new Built(state.ppRank(), tuner.model().layers().size(), tuner.model().exits().size());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** Tunes one rank and every layout, each against the one-rank result; returns the built stages of the last layout. */
    static List<Built> assertLayoutsMatchOneRank(Path dir, ModelConfig mc, List<ExitConfig> exits, int[][] layouts, int[] layersPerStage)
            throws IOException {
        Path pretrained = pretrained(dir, mc);
        List<Built> built = null;
        for (ExitTuner.Init init : ExitTuner.Init.values()) {
            Path one = dir.resolve(mc.family() + "-" + init + "-one");
            oneRank(pretrained, one, exits, init);
            for (int[] layout : layouts) {
                int tp = layout[0], dp = layout[1], pp = layout[2];
                boolean sp = layout.length > 3 && layout[3] == 1;
                int[] split = layersPerStage != null && layersPerStage.length == pp ? layersPerStage : balanced(mc.nLayers(), pp);
                String name = mc.family() + " " + init + " tp=" + tp + (sp ? " (sequence parallel)" : "") + " dp=" + dp + " pp=" + pp + " layers " + java.util.Arrays.toString(split);
                Path out = dir.resolve(mc.family() + "-" + init + "-tp" + tp + (sp ? "sp" : "") + "dp" + dp + "pp" + pp);
                built = pipeline(pretrained, out, exits, init, tp, dp, split, sp);
                assertSameLog(one, out, name);
                double diff = assertSameWeights(one, out, name);
                System.out.printf("%s: max exit weight difference from one rank %.3g%n", name, diff);
            }
        }
        return built;
    }

    static int[] balanced(int layers, int pp) {
        int[] per = new int[pp];
        for (int s = 0; s < pp; s++) per[s] = PipelineStage.balanced(layers, pp, s).endLayer() - PipelineStage.balanced(layers, pp, s).firstLayer();
        return per;
    }

    static void assertSameLog(Path one, Path layout, String name) throws IOException {
        List<String> a = Files.readAllLines(one.resolve(ExitTuner.LOG)), b = Files.readAllLines(layout.resolve(ExitTuner.LOG));
        assertEquals(3, a.size());
        assertEquals(a.size(), b.size(), name);
        for (int s = 0; s < a.size(); s++) {
            double[] x = losses(a.get(s)), y = losses(b.get(s));
            assertEquals(x.length, y.length, name);
            for (int i = 0; i < x.length; i++) assertEquals(x[i], y[i], 1e-5 * Math.abs(x[i]) + 1e-6, name + " step " + s + " exit " + i);
        }
    }

    static double[] losses(String line) {
        String l = line.substring(line.indexOf("\"exit_losses\""), line.indexOf(",\"exit_weights\""));
        return NUMBER.matcher(l).results().mapToDouble(m -> Double.parseDouble(m.group())).toArray();
    }

    /** The same tensor names and shapes; the backbone byte for byte, the exits within 5e-5. Returns the largest exit difference. */
    static double assertSameWeights(Path one, Path layout, String name) throws IOException {
        double max = 0;
        try (var a = SafetensorsCheckpoint.open(one.resolve(ModelCheckpoint.WEIGHTS));
             var b = SafetensorsCheckpoint.open(layout.resolve(ModelCheckpoint.WEIGHTS))) {
            assertEquals(a.names(), b.names(), name);
            for (String t : a.names()) {
                assertArrayEquals(a.tensor(t).shape(), b.tensor(t).shape(), name + " " + t);
                if (!t.startsWith("exits.")) {
                    assertEquals(-1L, a.data(t).mismatch(b.data(t)), name + ": backbone tensor " + t + " changed");
                    continue;
                }
                try (Tensor x = TensorFiles.load(a, t, Device.CPU); Tensor y = TensorFiles.load(b, t, Device.CPU)) {
                    float[] u = x.toFloatArray(), v = y.toFloatArray();
                    for (int i = 0; i < u.length; i++) {
                        max = Math.max(max, Math.abs(u[i] - v[i]));
                        assertEquals(u[i], v[i], 5e-5, name + " " + t + "[" + i + "]");
                    }
                }
            }
        }
        return max;
    }

    @Test
    void exitsOnEveryStageMatchOneRank(@TempDir Path dir) throws IOException {
        // Depth 3: the 4th layer is never built. At pp 4, stage 3 holds only the pre-exit of layer 4, which reads its input.
        List<ExitConfig> exits = List.of(exit(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, 0.5, 1),
                exit(2, ExitConfig.Placement.POST, ExitKind.MLP, 1, 1), exit(3, ExitConfig.Placement.POST, ExitKind.NORM, 1, 1.5),
                exit(4, ExitConfig.Placement.PRE, ExitKind.LAYER, 1, 1));
        List<Built> built = assertLayoutsMatchOneRank(dir, llama(), exits, new int[][] {{1, 1, 2}, {2, 1, 2}, {2, 1, 2, 1}, {1, 1, 4}}, null);
        assertEquals(List.of(new Built(0, 1, 1), new Built(1, 1, 1), new Built(2, 1, 1), new Built(3, 0, 1)), built);
    }

    @Test
    void middleStagesWithoutAnExitOnlyForwardAndMatchOneRank(@TempDir Path dir) throws IOException {
        List<ExitConfig> exits = List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM, 1, 1), exit(4, ExitConfig.Placement.POST, ExitKind.MLP, 0.5, 1));
        List<Built> built = assertLayoutsMatchOneRank(dir, gpt2(), exits, new int[][] {{1, 1, 4}, {1, 2, 4}}, null);
        for (Built b : built) assertEquals(b.stage() == 0 || b.stage() == 3 ? 1 : 0, b.exits(), "stage " + b.stage());
        assertEquals(8, built.size(), "dp 2 x pp 4: every stage runs");
    }

    @Test
    void lastStagesWithoutAnExitAreNotStartedAndMatchOneRank(@TempDir Path dir) throws IOException {
        List<ExitConfig> exits = List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM, 1, 1), exit(2, ExitConfig.Placement.POST, ExitKind.LAYER, 1, 1));
        // pp 4 balanced: stages 2 and 3 hold no exit; pp 3 with layers 1,2,1: stage 1 builds layer 2 only (depth 2), stage 2 never runs.
        List<Built> built = assertLayoutsMatchOneRank(dir, llama(), exits, new int[][] {{1, 1, 4}, {2, 1, 3}}, new int[] {1, 2, 1});
        assertEquals(List.of(new Built(0, 1, 1), new Built(0, 1, 1), new Built(1, 1, 1), new Built(1, 1, 1)), built);
    }

    @Test
    void aStagePastTheLastExitIsRefused(@TempDir Path dir) throws IOException {
        Path pretrained = pretrained(dir, llama());
        List<ExitConfig> exits = List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM, 1, 1));
        var e = assertThrows(IllegalArgumentException.class, () -> new ExitTuner(pretrained, exits, ExitTuner.Init.COPY, false, 5, config(),
                TensorParallel.NONE, PipelineParallel.NONE, PipelineStage.balanced(4, 2, 1), GradientSync.SINGLE));
        assertTrue(e.getMessage().contains("past the last exit"), e.getMessage());
        assertEquals(1, TuningStages.running(exits, List.of(PipelineStage.balanced(4, 2, 0), PipelineStage.balanced(4, 2, 1))));
    }
}
