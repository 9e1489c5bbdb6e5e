package dev.exeunt.model.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.GgmlType;
import dev.exeunt.model.io.GgufWriter;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Linear;
import dev.exeunt.model.nn.TransformerLayer;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/** Tiny Llama models written as llama.cpp does and loaded back through {@link GgufModelLoader}. */
@ExtendWith(LeakCheck.class)
class GgufModelLoaderTest {
    private static final String TEXT = "the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs far away. "
            + "a lazy afternoon, a quick fox, a brown dog and the long road home.";
    private static BpeTokenizer tokenizer;

    @TempDir
    Path dir;

    @BeforeAll
    static void trainTokenizer() {
        tokenizer = GgufTestFiles.tokenizer(TEXT, List.of("<s>", "</s>")).toBuilder().bos(0).eos(1).build();
    }

    private static ModelConfig config(boolean tied) {
        return ModelConfig.llama(tokenizer.vocabSize(), 64, 2, 4, 2, 128, 128, List.of()).withTiedEmbeddings(tied)
                .withRopeTheta(50000);
    }

    private Path write(EarlyExitModel model, GgmlType type, String name) throws IOException {
        GgufWriter w = GgufTestFiles.writer(model, type);
        GgufTestFiles.putByteLevelTokenizer(w, tokenizer, "default");
        Path p = dir.resolve(name);
        w.write(p);
        return p;
    }

    static float[] logits(EarlyExitModel m, int[] ids) {
        try (var g = GradMode.noGrad(); var s = Scope.open()) {
            Tensor x = m.embed(Tensor.ofInts(ids, 1, ids.length), 0);
            for (TransformerLayer l : m.layers()) x = l.forward(x, 0, null);
            return m.finalLogits(x).toFloatArray();
        }
    }

    static int[] greedy(EarlyExitModel m, int[] prompt, int n) {
        return new Generator(m).generate(List.of(prompt), GenerationConfig.greedy(n), TokenListener.NONE).get(0).tokenIds();
    }

    static double relError(float[] ref, float[] got) {
        double num = 0, den = 0;
        for (int i = 0; i < ref.length; i++) {
            num += (ref[i] - got[i]) * (double) (ref[i] - got[i]);
            den += ref[i] * (double) ref[i];
        }
        return Math.sqrt(num / den);
    }

    static long parameterBytes(EarlyExitModel m, boolean matricesOnly) {
        long n = 0;
        for (var e : m.parameters().all().entrySet()) {
            Tensor t = e.getValue();
            if (matricesOnly && (t.rank() != 2 || e.getKey().contains("embed_tokens"))) continue;
            n += t.dtype().byteSize(t.numel());
        }
        return n;
    }

    private int[] prompt() {
        return tokenizer.encode("the lazy fox runs", true);
    }

