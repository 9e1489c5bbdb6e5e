package dev.exeunt.model.checkpoint;

import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * A self-contained checkpoint directory in the Hugging Face layout: {@code config.json} (backbone keys
 * plus an {@code early_exit} section), {@code model.safetensors} with Hugging Face tensor names, and
 * {@code tokenizer.json}. Training state, when present, sits beside them ({@link dev.exeunt.model.train.TrainingState}).
 * {@link #save} writes into a directory as it is; {@code train} and {@code tune} write into a staging
 * directory that {@link CheckpointStore} publishes crash-safely.
 */
public final class ModelCheckpoint {
    public static final String CONFIG = "config.json";
    public static final String WEIGHTS = "model.safetensors";
    public static final String TOKENIZER = "tokenizer.json";

    private ModelCheckpoint() {}

    /** A loaded model and its tokenizer. */
    public record Loaded(EarlyExitModel model, Tokenizer tokenizer) implements AutoCloseable {
        @Override
        public void close() {
            model.close();
        }
    }

    /** Writes config, weights and tokenizer into {@code dir} (created if needed); each file is replaced atomically, the set is not. */
    public static void save(EarlyExitModel model, BpeTokenizer tokenizer, Path dir) throws IOException {
        Files.createDirectories(dir);
        TensorFiles.save(model.parameters().all(), dir.resolve(WEIGHTS), Map.of("format", "pt", "producer", "exeunt"));
        if (tokenizer != null) HfTokenizerJson.save(tokenizer, dir.resolve(TOKENIZER));
        ConfigJson.write(model.config(), dir.resolve(CONFIG));
    }

    /** Loads a checkpoint directory; every mismatch between the files is an error that names the tensor or file. */
    public static Loaded load(Path dir, Device device) throws IOException {
        if (!Files.isDirectory(dir)) throw new IOException("checkpoint directory " + dir + " does not exist");
        ModelConfig config = ConfigJson.read(dir.resolve(CONFIG));
        Tokenizer tokenizer = null;
        if (Files.exists(dir.resolve(TOKENIZER))) {
            tokenizer = HfTokenizerJson.load(dir.resolve(TOKENIZER));
            if (tokenizer.vocabSize() > config.vocabSize()) {
                throw new CheckpointFormatException(dir.resolve(TOKENIZER), "tokenizer has " + tokenizer.vocabSize()
                        + " tokens but the model's vocab_size is " + config.vocabSize() + ": they do not belong together");
            }
        }
        EarlyExitModel model = EarlyExitModel.allocate(config, device);
        try (SafetensorsCheckpoint ckpt = SafetensorsCheckpoint.open(dir)) {
            loadWeights(model, ckpt);
        } catch (IOException | RuntimeException e) {
            model.close();
            throw e;
        }
        return new Loaded(model, tokenizer);
    }

    /** Copies every parameter of {@code model} from the checkpoint; lists all missing tensors at once. */
    public static void loadWeights(EarlyExitModel model, SafetensorsCheckpoint ckpt) throws IOException {
        List<String> missing = new ArrayList<>();
        for (String name : model.parameters().all().keySet()) {
            if (resolve(ckpt, name) == null) missing.add(name);
        }
        if (!missing.isEmpty()) {
            throw new CheckpointFormatException(ckpt.location(), "checkpoint lacks " + missing.size() + " tensor(s) the "
                    + "config needs: " + String.join(", ", missing.subList(0, Math.min(10, missing.size())))
                    + (missing.size() > 10 ? ", ..." : ""));
        }
        for (String name : model.parameters().all().keySet()) {
            try (Tensor t = TensorFiles.load(ckpt, resolve(ckpt, name), Device.CPU)) {
                model.parameters().load(name, t);
            }
        }
    }

    /** Hugging Face GPT-2 files sometimes prefix names with "transformer.". */
    private static String resolve(SafetensorsCheckpoint ckpt, String name) {
        if (ckpt.contains(name)) return name;
        if (ckpt.contains("transformer." + name)) return "transformer." + name;
        return null;
    }

    /** Deletes a file or a directory tree; nothing when {@code p} does not exist. */
    public static void deleteRecursively(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(q);
        }
    }
}
