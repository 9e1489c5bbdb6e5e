package dev.exeunt.model.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.AttentionOptions;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.RopeScaling;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Llama's relatives (Llama 3.x RoPE scaling, Qwen2's q/k/v biases, Qwen3's head_dim and q/k norms, Llama
 * with attention_bias, Mistral's sliding window) against a float64 forward written here from Hugging Face's definitions, on random
 * weights (biases and norm weights included, so none of them is a no-op): the training forward's
 * logits, greedy generation on the decode path, a checkpoint round trip, and config.json as those
 * families write it.
 */
@ExtendWith(LeakCheck.class)
public class LlamaFamiliesTest {
    private static final int VOCAB = 61, D = 32, LAYERS = 2, HEADS = 4, KV = 2, FFN = 48, CTX = 40;

    private static ModelConfig base() {
        return ModelConfig.llama(VOCAB, D, LAYERS, HEADS, KV, FFN, CTX, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)));
    }

    /** The variants, by the family that has them. */
    public static Map<String, ModelConfig> families() {
        var a = AttentionOptions.LLAMA;
        return Map.of(
                "llama3.1 (llama3 rope scaling)", base().withAttention(a.withRopeScaling(RopeScaling.llama3(8, 1, 4, 12))),
                "linear rope scaling", base().withAttention(a.withRopeScaling(RopeScaling.linear(2.5))),
                "qwen2 (q/k/v biases)", base().withRopeTheta(1e6).withAttention(a.withBiases(true, false)),
                "qwen3 (head_dim 12, q/k norm)", base().withAttention(a.withHeadDim(12).withQkNorm(true)),
                "llama attention_bias", base().withAttention(a.withBiases(true, true)),
                "mistral (sliding window 5)", base().withAttention(a.withSlidingWindow(5)));
    }

    /** Every parameter random: projections N(0, 0.2), biases N(0, 0.1), norm weights 1 + N(0, 0.1). */
    public static void randomize(EarlyExitModel m, long seed) {
        var rng = new SplittableRandom(seed);
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            for (var e : m.parameters().all().entrySet()) {
                Tensor t = e.getValue();
                float[] w = new float[(int) t.numel()];
                boolean norm = e.getKey().contains("norm"), bias = e.getKey().endsWith(".bias");
                for (int i = 0; i < w.length; i++) w[i] = (float) ((norm ? 1 : 0) + rng.nextGaussian() * (norm || bias ? 0.1 : 0.2));
                t.copyFrom(Tensor.of(w, t.shape()));
            }
        }
    }

    // ------------------------------------------------------------------ the float64 reference

    /** Logits [T][V] of the final head for ids, in double: Hugging Face's LlamaModel / Qwen2Model / Qwen3Model forward. */
    public static double[][] reference(EarlyExitModel m, int[] ids) {
        ModelConfig c = m.config();
        var p = m.parameters();
        int t = ids.length, hd = c.headDim(), h = c.nHeads(), hkv = c.nKvHeads();
        double[] emb = d(p.get("model.embed_tokens.weight"));
        double[][] x = new double[t][D];
        for (int i = 0; i < t; i++) System.arraycopy(emb, ids[i] * D, x[i], 0, D);
        double[] inv = c.attention().ropeScaling().invFreq(hd, c.ropeTheta());
        for (int l = 0; l < c.nLayers(); l++) {
            String pre = "model.layers." + l + ".";
            double[][] n = rms(x, d(p.get(pre + "input_layernorm.weight")), c.normEps());
            double[][] q = lin(n, p, pre + "self_attn.q_proj"), k = lin(n, p, pre + "self_attn.k_proj"), v = lin(n, p, pre + "self_attn.v_proj");
            if (c.attention().qkNorm()) {
                q = headRms(q, h, hd, d(p.get(pre + "self_attn.q_norm.weight")), c.normEps());
                k = headRms(k, hkv, hd, d(p.get(pre + "self_attn.k_norm.weight")), c.normEps());
            }
            rope(q, h, hd, inv);
            rope(k, hkv, hd, inv);
            double[][] att = new double[t][h * hd];
            for (int i = 0; i < t; i++) {
                for (int head = 0; head < h; head++) {
                    int kh = head / (h / hkv);
                    double[] s = new double[i + 1];
                    double max = Double.NEGATIVE_INFINITY, sum = 0;
                    int w = c.attention().slidingWindow(), first = w == 0 ? 0 : Math.max(0, i - w + 1); // Mistral: the last w keys
                    for (int j = first; j <= i; j++) {
                        for (int e = 0; e < hd; e++) s[j] += q[i][head * hd + e] * k[j][kh * hd + e];
                        s[j] /= Math.sqrt(hd);
                        max = Math.max(max, s[j]);
                    }
                    for (int j = first; j <= i; j++) sum += s[j] = Math.exp(s[j] - max);
                    for (int j = first; j <= i; j++) for (int e = 0; e < hd; e++) att[i][head * hd + e] += s[j] / sum * v[j][kh * hd + e];
                }
            }
            add(x, lin(att, p, pre + "self_attn.o_proj"));
            double[][] n2 = rms(x, d(p.get(pre + "post_attention_layernorm.weight")), c.normEps());
            double[][] gate = lin(n2, p, pre + "mlp.gate_proj"), up = lin(n2, p, pre + "mlp.up_proj");
            for (int i = 0; i < t; i++) for (int j = 0; j < gate[i].length; j++) gate[i][j] = gate[i][j] / (1 + Math.exp(-gate[i][j])) * up[i][j];
            add(x, lin(gate, p, pre + "mlp.down_proj"));
        }
        return lin(rms(x, d(p.get("model.norm.weight")), c.normEps()), p, c.tiedEmbeddings() ? "model.embed_tokens" : "lm_head");
    }

    private static double[] d(Tensor t) {
        float[] f = t.toFloatArray();
        double[] out = new double[f.length];
        for (int i = 0; i < f.length; i++) out[i] = f[i];
        return out;
    }

    /** x W^T (+ b): W [out, in] as nn.Linear stores it. */
    private static double[][] lin(double[][] x, Parameters p, String name) {
        Tensor wt = p.get(name + ".weight"), bt = p.all().get(name + ".bias");
        double[] w = d(wt), b = bt == null ? null : d(bt);
        int out = wt.dim(0), in = wt.dim(1);
        double[][] y = new double[x.length][out];
        for (int r = 0; r < x.length; r++) {
            for (int o = 0; o < out; o++) {
                double s = b == null ? 0 : b[o];
                for (int i = 0; i < in; i++) s += x[r][i] * w[o * in + i];
                y[r][o] = s;
            }
        }
        return y;
    }

    private static double[][] rms(double[][] x, double[] g, double eps) {
        double[][] y = new double[x.length][];
        for (int r = 0; r < x.length; r++) y[r] = rmsRow(x[r], 0, x[r].length, g, eps);
        return y;
    }

    private static double[] rmsRow(double[] x, int off, int n, double[] g, double eps) {
        double ms = 0;
        for (int i = 0; i < n; i++) ms += x[off + i] * x[off + i];
        double r = 1 / Math.sqrt(ms / n + eps);
        double[] y = new double[n];
        for (int i = 0; i < n; i++) y[i] = x[off + i] * r * g[i];
        return y;
    }

    private static double[][] headRms(double[][] x, int heads, int hd, double[] g, double eps) {
        double[][] y = new double[x.length][heads * hd];
        for (int r = 0; r < x.length; r++) for (int h = 0; h < heads; h++) System.arraycopy(rmsRow(x[r], h * hd, hd, g, eps), 0, y[r], h * hd, hd);
        return y;
    }

    /** Hugging Face's rotate-half RoPE at positions 0..T-1. */
    private static void rope(double[][] x, int heads, int hd, double[] inv) {
        int half = hd / 2;
        for (int pos = 0; pos < x.length; pos++) {
            for (int h = 0; h < heads; h++) {
                for (int i = 0; i < half; i++) {
                    double a = pos * inv[i], c = Math.cos(a), s = Math.sin(a);
                    double x1 = x[pos][h * hd + i], x2 = x[pos][h * hd + half + i];
                    x[pos][h * hd + i] = x1 * c - x2 * s;
                    x[pos][h * hd + half + i] = x2 * c + x1 * s;
                }
            }
        }
    }

    private static void add(double[][] x, double[][] y) {
        for (int r = 0; r < x.length; r++) for (int i = 0; i < x[r].length; i++) x[r][i] += y[r][i];
    }

    // ------------------------------------------------------------------ tests

    private static float[] logits(EarlyExitModel m, int[] ids) {
        try (var g = GradMode.noGrad(); var s = Scope.open()) {
            Tensor x = m.embed(Tensor.ofInts(ids, 1, ids.length), 0);
            for (TransformerLayer l : m.layers()) x = l.forward(x, 0, null);
            return m.finalLogits(x).toFloatArray();
        }
    }

    private static int argmax(double[] row) {
        int best = 0;
        for (int i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    private static final int[] PROMPT = {3, 17, 42, 8, 29, 5, 11, 60, 1, 33, 24, 7, 19, 50, 2, 36};

    @Test
    void everyFamilyMatchesTheFloat64Forward() {
        for (var f : families().entrySet()) {
            try (EarlyExitModel m = EarlyExitModel.create(f.getValue(), Device.CPU, 1)) {
                randomize(m, 7);
                double[][] ref = reference(m, PROMPT);
                float[] got = logits(m, PROMPT);
                double err = 0, norm = 0;
                for (int i = 0; i < PROMPT.length; i++) {
                    for (int v = 0; v < VOCAB; v++) {
                        double e = got[i * VOCAB + v] - ref[i][v];
                        err += e * e;
                        norm += ref[i][v] * ref[i][v];
                    }
                }
                assertTrue(Math.sqrt(err / norm) < 2e-5, f.getKey() + ": relative error " + Math.sqrt(err / norm));
                // greedy generation on the decode path: the reference's argmax, position by position
                int n = 12;
                int[] seq = java.util.Arrays.copyOf(PROMPT, PROMPT.length + n);
                for (int i = 0; i < n; i++) {
                    double[][] r = reference(m, java.util.Arrays.copyOf(seq, PROMPT.length + i));
                    seq[PROMPT.length + i] = argmax(r[PROMPT.length + i - 1]);
                }
                int[] want = java.util.Arrays.copyOfRange(seq, PROMPT.length, seq.length);
                int[] tokens = new Generator(m).generate(List.of(PROMPT), GenerationConfig.greedy(n), TokenListener.NONE).get(0).tokenIds();
                assertArrayEquals(want, tokens, f.getKey() + ": greedy tokens");
            }
        }
    }

    @Test
    void checkpointsRoundTripWithTheFamilysKeys(@TempDir Path tmp) throws Exception {
        Map<String, String> type = Map.of("llama3.1 (llama3 rope scaling)", "llama", "linear rope scaling", "llama", "qwen2 (q/k/v biases)", "qwen2",
                "qwen3 (head_dim 12, q/k norm)", "qwen3", "llama attention_bias", "llama", "mistral (sliding window 5)", "mistral");
        for (var f : families().entrySet()) {
            Path dir = tmp.resolve(type.get(f.getKey()) + f.getValue().hashCode());
            try (EarlyExitModel m = EarlyExitModel.create(f.getValue(), Device.CPU, 2)) {
                randomize(m, 3);
                ModelCheckpoint.save(m, null, dir);
                var json = (ObjectNode) new ObjectMapper().readTree(dir.resolve("config.json").toFile());
                assertEquals(type.get(f.getKey()), json.get("model_type").asText(), f.getKey() + ": " + json);
                try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
                    assertEquals(f.getValue(), loaded.model().config().withCarriedKeys(null), f.getKey());
                    assertArrayEquals(logits(m, PROMPT), logits(loaded.model(), PROMPT), f.getKey());
                }
            }
        }
    }

    /** EE-Tuning adds exits to every family's backbone, which it leaves as it was; the tuned model generates. */
    @Test
    void everyFamilyTunes(@TempDir Path tmp) throws Exception {
        int[] tokens = new int[400];
        for (int i = 0; i < tokens.length; i++) tokens[i] = (i * 7 + i / 5) % VOCAB;
        var tc = new dev.exeunt.model.train.TrainConfig(16, 4, 1, 3, 1e-2, 1e-3, 1, 0.0, 0.9, 0.95, 1.0, 7, 0, 2, 0, 1000, 0.1);
        for (var f : families().entrySet()) {
            Path src = tmp.resolve("src" + f.getValue().hashCode()), out = tmp.resolve("out" + f.getValue().hashCode());
            try (EarlyExitModel m = EarlyExitModel.create(f.getValue().withExits(List.of()), Device.CPU, 4)) {
                randomize(m, 5);
                ModelCheckpoint.save(m, null, src);
            }
            try (var tuner = new dev.exeunt.model.tune.ExitTuner(src, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)),
                    dev.exeunt.model.tune.ExitTuner.Init.COPY, false, 3, tc)) {
                tuner.tune(dev.exeunt.model.io.TokenWindows.of(tokens, 16), tc, out, null);
                tuner.save(out);
            }
            try (var base = ModelCheckpoint.load(src, Device.CPU); var tuned = ModelCheckpoint.load(out, Device.CPU)) {
                assertEquals(f.getValue().attention(), tuned.model().config().attention(), f.getKey());
                assertEquals(1, tuned.model().exits().size());
                assertArrayEquals(logits(base.model(), PROMPT), logits(tuned.model(), PROMPT), f.getKey() + ": the backbone is untouched");
                var g = new Generator(tuned.model()).generate(List.of(PROMPT), GenerationConfig.greedy(6).withThreshold(0.0), TokenListener.NONE).get(0);
                int[] layers = g.exitLayers(); // the first token comes from the prompt's pass through every layer
                for (int i = 1; i < layers.length; i++) assertEquals(1, layers[i], f.getKey() + ": threshold 0 exits at the exit");
            }
        }
    }

    /** config.json as transformers writes Llama 3.2, Qwen2.5 and Qwen3 configs (sizes shrunk). */
    @Test
    void huggingFaceConfigsOfEachFamilyParse() throws Exception {
        String llama32 = """
                {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1,
                 "eos_token_id": [2, 3], "head_dim": 8, "hidden_act": "silu", "hidden_size": 32, "initializer_range": 0.02,
                 "intermediate_size": 48, "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
                 "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
                 "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192,
                 "rope_type": "llama3"}, "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
                 "transformers_version": "4.45.0", "use_cache": true, "vocab_size": 61}""";
        var c = ConfigJson.fromJson(new ObjectMapper().readTree(llama32), Path.of("config.json"));
        assertEquals(RopeScaling.llama3(32, 1, 4, 8192), c.attention().ropeScaling());
        assertEquals(8, c.headDim());
        String qwen25 = """
                {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
                 "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 48, "max_position_embeddings": 32768,
                 "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
                 "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
                 "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false, "vocab_size": 61}""";
        c = ConfigJson.fromJson(new ObjectMapper().readTree(qwen25), Path.of("config.json"));
        assertTrue(c.attention().qkvBias() && !c.attention().outputBias() && !c.attention().qkNorm());
        String qwen3 = """
                {"architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
                 "head_dim": 12, "hidden_act": "silu", "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 48,
                 "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 4,
                 "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000,
                 "sliding_window": null, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
                 "use_cache": true, "use_sliding_window": false, "vocab_size": 61}""";
        c = ConfigJson.fromJson(new ObjectMapper().readTree(qwen3), Path.of("config.json"));
        assertEquals(12, c.headDim());
        assertTrue(c.attention().qkNorm() && !c.attention().qkvBias());
        String mistral = """
                {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 32,
                 "initializer_range": 0.02, "intermediate_size": 48, "max_position_embeddings": 32768, "model_type": "mistral",
                 "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
                 "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.34.0",
                 "use_cache": true, "vocab_size": 61}""";
        assertEquals(4096, ConfigJson.fromJson(new ObjectMapper().readTree(mistral), Path.of("config.json")).attention().slidingWindow());
        // written back, the config keeps the family's keys
        var back = ConfigJson.toJson(c);
        assertEquals("qwen3", back.get("model_type").asText());
        assertEquals(12, back.get("head_dim").asInt());
    }

    @Test
    void variantsThatAreNotImplementedAreRefusedByName() throws Exception {
        String[][] cases = {
                {"\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}", "yarn"},
                {"\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}", "dynamic"},
                {"\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "original_max_position_embeddings"},
                {"\"model_type\": \"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 16", "use_sliding_window"},
                {"\"model_type\": \"llama\", \"mlp_bias\": true", "mlp_bias"}};
        for (String[] k : cases) {
            String json = "{\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 48, "
                    + "\"vocab_size\": 61, \"max_position_embeddings\": 64, " + k[0] + "}";
            var e = assertThrows(CheckpointFormatException.class, () -> ConfigJson.fromJson(new ObjectMapper().readTree(json), Path.of("config.json")));
            assertTrue(e.getMessage().contains(k[1]), k[0] + " -> " + e.getMessage());
        }
    }
}
