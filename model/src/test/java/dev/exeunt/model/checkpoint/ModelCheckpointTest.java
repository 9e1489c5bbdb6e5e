package dev.exeunt.model.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/** Checkpoint round trips, and clear errors for every kind of broken or mismatched checkpoint. */
@ExtendWith(LeakCheck.class)
class ModelCheckpointTest {
    static final BpeTokenizer TOK = BpeTrainer.train(List.of("the quick brown fox jumps over the lazy dog ".repeat(20)), 300,
            List.of("<|endoftext|>"));

    static ModelConfig config(int vocab) {
        return ModelConfig.llama(vocab, 16, 2, 2, 1, 32, 32,
                List.of(ExitConfig.post(1, ExitKind.NORM, 1.0), ExitConfig.post(2, ExitKind.MLP, 0.5)));
    }

    private static Path saved(Path dir, ModelConfig cfg) throws IOException {
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 3)) {
            ModelCheckpoint.save(m, TOK, dir);
        }
        return dir;
    }

    @Test
    void roundTripKeepsEveryTensorAndTheConfig(@TempDir Path tmp) throws IOException {
        var cfg = config(TOK.vocabSize());
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 3)) {
            ModelCheckpoint.save(m, TOK, tmp);
            try (var loaded = ModelCheckpoint.load(tmp, Device.CPU)) {
                assertEquals(cfg, loaded.model().config());
                assertEquals(TOK.vocabSize(), loaded.tokenizer().vocabSize());
                for (var e : m.parameters().all().entrySet()) {
                    assertArrayEquals(e.getValue().toFloatArray(), loaded.model().parameters().get(e.getKey()).toFloatArray());
                }
            }
        }
        var json = Files.readString(tmp.resolve("config.json"));
        assertTrue(json.contains("\"model_type\" : \"llama\"") && json.contains("\"early_exit\""), json);
    }

    @Test
    void truncatedWeightsAreRefused(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, config(TOK.vocabSize()));
        Path w = dir.resolve("model.safetensors");
        byte[] bytes = Files.readAllBytes(w);
        Files.write(w, java.util.Arrays.copyOf(bytes, bytes.length - 100));
        var e = assertThrows(CheckpointFormatException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        assertTrue(e.getMessage().contains("model.safetensors"), e.getMessage());
    }

    @Test
    void wrongShapeNamesTheTensorAndBothShapes(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, config(TOK.vocabSize()));
        var bigger = config(TOK.vocabSize()).withExits(config(TOK.vocabSize()).exits());
        var cfg = new ModelConfig(bigger.family(), bigger.vocabSize(), bigger.dModel(), bigger.nLayers(), bigger.nHeads(),
                bigger.nKvHeads(), 48, bigger.maxSeqLen(), bigger.normEps(), bigger.ropeTheta(), false, bigger.exits(), false, -1, -1);
        ConfigJson.write(cfg, dir.resolve("config.json"));
        var e = assertThrows(IllegalArgumentException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        assertTrue(e.getMessage().contains("gate_proj.weight") && e.getMessage().contains("[32, 16]")
                && e.getMessage().contains("[48, 16]"), e.getMessage());
    }

    @Test
    void missingTensorsAreListed(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, config(TOK.vocabSize()).withExits(List.of()));
        ConfigJson.write(config(TOK.vocabSize()), dir.resolve("config.json"));
        var e = assertThrows(CheckpointFormatException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        assertTrue(e.getMessage().contains("exits.0.norm.weight") && e.getMessage().contains("lacks"), e.getMessage());
    }

    @Test
    void tokenizerLargerThanTheModelVocabularyIsRefused(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, config(100));
        var e = assertThrows(CheckpointFormatException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        assertTrue(e.getMessage().contains("vocab_size is 100"), e.getMessage());
    }

    @Test
    void malformedConfigIsRefused(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp, config(TOK.vocabSize()));
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"llama\", \"hidden_size\": 16");
        var e = assertThrows(IOException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        assertTrue(e.getMessage().contains("malformed JSON"), e.getMessage());
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"bert\"}");
        var e2 = assertThrows(dev.exeunt.model.io.CheckpointFormatException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        assertTrue(e2.getMessage().contains("unsupported model_type 'bert'"), e2.getMessage());
    }
}
