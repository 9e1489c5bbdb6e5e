package dev.exeunt.model.gguf;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
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
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Loads a Llama-family model and its tokenizer from a GGUF file (llama.cpp's layout and names).
 *
 * <p>Hyperparameters come from the {@code llama.*} metadata, the tokenizer from {@code tokenizer.ggml.*}
 * ({@link GgufTokenizers}). Tensors map to Hugging Face names ({@link #tensorNames}); GGUF stores dims in
 * ggml order ({@code ne[0]} = columns), so a [out, in] matrix has dims [in, out]. llama.cpp's converter
 * permutes the rows of {@code attn_q} / {@code attn_k} for ggml's interleaved-pair RoPE
 * ({@code w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2)}); Exeunt uses Hugging Face's rotate-half RoPE,
 * so the loader applies the inverse row permutation (whole rows of bytes, so it works on quantized rows).
 *
 * <p>F32, F16 and BF16 tensors load as F32. Q8_0 and Q4_0 matrices of the projections and the output
 * head stay quantized in memory (frozen; their products go through {@code Backend.linearQuantized});
 * a quantized token embedding is dequantized to F32. Other ggml types, missing tensors, shapes that
 * disagree with the metadata and non-Llama architectures are errors naming the key or tensor.
 */
public final class GgufModelLoader {
    /** The ggml tensor types this loader reads. */
    public static final List<GgmlType> SUPPORTED = List.of(GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0,
            GgmlType.Q4_0);

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
            return new ModelCheckpoint.Loaded(EarlyExitModel.create(config, params), tokenizer);
        } catch (UncheckedIOException e) {
            params.close();
            throw e.getCause();
        } catch (RuntimeException e) {
            params.close();
            throw e;
        }
    }

    // ------------------------------------------------------------------ config

    /** The model config from a GGUF file's metadata (vocabulary: {@code token_embd} rows). */
    public static ModelConfig config(GgufFile gguf, GgufTokenizerData tok) throws CheckpointFormatException {
        Path file = gguf.path();
        Map<String, GgufValue> md = gguf.metadata();
        GgufValue archV = md.get("general.architecture");
        if (archV == null) throw new CheckpointFormatException(file, "metadata key 'general.architecture' is missing");
        String arch = archV.type() == dev.exeunt.model.io.GgufType.STRING ? archV.asString() : String.valueOf(archV.value());
        if (!arch.equals("llama")) {
            throw new CheckpointFormatException(file, "unsupported architecture '" + arch
                    + "' (general.architecture); only 'llama' (Llama-family models) can be loaded");
        }
        int layers = intKey(md, file, "llama.block_count", null);
        int dim = intKey(md, file, "llama.embedding_length", null);
        int heads = intKey(md, file, "llama.attention.head_count", null);
        int kvHeads = intKey(md, file, "llama.attention.head_count_kv", heads);
        int ffn = intKey(md, file, "llama.feed_forward_length", null);
        int ctx = intKey(md, file, "llama.context_length", null);
        double eps = floatKey(md, file, "llama.attention.layer_norm_rms_epsilon", 1e-5);
        double theta = floatKey(md, file, "llama.rope.freq_base", 10000.0);
        if (heads <= 0 || dim % heads != 0) {
            throw new CheckpointFormatException(file, "llama.embedding_length " + dim + " is not a multiple of "
                    + "llama.attention.head_count " + heads);
        }
        int headDim = dim / heads;
        if (md.containsKey("llama.rope.dimension_count") && intKey(md, file, "llama.rope.dimension_count", null) != headDim) {
            throw new CheckpointFormatException(file, "llama.rope.dimension_count " + md.get("llama.rope.dimension_count").asLong()
                    + " differs from the head dim " + headDim + ": partial RoPE is not supported");
        }
        if (md.containsKey("llama.attention.key_length") && intKey(md, file, "llama.attention.key_length", null) != headDim) {
            throw new CheckpointFormatException(file, "llama.attention.key_length " + md.get("llama.attention.key_length").asLong()
                    + " differs from embedding_length / head_count = " + headDim + ": not supported");
        }
        if (md.containsKey("llama.expert_count") && intKey(md, file, "llama.expert_count", null) > 0) {
            throw new CheckpointFormatException(file, "mixture-of-experts Llama models (llama.expert_count "
                    + md.get("llama.expert_count").asLong() + ") are not supported");
        }
        checkArchKeys(md, file, headDim);
        GgufValue scaling = md.get("llama.rope.scaling.type");
        if (scaling != null && scaling.type() == dev.exeunt.model.io.GgufType.STRING
                && !scaling.asString().equals("none")) {
            throw new CheckpointFormatException(file, "RoPE scaling '" + scaling.asString()
                    + "' (llama.rope.scaling.type) is not supported");
        }
        if (gguf.contains("rope_freqs.weight")) {
            throw new CheckpointFormatException(file, "tensor 'rope_freqs.weight' (Llama-3.1-style RoPE frequency "
                    + "scaling) is not supported: Exeunt's RoPE uses the plain freq_base frequencies");
        }
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
        boolean tied = !gguf.contains("output.weight");
        int bos = tok != null && tok.bosId().isPresent() ? tok.bosId().getAsInt() : -1;
        int eos = tok != null && tok.eosId().isPresent() ? tok.eosId().getAsInt() : -1;
        try {
            return new ModelConfig(Family.LLAMA, vocab, dim, layers, heads, kvHeads, ffn, ctx, eps, theta, tied, List.of(),
                    false, bos, eos);
        } catch (IllegalArgumentException e) {
            throw new CheckpointFormatException(file, e.getMessage(), e);
        }
    }

    /**
     * {@code llama.*} keys llama.cpp defines that Exeunt reads, or accepts because they change nothing
     * (sizes checked against the tensors, counts of unused experts, the scaling of a "none" RoPE).
     */
    private static final Set<String> LLAMA_KEYS = Set.of("llama.context_length", "llama.embedding_length", "llama.block_count",
            "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
            "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base", "llama.rope.dimension_count",
            "llama.attention.key_length", "llama.attention.value_length", "llama.expert_count", "llama.expert_used_count",
            "llama.rope.scaling.type", "llama.rope.scaling.factor", "llama.rope.scaling.original_context_length",
            "llama.rope.scaling.finetuned", "llama.vocab_size", "llama.tensor_data_layout", "llama.causal",
            "llama.use_parallel_residual", "llama.attention.max_alibi_bias", "llama.rope.scale_linear");

    /** Refuses the llama.* settings that would change the computation, and llama.* keys nobody knows. */
    private static void checkArchKeys(Map<String, GgufValue> md, Path file, int headDim) throws CheckpointFormatException {
        List<String> unknown = md.keySet().stream().filter(k -> k.startsWith("llama.") && !LLAMA_KEYS.contains(k)).sorted().toList();
        if (!unknown.isEmpty()) {
            throw new CheckpointFormatException(file, "unknown metadata key(s) " + String.join(", ", unknown) + ": Exeunt refuses "
                    + "settings it does not understand rather than ignore them; understood: " + String.join(", ", LLAMA_KEYS.stream().sorted().toList()));
        }
        if (md.containsKey("llama.attention.value_length") && intKey(md, file, "llama.attention.value_length", null) != headDim) {
            throw new CheckpointFormatException(file, "llama.attention.value_length " + md.get("llama.attention.value_length").asLong()
                    + " differs from embedding_length / head_count = " + headDim + ": not supported");
        }
        if (!boolKey(md, file, "llama.causal", true)) {
            throw new CheckpointFormatException(file, "llama.causal is false: non-causal attention is not supported");
        }
        if (boolKey(md, file, "llama.use_parallel_residual", false)) {
            throw new CheckpointFormatException(file, "llama.use_parallel_residual is true: parallel residual blocks are not supported");
        }
        if (md.containsKey("llama.attention.max_alibi_bias") && floatKey(md, file, "llama.attention.max_alibi_bias", 0) != 0) {
            throw new CheckpointFormatException(file, "llama.attention.max_alibi_bias is not 0: ALiBi attention is not supported");
        }
        if (md.containsKey("llama.rope.scale_linear") && floatKey(md, file, "llama.rope.scale_linear", 1) != 1) {
            throw new CheckpointFormatException(file, "llama.rope.scale_linear is not 1: RoPE scaling is not supported");
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

    /** How one model parameter is read: its GGUF tensor, and the heads whose rows to un-permute (0: none). */
    public record Mapping(String ggufName, int permuteHeads, boolean keepQuantized) {}

    /** Hugging Face parameter name -> GGUF tensor, for a Llama config. */
    public static Map<String, Mapping> tensorNames(ModelConfig c) {
        Map<String, Mapping> m = new LinkedHashMap<>();
        m.put("model.embed_tokens.weight", new Mapping("token_embd.weight", 0, false));
        for (int i = 0; i < c.nLayers(); i++) {
            String hf = "model.layers." + i + ".", g = "blk." + i + ".";
            m.put(hf + "input_layernorm.weight", new Mapping(g + "attn_norm.weight", 0, false));
            m.put(hf + "self_attn.q_proj.weight", new Mapping(g + "attn_q.weight", c.nHeads(), true));
            m.put(hf + "self_attn.k_proj.weight", new Mapping(g + "attn_k.weight", c.nKvHeads(), true));
            m.put(hf + "self_attn.v_proj.weight", new Mapping(g + "attn_v.weight", 0, true));
            m.put(hf + "self_attn.o_proj.weight", new Mapping(g + "attn_output.weight", 0, true));
            m.put(hf + "post_attention_layernorm.weight", new Mapping(g + "ffn_norm.weight", 0, false));
            m.put(hf + "mlp.gate_proj.weight", new Mapping(g + "ffn_gate.weight", 0, true));
            m.put(hf + "mlp.up_proj.weight", new Mapping(g + "ffn_up.weight", 0, true));
            m.put(hf + "mlp.down_proj.weight", new Mapping(g + "ffn_down.weight", 0, true));
        }
        m.put("model.norm.weight", new Mapping("output_norm.weight", 0, false));
        if (!c.tiedEmbeddings()) m.put("lm_head.weight", new Mapping("output.weight", 0, true));
        return m;
    }

    /** Row-major shapes the model expects, by HF name (so every check runs before anything is allocated). */
    private static Map<String, int[]> expectedShapes(ModelConfig c) {
        Map<String, int[]> s = new LinkedHashMap<>();
        int d = c.dModel(), kv = c.nKvHeads() * c.headDim(), f = c.ffnHidden();
        s.put("model.embed_tokens.weight", new int[] {c.vocabSize(), d});
        for (int i = 0; i < c.nLayers(); i++) {
            String hf = "model.layers." + i + ".";
            s.put(hf + "input_layernorm.weight", new int[] {d});
            s.put(hf + "self_attn.q_proj.weight", new int[] {d, d});
            s.put(hf + "self_attn.k_proj.weight", new int[] {kv, d});
            s.put(hf + "self_attn.v_proj.weight", new int[] {kv, d});
            s.put(hf + "self_attn.o_proj.weight", new int[] {d, d});
            s.put(hf + "post_attention_layernorm.weight", new int[] {d});
            s.put(hf + "mlp.gate_proj.weight", new int[] {f, d});
            s.put(hf + "mlp.up_proj.weight", new int[] {f, d});
            s.put(hf + "mlp.down_proj.weight", new int[] {d, f});
        }
        s.put("model.norm.weight", new int[] {d});
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
                        + "; supported: F32, F16, BF16, Q8_0, Q4_0");
            }
        }
        Set<String> used = new java.util.HashSet<>();
        for (Mapping m : names.values()) used.add(m.ggufName());
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

    private static DType dtypeOf(GgmlType t) {
        return switch (t) {
            case F32 -> DType.F32;
            case F16 -> DType.F16;
            case BF16 -> DType.BF16;
            case Q8_0 -> DType.Q8_0;
            case Q4_0 -> DType.Q4_0;
            default -> throw new IllegalArgumentException("unsupported ggml type " + t);
        };
    }

    /** Reads one tensor into CPU memory: rows un-permuted, quantized matrices kept, everything else F32. */
    private static Tensor read(GgufFile gguf, Mapping m, int[] shape) throws CheckpointFormatException {
        GgufTensorInfo t = gguf.tensor(m.ggufName());
        checkShape(gguf.path(), t, shape);
        DType stored = dtypeOf(t.type());
        MemorySegment src = gguf.data(t.name());
        return Ops.unowned(() -> {
            Tensor raw = Tensor.empty(stored, Device.CPU, shape);
            MemorySegment dst = raw.segment();
            if (m.permuteHeads() > 0) {
                int rows = shape[0];
                long rowBytes = src.byteSize() / rows;
                int[] perm = unpermuteRows(rows, m.permuteHeads());
                for (int r = 0; r < rows; r++) MemorySegment.copy(src, perm[r] * rowBytes, dst, r * rowBytes, rowBytes);
            } else {
                MemorySegment.copy(src, 0, dst, 0, src.byteSize());
            }
            if (stored == DType.F32 || stored.isQuantized() && m.keepQuantized()) return raw;
            Tensor f = raw.to(DType.F32);
            raw.close();
            return f;
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
