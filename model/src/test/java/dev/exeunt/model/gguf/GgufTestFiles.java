package dev.exeunt.model.gguf;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.GgmlType;
import dev.exeunt.model.io.GgufValue;
import dev.exeunt.model.io.GgufWriter;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.KQuantReference;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Writes models and tokenizers as llama.cpp's convert_hf_to_gguf.py does (names, ggml dims order,
 * q/k rows permuted for ggml's RoPE), independently of the loader.
 */
final class GgufTestFiles {
    private GgufTestFiles() {}

    /** convert_hf_to_gguf.py's permute: w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(out, in). */
    static float[] permute(float[] w, int rows, int cols, int nHead) {
        int hd = rows / nHead, half = hd / 2;
        float[] out = new float[w.length];
        for (int h = 0; h < nHead; h++) {
            for (int i = 0; i < 2; i++) {
                for (int j = 0; j < half; j++) {
                    int src = h * hd + i * half + j, dst = h * hd + j * 2 + i;
                    System.arraycopy(w, src * cols, out, dst * cols, cols);
                }
            }
        }
        return out;
    }

    /** HF name -> (GGUF name, heads for the q/k permutation or 0). */
    static List<String[]> names(ModelConfig c) {
        List<String[]> n = new ArrayList<>();
        n.add(new String[] {"model.embed_tokens.weight", "token_embd.weight", "0"});
        for (int i = 0; i < c.nLayers(); i++) {
            String hf = "model.layers." + i + ".", g = "blk." + i + ".";
            n.add(new String[] {hf + "input_layernorm.weight", g + "attn_norm.weight", "0"});
            n.add(new String[] {hf + "self_attn.q_proj.weight", g + "attn_q.weight", "" + c.nHeads()});
            n.add(new String[] {hf + "self_attn.k_proj.weight", g + "attn_k.weight", "" + c.nKvHeads()});
            n.add(new String[] {hf + "self_attn.v_proj.weight", g + "attn_v.weight", "0"});
            n.add(new String[] {hf + "self_attn.o_proj.weight", g + "attn_output.weight", "0"});
            n.add(new String[] {hf + "post_attention_layernorm.weight", g + "ffn_norm.weight", "0"});
            n.add(new String[] {hf + "mlp.gate_proj.weight", g + "ffn_gate.weight", "0"});
            n.add(new String[] {hf + "mlp.up_proj.weight", g + "ffn_up.weight", "0"});
            n.add(new String[] {hf + "mlp.down_proj.weight", g + "ffn_down.weight", "0"});
        }
        n.add(new String[] {"model.norm.weight", "output_norm.weight", "0"});
        if (!c.tiedEmbeddings()) n.add(new String[] {"lm_head.weight", "output.weight", "0"});
        return n;
    }

    /** A writer holding the model's hyperparameters and tensors; 2-D tensors in {@code matrixType}, 1-D in F32. */
    static GgufWriter writer(EarlyExitModel model, GgmlType matrixType) {
        return writer(model, ggufName -> matrixType);
    }

    /** As {@link #writer(EarlyExitModel, GgmlType)} with each 2-D tensor's type chosen by its GGUF name (mixed files). */
    static GgufWriter writer(EarlyExitModel model, java.util.function.Function<String, GgmlType> matrixTypeOf) {
        ModelConfig c = model.config();
        GgufWriter w = new GgufWriter();
        w.putString("general.architecture", "llama");
        w.putString("general.name", "tiny-test");
        w.putUint32("llama.context_length", c.maxSeqLen());
        w.putUint32("llama.embedding_length", c.dModel());
        w.putUint32("llama.block_count", c.nLayers());
        w.putUint32("llama.feed_forward_length", c.ffnHidden());
        w.putUint32("llama.rope.dimension_count", c.headDim());
        w.putUint32("llama.attention.head_count", c.nHeads());
        w.putUint32("llama.attention.head_count_kv", c.nKvHeads());
        w.putFloat32("llama.attention.layer_norm_rms_epsilon", (float) c.normEps());
        w.putFloat32("llama.rope.freq_base", (float) c.ropeTheta());
        Map<String, Tensor> params = model.parameters().all();
        for (String[] n : names(c)) {
            Tensor p = params.get(n[0]);
            int heads = Integer.parseInt(n[2]);
            int[] shape = p.shape();
            float[] data = p.toFloatArray();
            if (heads > 0) data = permute(data, shape[0], shape[1], heads);
            GgmlType type = shape.length == 2 ? matrixTypeOf.apply(n[1]) : GgmlType.F32;
            w.addTensor(n[1], type, dims(shape), bytes(data, shape, type));
        }
        return w;
    }

    static long[] dims(int[] shape) {
        long[] d = new long[shape.length];
        for (int i = 0; i < shape.length; i++) d[i] = shape[shape.length - 1 - i];
        return d;
    }

    static MemorySegment bytes(float[] data, int[] shape, GgmlType type) {
        if (type == GgmlType.F32) {
            MemorySegment s = MemorySegment.ofArray(new byte[data.length * 4]);
            for (int i = 0; i < data.length; i++) s.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), i, data[i]);
            return s;
        }
        if (type == GgmlType.Q3_K) return MemorySegment.ofArray(KQuantReference.quantizeQ3K(data));
        if (type == GgmlType.Q2_K || type == GgmlType.Q4_K || type == GgmlType.Q5_K || type == GgmlType.Q6_K) {
            return MemorySegment.ofArray(KQuantReference.quantize(DType.valueOf(type.name()), data)); // no F32 -> k-quant conversion in Exeunt
        }
        DType dt = switch (type) {
            case Q8_0 -> DType.Q8_0;
            case Q4_0 -> DType.Q4_0;
            case F16 -> DType.F16;
            case BF16 -> DType.BF16;
            default -> throw new IllegalArgumentException("test writer: " + type);
        };
        try (Tensor f = Tensor.of(data, shape); Tensor q = f.to(dt)) {
            byte[] b = q.segment().asSlice(0, dt.byteSize(q.numel())).toArray(ValueLayout.JAVA_BYTE);
            return MemorySegment.ofArray(b);
        }
    }

    /** A 300-token byte-level BPE trained on four copies of {@code text}, with the given special tokens (no BOS/EOS set). */
    static BpeTokenizer tokenizer(String text, List<String> specials) {
        return dev.exeunt.model.tokenizer.BpeTrainer.train(java.util.Collections.nCopies(4, text), 300, specials);
    }

    /** tokenizer.ggml.* for a byte-level BPE tokenizer (model gpt2): specials are control tokens. */
    static void putByteLevelTokenizer(GgufWriter w, BpeTokenizer tok, String pre) {
        int n = tok.vocabSize();
        List<String> tokens = new ArrayList<>(n);
        int[] types = new int[n];
        for (int i = 0; i < n; i++) {
            tokens.add(tok.tokenText(i));
            types[i] = tok.isSpecial(i) ? 3 : 1;
        }
        List<String> merges = tok.merges().stream().map(m -> m.left() + " " + m.right()).toList();
        w.putString("tokenizer.ggml.model", "gpt2");
        if (pre != null) w.putString("tokenizer.ggml.pre", pre);
        w.put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens));
        w.put("tokenizer.ggml.token_type", GgufValue.int32Array(types));
        w.put("tokenizer.ggml.merges", GgufValue.stringArray(merges));
        tok.bosId().ifPresent(id -> w.putUint32("tokenizer.ggml.bos_token_id", id));
        tok.eosId().ifPresent(id -> w.putUint32("tokenizer.ggml.eos_token_id", id));
    }
}
