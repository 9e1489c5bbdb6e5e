package dev.exeunt.model.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.gguf.GgufExporter.OutType;
import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.GgmlType;
import dev.exeunt.model.io.GgufFile;
import dev.exeunt.model.io.GgufTensorInfo;
import dev.exeunt.model.io.GgufWriter;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/** Models written by {@link GgufExporter} and read back by {@link GgufModelLoader}; the backbone against llama.cpp's layout. */
@ExtendWith(LeakCheck.class)
class GgufExporterTest {
    private static final String TEXT = "public static void main(String[] args) { int x = 0; return x; } // the quick fox";
    private static BpeTokenizer tokenizer;

    @TempDir
    Path dir;

    @BeforeAll
    static void trainTokenizer() {
        tokenizer = GgufTestFiles.tokenizer(TEXT, List.of("<|endoftext|>"));
        tokenizer = tokenizer.toBuilder().bos(tokenizer.idOf("<|endoftext|>")).eos(tokenizer.idOf("<|endoftext|>")).build();
    }

    /** One exit of every kind: the embedding head, norm, split MLP and extra layer. */
    private static List<ExitConfig> exits() {
        return List.of(ExitConfig.post(1, ExitKind.EMBEDDING, 1), ExitConfig.post(2, ExitKind.NORM, 1), ExitConfig.post(3, ExitKind.MLP, 0.5),
                ExitConfig.post(3, ExitKind.LAYER, 0.5));
    }

    private static ModelConfig llama() {
        int eos = tokenizer.eosId().getAsInt();
        return ModelConfig.llama(tokenizer.vocabSize(), 64, 4, 4, 2, 128, 96, exits()).withRopeTheta(50000).withSpecialTokens(eos, eos);
    }

    private static ModelConfig gpt2(boolean tied) {
        int eos = tokenizer.eosId().getAsInt();
        return ModelConfig.gpt2(tokenizer.vocabSize(), 64, 4, 4, 96, exits()).withTiedEmbeddings(tied).withSpecialTokens(eos, eos);
    }

    private Path export(EarlyExitModel m, OutType type, boolean exits, String name) throws IOException {
        Path file = dir.resolve(name);
        GgufExporter.export(m, tokenizer, "test", type, exits, file);
        return file;
    }

    private static List<Integer> tokens(EarlyExitModel m, double threshold) {
        int[] prompt = tokenizer.encode("public static", true);
        return new Generator(m).generate(List.of(prompt), GenerationConfig.greedy(10).withThreshold(threshold), TokenListener.NONE).get(0).tokens()
                .stream().map(t -> t.token() * 100 + t.exitLayer()).toList();
    }

