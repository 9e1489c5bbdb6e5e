package dev.exeunt.model.gguf;

import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.gguf.GgufModelLoader.Mapping;
import dev.exeunt.model.io.GgmlType;
import dev.exeunt.model.io.GgufValue;
import dev.exeunt.model.io.GgufWriter;
import dev.exeunt.model.io.TensorDataSource;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.PreTokenizerPatterns;
import dev.exeunt.model.tokenizer.SpmTokenizer;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.RopeScaling;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a model and its tokenizer as a GGUF file in llama.cpp's layout: {@code general.architecture}
 * {@code llama} or {@code gpt2}, its hyperparameter keys, llama.cpp's tensor names, q/k rows permuted for
 * ggml's RoPE (Llama) and Conv1D weights transposed to [out, in] (GPT-2), as convert_hf_to_gguf.py does.
 *
 * <p>Matrices take the requested type (F32, F16, Q8_0, Q4_0); norms, biases and GPT-2's position
 * embedding stay F32, and a matrix whose rows do not split into 32-wide blocks falls back to F16, as
 * llama.cpp's converter does. With exits, the file also holds {@value GgufModelLoader#CONFIG_KEY} (the
 * config.json, early_exit section included) and each exit's tensors under their Exeunt names; llama.cpp
 * refuses tensors it does not know, so the file it loads is the one written without exits.
 *
 * <p>Tensors are converted one at a time while the file is written, so memory holds one extra tensor.
 */
public final class GgufExporter {
    private GgufExporter() {}

    /** The matrix types a file can be written in, by the names of convert_hf_to_gguf.py's {@code --outtype}. */
    public enum OutType {
        F32(DType.F32, GgmlType.F32, 0), F16(DType.F16, GgmlType.F16, 1), Q8_0(DType.Q8_0, GgmlType.Q8_0, 7), Q4_0(DType.Q4_0, GgmlType.Q4_0, 2);

        final DType dtype;
        final GgmlType ggml;
        /** llama.cpp's {@code general.file_type} (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_Q4_0). */
        final int fileType;

        OutType(DType dtype, GgmlType ggml, int fileType) {
            this.dtype = dtype;
            this.ggml = ggml;
            this.fileType = fileType;
        }

        public static OutType parse(String s) {
            for (OutType t : values()) if (t.name().equalsIgnoreCase(s)) return t;
            throw new IllegalArgumentException("unknown --outtype '" + s + "' (f32, f16, q8_0 or q4_0)");
        }
    }

    /** What was written: tensors by type, and the matrices that fell back to F16. */
    public record Summary(int tensors, Map<String, Integer> byType, List<String> fallbacks, long bytes) {}

    /** Writes {@code model} and {@code tokenizer} to {@code file}; {@code exits} false writes the backbone only. */
    public static Summary export(EarlyExitModel model, Tokenizer tokenizer, String name, OutType type, boolean exits, Path file) throws IOException {
        if (model.parameters().pipeline().stages() > 1 || model.tensorParallel().size() > 1) {
            throw new IllegalArgumentException("export a whole model (one rank): this one is cut over ranks");
        }
        ModelConfig c = model.config();
        if (c.attention().slidingWindow() > 0) {
            throw new IllegalArgumentException("a model with a sliding window (" + c.attention().slidingWindow() + ") has no GGUF form "
                    + "llama.cpp would run the same way: its llama architecture attends over the whole context");
        }
        GgufWriter w = new GgufWriter();
        String arch = GgufModelLoader.arch(c);
        w.putString("general.architecture", arch);
        w.putString("general.name", name);
        w.putUint32("general.file_type", type.fileType);
        hyperparameters(w, c, arch);
        if (tokenizer != null) tokenizer(w, tokenizer);
        if (exits && !c.exits().isEmpty()) w.putString(GgufModelLoader.CONFIG_KEY, ConfigJson.toJson(c).toPrettyString());

        Map<String, Mapping> names = GgufModelLoader.tensorNames(c);
        Map<String, Integer> byType = new LinkedHashMap<>();
        List<String> fallbacks = new ArrayList<>();
        int count = 0;
        for (var e : model.parameters().all().entrySet()) {
            String param = e.getKey();
            Tensor p = e.getValue();
            boolean exit = param.startsWith(GgufModelLoader.EXIT_PREFIX);
            if (exit && !exits) continue;
            Mapping m = exit ? new Mapping(param, 0, false, false) : names.get(param);
            if (m == null) throw new IllegalStateException("no GGUF name for parameter " + param);
            int[] shape = p.shape().clone();
            if (m.transposed()) shape = new int[] {shape[1], shape[0]};
            DType t = typeFor(m.ggufName(), shape, type.dtype);
            if (t == DType.F16 && type.dtype != DType.F16) fallbacks.add(m.ggufName());
            w.addTensor(m.ggufName(), ggml(t), dims(shape), out -> {
                try (Tensor data = fileLayout(p, m, t)) {
                    TensorDataSource.of(data.segment().asSlice(0, t.byteSize(data.numel()))).writeTo(out);
                }
            });
            byType.merge(t.name(), 1, Integer::sum);
            count++;
        }
        w.write(file);
        return new Summary(count, byType, fallbacks, java.nio.file.Files.size(file));
    }

