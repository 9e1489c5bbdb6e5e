package dev.exeunt.model.tune;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/** EE-Tuning on a checkpoint trained without exits, through the real files. */
@ExtendWith(LeakCheck.class)
class ExitTunerTest {
    @TempDir
    static Path base;
    static BpeTokenizer tok;
    static int[] tokens;
    static Path pretrained;
    static long trainingPeak;

    static TrainConfig tc(int iters) {
        return new TrainConfig(16, 4, 1, iters, 1e-2, 1e-3, 2, 0.0, 0.9, 0.95, 1.0, 7, 0, 4, 0, 1000, 0.1);
    }

    static ModelConfig backbone() {
        return ModelConfig.gpt2(tok.vocabSize(), 32, 4, 2, 32, List.of());
    }

    @BeforeAll
    static void pretrain() throws IOException {
        List<String> docs = new ArrayList<>();
        try (Stream<Path> files = Files.walk(Path.of("src/main/java"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).sorted().toList()) docs.add(Files.readString(p));
        }
        String text = String.join("\n", docs).substring(0, 80_000);
        tok = BpeTrainer.train(List.of(text), 300, List.of("<|endoftext|>"));
        tokens = tok.encode(text);
        pretrained = base.resolve("pretrained");
        HostMemory.resetPeak();
        long before = HostMemory.allocatedBytes();
        try (var model = EarlyExitModel.create(backbone(), Device.CPU, 1);
             var t = new Trainer(model, tok, TokenWindows.of(tokens, 16), tc(30), pretrained, null)) {
            t.train();
        }
        trainingPeak = HostMemory.peakBytes() - before;
    }

    private static List<ExitConfig> exits(ExitKind kind, int... layers) {
        List<ExitConfig> out = new ArrayList<>();
        for (int l : layers) out.add(new ExitConfig(l, ExitConfig.Placement.POST, kind, false, WeightSchedule.constant(1), 1));
        return out;
    }

    @Test
    void exitLossesFallBackboneIsUntouchedAndMemoryStaysSmall(@TempDir Path out) throws IOException {
        HostMemory.resetPeak();
        long before = HostMemory.allocatedBytes();
        double[] start, end;
        var windows = TokenWindows.of(tokens, 16);
        try (var tuner = new ExitTuner(pretrained, exits(ExitKind.NORM, 1, 2), ExitTuner.Init.RANDOM, false, 3, tc(25))) {
            assertEquals(2, tuner.loadedLayers());
            var split = windows.split(0.1);
            start = tuner.evaluate(windows, split.validation(), 4, 4).exitLoss();
            var result = tuner.tune(windows, tc(25), out, null);
            end = result.lastEval().exitLoss();
            tuner.save(out);
            // No optimiser state or gradient exists for backbone parameters.
            for (var e : tuner.model().parameters().all().entrySet()) {
                if (!e.getKey().startsWith("exits.")) assertTrue(e.getValue().grad() == null, e.getKey() + " has a gradient");
            }
        }
        long tuningPeak = HostMemory.peakBytes() - before;
        for (int i = 0; i < 2; i++) assertTrue(end[i] < start[i] - 0.5, "exit " + i + ": " + start[i] + " -> " + end[i]);
        assertTrue(tuningPeak < trainingPeak / 2, "tuning peak " + tuningPeak + " vs training peak " + trainingPeak);
        try (var a = SafetensorsCheckpoint.open(pretrained); var b = SafetensorsCheckpoint.open(out)) {
            for (String name : a.names()) {
                var da = a.data(name);
                var db = b.data(name);
                assertEquals(da.byteSize(), db.byteSize());
                assertEquals(-1L, da.mismatch(db), name + " changed");
            }
            assertTrue(b.contains("exits.0.head.weight") && b.contains("exits.1.norm.weight"));
        }
    }

