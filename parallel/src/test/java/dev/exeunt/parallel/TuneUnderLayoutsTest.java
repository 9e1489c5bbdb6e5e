package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
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
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.tune.ExitTuner;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * EE-Tuning under tp 2 x dp 2 and tp 4 gives what one rank gives: the same per-step exit losses in
 * tune_log.jsonl and the same checkpoint (the backbone copied byte for byte, every exit tensor whole),
 * for a Llama backbone (kv heads replicated at tp 4) with exits of every kind, copy-initialised (the
 * exit heads and mlp sliced from the backbone's whole tensors) and randomly initialised. Tolerances as
 * in {@link TensorParallelTrainingTest}.
 */
@ExtendWith(LeakCheck.class)
class TuneUnderLayoutsTest {
    static final int SEQ = 8, VOCAB = 96;
    static final Pattern NUMBER = Pattern.compile("-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?");

    static List<ExitConfig> exits() {
        return List.of(new ExitConfig(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, false, WeightSchedule.constant(0.5), 1),
                new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.MLP, false, WeightSchedule.constant(1), 1),
                new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1.5),
                new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.LAYER, false, WeightSchedule.constant(1), 1));
    }

    static TrainConfig config() {
        return new TrainConfig(SEQ, 4, 2, 3, 1e-2, 1e-3, 1, 0.01, 0.9, 0.95, 0.5, 7, 0, 1, 0, 1, 0.0);
    }

    static void tune(Path pretrained, Path out, ExitTuner.Init init, TensorParallel tp, GradientSync sync, int[] tokens) {
        try (var tuner = new ExitTuner(pretrained, exits(), init, true, 5, config(), tp, sync)) {
            tuner.tune(TokenWindows.of(tokens, SEQ), config(), out, null);
            tuner.save(out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Test
    void tuningUnderLayoutsMatchesOneRank(@TempDir Path dir) throws IOException {
        Random rnd = new Random(12);
        int[] tokens = new int[1500];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(VOCAB);
        Path pretrained = dir.resolve("pretrained");
        try (var model = EarlyExitModel.create(ModelConfig.llama(VOCAB, 32, 3, 4, 2, 48, SEQ, List.of()), Device.CPU, 3)) {
            ModelCheckpoint.save(model, null, pretrained);
        }
        for (ExitTuner.Init init : ExitTuner.Init.values()) {
            Path one = dir.resolve(init + "-one");
            tune(pretrained, one, init, TensorParallel.NONE, GradientSync.SINGLE, tokens);
            for (int[] layout : new int[][] {{2, 2}, {4, 1}}) {
                int tp = layout[0], dp = layout[1];
                Path out = dir.resolve(init + "-tp" + tp + "dp" + dp);
                LocalWorld.run(tp * dp, pg -> {
                    try (var state = ParallelState.create(pg, tp, dp, 1); var sync = new DataParallelGradientSync(state.dpGroup())) {
                        tune(pretrained, out, init, ProcessGroupTensorParallel.of(state), sync, tokens);
                    }
                    return null;
                });
                String name = init + " tp=" + tp + " dp=" + dp;
                List<String> a = Files.readAllLines(one.resolve(ExitTuner.LOG)), b = Files.readAllLines(out.resolve(ExitTuner.LOG));
                assertEquals(3, a.size());
                assertEquals(a.size(), b.size(), name);
                for (int s = 0; s < a.size(); s++) {
                    double[] x = losses(a.get(s)), y = losses(b.get(s));
                    assertEquals(x.length, y.length);
                    for (int i = 0; i < x.length; i++) assertEquals(x[i], y[i], 1e-5 * Math.abs(x[i]) + 1e-6, name + " step " + s);
                }
                assertSameWeights(one, out, name);
            }
        }
    }

    /** The exit losses of one tune_log line. */
    static double[] losses(String line) {
        String l = line.substring(line.indexOf("\"exit_losses\""), line.indexOf(",\"exit_weights\""));
        return NUMBER.matcher(l).results().mapToDouble(m -> Double.parseDouble(m.group())).toArray();
    }

    static void assertSameWeights(Path one, Path layout, String name) throws IOException {
        try (var a = SafetensorsCheckpoint.open(one.resolve(ModelCheckpoint.WEIGHTS));
             var b = SafetensorsCheckpoint.open(layout.resolve(ModelCheckpoint.WEIGHTS))) {
            assertEquals(a.names(), b.names(), name);
            assertTrue(a.names().stream().anyMatch(n -> n.startsWith("exits.3.layer.")), "exits were saved");
            for (String t : a.names()) {
                assertArrayEquals(a.tensor(t).shape(), b.tensor(t).shape(), name + " " + t);
                try (Tensor x = TensorFiles.load(a, t, Device.CPU); Tensor y = TensorFiles.load(b, t, Device.CPU)) {
                    float[] u = x.toFloatArray(), v = y.toFloatArray();
                    double tol = t.startsWith("exits.") ? 5e-5 : 0; // the backbone is copied, untouched
                    for (int i = 0; i < u.length; i++) assertEquals(u[i], v[i], tol, name + " " + t + "[" + i + "]");
                }
            }
        }
    }
}
