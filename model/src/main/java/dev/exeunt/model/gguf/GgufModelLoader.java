package dev.exeunt.model.gguf;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.AttentionOptions;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.GgmlType;
import dev.exeunt.model.io.GgufFile;
import dev.exeunt.model.io.GgufTensorInfo;
import dev.exeunt.model.io.GgufTokenizerData;
import dev.exeunt.model.io.GgufValue;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.RopeScaling;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.Q3KToQ6K;
import dev.exeunt.tensor.ops.Ops;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Loads a Llama-family or GPT-2 model and its tokenizer from a GGUF file (llama.cpp's layout and names),
 * with its early exits when Exeunt wrote them ({@link GgufExporter}).
 *
 * <p>Hyperparameters come from the {@code llama.*} or {@code gpt2.*} metadata, the tokenizer from {@code tokenizer.ggml.*}
 * ({@link GgufTokenizers}). Tensors map to Hugging Face names ({@link #tensorNames}); GGUF stores dims in
 * ggml order ({@code ne[0]} = columns), so a [out, in] matrix has dims [in, out]. llama.cpp's converter
 * permutes the rows of {@code attn_q} / {@code attn_k} for ggml's interleaved-pair RoPE
 * ({@code w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2)}); Exeunt uses Hugging Face's rotate-half RoPE,
 * so the loader applies the inverse row permutation (whole rows of bytes, so it works on quantized rows).
 * GPT-2's Conv1D weights are stored transposed ([out, in], as the converter writes them) and load back
 * input-major, as F32.
 *
 * <p>Exits: a file with {@value #CONFIG_KEY} (the checkpoint's config.json, early_exit section included)
 * holds each exit's parameters as tensors under their Exeunt names ({@code exits.<i>.*}, Exeunt's own
 * layout). The config must agree with the architecture's keys.
 *
 * <p>F32, F16 and BF16 tensors load as F32. Q8_0, Q4_0 and k-quant (Q2_K, Q4_K, Q5_K, Q6_K) matrices of the projections and the output
 * head stay quantized in memory (frozen; their products go through {@code Backend.linearQuantized});
 * Q3_K ones load as Q6_K holding the same weights exactly ({@link Q3KToQ6K}, 1.9x the bytes);
 * a quantized token embedding is dequantized to F32. Other ggml types, missing tensors, shapes that
 * disagree with the metadata and other architectures are errors naming the key or tensor.
 */
public final class GgufModelLoader {
    /** The ggml tensor types this loader reads. */
    public static final List<GgmlType> SUPPORTED = List.of(GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0,
            GgmlType.Q4_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K);

    /** Metadata key holding the model's config.json (with its exits) in a file Exeunt wrote. */
    public static final String CONFIG_KEY = "exeunt.config";
    /** Prefix of the exits' tensors. */
    static final String EXIT_PREFIX = "exits.";

    private GgufModelLoader() {}

    /** Loads model and tokenizer (the tokenizer is null when the file has no {@code tokenizer.ggml.model}). */
    public static ModelCheckpoint.Loaded load(Path file, Device device) throws IOException {
        try (GgufFile gguf = GgufFile.open(file)) {
            return load(gguf, device);
        }
    }

    /** Loads from an open file (all data is copied; the file may be closed afterwards). */
    public static ModelCheckpoint.Loaded load(GgufFile gguf, Device device) throws IOException {
        Path file = gguf.path();
        Tokenizer tokenizer = null;
        GgufTokenizerData tok = null;
        if (gguf.metadata().containsKey(GgufTokenizerData.PREFIX + "model")) {
            tok = gguf.tokenizer();
            tokenizer = GgufTokenizers.create(tok, gguf.metadata(), file);
        }
        ModelConfig config = config(gguf, tok);
        Map<String, Mapping> names = tensorNames(config);
        for (GgufTensorInfo t : gguf.tensors()) {
            if (t.name().startsWith(EXIT_PREFIX)) names.put(t.name(), new Mapping(t.name(), 0, t.name().endsWith(".head.weight"), false));
        }
        validate(gguf, config, names);
        Parameters.Source source = (name, shape) -> {
            Mapping m = names.get(name);
            if (m == null) return null;
            try {
                return read(gguf, m, shape);
            } catch (CheckpointFormatException e) {
                throw new UncheckedIOException(e);
            }
        };
        Parameters params = new Parameters(device, source);
        try {
            EarlyExitModel model = EarlyExitModel.create(config, params);
            List<String> unused = names.keySet().stream().filter(n -> !params.all().containsKey(n)).toList();
            if (!unused.isEmpty()) {
                model.close();
                throw new CheckpointFormatException(file, "the file holds " + unused.size() + " exit tensor(s) the model's exits do not use: "
                        + String.join(", ", unused.subList(0, Math.min(10, unused.size()))));
            }
            return new ModelCheckpoint.Loaded(model, tokenizer);
        } catch (UncheckedIOException e) {
            params.close();
            throw e.getCause();
        } catch (RuntimeException e) {
            params.close();
            throw e;
        }
    }

    // ------------------------------------------------------------------ config

    /**
     * The model config from a GGUF file's metadata (vocabulary: {@code token_embd} rows), with the exits
     * of {@value #CONFIG_KEY} when present.
     */
    public static ModelConfig config(GgufFile gguf, GgufTokenizerData tok) throws CheckpointFormatException {
        Path file = gguf.path();
        Map<String, GgufValue> md = gguf.metadata();
        GgufValue archV = md.get("general.architecture");
        if (archV == null) throw new CheckpointFormatException(file, "metadata key 'general.architecture' is missing");
        String arch = archV.type() == dev.exeunt.model.io.GgufType.STRING ? archV.asString() : String.valueOf(archV.value());
        ModelConfig keys = switch (arch) {
            case "llama", "qwen2", "qwen3" -> llamaConfig(gguf, tok, arch);
            case "gpt2" -> gpt2Config(gguf, tok);
            default -> throw new CheckpointFormatException(file, "unsupported architecture '" + arch
                    + "' (general.architecture); llama, qwen2, qwen3 and gpt2 can be loaded");
        };
        GgufValue stored = md.get(CONFIG_KEY);
        if (stored == null) return keys;
        if (stored.isArray() || stored.type() != dev.exeunt.model.io.GgufType.STRING) {
            throw new CheckpointFormatException(file, "'" + CONFIG_KEY + "' must be a string (config.json), is " + stored);
        }
        ModelConfig c;
        try {
            c = ConfigJson.fromJson(new com.fasterxml.jackson.databind.ObjectMapper().readTree(stored.asString()), file);
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new CheckpointFormatException(file, "'" + CONFIG_KEY + "' is not valid JSON: " + e.getOriginalMessage(), e);
        }
        boolean agrees = c.family() == keys.family() && c.vocabSize() == keys.vocabSize() && c.dModel() == keys.dModel()
                && c.nLayers() == keys.nLayers() && c.nHeads() == keys.nHeads() && c.nKvHeads() == keys.nKvHeads()
                && c.ffnHidden() == keys.ffnHidden() && c.maxSeqLen() == keys.maxSeqLen() && c.tiedEmbeddings() == keys.tiedEmbeddings()
                // the scaling may be spelled apart (Llama 3's as rope_freqs.weight), not dropped
                && c.attention().withRopeScaling(null).equals(keys.attention().withRopeScaling(null))
                && c.attention().ropeScaling().isNone() == keys.attention().ropeScaling().isNone();
        if (!agrees) {
            throw new CheckpointFormatException(file, "'" + CONFIG_KEY + "' describes " + describe(c) + " but the " + arch
                    + ".* keys and tensors describe " + describe(keys));
        }
        return c;
    }

    private static String describe(ModelConfig c) {
        return c.family().name().toLowerCase(java.util.Locale.ROOT) + " with vocab " + c.vocabSize() + ", d_model " + c.dModel() + ", "
                + c.nLayers() + " layers, " + c.nHeads() + "/" + c.nKvHeads() + " heads, ffn " + c.ffnHidden() + ", context "
                + c.maxSeqLen() + (c.tiedEmbeddings() ? ", tied head" : ", own head");
    }

    /** {@code gpt2.*} keys llama.cpp defines for GPT-2 that Exeunt reads. */
    private static final Set<String> GPT2_KEYS = Set.of("gpt2.context_length", "gpt2.embedding_length", "gpt2.block_count",
            "gpt2.feed_forward_length", "gpt2.attention.head_count", "gpt2.attention.layer_norm_epsilon", "gpt2.vocab_size");

    private static ModelConfig gpt2Config(GgufFile gguf, GgufTokenizerData tok) throws CheckpointFormatException {
        Path file = gguf.path();
        Map<String, GgufValue> md = gguf.metadata();
        List<String> unknown = md.keySet().stream().filter(k -> k.startsWith("gpt2.") && !GPT2_KEYS.contains(k)).sorted().toList();
        if (!unknown.isEmpty()) {
            throw new CheckpointFormatException(file, "unknown metadata key(s) " + String.join(", ", unknown) + ": Exeunt refuses "
                    + "settings it does not understand rather than ignore them; understood: " + String.join(", ", GPT2_KEYS.stream().sorted().toList()));
        }
        int layers = intKey(md, file, "gpt2.block_count", null);
        int dim = intKey(md, file, "gpt2.embedding_length", null);
        int heads = intKey(md, file, "gpt2.attention.head_count", null);
        int ffn = intKey(md, file, "gpt2.feed_forward_length", 4 * dim);
        int ctx = intKey(md, file, "gpt2.context_length", null);
        double eps = floatKey(md, file, "gpt2.attention.layer_norm_epsilon", 1e-5);
        if (heads <= 0 || dim % heads != 0) {
            throw new CheckpointFormatException(file, "gpt2.embedding_length " + dim + " is not a multiple of gpt2.attention.head_count " + heads);
        }
        int vocab = vocabOf(gguf, dim, tok);
        GgufTensorInfo pos = gguf.contains("position_embd.weight") ? gguf.tensor("position_embd.weight") : null;
        if (pos == null) throw new CheckpointFormatException(file, "missing tensor 'position_embd.weight'");
        if (pos.dims().length != 2 || pos.dims()[1] < ctx) {
            throw new CheckpointFormatException(file, "tensor 'position_embd.weight' has shape " + Arrays.toString(pos.shape())
                    + " but gpt2.context_length is " + ctx);
        }
        try {
            return new ModelConfig(Family.GPT2, vocab, dim, layers, heads, heads, ffn, ctx, eps, 10000, !gguf.contains("output.weight"),
                    List.of(), false, idOrNone(tok, true), idOrNone(tok, false));
        } catch (IllegalArgumentException e) {
            throw new CheckpointFormatException(file, e.getMessage(), e);
        }
    }

    private static int idOrNone(GgufTokenizerData tok, boolean bos) {
        if (tok == null) return -1;
        var id = bos ? tok.bosId() : tok.eosId();
        return id.isPresent() ? id.getAsInt() : -1;
    }

    /** The vocabulary: the rows of {@code token_embd} ([vocab, dim]), at least the tokenizer's size. */
    private static int vocabOf(GgufFile gguf, int dim, GgufTokenizerData tok) throws CheckpointFormatException {
        Path file = gguf.path();
        GgufTensorInfo embd = gguf.contains("token_embd.weight") ? gguf.tensor("token_embd.weight") : null;
        if (embd == null) throw new CheckpointFormatException(file, "missing tensor 'token_embd.weight'");
        long[] ed = embd.dims();
        if (ed.length != 2 || ed[0] != dim) {
            throw new CheckpointFormatException(file, "tensor 'token_embd.weight' has shape " + Arrays.toString(embd.shape())
                    + " but the metadata implies [vocab, " + dim + "] (ggml dims [" + dim + ", vocab])");
        }
        int vocab = Math.toIntExact(ed[1]);
        if (tok != null && tok.vocabSize() > vocab) {
            throw new CheckpointFormatException(file, "the tokenizer has " + tok.vocabSize() + " tokens but token_embd.weight"
                    + " has only " + vocab + " rows");
        }
        return vocab;
    }

    /**
     * Llama and the architectures llama.cpp keeps apart for its relatives: {@code qwen2} (q/k/v biases) and
     * {@code qwen3} (key_length as the head size, q/k norms). Llama 3's RoPE scaling comes as the
     * {@code rope_freqs.weight} tensor (each frequency's divisor), linear scaling as {@code rope.scaling.*}.
     */
    private static ModelConfig llamaConfig(GgufFile gguf, GgufTokenizerData tok, String arch) throws CheckpointFormatException {
        Path file = gguf.path();
        Map<String, GgufValue> md = gguf.metadata();
        String a = arch + ".";
        checkArchKeys(md, file, arch);
        int layers = intKey(md, file, a + "block_count", null);
        int dim = intKey(md, file, a + "embedding_length", null);
        int heads = intKey(md, file, a + "attention.head_count", null);
        int kvHeads = intKey(md, file, a + "attention.head_count_kv", heads);
        int ffn = intKey(md, file, a + "feed_forward_length", null);
        int ctx = intKey(md, file, a + "context_length", null);
        double eps = floatKey(md, file, a + "attention.layer_norm_rms_epsilon", 1e-5);
        double theta = floatKey(md, file, a + "rope.freq_base", 10000.0);
        if (heads <= 0) throw new CheckpointFormatException(file, a + "attention.head_count must be >= 1, is " + heads);
        int headDim = intKey(md, file, a + "attention.key_length", dim % heads == 0 ? dim / heads : 0);
        if (headDim <= 0) {
            throw new CheckpointFormatException(file, a + "embedding_length " + dim + " is not a multiple of " + a + "attention.head_count " + heads
                    + " and " + a + "attention.key_length is not set");
        }
        if (intKey(md, file, a + "attention.value_length", headDim) != headDim) {
            throw new CheckpointFormatException(file, a + "attention.value_length " + md.get(a + "attention.value_length").asLong()
                    + " differs from the key length " + headDim + ": not supported");
        }
        if (intKey(md, file, a + "rope.dimension_count", headDim) != headDim) {
            throw new CheckpointFormatException(file, a + "rope.dimension_count " + md.get(a + "rope.dimension_count").asLong()
                    + " differs from the head dim " + headDim + ": partial RoPE is not supported");
        }
        if (intKey(md, file, a + "expert_count", 0) > 0) {
            throw new CheckpointFormatException(file, "mixture-of-experts models (" + a + "expert_count " + md.get(a + "expert_count").asLong()
                    + ") are not supported");
        }
        RopeScaling scaling = ropeScaling(gguf, a, headDim);
        int vocab = vocabOf(gguf, dim, tok);
        boolean tied = !gguf.contains("output.weight");
        boolean qwen2 = arch.equals("qwen2"), qwen3 = arch.equals("qwen3");
        boolean bias = !qwen2 && gguf.contains("blk.0.attn_q.bias"); // Llama's optional attention biases (q/k/v/o)
        var options = new AttentionOptions(headDim, qwen2 || bias, bias, qwen3, scaling);
        try {
            return new ModelConfig(Family.LLAMA, vocab, dim, layers, heads, kvHeads, ffn, ctx, eps, theta, tied, List.of(),
                    false, idOrNone(tok, true), idOrNone(tok, false)).withAttention(options);
        } catch (IllegalArgumentException e) {
            throw new CheckpointFormatException(file, e.getMessage(), e);
        }
    }

    /** rope.scaling.type none or linear (with rope.scaling.factor), or the per-frequency divisors of rope_freqs.weight. */
    private static RopeScaling ropeScaling(GgufFile gguf, String a, int headDim) throws CheckpointFormatException {
        Path file = gguf.path();
        Map<String, GgufValue> md = gguf.metadata();
        GgufValue type = md.get(a + "rope.scaling.type");
        String t = type == null ? "none" : type.type() == dev.exeunt.model.io.GgufType.STRING ? type.asString() : "?";
        double linear = floatKey(md, file, a + "rope.scale_linear", 1);
        if (gguf.contains(ROPE_FREQS)) {
            if (!t.equals("none") || linear != 1) throw new CheckpointFormatException(file, "both " + ROPE_FREQS + " and " + a + "rope.scaling.* are set");
            GgufTensorInfo info = gguf.tensor(ROPE_FREQS);
            if (info.type() != GgmlType.F32 || info.dims().length != 1 || info.dims()[0] != headDim / 2) {
                throw new CheckpointFormatException(file, "tensor " + ROPE_FREQS + " must be F32 with " + headDim / 2 + " values (one per frequency), is "
                        + info.type() + " " + Arrays.toString(info.dims()));
            }
            MemorySegment d = gguf.data(ROPE_FREQS);
            double[] f = new double[headDim / 2];
            for (int i = 0; i < f.length; i++) f[i] = d.getAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, i);
            try {
                return RopeScaling.factors(f);
            } catch (IllegalArgumentException e) {
                throw new CheckpointFormatException(file, ROPE_FREQS + ": " + e.getMessage());
            }
        }
        try {
            return switch (t) {
                case "none" -> linear == 1 ? RopeScaling.NONE : RopeScaling.linear(linear);
                case "linear" -> RopeScaling.linear(floatKey(md, file, a + "rope.scaling.factor", 1));
                default -> throw new CheckpointFormatException(file, "RoPE scaling '" + t + "' (" + a + "rope.scaling.type) is not supported; none and linear are");
            };
        } catch (IllegalArgumentException e) {
            throw new CheckpointFormatException(file, a + "rope.scaling.factor: " + e.getMessage());
        }
    }

    /** Llama 3's RoPE scaling, as llama.cpp's converter writes it: each frequency's divisor. */
    static final String ROPE_FREQS = "rope_freqs.weight";

    /**
     * Keys (after the architecture's prefix) llama.cpp defines that Exeunt reads, or accepts because they
     * change nothing (sizes checked against the tensors, counts of unused experts, the scaling of a "none" RoPE).
     */
    private static final Set<String> ARCH_KEYS = Set.of("context_length", "embedding_length", "block_count",
            "feed_forward_length", "attention.head_count", "attention.head_count_kv",
            "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.dimension_count",
            "attention.key_length", "attention.value_length", "expert_count", "expert_used_count",
            "rope.scaling.type", "rope.scaling.factor", "rope.scaling.original_context_length",
            "rope.scaling.finetuned", "vocab_size", "tensor_data_layout", "causal",
            "use_parallel_residual", "attention.max_alibi_bias", "rope.scale_linear");

    /** Refuses the arch.* settings that would change the computation, and arch.* keys nobody knows. */
    private static void checkArchKeys(Map<String, GgufValue> md, Path file, String arch) throws CheckpointFormatException {
        String a = arch + ".";
        List<String> unknown = md.keySet().stream().filter(k -> k.startsWith(a) && !ARCH_KEYS.contains(k.substring(a.length()))).sorted().toList();
        if (!unknown.isEmpty()) {
            throw new CheckpointFormatException(file, "unknown metadata key(s) " + String.join(", ", unknown) + ": Exeunt refuses "
                    + "settings it does not understand rather than ignore them; understood: "
                    + String.join(", ", ARCH_KEYS.stream().map(k -> a + k).sorted().toList()));
        }
        if (!boolKey(md, file, a + "causal", true)) {
            throw new CheckpointFormatException(file, a + "causal is false: non-causal attention is not supported");
        }
        if (boolKey(md, file, a + "use_parallel_residual", false)) {
            throw new CheckpointFormatException(file, a + "use_parallel_residual is true: parallel residual blocks are not supported");
        }
        if (md.containsKey(a + "attention.max_alibi_bias") && floatKey(md, file, a + "attention.max_alibi_bias", 0) != 0) {
            throw new CheckpointFormatException(file, a + "attention.max_alibi_bias is not 0: ALiBi attention is not supported");
        }
    }

    private static boolean boolKey(Map<String, GgufValue> md, Path file, String key, boolean dflt) throws CheckpointFormatException {
        GgufValue v = md.get(key);
        if (v == null) return dflt;
        if (v.isArray() || v.type() != dev.exeunt.model.io.GgufType.BOOL) throw new CheckpointFormatException(file, "'" + key + "' must be a bool, is " + v);
        return v.asBoolean();
    }

    private static int intKey(Map<String, GgufValue> md, Path file, String key, Integer dflt) throws CheckpointFormatException {
        GgufValue v = md.get(key);
        if (v == null) {
            if (dflt != null) return dflt;
            throw new CheckpointFormatException(file, "metadata key '" + key + "' is missing");
        }
        if (v.isArray() || !v.type().isInteger()) throw new CheckpointFormatException(file, "'" + key + "' must be an integer, is " + v);
        try {
            return v.asInt();
        } catch (ArithmeticException e) {
            throw new CheckpointFormatException(file, "'" + key + "' = " + v + " is out of range");
        }
    }

    private static double floatKey(Map<String, GgufValue> md, Path file, String key, double dflt) throws CheckpointFormatException {
        GgufValue v = md.get(key);
        if (v == null) return dflt;
        if (v.isArray() || v.type() == dev.exeunt.model.io.GgufType.STRING || v.type() == dev.exeunt.model.io.GgufType.BOOL) {
            throw new CheckpointFormatException(file, "'" + key + "' must be a number, is " + v);
        }
        // a FLOAT32 1e-5 should read as 1e-5, not 9.99999974e-6
        return v.type() == dev.exeunt.model.io.GgufType.FLOAT32 ? Double.parseDouble(Float.toString((Float) v.value())) : v.asDouble();
    }

    // ------------------------------------------------------------------ tensors

    /**
     * How one model parameter is read: its GGUF tensor, the heads whose rows to un-permute (0: none),
     * whether a quantized matrix stays quantized, and whether the file holds it transposed ([out, in]
     * for the model's input-major [in, out]).
     */
    public record Mapping(String ggufName, int permuteHeads, boolean keepQuantized, boolean transposed) {}

    /** Exeunt (Hugging Face) parameter name -> GGUF tensor of the backbone, for a Llama or GPT-2 config. */
    public static Map<String, Mapping> tensorNames(ModelConfig c) {
        return c.family() == Family.GPT2 ? gpt2Names(c) : llamaNames(c);
    }

    /** The GGUF architecture of a config: llama, or qwen2 / qwen3 for the attention llama.cpp keeps apart for them. */
    public static String arch(ModelConfig c) {
        if (c.family() == Family.GPT2) return "gpt2";
        var a = c.attention();
        return a.qkNorm() ? "qwen3" : a.qkvBias() && !a.outputBias() ? "qwen2" : "llama";
    }

    private static Map<String, Mapping> llamaNames(ModelConfig c) {
        // llama.cpp's converter permutes q/k rows for ggml's interleaved RoPE only for llama; Qwen's files use NEOX order
        boolean permute = arch(c).equals("llama");
        int qHeads = permute ? c.nHeads() : 0, kHeads = permute ? c.nKvHeads() : 0;
        var o = c.attention();
        Map<String, Mapping> m = new LinkedHashMap<>();
        m.put("model.embed_tokens.weight", new Mapping("token_embd.weight", 0, false, false));
        for (int i = 0; i < c.nLayers(); i++) {
            String hf = "model.layers." + i + ".", g = "blk." + i + ".";
            m.put(hf + "input_layernorm.weight", new Mapping(g + "attn_norm.weight", 0, false, false));
            m.put(hf + "self_attn.q_proj.weight", new Mapping(g + "attn_q.weight", qHeads, true, false));
            m.put(hf + "self_attn.k_proj.weight", new Mapping(g + "attn_k.weight", kHeads, true, false));
            m.put(hf + "self_attn.v_proj.weight", new Mapping(g + "attn_v.weight", 0, true, false));
            m.put(hf + "self_attn.o_proj.weight", new Mapping(g + "attn_output.weight", 0, true, false));
            if (o.qkvBias()) {
                m.put(hf + "self_attn.q_proj.bias", new Mapping(g + "attn_q.bias", qHeads, false, false));
                m.put(hf + "self_attn.k_proj.bias", new Mapping(g + "attn_k.bias", kHeads, false, false));
                m.put(hf + "self_attn.v_proj.bias", new Mapping(g + "attn_v.bias", 0, false, false));
            }
            if (o.outputBias()) m.put(hf + "self_attn.o_proj.bias", new Mapping(g + "attn_output.bias", 0, false, false));
            if (o.qkNorm()) {
                m.put(hf + "self_attn.q_norm.weight", new Mapping(g + "attn_q_norm.weight", 0, false, false));
                m.put(hf + "self_attn.k_norm.weight", new Mapping(g + "attn_k_norm.weight", 0, false, false));
            }
            m.put(hf + "post_attention_layernorm.weight", new Mapping(g + "ffn_norm.weight", 0, false, false));
            m.put(hf + "mlp.gate_proj.weight", new Mapping(g + "ffn_gate.weight", 0, true, false));
            m.put(hf + "mlp.up_proj.weight", new Mapping(g + "ffn_up.weight", 0, true, false));
            m.put(hf + "mlp.down_proj.weight", new Mapping(g + "ffn_down.weight", 0, true, false));
        }
        m.put("model.norm.weight", new Mapping("output_norm.weight", 0, false, false));
        if (!c.tiedEmbeddings()) m.put("lm_head.weight", new Mapping("output.weight", 0, true, false));
        return m;
    }

    /** GPT-2: LayerNorms with biases, the fused qkv projection, Conv1D weights transposed (llama.cpp's gpt2 names). */
    private static Map<String, Mapping> gpt2Names(ModelConfig c) {
        Map<String, Mapping> m = new LinkedHashMap<>();
        m.put("wte.weight", new Mapping("token_embd.weight", 0, false, false));
        m.put("wpe.weight", new Mapping("position_embd.weight", 0, false, false));
        String[][] parts = {{"ln_1", "attn_norm"}, {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"}, {"ln_2", "ffn_norm"},
                {"mlp.c_fc", "ffn_up"}, {"mlp.c_proj", "ffn_down"}};
        for (int i = 0; i < c.nLayers(); i++) {
            for (String[] p : parts) {
                String hf = "h." + i + "." + p[0], g = "blk." + i + "." + p[1];
                m.put(hf + ".weight", new Mapping(g + ".weight", 0, false, !p[0].startsWith("ln_")));
                m.put(hf + ".bias", new Mapping(g + ".bias", 0, false, false));
            }
        }
        m.put("ln_f.weight", new Mapping("output_norm.weight", 0, false, false));
        m.put("ln_f.bias", new Mapping("output_norm.bias", 0, false, false));
        if (!c.tiedEmbeddings()) m.put("lm_head.weight", new Mapping("output.weight", 0, true, false));
        return m;
    }

    /** Row-major shapes of the file's tensors, by HF name (so every check runs before anything is allocated). */
    private static Map<String, int[]> expectedShapes(ModelConfig c) {
        if (c.family() == Family.GPT2) return gpt2Shapes(c);
        Map<String, int[]> s = new LinkedHashMap<>();
        int d = c.dModel(), hd = c.headDim(), q = c.nHeads() * hd, kv = c.nKvHeads() * hd, f = c.ffnHidden();
        var o = c.attention();
        s.put("model.embed_tokens.weight", new int[] {c.vocabSize(), d});
        for (int i = 0; i < c.nLayers(); i++) {
            String hf = "model.layers." + i + ".";
            s.put(hf + "input_layernorm.weight", new int[] {d});
            s.put(hf + "self_attn.q_proj.weight", new int[] {q, d});
            s.put(hf + "self_attn.k_proj.weight", new int[] {kv, d});
            s.put(hf + "self_attn.v_proj.weight", new int[] {kv, d});
            s.put(hf + "self_attn.o_proj.weight", new int[] {d, q});
            if (o.qkvBias()) {
                s.put(hf + "self_attn.q_proj.bias", new int[] {q});
                s.put(hf + "self_attn.k_proj.bias", new int[] {kv});
                s.put(hf + "self_attn.v_proj.bias", new int[] {kv});
            }
            if (o.outputBias()) s.put(hf + "self_attn.o_proj.bias", new int[] {d});
            if (o.qkNorm()) {
                s.put(hf + "self_attn.q_norm.weight", new int[] {hd});
                s.put(hf + "self_attn.k_norm.weight", new int[] {hd});
            }
            s.put(hf + "post_attention_layernorm.weight", new int[] {d});
            s.put(hf + "mlp.gate_proj.weight", new int[] {f, d});
            s.put(hf + "mlp.up_proj.weight", new int[] {f, d});
            s.put(hf + "mlp.down_proj.weight", new int[] {d, f});
        }
        s.put("model.norm.weight", new int[] {d});
        if (!c.tiedEmbeddings()) s.put("lm_head.weight", new int[] {c.vocabSize(), d});
        return s;
    }

    /** GPT-2's tensors as the file holds them: Conv1D weights [out, in]. */
    private static Map<String, int[]> gpt2Shapes(ModelConfig c) {
        Map<String, int[]> s = new LinkedHashMap<>();
        int d = c.dModel(), f = c.ffnHidden();
        s.put("wte.weight", new int[] {c.vocabSize(), d});
        s.put("wpe.weight", new int[] {c.maxSeqLen(), d});
        for (int i = 0; i < c.nLayers(); i++) {
            String h = "h." + i + ".";
            for (String ln : List.of("ln_1", "ln_2")) {
                s.put(h + ln + ".weight", new int[] {d});
                s.put(h + ln + ".bias", new int[] {d});
            }
            s.put(h + "attn.c_attn.weight", new int[] {3 * d, d});
            s.put(h + "attn.c_attn.bias", new int[] {3 * d});
            s.put(h + "attn.c_proj.weight", new int[] {d, d});
            s.put(h + "attn.c_proj.bias", new int[] {d});
            s.put(h + "mlp.c_fc.weight", new int[] {f, d});
            s.put(h + "mlp.c_fc.bias", new int[] {f});
            s.put(h + "mlp.c_proj.weight", new int[] {d, f});
            s.put(h + "mlp.c_proj.bias", new int[] {d});
        }
        s.put("ln_f.weight", new int[] {d});
        s.put("ln_f.bias", new int[] {d});
        if (!c.tiedEmbeddings()) s.put("lm_head.weight", new int[] {c.vocabSize(), d});
        return s;
    }

    /** Every tensor present, of a supported type and of the shape the metadata implies, before anything is allocated. */
    private static void validate(GgufFile gguf, ModelConfig c, Map<String, Mapping> names) throws CheckpointFormatException {
        Path file = gguf.path();
        List<String> missing = new ArrayList<>();
        for (Mapping m : names.values()) if (!gguf.contains(m.ggufName())) missing.add(m.ggufName());
        if (!missing.isEmpty()) {
            throw new CheckpointFormatException(file, "missing " + missing.size() + " tensor(s): "
                    + String.join(", ", missing.subList(0, Math.min(10, missing.size()))) + (missing.size() > 10 ? ", ..." : ""));
        }
        for (Mapping m : names.values()) {
            GgufTensorInfo t = gguf.tensor(m.ggufName());
            if (!SUPPORTED.contains(t.type())) {
                throw new CheckpointFormatException(file, "unsupported ggml type " + t.type() + " for tensor " + t.name()
                        + "; supported: F32, F16, BF16, Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K");
            }
        }
        Set<String> used = new java.util.HashSet<>();
        for (Mapping m : names.values()) used.add(m.ggufName());
        if (!c.attention().ropeScaling().isNone()) used.add(ROPE_FREQS); // read into the config
        List<String> extra = gguf.tensors().stream().map(GgufTensorInfo::name).filter(n -> !used.contains(n)).toList();
        if (!extra.isEmpty()) {
            throw new CheckpointFormatException(file, "the file holds " + extra.size() + " tensor(s) the model would not use: "
                    + String.join(", ", extra.subList(0, Math.min(10, extra.size()))) + (extra.size() > 10 ? ", ..." : "")
                    + ". Exeunt refuses weights it would ignore (e.g. attention biases)");
        }
        for (var e : expectedShapes(c).entrySet()) checkShape(file, gguf.tensor(names.get(e.getKey()).ggufName()), e.getValue());
    }

    private static void checkShape(Path file, GgufTensorInfo t, int[] shape) throws CheckpointFormatException {
        long[] want = new long[shape.length];
        for (int i = 0; i < shape.length; i++) want[i] = shape[shape.length - 1 - i];
        if (!Arrays.equals(t.dims(), want)) {
            throw new CheckpointFormatException(file, "tensor " + t.name() + " has shape " + Arrays.toString(t.shape())
                    + " (ggml dims " + Arrays.toString(t.dims()) + ") but the metadata implies " + Shape.str(shape)
                    + " (ggml dims " + Arrays.toString(want) + ")");
        }
    }

    /** The tensor type a supported ggml type loads as: the two enums name the types they share alike. */
    private static DType dtypeOf(GgmlType t) {
        if (!SUPPORTED.contains(t)) throw new IllegalArgumentException("unsupported ggml type " + t);
        return t == GgmlType.Q3_K ? DType.Q6_K : DType.valueOf(t.name());
    }

    /** Reads one tensor into CPU memory: rows un-permuted, quantized matrices kept, everything else F32. */
    private static Tensor read(GgufFile gguf, Mapping m, int[] modelShape) throws CheckpointFormatException {
        GgufTensorInfo t = gguf.tensor(m.ggufName());
        int[] shape = m.transposed() ? new int[] {modelShape[1], modelShape[0]} : modelShape;
        checkShape(gguf.path(), t, shape);
        DType stored = dtypeOf(t.type());
        MemorySegment file = gguf.data(t.name());
        return Ops.unowned(() -> {
            Tensor raw = Tensor.empty(stored, Device.CPU, shape);
            MemorySegment dst = raw.segment();
            Arena scratch = null;
            try {
                MemorySegment src = file;
                if (t.type() == GgmlType.Q3_K) {
                    long blocks = file.byteSize() / Q3KToQ6K.Q3_K_BYTES;
                    scratch = Arena.ofShared(); // shared: the rewrite splits over the CPU pool
                    src = scratch.allocate(blocks * Q3KToQ6K.Q6_K_BYTES, 64);
                    Q3KToQ6K.transcode(file, 0, src, 0, blocks);
                }
                if (m.permuteHeads() > 0) {
                    int rows = shape[0];
                    long rowBytes = src.byteSize() / rows;
                    int[] perm = unpermuteRows(rows, m.permuteHeads());
                    for (int r = 0; r < rows; r++) MemorySegment.copy(src, perm[r] * rowBytes, dst, r * rowBytes, rowBytes);
                } else {
                    MemorySegment.copy(src, 0, dst, 0, src.byteSize());
                }
            } finally {
                if (scratch != null) scratch.close();
            }
            if (!m.transposed() && (stored == DType.F32 || stored.isQuantized() && m.keepQuantized())) return raw;
            Tensor f = raw.to(DType.F32);
            raw.close();
            if (!m.transposed()) return f;
            try (f; Tensor view = f.transpose(0, 1)) {
                return view.contiguous();
            }
        });
    }

    /**
     * For each Hugging Face row r of a q/k projection with {@code heads} heads, the GGUF row holding it:
     * llama.cpp's converter maps HF row {@code i * hd/2 + j} of a head to row {@code 2j + i}.
     */
    public static int[] unpermuteRows(int rows, int heads) {
        if (rows % heads != 0 || (rows / heads) % 2 != 0) {
            throw new IllegalArgumentException(rows + " rows do not split into " + heads + " heads of even size");
        }
        int hd = rows / heads, half = hd / 2;
        int[] src = new int[rows];
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < 2; i++) {
                for (int j = 0; j < half; j++) src[h * hd + i * half + j] = h * hd + 2 * j + i;
            }
        }
        return src;
    }
}
