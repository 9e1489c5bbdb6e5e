package dev.exeunt.model.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
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

/** Training on real text (this repository's own Java sources): losses fall, resume is exact, NaN stops. */
@ExtendWith(LeakCheck.class)
class TrainerTest {
    static BpeTokenizer tokenizer;
    static int[] tokens;

    @BeforeAll
    static void corpus() throws IOException {
        List<String> docs = new ArrayList<>();
        try (Stream<Path> files = Files.walk(Path.of("src/main/java"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).sorted().toList()) docs.add(Files.readString(p));
        }
        String text = String.join("\n", docs);
        text = text.substring(0, Math.min(text.length(), 120_000));
        tokenizer = BpeTrainer.train(List.of(text), 320, List.of("<|endoftext|>"));
        tokens = tokenizer.encode(text);
    }

    static ModelConfig config(int vocab) {
        return ModelConfig.gpt2(vocab, 32, 2, 2, 32, List.of(ExitConfig.post(1, ExitKind.NORM, 0.5)));
    }

    static TrainConfig train(int iters) {
        return new TrainConfig(16, 4, 2, iters, 1e-2, 1e-3, 3, 0.0, 0.9, 0.95, 1.0, 42, iters, 4, 4, 1000, 0.1);
    }

    @Test
    void lossOfFinalHeadAndExitFallsOnRealText(@TempDir Path dir) throws IOException {
        try (var model = EarlyExitModel.create(config(tokenizer.vocabSize()), Device.CPU, 1)) {
            var windows = TokenWindows.of(tokens, 16);
            var before = Evaluator.evaluate(model, windows, windows.split(0.1).validation(), 4, 4);
            Trainer.Result result;
            try (var t = new Trainer(model, tokenizer, windows, train(40), dir.resolve("ckpt"), null)) {
                result = t.train();
            }
            var after = result.lastEval();
            assertTrue(after.finalLoss() < before.finalLoss() - 0.5, before.finalLoss() + " -> " + after.finalLoss());
            assertTrue(after.exitLoss()[0] < before.exitLoss()[0] - 0.5, before.exitLoss()[0] + " -> " + after.exitLoss()[0]);
            assertTrue(Files.exists(dir.resolve("ckpt/model.safetensors")));
            assertTrue(Files.readAllLines(dir.resolve("ckpt/train_log.jsonl")).size() >= 40);
        }
    }

    @Test
    void resumeContinuesTheExactLossCurve(@TempDir Path dir) throws IOException {
        var windows = TokenWindows.of(tokens, 16);
        double uninterrupted;
        try (var model = EarlyExitModel.create(config(tokenizer.vocabSize()), Device.CPU, 1)) {
            try (var t = new Trainer(model, tokenizer, windows, train(8), dir.resolve("a"), null)) {
                uninterrupted = t.train().lastLoss();
            }
        }
        // Run 4 iterations of the same 8-iteration schedule, stop, then resume for the rest.
        var cfg = train(8);
        try (var model = EarlyExitModel.create(config(tokenizer.vocabSize()), Device.CPU, 1)) {
            try (var t = new Trainer(model, tokenizer, windows, cfg, dir.resolve("b"), null)) {
                t.stopAfter(4);
                t.train();
            }
        }
        double resumed;
        try (var model = EarlyExitModel.create(config(tokenizer.vocabSize()), Device.CPU, 99)) {
            try (var t = new Trainer(model, tokenizer, windows, cfg, dir.resolve("b"), null)) {
                t.resumeFrom(dir.resolve("b"));
                assertEquals(4, t.startIteration());
                resumed = t.train().lastLoss();
            }
        }
        // Bit-exact: the CPU kernels give the same results interpreted and JIT-compiled (see CpuDeterminismTest).
        assertEquals(uninterrupted, resumed, 0.0, "resumed run must reproduce the uninterrupted loss exactly");
        try (var a = ModelCheckpoint.load(dir.resolve("a"), Device.CPU); var b = ModelCheckpoint.load(dir.resolve("b"), Device.CPU)) {
            for (var e : a.model().parameters().all().entrySet()) {
                assertArrayEquals(e.getValue().toFloatArray(), b.model().parameters().get(e.getKey()).toFloatArray(), e.getKey());
            }
        }
    }

    @Test
    void nanLossStopsTrainingAndKeepsTheLastCheckpoint(@TempDir Path dir) throws IOException {
        var windows = TokenWindows.of(tokens, 16);
        var cfg = train(6);
        try (var model = EarlyExitModel.create(config(tokenizer.vocabSize()), Device.CPU, 1)) {
            try (var t = new Trainer(model, tokenizer, windows, cfg, dir.resolve("c"), null)) {
                t.stopAfter(2);
                t.train();
            }
            byte[] saved = Files.readAllBytes(dir.resolve("c/model.safetensors"));
            Tensor w = model.parameters().get("ln_f.weight");
            w.set(Float.NaN, 0);
            TrainingDivergedException e;
            try (var t2 = new Trainer(model, tokenizer, windows, cfg, dir.resolve("c"), null)) {
                e = assertThrows(TrainingDivergedException.class, t2::train);
            }
            assertTrue(e.getMessage().contains("NaN"), e.getMessage());
            assertArrayEquals(saved, Files.readAllBytes(dir.resolve("c/model.safetensors")));
        }
    }
}
