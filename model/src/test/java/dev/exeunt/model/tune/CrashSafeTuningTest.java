package dev.exeunt.model.tune;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.checkpoint.CheckpointManifest;
import dev.exeunt.model.checkpoint.ChildJvm;
import dev.exeunt.model.checkpoint.CrashPoints;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.model.train.TrainingRun;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code tune} publishes through the same protocol as training: killed at a save step while its output
 * directory holds an earlier tuning result, it leaves a complete checkpoint (the old one or the new
 * one), and rerunning the command produces exactly the uninterrupted result.
 */
@ExtendWith(LeakCheck.class)
class CrashSafeTuningTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    static Path work;
    static Path baseline;

    @BeforeAll
    static void pretrainAndTuneUninterrupted() throws IOException {
        List<String> docs = new ArrayList<>();
        try (Stream<Path> files = Files.walk(Path.of("src/main/java/dev/exeunt/model/tune"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).sorted().toList()) docs.add(Files.readString(p));
        }
        String text = String.join("\n", docs);
        var tok = BpeTrainer.train(List.of(text), 300, List.of("<|endoftext|>"));
        int[] tokens = tok.encode(text);
        TrainingRun.prepare(work, tok, tokens);
        try (var model = EarlyExitModel.create(ModelConfig.gpt2(tok.vocabSize(), 32, 2, 2, 32, List.of()), Device.CPU, 1);
             var t = new Trainer(model, tok, TokenWindows.of(tokens, 16), TuningRun.config(4), work.resolve("pretrained"), null)) {
            t.train();
        }
        baseline = work.resolve("baseline");
        TuningRun.run(work, baseline, 4);
    }

    static List<String> steps() {
        return CrashPoints.SAVE_STEPS;
    }

    @ParameterizedTest(name = "killed at {0}")
    @MethodSource("steps")
    void killedWhileSavingTheOutputStaysACompleteCheckpointAndTheRerunFinishes(String step) throws Exception {
        Path out = work.resolve("kill-" + step);
        TuningRun.run(work, out, 2); // an earlier result in the output directory
        var exit = ChildJvm.run(work, "tune-" + step, List.of("-D" + CrashPoints.PROPERTY + "=" + step), TuningRun.class,
                work.toString(), out.toString(), "4");
        assertEquals(137, exit.status(), step + ": the child should have died at its crash point\n" + exit.stderr());

        boolean newOneComplete = CrashPoints.SAVE_STEPS.indexOf(step) >= CrashPoints.SAVE_STEPS.indexOf(CrashPoints.STAGING_COMPLETE);
        var recovered = ExitTuner.recoverOutput(out).checkpoint().orElseThrow();
        assertEquals(newOneComplete ? 4 : 2, recovered.iteration(), step + ": recovered the wrong checkpoint");
        recovered.verify(out);
        try (var loaded = ModelCheckpoint.load(out, Device.CPU)) {
            assertEquals(1, loaded.model().exits().size());
        }

        TuningRun.run(work, out, 4);
        assertFalse(Files.exists(out.resolveSibling(out.getFileName() + ".saving")));
        assertFalse(Files.exists(out.resolveSibling(out.getFileName() + ".old")));
        try (var a = SafetensorsCheckpoint.open(baseline); var b = SafetensorsCheckpoint.open(out)) {
            assertEquals(a.names(), b.names());
            for (String n : a.names()) assertEquals(-1L, a.data(n).mismatch(b.data(n)), n + " differs from the uninterrupted run");
        }
        assertEquals(log(baseline), log(out));
        assertEquals(4, CheckpointManifest.read(out).orElseThrow().iteration());
    }

    private static List<String> log(Path dir) throws IOException {
        List<String> out = new ArrayList<>();
        for (String line : Files.readAllLines(dir.resolve(ExitTuner.LOG))) {
            ObjectNode o = (ObjectNode) JSON.readTree(line);
            o.remove(List.of("tokens_per_s", "elapsed_s"));
            out.add(o.toString());
        }
        assertEquals(4, out.size(), dir + ": one line per tuning iteration");
        for (int i = 0; i < out.size(); i++) assertTrue(out.get(i).startsWith("{\"iter\":" + i + ","), out.get(i));
        return out;
    }
}