    @Test
    void f32FileGivesExactlyTheSameModel() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(false), Device.CPU, 7)) {
            Path file = write(model, GgmlType.F32, "f32.gguf");
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                EarlyExitModel m = loaded.model();
                assertEquals(model.config().withSpecialTokens(0, 1), m.config());
                for (var e : model.parameters().all().entrySet()) {
                    assertArrayEquals(e.getValue().toFloatArray(), m.parameters().get(e.getKey()).toFloatArray(), e.getKey());
                }
                int[] ids = prompt();
                // The weights are bit-identical (above). The CPU kernels themselves are not bit-reproducible
                // run to run (the same model twice can differ in the last ulp), so compare to 1e-6.
                assertArrayEquals(logits(model, ids), logits(m, ids), 1e-6f);
                assertArrayEquals(greedy(model, ids, 12), greedy(m, ids, 12));
                for (String s : List.of(TEXT, "lazy dogs, quick foxes!", "über ∑ 🦊")) {
                    assertArrayEquals(tokenizer.encode(s), loaded.tokenizer().encode(s), s);
                    assertEquals(s, loaded.tokenizer().decode(loaded.tokenizer().encode(s)));
                }
                assertEquals(0, loaded.tokenizer().bosId().getAsInt());
                assertEquals(1, m.config().eosId());
            }
        }
    }

    @Test
    void tiedEmbeddingsWhenOutputIsAbsent() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(true), Device.CPU, 3)) {
            Path file = write(model, GgmlType.F32, "tied.gguf");
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                assertTrue(loaded.model().config().tiedEmbeddings());
                assertArrayEquals(logits(model, prompt()), logits(loaded.model(), prompt()), 1e-6f);
            }
        }
    }

    @Test
    void q8FileStaysQuantizedAndIsClose() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(false), Device.CPU, 11)) {
            Path file = write(model, GgmlType.Q8_0, "q8.gguf");
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                EarlyExitModel m = loaded.model();
                Map<String, Tensor> p = m.parameters().all();
                assertEquals(DType.Q8_0, p.get("model.layers.0.self_attn.q_proj.weight").dtype());
                assertEquals(DType.Q8_0, p.get("model.layers.1.mlp.down_proj.weight").dtype());
                assertEquals(DType.Q8_0, p.get("lm_head.weight").dtype());
                assertEquals(DType.F32, p.get("model.embed_tokens.weight").dtype()); // dequantized on load
                assertEquals(DType.F32, p.get("model.norm.weight").dtype());
                assertTrue(!p.get("lm_head.weight").requiresGrad());
                double ratio = (double) parameterBytes(m, true) / parameterBytes(model, true);
                assertEquals(34.0 / 128, ratio, 1e-9, "Q8_0 matrices take 34 bytes per 32 weights");

                int[] ids = prompt();
                double err = relError(logits(model, ids), logits(m, ids));
                assertTrue(err < 2e-2, "Q8_0 logits relative error " + err);
                int[] a = greedy(model, ids, 16), b = greedy(m, ids, 16);
                int same = 0;
                while (same < a.length && a[same] == b[same]) same++;
                assertTrue(same >= 8, "greedy tokens agree for " + same + " of 16 steps");
            }
        }
    }

    @Test
    void q4FileLoadsAndGenerates() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(false), Device.CPU, 13)) {
            Path file = write(model, GgmlType.Q4_0, "q4.gguf");
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                EarlyExitModel m = loaded.model();
                assertEquals(DType.Q4_0, m.parameters().get("model.layers.1.self_attn.k_proj.weight").dtype());
                assertEquals(18.0 / 128, (double) parameterBytes(m, true) / parameterBytes(model, true), 1e-9);
                double err = relError(logits(model, prompt()), logits(m, prompt()));
                assertTrue(err < 0.25, "Q4_0 logits relative error " + err);
                int[] out = greedy(m, prompt(), 10);
                assertEquals(10, out.length);
                for (int t : out) assertTrue(t >= 0 && t < m.config().vocabSize());
            }
        }
    }

    @Test
    void f16AndBf16MatricesLoadAsF32() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(false), Device.CPU, 5)) {
            for (GgmlType t : List.of(GgmlType.F16, GgmlType.BF16)) {
                Path file = write(model, t, t + ".gguf");
                try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                    assertEquals(DType.F32, loaded.model().parameters().get("model.layers.0.mlp.up_proj.weight").dtype());
                    double err = relError(logits(model, prompt()), logits(loaded.model(), prompt()));
                    assertTrue(err < 2e-2, t + " logits relative error " + err);
                }
            }
        }
    }

    @Test
    void quantizedLinearRefusesGradientsAndMatchesDequantized() {
        SplittableRandom rng = new SplittableRandom(1);
        try (var s = Scope.open()) {
            Tensor w = Tensor.randn(rng, 0.1f, 48, 64);
            Tensor q = w.to(DType.Q8_0);
            Tensor x = Tensor.randn(rng, 1f, 2, 3, 64);
            float[] got = new Linear(q, null, false).forward(x).toFloatArray();
            float[] want = new Linear(q.to(DType.F32), null, false).forward(x).toFloatArray();
            assertEquals(2 * 3 * 48, got.length);
            assertTrue(relError(want, got) < 1e-2, "quantized vs dequantized " + relError(want, got));
            Tensor xg = Tensor.randn(rng, 1f, 1, 64).requiresGrad(true);
            var e = assertThrows(IllegalStateException.class, () -> new Linear(q, null, false).forward(xg));
            assertTrue(e.getMessage().contains("no backward"), e.getMessage());
        }
    }

    @Test
    void unpermuteInvertsTheConverter() {
        int rows = 16, cols = 3, heads = 2;
        float[] w = new float[rows * cols];
        for (int i = 0; i < w.length; i++) w[i] = i;
        float[] g = GgufTestFiles.permute(w, rows, cols, heads);
        int[] src = GgufModelLoader.unpermuteRows(rows, heads);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) assertEquals(w[r * cols + c], g[src[r] * cols + c]);
        }
        // head dim 8: HF rows (0..3 | 4..7) are ggml rows (0,2,4,6 | 1,3,5,7)
        assertArrayEquals(new int[] {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15}, src);
    }

    // ------------------------------------------------------------------ errors

    private String loadError(GgufWriter w) throws IOException {
        Path p = dir.resolve("bad.gguf");
        w.write(p);
        var e = assertThrows(CheckpointFormatException.class, () -> GgufModelLoader.load(p, Device.CPU).close());
        return e.getMessage();
    }

    @Test
    void errorsNameTheProblem() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(false), Device.CPU, 1)) {
            GgufWriter w = GgufTestFiles.writer(model, GgmlType.F32);
            w.putString("general.architecture", "falcon");
            String m = loadError(w);
            assertTrue(m.contains("unsupported architecture 'falcon'"), m);

            GgufWriter noKey = new GgufWriter();
            noKey.putString("general.architecture", "llama");
            m = loadError(noKey);
            assertTrue(m.contains("llama.block_count"), m);
        }
    }

    /** A writer like {@link GgufTestFiles#writer} but with one tensor replaced (or dropped when type is null). */
    private GgufWriter withTensor(EarlyExitModel model, String name, GgmlType type, long[] dims) {
        GgufWriter w = new GgufWriter();
        ModelConfig c = model.config();
        w.putString("general.architecture", "llama");
        w.putUint32("llama.context_length", c.maxSeqLen());
        w.putUint32("llama.embedding_length", c.dModel());
        w.putUint32("llama.block_count", c.nLayers());
        w.putUint32("llama.feed_forward_length", c.ffnHidden());
        w.putUint32("llama.attention.head_count", c.nHeads());
        w.putUint32("llama.attention.head_count_kv", c.nKvHeads());
        for (String[] n : GgufTestFiles.names(c)) {
            Tensor p = model.parameters().get(n[0]);
            if (n[1].equals(name)) {
                if (type != null) w.addTensor(name, type, dims, MemorySegment.ofArray(new byte[(int) type.byteSize(dims)]));
                continue;
            }
            w.addTensor(n[1], GgmlType.F32, GgufTestFiles.dims(p.shape()), GgufTestFiles.bytes(p.toFloatArray(), p.shape(), GgmlType.F32));
        }
        return w;
    }

    @Test
    void unsupportedTypeMissingTensorAndWrongShape() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(false), Device.CPU, 1)) {
            String m = loadError(withTensor(model, "blk.0.attn_q.weight", GgmlType.Q4_1, new long[] {64, 64}));
            assertTrue(m.contains("unsupported ggml type Q4_1 for tensor blk.0.attn_q.weight; supported: F32, F16, BF16, Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K"), m);

            m = loadError(withTensor(model, "blk.1.ffn_up.weight", null, null));
            assertTrue(m.contains("missing 1 tensor(s): blk.1.ffn_up.weight"), m);

            m = loadError(withTensor(model, "blk.1.attn_k.weight", GgmlType.F32, new long[] {64, 64}));
            assertTrue(m.contains("tensor blk.1.attn_k.weight has shape [64, 64]") && m.contains("implies [32, 64]"), m);

            m = loadError(withTensor(model, "token_embd.weight", GgmlType.F32, new long[] {32, tokenizer.vocabSize()}));
            assertTrue(m.contains("token_embd.weight"), m);
        }
    }

    @Test
    void settingsAndTensorsThatWouldBeIgnoredAreRefused() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(config(false), Device.CPU, 1)) {
            String m = loadError(GgufTestFiles.writer(model, GgmlType.F32).putUint32("llama.attention.sliding_window", 4));
            assertTrue(m.contains("unknown metadata key(s) llama.attention.sliding_window"), m);
            m = loadError(GgufTestFiles.writer(model, GgmlType.F32).putBool("llama.use_parallel_residual", true));
            assertTrue(m.contains("llama.use_parallel_residual is true"), m);
            m = loadError(GgufTestFiles.writer(model, GgmlType.F32).putUint32("llama.attention.value_length", 8));
            assertTrue(m.contains("llama.attention.value_length 8 differs"), m);
            m = loadError(GgufTestFiles.writer(model, GgmlType.F32).putUint32("llama.causal", 1));
            assertTrue(m.contains("'llama.causal' must be a bool"), m);
            GgufWriter bias = GgufTestFiles.writer(model, GgmlType.F32);
            bias.addTensor("blk.0.attn_q.bias", GgmlType.F32, new long[] {64}, MemorySegment.ofArray(new byte[256]));
            m = loadError(bias); // a bias makes it Llama with attention biases, all of which must then be there
            assertTrue(m.contains("missing 7 tensor(s): blk.0.attn_k.bias, blk.0.attn_v.bias, blk.0.attn_output.bias"), m);
            GgufWriter extra = GgufTestFiles.writer(model, GgmlType.F32);
            extra.addTensor("blk.0.attn_q_norm.weight", GgmlType.F32, new long[] {16}, MemorySegment.ofArray(new byte[64]));
            m = loadError(extra);
            assertTrue(m.contains("1 tensor(s) the model would not use: blk.0.attn_q_norm.weight"), m);
            // the neutral values load
            GgufWriter neutral = GgufTestFiles.writer(model, GgmlType.F32).putBool("llama.causal", true)
                    .putUint32("llama.attention.value_length", 16).putFloat32("llama.rope.scale_linear", 1f);
            GgufTestFiles.putByteLevelTokenizer(neutral, tokenizer, "default");
            Path p = dir.resolve("neutral.gguf");
            neutral.write(p);
            try (var loaded = GgufModelLoader.load(p, Device.CPU)) {
                assertEquals(2, loaded.model().layers().size());
            }
        }
    }
}
