package dev.exeunt.model.checkpoint;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.SafetensorsTensorInfo;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The tensors a config needs, by Hugging Face name and shape, and the check of a weights file against
 * them that runs before the model is allocated: a config that disagrees with its weights (layer count,
 * embedding, MLP size), a missing tensor, a wrong shape, or a tensor nobody would read is refused,
 * naming both sides. The names mirror {@code dev.exeunt.model.nn} (a test compares them with a built model).
 */
public final class CheckpointLayout {
    /**
     * Tensors Hugging Face files carry that are buffers, not weights: GPT-2's causal-mask buffers
     * ({@code h.N.attn.bias}, {@code h.N.attn.masked_bias}; Exeunt builds the causal mask itself) and older
     * Llama exports' {@code rotary_emb.inv_freq} (Exeunt derives the frequencies from rope_theta).
     */
    private static final Pattern BUFFER = Pattern.compile(
            "(transformer\\.)?h\\.\\d+\\.attn\\.(masked_)?bias|model\\.layers\\.\\d+\\.self_attn\\.rotary_emb\\.inv_freq");
    private static final Pattern GPT2_LAYER = Pattern.compile("^(?:transformer\\.)?h\\.(\\d{1,9})\\.");
    private static final Pattern LLAMA_LAYER = Pattern.compile("^model\\.layers\\.(\\d{1,9})\\.");

    private CheckpointLayout() {}

    /** Every parameter of the complete model {@code c} describes, in creation order, with its shape. */
    public static Map<String, long[]> expected(ModelConfig c) {
        Map<String, long[]> out = new LinkedHashMap<>();
        boolean gpt2 = c.family() == Family.GPT2;
        long v = c.vocabSize(), d = c.dModel();
        out.put(gpt2 ? "wte.weight" : "model.embed_tokens.weight", new long[] {v, d});
        if (gpt2) out.put("wpe.weight", new long[] {c.maxSeqLen(), d});
        for (int i = 0; i < c.nLayers(); i++) layer(out, (gpt2 ? "h." : "model.layers.") + i, c);
        norm(out, gpt2 ? "ln_f" : "model.norm", c);
        if (!c.tiedEmbeddings()) out.put("lm_head.weight", new long[] {v, d});
        for (int i = 0; i < c.exits().size(); i++) {
            ExitConfig e = c.exits().get(i);
            String p = "exits." + i;
            if (e.kind() == ExitKind.MLP) mlp(out, p + ".mlp", c);
            if (e.kind() == ExitKind.LAYER) layer(out, p + ".layer", c);
            if (e.kind() != ExitKind.EMBEDDING) norm(out, p + ".norm", c);
            if (!e.sharedHead()) out.put(p + ".head.weight", new long[] {v, d});
        }
        return out;
    }

    private static void layer(Map<String, long[]> out, String p, ModelConfig c) {
        long d = c.dModel();
        if (c.family() == Family.GPT2) {
            norm(out, p + ".ln_1", c);
            linear(out, p + ".attn.c_attn", d, 3 * d, c);
            linear(out, p + ".attn.c_proj", d, d, c);
            norm(out, p + ".ln_2", c);
        } else {
            long hd = c.headDim(), q = c.nHeads() * hd, kv = c.nKvHeads() * hd;
            var o = c.attention();
            norm(out, p + ".input_layernorm", c);
            linear(out, p + ".self_attn.q_proj", d, q, o.qkvBias(), c);
            linear(out, p + ".self_attn.k_proj", d, kv, o.qkvBias(), c);
            linear(out, p + ".self_attn.v_proj", d, kv, o.qkvBias(), c);
            linear(out, p + ".self_attn.o_proj", q, d, o.outputBias(), c);
            if (o.qkNorm()) {
                out.put(p + ".self_attn.q_norm.weight", new long[] {hd});
                out.put(p + ".self_attn.k_norm.weight", new long[] {hd});
            }
            norm(out, p + ".post_attention_layernorm", c);
        }
        mlp(out, p + ".mlp", c);
    }

    private static void mlp(Map<String, long[]> out, String p, ModelConfig c) {
        long d = c.dModel(), f = c.ffnHidden();
        if (c.family() == Family.GPT2) {
            linear(out, p + ".c_fc", d, f, c);
            linear(out, p + ".c_proj", f, d, c);
        } else {
            linear(out, p + ".gate_proj", d, f, c);
            linear(out, p + ".up_proj", d, f, c);
            linear(out, p + ".down_proj", f, d, c);
        }
    }

    /** GPT-2's Conv1D stores [in, out] with a bias; Llama's nn.Linear stores [out, in] without one. */
    private static void linear(Map<String, long[]> out, String p, long in, long outFeatures, ModelConfig c) {
        linear(out, p, in, outFeatures, c.family() == Family.GPT2, c);
    }

    /** As above; a Llama-family projection may have a bias too (Qwen2's q/k/v). */
    private static void linear(Map<String, long[]> out, String p, long in, long outFeatures, boolean bias, ModelConfig c) {
        out.put(p + ".weight", c.family() == Family.GPT2 ? new long[] {in, outFeatures} : new long[] {outFeatures, in});
        if (bias) out.put(p + ".bias", new long[] {outFeatures});
    }

    private static void norm(Map<String, long[]> out, String p, ModelConfig c) {
        out.put(p + ".weight", new long[] {c.dModel()});
        if (c.family() == Family.GPT2) out.put(p + ".bias", new long[] {c.dModel()});
    }