    @Test
    void theSourcesHuggingFaceFilesAreKept(@TempDir Path tmp) throws IOException {
        Path src = tmp.resolve("src"), out = tmp.resolve("out");
        Files.createDirectories(src);
        for (String f : List.of(ModelCheckpoint.CONFIG, ModelCheckpoint.WEIGHTS, ModelCheckpoint.TOKENIZER)) Files.copy(pretrained.resolve(f), src.resolve(f));
        String tokConfig = "{\"chat_template\": \"{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}\", \"model_max_length\": 32}";
        String genConfig = "{\"do_sample\": true, \"temperature\": 0.6, \"eos_token_id\": [1, 2]}";
        Files.writeString(src.resolve("tokenizer_config.json"), tokConfig);
        Files.writeString(src.resolve("generation_config.json"), genConfig);
        try (var tuner = new ExitTuner(src, exits(ExitKind.NORM, 2), ExitTuner.Init.RANDOM, false, 3, tc(1))) {
            tuner.save(out);
        }
        assertEquals(tokConfig, Files.readString(out.resolve("tokenizer_config.json")));
        assertEquals(genConfig, Files.readString(out.resolve("generation_config.json")));
        assertTrue(!Files.exists(out.resolve("special_tokens_map.json")), "only what the source has");
        try (var loaded = ModelCheckpoint.load(out, Device.CPU)) {
            assertEquals(1, loaded.model().exits().size());
        }
    }

    @Test
    void copiedNormExitAtTheLastLayerReproducesTheFinalLogitsExactly(@TempDir Path out) throws IOException {
        try (var tuner = new ExitTuner(pretrained, exits(ExitKind.NORM, 4), ExitTuner.Init.COPY, false, 3, tc(1))) {
            tuner.save(out);
        }
        try (var loaded = ModelCheckpoint.load(out, Device.CPU); var s = Scope.open(); var g = GradMode.noGrad()) {
            var m = loaded.model();
            Tensor ids = Tensor.ofInts(java.util.Arrays.copyOf(tokens, 16), 1, 16);
            Tensor x = m.embed(ids, 0);
            for (var layer : m.layers()) x = layer.forward(x, 0, null);
            assertArrayEquals(m.finalLogits(x).toFloatArray(), m.exits().get(0).logits(x).toFloatArray());
        }
    }

    @Test
    void tunedModelGeneratesWithEarlyExitAndThresholdOneMatchesTheOriginal(@TempDir Path out) throws IOException {
        try (var tuner = new ExitTuner(pretrained, exits(ExitKind.MLP, 2), ExitTuner.Init.COPY, true, 3, tc(10))) {
            tuner.tune(TokenWindows.of(tokens, 16), tc(10), out, null);
            tuner.save(out);
        }
        int[] prompt = java.util.Arrays.copyOf(tokens, 6);
        try (var orig = ModelCheckpoint.load(pretrained, Device.CPU); var tuned = ModelCheckpoint.load(out, Device.CPU)) {
            var full = GenerationConfig.greedy(20);
            var a = new Generator(orig.model()).generate(List.of(prompt), full, TokenListener.NONE).get(0);
            var b = new Generator(tuned.model()).generate(List.of(prompt), full, TokenListener.NONE).get(0);
            assertArrayEquals(a.tokenIds(), b.tokenIds());
            var early = new Generator(tuned.model()).generate(List.of(prompt), full.withThreshold(0.05), TokenListener.NONE).get(0);
            assertTrue(java.util.Arrays.stream(early.exitLayers()).anyMatch(l -> l == 2), "some token should exit at layer 2");
        }
    }

    @Test
    void tuningAModelThatHasExitsIsRefused(@TempDir Path out) throws IOException {
        try (var tuner = new ExitTuner(pretrained, exits(ExitKind.NORM, 1), ExitTuner.Init.RANDOM, false, 3, tc(1))) {
            tuner.save(out);
        }
        var e = assertThrows(IllegalArgumentException.class,
                () -> new ExitTuner(out, exits(ExitKind.NORM, 2), ExitTuner.Init.RANDOM, false, 3, tc(1)));
        assertTrue(e.getMessage().contains("already has exits"), e.getMessage());
    }
}
