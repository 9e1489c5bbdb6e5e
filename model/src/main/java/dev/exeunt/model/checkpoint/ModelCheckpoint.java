package dev.exeunt.model.checkpoint;

import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.model.tokenizer.TokenizerHash;
import dev.exeunt.model.tokenizer.TokenizerMismatchException;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
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
    /**
     * Hugging Face files beside the tokenizer that Exeunt does not read but other tools do (the chat
     * template, generation defaults, special tokens, a SentencePiece model): a tuned checkpoint keeps them.
     */
    public static final java.util.List<String> COMPANIONS = java.util.List.of("tokenizer_config.json", "generation_config.json",
            "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "chat_template.jinja");

    private ModelCheckpoint() {}

    /**
     * A loaded model and its tokenizer.
     *
     * @param tokenizerHash the {@link TokenizerHash} the model's data must have been tokenized with, or null when unknown
     */
    public record Loaded(EarlyExitModel model, Tokenizer tokenizer, String tokenizerHash) implements AutoCloseable {
        public Loaded(EarlyExitModel model, Tokenizer tokenizer) {
            this(model, tokenizer, null);
        }

        @Override
        public void close() {
            model.close();
        }
    }

    /**
     * Writes config, weights and tokenizer into {@code dir} (created if needed); each file is replaced
     * atomically, the set is not. A tensor-parallel model is saved whole, as one rank would save it: every
     * rank of its group calls this and rank 0 writes ({@link TensorFiles#save(Map, java.util.function.Function,
     * dev.exeunt.model.nn.TensorParallel, Path, Map)}).
     */
    public static void save(EarlyExitModel model, BpeTokenizer tokenizer, Path dir) throws IOException {
        var params = model.parameters();
        var pp = params.pipeline();
        boolean writes = model.tensorParallel().rank() == 0 && pp.stage() == 0;
        if (writes) Files.createDirectories(dir);
        // Pipeline stages each contribute the tensors they own; a tied head's copy on a later stage is stage 0's embedding.
        Map<String, Tensor> owned = new LinkedHashMap<>();
        params.all().forEach((name, t) -> {
            if (!params.isStageCopy(name)) owned.put(name, t);
        });
        TensorFiles.save(owned, params::shard, model.tensorParallel(), pp, writes ? dir.resolve(WEIGHTS) : null,
                Map.of("format", "pt", "producer", "exeunt"));
        if (!writes) return;
        if (tokenizer != null) HfTokenizerJson.save(tokenizer, dir.resolve(TOKENIZER));
        ConfigJson.write(model.config(), tokenizer == null ? null : TokenizerHash.of(tokenizer), dir.resolve(CONFIG));
    }

    /**
     * Loads a checkpoint directory; every mismatch between the files is an error that names the tensor or
     * file. config.json is checked against the weights' header before the model is allocated, so a
     * config whose sizes disagree with its tensors costs nothing.
     */
    public static Loaded load(Path dir, Device device) throws IOException {
        return load(dir, device, false);
    }

    /**
     * Loads a checkpoint directory. A tokenizer.json whose hash differs from the one config.json records
     * is refused unless {@code force}.
     */
    public static Loaded load(Path dir, Device device, boolean force) throws IOException {
        return load(dir, force, c -> EarlyExitModel.allocate(c, device));
    }

    /**
     * As {@link #load(Path, Device, boolean)} into the model {@code allocate} builds from the config (a
     * tensor-parallel shard or a pipeline stage of it, say): it gets its part of every tensor it holds.
     */
    public static Loaded load(Path dir, boolean force, java.util.function.Function<ModelConfig, EarlyExitModel> allocate) throws IOException {
        if (!Files.isDirectory(dir)) throw new IOException("checkpoint directory " + dir + " does not exist");
        ModelConfig config = ConfigJson.read(dir.resolve(CONFIG));
        Tokenizer tokenizer = null;
        String hash = ConfigJson.readTokenizerHash(dir.resolve(CONFIG));
        if (Files.exists(dir.resolve(TOKENIZER))) {
            tokenizer = HfTokenizerJson.load(dir.resolve(TOKENIZER));
            if (tokenizer.vocabSize() > config.vocabSize()) {
                throw new CheckpointFormatException(dir.resolve(TOKENIZER), "tokenizer has " + tokenizer.vocabSize()
                        + " tokens but the model's vocab_size is " + config.vocabSize() + ": they do not belong together");
            }
            hash = checkTokenizer(dir, hash, TokenizerHash.of(tokenizer), force);
        }
        try (SafetensorsCheckpoint ckpt = SafetensorsCheckpoint.open(dir)) {
            CheckpointLayout.check(config, ckpt);
            EarlyExitModel model = allocate.apply(config);
            try {
                loadWeights(model, ckpt);
            } catch (IOException | RuntimeException e) {
                model.close();
                throw e;
            }
            return new Loaded(model, tokenizer, hash);
        }
    }

    /**
     * The tokenizer hash of the checkpoint in {@code dir}: the one config.json records, checked against its
     * tokenizer.json (refused on a mismatch unless {@code force}); the tokenizer.json's own when config.json
     * records none; null when neither is there.
     */
    public static String tokenizerHash(Path dir, boolean force) throws IOException {
        String recorded = ConfigJson.readTokenizerHash(dir.resolve(CONFIG));
        if (!Files.exists(dir.resolve(TOKENIZER))) return recorded;
        return checkTokenizer(dir, recorded, TokenizerHash.of(HfTokenizerJson.load(dir.resolve(TOKENIZER))), force);
    }

    private static String checkTokenizer(Path dir, String recorded, String actual, boolean force) throws IOException {
        if (TokenizerMismatchException.check(dir.resolve(TOKENIZER) + " is tokenizer %s but the model in " + dir
                + " was trained with %s (config.json " + ConfigJson.TOKENIZER_HASH + ")", actual, recorded, force)) {
            System.err.println("warning: --force: " + dir.resolve(TOKENIZER) + " (" + TokenizerHash.shortForm(actual)
                    + ") is not the tokenizer the model was trained with (" + TokenizerHash.shortForm(recorded) + ")");
        }
        return recorded != null ? recorded : actual;
    }

    /**
     * Copies every parameter of {@code model} from the checkpoint. Lists all missing tensors, wrong shapes
     * and tensors the model would not use (except known buffers) at once, before copying anything.
     */
    public static void loadWeights(EarlyExitModel model, SafetensorsCheckpoint ckpt) throws IOException {
        var params = model.parameters();
        Map<String, long[]> shapes = new LinkedHashMap<>();
        for (String name : params.all().keySet()) shapes.put(name, Arrays.stream(params.shard(name).fullShape()).asLongStream().toArray());
        // A pipeline stage reads its own tensors of the whole checkpoint; the other stages' are theirs.
        CheckpointLayout.matches(shapes, ckpt, params.pipeline().stages() > 1);
        for (String name : shapes.keySet()) {
            try (Tensor t = TensorFiles.load(ckpt, CheckpointLayout.resolve(ckpt, name), Device.CPU)) {
                loadShard(params, name, t);
            }
        }
    }

    /**
     * Copies this rank's part of the full tensor {@code full} into parameter {@code name}: the whole of it,
     * or its slice when the parameter is a tensor-parallel shard, so a checkpoint of any layout loads
     * into any other (it is always stored whole).
     */
    public static void loadShard(dev.exeunt.model.nn.Parameters params, String name, Tensor full) {
        Shard shard = params.shard(name);
        if (!shard.isSplit()) {
            params.load(name, full);
            return;
        }
        try (var s = Scope.open()) {
            params.load(name, shard.sliceOf(full));
        }
    }

    /** Deletes a file or a directory tree; nothing when {@code p} does not exist. */
    public static void deleteRecursively(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(q);
        }
    }
}