    /** The name under which {@code name} is stored: itself, or with GPT-2's "transformer." prefix; null when absent. */
    public static String resolve(SafetensorsCheckpoint ckpt, String name) {
        if (ckpt.contains(name)) return name;
        if (ckpt.contains("transformer." + name)) return "transformer." + name;
        return null;
    }

    /**
     * Checks the file against config {@code c} before anything is allocated: the sizes config.json gives
     * first (naming the config key and the tensor), then every tensor by name and shape.
     */
    public static void check(ModelConfig c, SafetensorsCheckpoint ckpt) throws CheckpointFormatException {
        boolean gpt2 = c.family() == Family.GPT2;
        String where = ckpt.files().size() == 1 ? ckpt.files().get(0).path().getFileName().toString()
                : "the " + ckpt.files().size() + " weights files";
        TreeSet<Integer> layers = new TreeSet<>();
        for (String n : ckpt.names()) {
            Matcher m = (gpt2 ? GPT2_LAYER : LLAMA_LAYER).matcher(n);
            if (m.find()) layers.add(Integer.parseInt(m.group(1)));
        }
        if (layers.isEmpty() || layers.first() != 0 || layers.last() != layers.size() - 1 || layers.size() != c.nLayers()) {
            throw new CheckpointFormatException(ckpt.location(), "config.json says " + (gpt2 ? "n_layer " : "num_hidden_layers ")
                    + c.nLayers() + " but " + where + " holds " + (layers.isEmpty() ? "no layers"
                    : layers.size() == layers.last() + 1 && layers.first() == 0 ? "layers 0.." + layers.last() : "layers " + layers));
        }
        String emb = gpt2 ? "wte.weight" : "model.embed_tokens.weight";
        String vKey = "vocab_size", dKey = gpt2 ? "n_embd" : "hidden_size";
        agree(ckpt, where, emb, new long[] {c.vocabSize(), c.dModel()}, vKey + " " + c.vocabSize() + ", " + dKey + " " + c.dModel());
        if (gpt2) {
            agree(ckpt, where, "wpe.weight", new long[] {c.maxSeqLen(), c.dModel()},
                    "n_positions " + c.maxSeqLen() + ", n_embd " + c.dModel());
            agree(ckpt, where, "h.0.mlp.c_fc.weight", new long[] {c.dModel(), c.ffnHidden()},
                    "n_embd " + c.dModel() + ", n_inner " + c.ffnHidden());
        } else {
            agree(ckpt, where, "model.layers.0.mlp.gate_proj.weight", new long[] {c.ffnHidden(), c.dModel()},
                    "intermediate_size " + c.ffnHidden() + ", hidden_size " + c.dModel());
        }
        matches(expected(c), ckpt);
    }

    private static void agree(SafetensorsCheckpoint ckpt, String where, String name, long[] shape, String says)
            throws CheckpointFormatException {
        String stored = resolve(ckpt, name);
        if (stored == null) return; // reported with every other missing tensor
        long[] actual = ckpt.tensor(stored).shape();
        if (!Arrays.equals(actual, shape)) {
            throw new CheckpointFormatException(ckpt.location(), "config.json says " + says + " (so " + name + " "
                    + Arrays.toString(shape) + ") but " + where + " holds " + stored + " " + Arrays.toString(actual));
        }
    }

    /**
     * Every tensor in {@code expected} is in the file with that shape, and every tensor in the file is
     * expected or a known buffer; lists all that fail at once.
     */
    static void matches(Map<String, long[]> expected, SafetensorsCheckpoint ckpt) throws CheckpointFormatException {
        matches(expected, ckpt, false);
    }

    /** {@code partOfModel}: the expected tensors are one pipeline stage's, so the checkpoint's others are not extra. */
    static void matches(Map<String, long[]> expected, SafetensorsCheckpoint ckpt, boolean partOfModel) throws CheckpointFormatException {
        List<String> missing = new ArrayList<>(), wrong = new ArrayList<>();
        Set<String> used = new HashSet<>();
        for (var e : expected.entrySet()) {
            String stored = resolve(ckpt, e.getKey());
            if (stored == null) {
                missing.add(e.getKey());
                continue;
            }
            used.add(stored);
            SafetensorsTensorInfo info = ckpt.tensor(stored);
            if (!Arrays.equals(info.shape(), e.getValue())) {
                wrong.add(stored + " is " + Arrays.toString(info.shape()) + " but the config needs " + Arrays.toString(e.getValue()));
            }
        }
        if (!missing.isEmpty()) {
            throw new CheckpointFormatException(ckpt.location(), "checkpoint lacks " + missing.size() + " tensor(s) "
                    + "config.json needs: " + list(missing));
        }
        if (!wrong.isEmpty()) {
            throw new CheckpointFormatException(ckpt.location(), wrong.size() + " tensor(s) disagree with config.json: " + list(wrong));
        }
        if (partOfModel) return;
        List<String> extra = new ArrayList<>();
        for (String n : ckpt.names()) {
            if (!used.contains(n) && !BUFFER.matcher(n).matches()) extra.add(n);
        }
        if (!extra.isEmpty()) {
            throw new CheckpointFormatException(ckpt.location(), "checkpoint holds " + extra.size() + " tensor(s) that "
                    + "config.json does not use: " + list(extra) + ". Exeunt refuses weights it would ignore (a bias, an "
                    + "extra layer or head the config does not describe would silently change nothing)");
        }
    }

    private static String list(List<String> names) {
        return String.join(", ", names.subList(0, Math.min(10, names.size()))) + (names.size() > 10 ? ", ..." : "");
    }
}