    @Test
    void f32RoundTripIsTheSameModelWithItsExits() throws IOException {
        for (ModelConfig c : List.of(llama(), gpt2(true), gpt2(false))) {
            try (EarlyExitModel model = EarlyExitModel.create(c, Device.CPU, 11)) {
                Path file = export(model, OutType.F32, true, c.family() + "-" + c.tiedEmbeddings() + ".gguf");
                try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                    EarlyExitModel m = loaded.model();
                    assertEquals(ConfigJson.toJson(c), ConfigJson.toJson(m.config()), c.family() + ": config");
                    assertEquals(model.parameters().all().keySet(), m.parameters().all().keySet());
                    for (var e : model.parameters().all().entrySet()) {
                        assertArrayEquals(e.getValue().toFloatArray(), m.parameters().get(e.getKey()).toFloatArray(), e.getKey());
                    }
                    // tokens and the layer each exited at: the full model, and every token at its first exit
                    for (double t : new double[] {1.0, 0.0}) assertEquals(tokens(model, t), tokens(m, t), c.family() + " threshold " + t);
                    for (String s : List.of(TEXT, "static int y;", "über ∑")) assertArrayEquals(tokenizer.encode(s), loaded.tokenizer().encode(s), s);
                }
            }
        }
    }

    /** Llama 3.x, Qwen2, Qwen3 and Llama with biases: llama.cpp's architecture and names, loaded back with the same logits. */
    @Test
    void everyLlamaFamilyRoundTrips() throws IOException {
        var arch = java.util.Map.of("llama3.1 (llama3 rope scaling)", "llama", "linear rope scaling", "llama", "qwen2 (q/k/v biases)", "qwen2",
                "qwen3 (head_dim 12, q/k norm)", "qwen3", "llama attention_bias", "llama");
        int[] prompt = {3, 17, 42, 8, 29, 5, 11, 60};
        for (var f : dev.exeunt.model.nn.LlamaFamiliesTest.families().entrySet()) {
            if (f.getValue().attention().slidingWindow() > 0) {
                try (EarlyExitModel model = EarlyExitModel.create(f.getValue(), Device.CPU, 5)) {
                    var e = assertThrows(IllegalArgumentException.class,
                            () -> GgufExporter.export(model, null, "w", OutType.F32, true, dir.resolve("window.gguf")));
                    assertTrue(e.getMessage().contains("sliding window"), e.getMessage());
                }
                continue;
            }
            try (EarlyExitModel model = EarlyExitModel.create(f.getValue(), Device.CPU, 5)) {
                dev.exeunt.model.nn.LlamaFamiliesTest.randomize(model, 11);
                for (boolean exits : new boolean[] {true, false}) {
                    Path file = dir.resolve("fam-" + arch.get(f.getKey()) + f.getValue().hashCode() + exits + ".gguf");
                    GgufExporter.export(model, null, "family", OutType.F32, exits, file); // the test tokenizer is larger than this vocabulary
                    try (GgufFile g = GgufFile.open(file)) {
                        assertEquals(arch.get(f.getKey()), g.metadata().get("general.architecture").asString(), f.getKey());
                    }
                    try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                        var c = loaded.model().config();
                        if (exits) assertEquals(ConfigJson.toJson(f.getValue()), ConfigJson.toJson(c), f.getKey());
                        assertEquals(f.getValue().headDim(), c.headDim());
                        double[][] want = dev.exeunt.model.nn.LlamaFamiliesTest.reference(model, prompt);
                        double[][] got = dev.exeunt.model.nn.LlamaFamiliesTest.reference(loaded.model(), prompt);
                        for (int i = 0; i < prompt.length; i++) {
                            for (int v = 0; v < want[i].length; v++) {
                                assertEquals(want[i][v], got[i][v], 1e-4 * (1 + Math.abs(want[i][v])), f.getKey() + " exits " + exits + " logit " + i + "," + v);
                            }
                        }
                        var greedy = GenerationConfig.greedy(8);
                        assertArrayEquals(new Generator(model).generate(List.of(prompt), greedy, TokenListener.NONE).get(0).tokenIds(),
                                new Generator(loaded.model()).generate(List.of(prompt), greedy, TokenListener.NONE).get(0).tokenIds(), f.getKey());
                    }
                }
            }
        }
    }

    /** The Llama backbone is byte for byte what the test writer (convert_hf_to_gguf.py's names and q/k permutation) writes. */
    @Test
    void llamaBackboneIsLlamaCppsLayout() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(llama().withTiedEmbeddings(false), Device.CPU, 3)) {
            Path ours = export(model, OutType.F32, false, "ours.gguf");
            Path ref = dir.resolve("ref.gguf");
            GgufTestFiles.writer(model, GgmlType.F32).write(ref);
            try (GgufFile a = GgufFile.open(ours); GgufFile b = GgufFile.open(ref)) {
                assertEquals(names(b), names(a));
                for (GgufTensorInfo t : b.tensors()) {
                    assertArrayEquals(b.data(t.name()).toArray(ValueLayout.JAVA_BYTE), a.data(t.name()).toArray(ValueLayout.JAVA_BYTE), t.name());
                    assertArrayEquals(t.dims(), a.tensor(t.name()).dims(), t.name());
                }
                for (String k : List.of("llama.block_count", "llama.embedding_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                        "llama.feed_forward_length", "llama.context_length", "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon")) {
                    assertEquals(b.metadata().get(k).value(), a.metadata().get(k).value(), k);
                }
                assertTrue(a.metadata().keySet().stream().noneMatch(k -> k.startsWith("exeunt.")), "a backbone file holds no Exeunt keys");
            }
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(ours, Device.CPU)) {
                assertTrue(loaded.model().config().exits().isEmpty());
                assertEquals(tokens(model, 1.0), tokens(loaded.model(), 1.0), "the backbone generates the full model's tokens");
            }
        }
    }

    /** GPT-2: llama.cpp's gpt2 tensor names, and Conv1D weights transposed to [out, in]. */
    @Test
    void gpt2BackboneIsLlamaCppsLayout() throws IOException {
        ModelConfig c = gpt2(true);
        try (EarlyExitModel model = EarlyExitModel.create(c, Device.CPU, 5)) {
            Path file = export(model, OutType.F32, false, "gpt2.gguf");
            Set<String> want = new TreeSet<>(List.of("token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias"));
            for (int i = 0; i < c.nLayers(); i++) {
                for (String p : List.of("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")) {
                    want.add("blk." + i + "." + p + ".weight");
                    want.add("blk." + i + "." + p + ".bias");
                }
            }
            try (GgufFile f = GgufFile.open(file)) {
                assertEquals(want, names(f));
                assertEquals("gpt2", f.metadata().get("general.architecture").asString());
                assertEquals("gpt-2", f.metadata().get("tokenizer.ggml.pre").asString());
                GgufTensorInfo qkv = f.tensor("blk.1.attn_qkv.weight");
                assertArrayEquals(new long[] {64, 192}, qkv.dims(), "ggml dims [in, out]: rows of the file are output features");
                float[] w = model.parameters().get("h.1.attn.c_attn.weight").toFloatArray(); // [in 64, out 192]
                var data = f.data(qkv.name());
                for (int o : new int[] {0, 7, 191}) {
                    for (int i : new int[] {0, 5, 63}) {
                        assertEquals(w[i * 192 + o], data.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, (long) o * 64 + i), "out " + o + " in " + i);
                    }
                }
            }
        }
    }

    /** Quantized files: Llama's projections and the exit heads stay quantized, with exactly the bytes of quantizing the model. */
    @Test
    void quantizedExportsKeepTheirBlocks() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(llama(), Device.CPU, 9)) {
            for (OutType type : List.of(OutType.Q8_0, OutType.Q4_0)) {
                Path file = export(model, type, true, type + ".gguf");
                try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(file, Device.CPU)) {
                    for (String name : List.of("model.layers.1.self_attn.q_proj.weight", "model.layers.2.mlp.down_proj.weight", "lm_head.weight",
                            "exits.1.head.weight")) {
                        Tensor got = loaded.model().parameters().get(name);
                        assertEquals(type.dtype, got.dtype(), name);
                        try (Tensor want = model.parameters().get(name).to(type.dtype)) {
                            assertArrayEquals(bytes(want), bytes(got), name);
                        }
                    }
                    assertEquals(10, tokens(loaded.model(), 0.5).size());
                }
            }
            Path f16 = export(model, OutType.F16, true, "f16.gguf");
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(f16, Device.CPU)) {
                float[] a = model.parameters().get("model.layers.0.self_attn.k_proj.weight").toFloatArray();
                float[] b = loaded.model().parameters().get("model.layers.0.self_attn.k_proj.weight").toFloatArray();
                for (int i = 0; i < a.length; i++) assertEquals(a[i], b[i], Math.abs(a[i]) * 1e-3 + 1e-7, "k_proj[" + i + "]");
            }
        }
    }

    @Test
    void exitMetadataThatDisagreesOrIsMissingIsRefused() throws IOException {
        try (EarlyExitModel model = EarlyExitModel.create(llama().withTiedEmbeddings(false).withExits(List.of()), Device.CPU, 4)) {
            GgufWriter w = GgufTestFiles.writer(model, GgmlType.F32);
            w.putString(GgufModelLoader.CONFIG_KEY, ConfigJson.toJson(ModelConfig.llama(tokenizer.vocabSize(), 64, 3, 4, 2, 128, 96, List.of())).toString());
            Path p = dir.resolve("disagree.gguf");
            w.write(p);
            var e = assertThrows(CheckpointFormatException.class, () -> GgufModelLoader.load(p, Device.CPU).close());
            assertTrue(e.getMessage().contains("exeunt.config") && e.getMessage().contains("3 layers"), e.getMessage());
        }
        try (EarlyExitModel model = EarlyExitModel.create(llama(), Device.CPU, 4)) {
            Path file = export(model, OutType.F32, true, "exits.gguf");
            // the same tensors without the config that declares the exits: they would be ignored, so refused
            GgufWriter w = GgufTestFiles.writer(model, GgmlType.F32);
            try (GgufFile f = GgufFile.open(file)) {
                for (GgufTensorInfo t : f.tensors()) {
                    if (t.name().startsWith("exits.")) w.addTensor(t.name(), t.type(), t.dims(), java.lang.foreign.MemorySegment.ofArray(f.data(t.name()).toArray(ValueLayout.JAVA_BYTE)));
                }
            }
            Path p = dir.resolve("noconfig.gguf");
            w.write(p);
            var e = assertThrows(CheckpointFormatException.class, () -> GgufModelLoader.load(p, Device.CPU).close());
            assertTrue(e.getMessage().contains("exit tensor(s) the model's exits do not use"), e.getMessage());
        }
    }

    private static Set<String> names(GgufFile f) {
        Set<String> s = new TreeSet<>();
        for (GgufTensorInfo t : f.tensors()) s.add(t.name());
        return s;
    }

    private static byte[] bytes(Tensor t) {
        return t.segment().asSlice(0, t.dtype().byteSize(t.numel())).toArray(ValueLayout.JAVA_BYTE);
    }
}