    private static void hyperparameters(GgufWriter w, ModelConfig c, String arch) {
        w.putUint32(arch + ".context_length", c.maxSeqLen());
        w.putUint32(arch + ".embedding_length", c.dModel());
        w.putUint32(arch + ".block_count", c.nLayers());
        w.putUint32(arch + ".feed_forward_length", c.ffnHidden());
        w.putUint32(arch + ".attention.head_count", c.nHeads());
        if (c.family() == Family.GPT2) {
            w.putFloat32("gpt2.attention.layer_norm_epsilon", (float) c.normEps());
            return;
        }
        w.putUint32(arch + ".attention.head_count_kv", c.nKvHeads());
        w.putUint32(arch + ".rope.dimension_count", c.headDim());
        if (c.headDim() * c.nHeads() != c.dModel()) {
            w.putUint32(arch + ".attention.key_length", c.headDim());
            w.putUint32(arch + ".attention.value_length", c.headDim());
        }
        w.putFloat32(arch + ".attention.layer_norm_rms_epsilon", (float) c.normEps());
        w.putFloat32(arch + ".rope.freq_base", (float) c.ropeTheta());
        RopeScaling rs = c.attention().ropeScaling();
        if (rs.type() == RopeScaling.Type.LINEAR) {
            w.putString(arch + ".rope.scaling.type", "linear");
            w.putFloat32(arch + ".rope.scaling.factor", (float) rs.factor());
        } else if (!rs.isNone()) {
            // Llama 3's scaling as llama.cpp's converter writes it: each frequency's divisor in rope_freqs.weight
            double[] plain = RopeScaling.NONE.invFreq(c.headDim(), c.ropeTheta()), scaled = rs.invFreq(c.headDim(), c.ropeTheta());
            MemorySegment le = MemorySegment.ofArray(new byte[plain.length * 4]);
            var f32 = java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < plain.length; i++) le.setAtIndex(f32, i, (float) (plain[i] / scaled[i]));
            w.addTensor(GgufModelLoader.ROPE_FREQS, GgmlType.F32, new long[] {plain.length}, le);
        }
    }

    /** Norms, biases and position embeddings F32; matrices {@code matrix}, or F16 when a row does not split into blocks. */
    private static DType typeFor(String ggufName, int[] shape, DType matrix) {
        if (shape.length == 1 || ggufName.equals("position_embd.weight")) return DType.F32;
        if (matrix.isQuantized() && shape[1] % 32 != 0) return DType.F16;
        return matrix;
    }

    /** One parameter as the file holds it: transposed or q/k-permuted as the mapping says, in type t. */
    private static Tensor fileLayout(Tensor p, Mapping m, DType t) {
        try (var g = GradMode.noGrad()) {
            return Ops.unowned(() -> {
                Tensor typed;
                if (m.transposed()) {
                    try (Tensor f = p.to(DType.F32); Tensor view = f.transpose(0, 1); Tensor tr = view.contiguous()) {
                        typed = tr.to(t);
                    }
                } else if (p.dtype() == t) {
                    typed = p.contiguous();
                } else {
                    try (Tensor f = p.to(DType.F32)) {
                        typed = f.to(t);
                    }
                }
                if (m.permuteHeads() == 0) return typed;
                // the file's row src[r] holds the model's row r (the loader's inverse permutation, reversed)
                int rows = typed.dim(0);
                int[] src = GgufModelLoader.unpermuteRows(rows, m.permuteHeads());
                long rowBytes = t.byteSize(typed.numel()) / rows;
                Tensor permuted = Tensor.empty(t, typed.device(), typed.shape());
                MemorySegment from = typed.segment(), to = permuted.segment();
                for (int r = 0; r < rows; r++) MemorySegment.copy(from, r * rowBytes, to, src[r] * rowBytes, rowBytes);
                typed.close();
                return permuted;
            });
        }
    }

    /** The ggml type of a tensor type: the two enums name the types they share alike. */
    private static GgmlType ggml(DType t) {
        return GgmlType.valueOf(t.name());
    }

    /** ggml dims: the row-major shape reversed ({@code ne[0]} is the row length). */
    static long[] dims(int[] shape) {
        long[] d = new long[shape.length];
        for (int i = 0; i < shape.length; i++) d[i] = shape[shape.length - 1 - i];
        return d;
    }

    // ------------------------------------------------------------------ tokenizer

    /** {@code tokenizer.ggml.*}: byte-level BPE as model {@code gpt2}, SentencePiece as model {@code llama}. */
    static void tokenizer(GgufWriter w, Tokenizer tok) {
        switch (tok) {
            case BpeTokenizer bpe -> byteLevel(w, bpe);
            case SpmTokenizer spm -> sentencePiece(w, spm);
            default -> throw new IllegalArgumentException("cannot write a " + tok.getClass().getSimpleName() + " tokenizer into GGUF");
        }
    }

    /** Byte-level BPE: specials are control tokens (type 3), other added tokens user-defined (4), merges in rank order. */
    static void byteLevel(GgufWriter w, BpeTokenizer tok) {
        if (tok.flavour() != BpeTokenizer.Flavour.BYTE_LEVEL) {
            throw new IllegalArgumentException("this BPE tokenizer is SentencePiece-style (byte fallback); GGUF export writes "
                    + "byte-level BPE (tokenizer.ggml.model gpt2) and SentencePiece models (llama) only");
        }
        String pre = tok.splitRegex().equals(PreTokenizerPatterns.GPT2) ? "gpt-2"
                : tok.splitRegex().equals(PreTokenizerPatterns.LLAMA3) ? "llama-bpe" : null;
        if (pre == null || tok.addPrefixSpace() || tok.normalization() != null) {
            throw new IllegalArgumentException("this byte-level BPE tokenizer has a pre-tokenizer llama.cpp cannot name (split regex, "
                    + "prefix space or normalization); GGUF export writes GPT-2's (gpt-2) and Llama 3's (llama-bpe)");
        }
        int n = tok.vocabSize();
        List<String> tokens = new ArrayList<>(n);
        int[] types = new int[n];
        var added = new java.util.HashSet<Integer>();
        for (var a : tok.addedTokens()) added.add(a.id());
        for (int i = 0; i < n; i++) {
            tokens.add(tok.tokenText(i));
            types[i] = tok.isSpecial(i) ? SpmTokenizer.CONTROL : added.contains(i) ? SpmTokenizer.USER_DEFINED : SpmTokenizer.NORMAL;
        }
        w.putString("tokenizer.ggml.model", "gpt2");
        w.putString("tokenizer.ggml.pre", pre);
        w.put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens));
        w.put("tokenizer.ggml.token_type", GgufValue.int32Array(types));
        w.put("tokenizer.ggml.merges", GgufValue.stringArray(tok.merges().stream().map(m -> m.left() + " " + m.right()).toList()));
        tok.bosId().ifPresent(id -> w.putUint32("tokenizer.ggml.bos_token_id", id));
        tok.eosId().ifPresent(id -> w.putUint32("tokenizer.ggml.eos_token_id", id));
        tok.padId().ifPresent(id -> w.putUint32("tokenizer.ggml.padding_token_id", id));
    }

    private static void sentencePiece(GgufWriter w, SpmTokenizer tok) {
        int n = tok.vocabSize();
        List<String> tokens = new ArrayList<>(n);
        float[] scores = new float[n];
        int[] types = new int[n];
        int unk = -1;
        for (int i = 0; i < n; i++) {
            tokens.add(tok.tokenText(i));
            scores[i] = tok.score(i);
            types[i] = tok.tokenType(i);
            if (types[i] == SpmTokenizer.UNKNOWN && unk < 0) unk = i;
        }
        w.putString("tokenizer.ggml.model", "llama");
        w.put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens));
        w.put("tokenizer.ggml.scores", GgufValue.float32Array(scores));
        w.put("tokenizer.ggml.token_type", GgufValue.int32Array(types));
        w.putBool("tokenizer.ggml.add_space_prefix", tok.addSpacePrefix());
        tok.bosId().ifPresent(id -> w.putUint32("tokenizer.ggml.bos_token_id", id));
        tok.eosId().ifPresent(id -> w.putUint32("tokenizer.ggml.eos_token_id", id));
        tok.padId().ifPresent(id -> w.putUint32("tokenizer.ggml.padding_token_id", id));
        if (unk >= 0) w.putUint32("tokenizer.ggml.unknown_token_id", unk);
    }
}
