package dev.exeunt.model.config;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.tensor.RopeScaling;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Reads and writes Hugging Face {@code config.json}: the backbone in the keys transformers uses
 * for GPT-2 ({@code n_embd, n_layer, ...}) and Llama/Mistral ({@code hidden_size, num_hidden_layers, ...}),
 * plus an {@code early_exit} section that Hugging Face ignores and Exeunt reads.
 *
 * <p>A config is either fully understood or refused: every key is read and its value implemented,
 * accepted only with the value that changes nothing ({@code attention_bias: false}, {@code rope_scaling:
 * null}, ...), listed as harmless ({@link ConfigKeys}), or refused by name. Every size is a JSON integer
 * within {@link ModelConfig}'s limits. Every error is a {@link CheckpointFormatException} naming the file
 * and the key. The keys that do not change the computation are carried in
 * {@link ModelConfig#carriedKeys()} and written back, so tune and train keep them.
 */
public final class ConfigJson {
    private static final ObjectMapper JSON = new ObjectMapper().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    /** Keys {@link #toJson} writes from the config's fields; everything else read is carried. */
    private static final List<String> GPT2_FIELDS = List.of("vocab_size", "n_embd", "n_layer", "n_head", "n_inner",
            "n_positions", "n_ctx", "layer_norm_epsilon", "activation_function", "tie_word_embeddings");
    private static final List<String> LLAMA_FIELDS = List.of("vocab_size", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "intermediate_size", "max_position_embeddings", "rms_norm_eps",
            "rope_theta", "hidden_act", "tie_word_embeddings");

    private static final Set<String> LLAMA_TYPES = Set.of("llama", "mistral", "qwen2", "qwen3");

    private ConfigJson() {}

    /** Whether a model_type's config can spell these attention settings (Qwen3's q/k norm is that type's, Qwen2's biases are fixed). */
    private static boolean expresses(String type, AttentionOptions a) {
        boolean qwen2 = type.equals("qwen2"), qwen3 = type.equals("qwen3");
        if (a.slidingWindow() > 0 && !type.equals("mistral")) return false;
        if (a.qkNorm() != qwen3) return false;
        return qwen2 ? a.qkvBias() && !a.outputBias() : a.qkvBias() == a.outputBias();
    }

    /** The attention settings in the keys of a model_type that {@link #expresses} them. */
    private static void attention(ObjectNode o, String type, ModelConfig c) {
        var a = c.attention();
        if (!expresses(type, a)) {
            throw new IllegalArgumentException("no Hugging Face model_type has q/k/v biases " + a.qkvBias() + ", an o_proj bias " + a.outputBias()
                    + " and q/k norms " + a.qkNorm());
        }
        if (!type.equals("qwen2")) o.put("attention_bias", a.outputBias());
        if (a.slidingWindow() > 0) o.put("sliding_window", a.slidingWindow());
        if (a.headDim() > 0 || o.has("head_dim")) o.put("head_dim", c.headDim());
        RopeScaling rs = a.ropeScaling();
        if (o.get("rope_parameters") instanceof ObjectNode rp) {
            rp.put("rope_type", rs.isNone() ? "default" : rs.type().name().toLowerCase(Locale.ROOT));
            putScaling(rp, rs);
        } else if (rs.isNone()) {
            if (o.has("rope_scaling") && !o.get("rope_scaling").isNull()) o.remove("rope_scaling"); // null stays as the source wrote it
        } else {
            ObjectNode r = o.putObject("rope_scaling");
            r.put("rope_type", rs.type().name().toLowerCase(Locale.ROOT));
            putScaling(r, rs);
        }
    }

    private static void putScaling(ObjectNode r, RopeScaling rs) {
        if (rs.isNone()) return;
        r.put("factor", rs.factor());
        if (rs.type() == RopeScaling.Type.LLAMA3) {
            r.put("low_freq_factor", rs.lowFreqFactor());
            r.put("high_freq_factor", rs.highFreqFactor());
            r.put("original_max_position_embeddings", rs.originalMaxPositions());
        }
    }

    public static ObjectNode toJson(ModelConfig c) {
        ObjectNode o = c.carriedKeys();
        boolean gpt2 = c.family() == Family.GPT2;
        String type = o.path("model_type").asText("");
        if (!gpt2 && !LLAMA_TYPES.contains(type) || !gpt2 && !expresses(type, c.attention())) type = "";
        if (type.isEmpty() || gpt2 && !type.equals("gpt2")) {
            var a = c.attention();
            type = gpt2 ? "gpt2" : a.slidingWindow() > 0 ? "mistral" : a.qkNorm() ? "qwen3" : a.qkvBias() && !a.outputBias() ? "qwen2" : "llama";
            o.put("model_type", type);
            o.remove("architectures");
        }
        if (!o.has("architectures")) {
            o.putArray("architectures").add(gpt2 ? "GPT2LMHeadModel" : switch (type) {
                case "mistral" -> "MistralForCausalLM";
                case "qwen2" -> "Qwen2ForCausalLM";
                case "qwen3" -> "Qwen3ForCausalLM";
                default -> "LlamaForCausalLM";
            });
        }
        if (!gpt2) attention(o, type, c);
        o.put("vocab_size", c.vocabSize());
        if (gpt2) {
            o.put("n_embd", c.dModel());
            o.put("n_layer", c.nLayers());
            o.put("n_head", c.nHeads());
            o.put("n_inner", c.ffnHidden());
            o.put("n_positions", c.maxSeqLen());
            o.put("n_ctx", c.maxSeqLen());
            o.put("layer_norm_epsilon", c.normEps());
            o.put("activation_function", "gelu_new");
        } else {
            o.put("hidden_size", c.dModel());
            o.put("num_hidden_layers", c.nLayers());
            o.put("num_attention_heads", c.nHeads());
            o.put("num_key_value_heads", c.nKvHeads());
            o.put("intermediate_size", c.ffnHidden());
            o.put("max_position_embeddings", c.maxSeqLen());
            o.put("rms_norm_eps", c.normEps());
            o.put("rope_theta", c.ropeTheta());
            if (o.get("rope_parameters") instanceof ObjectNode rp) rp.put("rope_theta", c.ropeTheta());
            o.put("hidden_act", "silu");
        }
        o.put("tie_word_embeddings", c.tiedEmbeddings());
        putTokenId(o, "bos_token_id", c.bosId());
        putTokenId(o, "eos_token_id", c.eosId());
        if (!o.has("torch_dtype") && !o.has("dtype")) o.put("torch_dtype", "float32");
        o.remove("early_exit");
        if (!c.exits().isEmpty()) {
            ObjectNode ee = o.putObject("early_exit");
            ee.put("dynamic_token_weights", c.dynamicTokenWeights());
            ArrayNode arr = ee.putArray("exits");
            for (ExitConfig e : c.exits()) {
                ObjectNode x = arr.addObject();
                x.put("layer", e.layer());
                x.put("placement", e.placement().name().toLowerCase(Locale.ROOT));
                x.put("kind", e.kind().id());
                x.put("shared_head", e.sharedHead());
                x.put("temperature", e.temperature());
                if (e.selfDistill() > 0) x.put("self_distill", e.selfDistill());
                ObjectNode w = x.putObject("loss_weight");
                w.put("init", e.weight().init());
                w.put("target", e.weight().target());
                w.put("warmup_iters", e.weight().warmupIters());
                w.put("shape", e.weight().shape().name().toLowerCase(Locale.ROOT));
            }
        }
        return o;
    }

    /** A carried list of ids (Llama 3's several end tokens) is kept while its first id is still the config's. */
    private static void putTokenId(ObjectNode o, String key, int id) {
        JsonNode old = o.get(key);
        if (old != null && old.isArray() && !old.isEmpty() && old.get(0).asInt() == id) return;
        if (id >= 0) o.put(key, id);
        else o.remove(key);
    }

    /**
     * Top-level key with the {@code TokenizerHash} of the tokenizer the model was trained with ("sha256:...");
     * Hugging Face ignores it, Exeunt refuses a tokenizer.json or dataset whose hash differs. It belongs to
     * the checkpoint, not to the config: read by {@link #readTokenizerHash}, never carried.
     */
    public static final String TOKENIZER_HASH = "exeunt_tokenizer_sha256";

    public static void write(ModelConfig c, Path file) throws IOException {
        write(c, null, file);
    }

    /** Writes {@code c}, recording {@code tokenizerHash} (when not null) under {@link #TOKENIZER_HASH}. */
    public static void write(ModelConfig c, String tokenizerHash, Path file) throws IOException {
        ObjectNode o = toJson(c);
        if (tokenizerHash != null) o.put(TOKENIZER_HASH, tokenizerHash);
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.toFile(), o);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** The tokenizer hash recorded in {@code file}, or null when it records none (older or Hugging Face checkpoints). */
    public static String readTokenizerHash(Path file) throws IOException {
        JsonNode o;
        try {
            o = JSON.readTree(file.toFile());
        } catch (JsonProcessingException e) {
            throw new CheckpointFormatException(file, "malformed JSON: " + e.getOriginalMessage(), e);
        }
        JsonNode v = o == null ? null : o.get(TOKENIZER_HASH);
        if (v == null || v.isNull()) return null;
        if (!v.isTextual() || !v.asText().matches("sha256:[0-9a-f]{64}")) {
            throw new CheckpointFormatException(file, "'" + TOKENIZER_HASH + "' must be \"sha256:\" and 64 hex digits, got "
                    + ConfigReader.describe(v));
        }
        return v.asText();
    }

    /** Reads {@code file}; anything malformed, unknown, unimplemented or out of bounds is refused naming the key. */
    public static ModelConfig read(Path file) throws IOException {
        if (!Files.exists(file)) throw new NoSuchFileException(file.toString(), null, "missing config.json");
        JsonNode o;
        try {
            o = JSON.readTree(file.toFile());
        } catch (JsonProcessingException e) {
            throw new CheckpointFormatException(file, "malformed JSON: " + e.getOriginalMessage(), e);
        }
        return fromJson(o, file);
    }

    /** Parses a config object; {@code file} names it in errors. */
    public static ModelConfig fromJson(JsonNode o, Path file) throws CheckpointFormatException {
        var r = new ConfigReader(file, o, "");
        String type = r.string("model_type", null);
        if (type == null) throw r.error("model_type", "is missing (supported: gpt2, llama, mistral, qwen2, qwen3)");
        try {
            return switch (type) {
                case "gpt2" -> gpt2(r);
                case "llama", "mistral", "qwen2", "qwen3" -> llama(r, type);
                default -> throw r.error("model_type", "is '" + type + "': unsupported model_type '" + type
                        + "' (supported: gpt2, llama, mistral, qwen2, qwen3)");
            };
        } catch (IllegalArgumentException e) { // ModelConfig's and the exits' own consistency checks
            throw new CheckpointFormatException(file, e.getMessage(), e);
        }
    }

    private static ModelConfig gpt2(ConfigReader r) throws CheckpointFormatException {
        int d = r.requiredInt("n_embd", 1, ModelConfig.MAX_D_MODEL, "model width");
        int vocab = r.requiredInt("vocab_size", 1, ModelConfig.MAX_VOCAB, "vocabulary size");
        int layers = r.requiredInt("n_layer", 1, ModelConfig.MAX_LAYERS, "number of layers");
        int heads = r.requiredInt("n_head", 1, d, "number of attention heads");
        if (d % heads != 0) throw r.error("n_head", "is " + heads + ", which does not divide n_embd " + d);
        int ffn = r.optionalInt("n_inner", 4 * d, 1, ModelConfig.MAX_FFN, "MLP inner size");
        int positions = r.optionalInt("n_positions", 1024, 1, ModelConfig.MAX_POSITIONS, "number of learned positions");
        r.optionalInt("n_ctx", positions, 1, ModelConfig.MAX_POSITIONS, "legacy context size (transformers ignores it)");
        double eps = r.positiveNumber("layer_norm_epsilon", 1e-5, 1, "LayerNorm epsilon");
        // gelu_pytorch_tanh and gelu_fast are the same tanh formula as gelu_new; "gelu" is the exact erf form.
        r.stringAmong("activation_function", Set.of("gelu_new", "gelu_pytorch_tanh", "gelu_fast"),
                "Exeunt's GPT-2 MLP computes only the tanh approximation of GELU");
        r.boolMustBe("scale_attn_weights", true, "attention without the 1/sqrt(head_dim) scale is not implemented");
        r.boolMustBe("scale_attn_by_inverse_layer_idx", false, "scaling attention by 1/(layer index + 1) is not implemented");
        boolean tied = r.bool("tie_word_embeddings", true);
        r.harmless(ConfigKeys.GPT2);
        return finish(r, Family.GPT2, vocab, d, layers, heads, heads, ffn, positions, eps, 10000, tied);
    }

    /**
     * Llama and its relatives, which differ in a few attention settings ({@link AttentionOptions}): Llama 3.x
     * scales RoPE, Qwen2 has q/k/v biases, Qwen3 sets head_dim apart and normalizes q and k per head.
     */
    private static ModelConfig llama(ConfigReader r, String type) throws CheckpointFormatException {
        int d = r.requiredInt("hidden_size", 1, ModelConfig.MAX_D_MODEL, "model width");
        int vocab = r.requiredInt("vocab_size", 1, ModelConfig.MAX_VOCAB, "vocabulary size");
        int layers = r.requiredInt("num_hidden_layers", 1, ModelConfig.MAX_LAYERS, "number of layers");
        int heads = r.requiredInt("num_attention_heads", 1, d, "number of attention heads");
        int kv = r.optionalInt("num_key_value_heads", heads, 1, heads, "number of key/value heads");
        if (heads % kv != 0) throw r.error("num_key_value_heads", "is " + kv + ", which does not divide num_attention_heads " + heads);
        int ffn = r.requiredInt("intermediate_size", 1, ModelConfig.MAX_FFN, "MLP inner size");
        int positions = r.optionalInt("max_position_embeddings", 2048, 1, ModelConfig.MAX_POSITIONS, "longest context");
        double eps = r.positiveNumber("rms_norm_eps", 1e-6, 1, "RMSNorm epsilon");
        double theta = ropeTheta(r);
        RopeScaling scaling = ropeScaling(r);
        r.stringAmong("hidden_act", Set.of("silu", "swish"), "Exeunt's Llama MLP computes only SwiGLU with SiLU");
        boolean qwen2 = type.equals("qwen2"), qwen3 = type.equals("qwen3");
        // Qwen2 always has q/k/v biases and no o_proj bias (its config has no attention_bias); Llama and Qwen3
        // put a bias on all four projections when attention_bias is true
        boolean bias = !qwen2 && r.bool("attention_bias", false);
        r.boolMustBe("mlp_bias", false, "biases on the gate/up/down projections are not implemented");
        JsonNode hdNode = r.get("head_dim");
        int headDim = hdNode == null ? 0 : r.checkedInt("head_dim", hdNode, 2, ModelConfig.MAX_D_MODEL, "attention head size");
        if (headDim == 0 && d % heads != 0) {
            throw r.error("num_attention_heads", "is " + heads + ", which does not divide hidden_size " + d + " (and head_dim is not set)");
        }
        // pretraining_tp > 1 splits each projection into slices summed afterwards: the same product in another order.
        // Only 1 is accepted, so that what Exeunt computes is exactly what the config says.
        if (r.optionalInt("pretraining_tp", 1, 1, 1024, "tensor-parallel degree of pretraining") != 1) {
            throw r.error("pretraining_tp", "is not 1: the sliced projections of pretraining_tp > 1 are not implemented");
        }
        int window = slidingWindow(r, type, positions);
        boolean tied = r.bool("tie_word_embeddings", false);
        r.harmless(ConfigKeys.LLAMA);
        var attention = new AttentionOptions(headDim, bias || qwen2, bias, qwen3, scaling, window);
        return finish(r, Family.LLAMA, vocab, d, layers, heads, kv, ffn, positions, eps, theta, tied).withAttention(attention);
    }

    /**
     * Mistral's sliding_window (null, or a window at least the context, is none); Qwen's windows apply to
     * some layers only and are accepted only where they change nothing (use_sliding_window false, every
     * layer full attention). Returns the window, 0 for none.
     */
    private static int slidingWindow(ConfigReader r, String type, int positions) throws CheckpointFormatException {
        if (type.equals("llama")) return 0; // not a Llama key at all: refused as unknown
        JsonNode w = r.get("sliding_window");
        if (type.startsWith("qwen")) {
            boolean on = r.bool("use_sliding_window", false);
            if (w != null) r.checkedInt("sliding_window", w, 1, Integer.MAX_VALUE, "attention window");
            r.optionalInt("max_window_layers", 0, 0, ModelConfig.MAX_LAYERS, "layers with full attention before the windowed ones");
            JsonNode kinds = r.get("layer_types");
            boolean allFull = true;
            if (kinds != null) for (JsonNode k : kinds) allFull &= k.asText().equals("full_attention");
            if (on || !allFull) {
                throw r.error(on ? "use_sliding_window" : "layer_types", "asks for sliding-window attention on some layers, which is not "
                        + "implemented for Qwen (use_sliding_window false, every layer full_attention, is accepted)");
            }
            return 0;
        }
        if (w == null) return 0;
        int window = r.checkedInt("sliding_window", w, 1, Integer.MAX_VALUE, "attention window");
        return window >= positions ? 0 : window;
    }

    /** rope_theta, from the top level or transformers 5's rope_parameters (which must agree). */
    private static double ropeTheta(ConfigReader r) throws CheckpointFormatException {
        double theta = r.positiveNumber("rope_theta", 10000, 1e12, "RoPE base");
        JsonNode params = r.get("rope_parameters");
        if (params != null && params.has("rope_theta")) {
            double pt = params.get("rope_theta").asDouble();
            if (r.has("rope_theta") && pt != theta) {
                throw r.error("rope_parameters", "has rope_theta " + pt + " but the top-level rope_theta is " + theta + ": they disagree");
            }
            if (!(pt > 0 && pt <= 1e12)) throw r.error("rope_parameters", "has rope_theta " + pt + ", outside (0, 1e12]");
            theta = pt;
        }
        return theta;
    }

    /**
     * rope_scaling (or transformers 5's rope_parameters): none ("default"), "linear" (factor) or "llama3"
     * (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings); the others (dynamic,
     * yarn, longrope) are refused by name.
     */
    private static RopeScaling ropeScaling(ConfigReader r) throws CheckpointFormatException {
        JsonNode scaling = r.get("rope_scaling");
        JsonNode params = r.get("rope_parameters");
        if (scaling != null && params != null) throw r.error("rope_scaling", "and rope_parameters are both set: give one");
        String key = scaling != null ? "rope_scaling" : "rope_parameters";
        JsonNode node = scaling != null ? scaling : params;
        if (node == null) return RopeScaling.NONE;
        if (!node.isObject()) throw r.error(key, "must be an object, got " + ConfigReader.describe(node));
        var p = new ConfigReader(r.file(), node, key + ".");
        String t = p.has("rope_type") ? p.string("rope_type", "default") : p.string("type", "default");
        if (p.has("rope_type") && p.has("type") && !p.string("type", "").equals(t)) {
            throw p.error("type", "is '" + p.string("type", "") + "' but rope_type is '" + t + "': they disagree");
        }
        if (key.equals("rope_parameters")) p.positiveNumber("rope_theta", 10000, 1e12, "RoPE base"); // read by ropeTheta
        RopeScaling out;
        try {
            out = switch (t) {
                case "default" -> RopeScaling.NONE;
                case "linear" -> RopeScaling.linear(p.positiveNumber("factor", 1, 1e6, "context stretch"));
                case "llama3" -> RopeScaling.llama3(p.positiveNumber("factor", 8, 1e6, "context stretch"),
                        p.positiveNumber("low_freq_factor", 1, 1e6, "low-frequency bound"),
                        p.positiveNumber("high_freq_factor", 4, 1e6, "high-frequency bound"),
                        p.requiredInt("original_max_position_embeddings", 1, ModelConfig.MAX_POSITIONS, "context the model was trained on"));
                default -> throw p.error("rope_type", "is '" + t + "': only default, linear and llama3 RoPE scaling are implemented");
            };
        } catch (IllegalArgumentException e) {
            throw p.error("factor", e.getMessage());
        }
        p.refuseUnread(key);
        return out;
    }

    /** The keys both families share, the early-exit section, the refusal of unknown keys, and the config. */
    private static ModelConfig finish(ConfigReader r, Family family, int vocab, int d, int layers, int heads, int kv, int ffn,
                                      int positions, double eps, double theta, boolean tied) throws CheckpointFormatException {
        r.boolMustBe("is_encoder_decoder", false, "encoder-decoder models are not implemented");
        r.boolMustBe("add_cross_attention", false, "cross-attention layers are not implemented");
        JsonNode pruned = r.get("pruned_heads");
        if (pruned != null && !(pruned.isObject() && pruned.isEmpty())) {
            throw r.error("pruned_heads", "is " + ConfigReader.describe(pruned) + ": pruned attention heads are not implemented");
        }
        JsonNode pad = r.get("pad_token_id"); // only its type: padding never reaches the model
        if (pad != null && !(pad.isIntegralNumber() && pad.canConvertToInt())) {
            throw r.error("pad_token_id", "must be an integer, got " + ConfigReader.describe(pad));
        }
        int bos = tokenId(r, "bos_token_id", vocab), eos = tokenId(r, "eos_token_id", vocab);
        r.harmless(ConfigKeys.ANY_MODEL);
        r.harmless(List.of(TOKENIZER_HASH)); // checked against tokenizer.json by readTokenizerHash's callers
        List<ExitConfig> exits = new ArrayList<>();
        boolean dynamic = exits(r, exits);
        r.refuseUnread("a " + (family == Family.GPT2 ? "gpt2" : "llama/mistral") + " config");
        var config = new ModelConfig(family, vocab, d, layers, heads, kv, ffn, positions, eps, theta, tied, exits, dynamic, bos, eos);
        return config.withCarriedKeys(carried(r, family, toJson(config)));
    }

    /** An id in [0, vocab), a non-empty list of them (the first is used), or -1 when absent. */
    private static int tokenId(ConfigReader r, String key, int vocab) throws CheckpointFormatException {
        JsonNode v = r.get(key);
        if (v == null) return -1;
        if (!v.isArray()) return r.checkedInt(key, v, 0, vocab - 1, "token id (below vocab_size " + vocab + ")");
        if (v.isEmpty()) throw r.error(key, "is an empty list");
        for (JsonNode x : v) r.checkedInt(key, x, 0, vocab - 1, "token id (below vocab_size " + vocab + ")");
        return v.get(0).intValue();
    }

    /** Fills {@code out} from the early_exit section; returns dynamic_token_weights. */
    private static boolean exits(ConfigReader top, List<ExitConfig> out) throws CheckpointFormatException {
        JsonNode section = top.get("early_exit");
        if (section == null) return false;
        var ee = new ConfigReader(top.file(), section, "early_exit.");
        boolean dynamic = ee.bool("dynamic_token_weights", false);
        JsonNode list = ee.get("exits");
        if (list != null && !list.isArray()) throw ee.error("exits", "must be a list, got " + ConfigReader.describe(list));
        for (int i = 0; list != null && i < list.size(); i++) {
            var x = new ConfigReader(top.file(), list.get(i), "early_exit.exits[" + i + "].");
            int layer = x.requiredInt("layer", 1, ModelConfig.MAX_LAYERS, "1-based layer the exit reads");
            var placement = enumValue(x, "placement", "post", ExitConfig.Placement.class);
            ExitKind kind;
            try {
                kind = ExitKind.parse(x.string("kind", "norm"));
            } catch (IllegalArgumentException e) {
                throw x.error("kind", e.getMessage());
            }
            boolean shared = x.bool("shared_head", false);
            double temperature = x.positiveNumber("temperature", 1.0, 1e6, "exit temperature");
            double selfDistill = x.has("self_distill") ? nonNegative(x, "self_distill") : 0;
            WeightSchedule weight = WeightSchedule.constant(1.0);
            JsonNode w = x.get("loss_weight");
            if (w != null) {
                var wr = new ConfigReader(top.file(), w, "early_exit.exits[" + i + "].loss_weight.");
                double init = nonNegative(wr, "init"), target = nonNegative(wr, "target");
                int warmup = wr.optionalInt("warmup_iters", 0, 0, Integer.MAX_VALUE, "warm-up iterations");
                weight = new WeightSchedule(init, target, warmup, enumValue(wr, "shape", "linear", WeightSchedule.Shape.class));
                wr.refuseUnread("an exit's loss_weight");
            }
            x.refuseUnread("an exit");
            out.add(new ExitConfig(layer, placement, kind, shared, weight, temperature, selfDistill));
        }
        ee.refuseUnread("the early_exit section");
        return dynamic;
    }

    private static double nonNegative(ConfigReader r, String key) throws CheckpointFormatException {
        JsonNode v = r.get(key);
        if (v == null) return 1.0;
        if (!v.isNumber() || !Double.isFinite(v.doubleValue()) || v.doubleValue() < 0) {
            throw r.error(key, "must be a finite number >= 0 (an exit loss weight), got " + ConfigReader.describe(v));
        }
        return v.doubleValue();
    }

    private static <E extends Enum<E>> E enumValue(ConfigReader r, String key, String fallback, Class<E> type)
            throws CheckpointFormatException {
        String s = r.string(key, fallback);
        for (E e : type.getEnumConstants()) {
            if (e.name().equalsIgnoreCase(s)) return e;
        }
        throw r.error(key, "is '" + s + "' (accepted: " + String.join(", ",
                java.util.Arrays.stream(type.getEnumConstants()).map(e -> e.name().toLowerCase(Locale.ROOT)).toList()) + ")");
    }

    /**
     * The keys that {@link #toJson} does not write from the fields, less those holding the value it
     * writes anyway ({@code written}): a config Exeunt wrote reads back equal to the one it wrote.
     */
    private static ObjectNode carried(ConfigReader r, Family family, ObjectNode written) {
        ObjectNode keep = r.object().deepCopy();
        keep.remove(family == Family.GPT2 ? GPT2_FIELDS : LLAMA_FIELDS);
        keep.remove("early_exit");
        keep.remove(TOKENIZER_HASH);
        for (String id : List.of("bos_token_id", "eos_token_id")) {
            if (!keep.path(id).isArray()) keep.remove(id);
        }
        keep.properties().removeIf(e -> e.getValue().equals(written.get(e.getKey())));
        return keep;
    }
}
