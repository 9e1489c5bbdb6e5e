package dev.exeunt.model.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.io.GgmlType;
import dev.exeunt.model.io.GgufWriter;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * A GGUF file mixing k-quant types as llama-quantize's Q4_K_M does (Q4_K projections, Q5_K ffn_down, a Q6_K
 * output head, a Q4_K token embedding, F32 norms) loads with its matrices kept quantized, and runs exactly like
 * the same model with those weights dequantized to F32.
 */
@ExtendWith(LeakCheck.class)
class GgufKQuantTest {
    private static final String TEXT = "the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs far away. "
            + "a lazy afternoon, a quick fox, a brown dog and the long road home.";
    private static BpeTokenizer tokenizer;

    @TempDir
    Path dir;

    @BeforeAll
    static void trainTokenizer() {
        tokenizer = GgufTestFiles.tokenizer(TEXT, List.of("<s>", "</s>")).toBuilder().bos(0).eos(1).build();
    }

    /** Every matrix's input dimension (d_model, ffn) a multiple of the 256-weight super-block. */
    private static ModelConfig config() {
        return ModelConfig.llama(tokenizer.vocabSize(), 256, 2, 4, 2, 512, 128, List.of()).withRopeTheta(50000);
    }

    private Path write(EarlyExitModel model, Function<String, GgmlType> types, String name) throws IOException {
        GgufWriter w = GgufTestFiles.writer(model, types);
        GgufTestFiles.putByteLevelTokenizer(w, tokenizer, "default");
        Path p = dir.resolve(name);
        w.write(p);
        return p;
    }

    private static GgmlType mixed(String ggufName) {
        if (ggufName.equals("output.weight")) return GgmlType.Q6_K;
        if (ggufName.endsWith("ffn_down.weight")) return GgmlType.Q5_K;
        return GgmlType.Q4_K;
    }

    /** As llama-quantize's Q3_K_M: Q3_K most matrices, Q4_K attention output and ffn_down, a Q6_K head. */
    private static GgmlType q3kMedium(String ggufName) {
        if (ggufName.equals("output.weight")) return GgmlType.Q6_K;
        if (ggufName.endsWith("ffn_down.weight") || ggufName.endsWith("attn_output.weight")) return GgmlType.Q4_K;
        return GgmlType.Q3_K;
    }

    /** Q2_K most matrices (as in a llama-quantize Q2_K file), Q4_K ffn_down, a Q6_K head. */
    private static GgmlType q2k(String ggufName) {
        if (ggufName.equals("output.weight")) return GgmlType.Q6_K;
        if (ggufName.endsWith("ffn_down.weight")) return GgmlType.Q4_K;
        return GgmlType.Q2_K;
    }

    @Test
    void q2KFileRunsLikeItsDequantizedWeights() throws IOException {
        runsLikeItsDequantizedWeights(GgufKQuantTest::q2k, DType.Q2_K, "q2_k.gguf", 1.0);
    }

    @Test
    void mixedKQuantFileRunsLikeItsDequantizedWeights() throws IOException {
        runsLikeItsDequantizedWeights(GgufKQuantTest::mixed, DType.Q4_K, "q4_k_m.gguf", 0.3);
    }

    /** Q3_K matrices load as Q6_K holding the same weights (Q3KToQ6K) and run like the dequantized file too. */
    @Test
    void q3KFileRunsLikeItsDequantizedWeights() throws IOException {
        runsLikeItsDequantizedWeights(GgufKQuantTest::q3kMedium, DType.Q6_K, "q3_k_m.gguf", 0.5);
    }

    /** projections: what the Q4_K (Q3_K, Q2_K) projections load as; maxFromSource: how far 2- to 6-bit weights may move the logits. */
    private void runsLikeItsDequantizedWeights(Function<String, GgmlType> types, DType projections, String file, double maxFromSource)
            throws IOException {
        try (EarlyExitModel source = EarlyExitModel.create(config(), Device.CPU, 11)) {
            Path quantFile = write(source, types, file);
            try (ModelCheckpoint.Loaded quant = GgufModelLoader.load(quantFile, Device.CPU)) {
                EarlyExitModel q = quant.model();
                Map<String, Tensor> p = q.parameters().all();
                assertEquals(projections, p.get("model.layers.0.self_attn.q_proj.weight").dtype());
                assertEquals(projections, p.get("model.layers.1.mlp.up_proj.weight").dtype());
                assertEquals(DType.valueOf(types.apply("blk.1.ffn_down.weight").name()), p.get("model.layers.1.mlp.down_proj.weight").dtype());
                assertEquals(DType.Q6_K, p.get("lm_head.weight").dtype());
                assertEquals(DType.F32, p.get("model.embed_tokens.weight").dtype()); // dequantized on load
                assertEquals(DType.F32, p.get("model.norm.weight").dtype());

                // The same weights dequantized, through an F32 file (written from the quantized model's values).
                Path f32File = write(q, name -> GgmlType.F32, "dequantized.gguf");
                try (ModelCheckpoint.Loaded deq = GgufModelLoader.load(f32File, Device.CPU)) {
                    EarlyExitModel f = deq.model();
                    for (var e : p.entrySet()) {
                        assertArrayEquals(e.getValue().toFloatArray(), f.parameters().get(e.getKey()).toFloatArray(), e.getKey());
                    }
                    int[] prompt = tokenizer.encode("the lazy fox runs", true);
                    float[] want = GgufModelLoaderTest.logits(f, prompt), got = GgufModelLoaderTest.logits(q, prompt);
                    double err = GgufModelLoaderTest.relError(want, got);
                    assertTrue(err < 1e-4, "k-quant vs dequantized logits relative error " + err);
                    double max = 0;
                    for (float v : want) max = Math.max(max, Math.abs(v));
                    assertArrayEquals(want, got, (float) (1e-4 * max));
                    // ... while 4- to 6-bit weights do move them away from the unquantized source model's.
                    double fromSource = GgufModelLoaderTest.relError(GgufModelLoaderTest.logits(source, prompt), got);
                    assertTrue(fromSource > 1e-3 && fromSource < maxFromSource, "k-quant vs source logits relative error " + fromSource);

                    // Greedy generation (the lean decode path), alone and as a batch of two prompts.
                    assertArrayEquals(GgufModelLoaderTest.greedy(f, prompt, 12), GgufModelLoaderTest.greedy(q, prompt, 12));
                    List<int[]> prompts = List.of(prompt, tokenizer.encode("a brown dog", true));
                    var fb = new Generator(f).generate(prompts, GenerationConfig.greedy(8), TokenListener.NONE);
                    var qb = new Generator(q).generate(prompts, GenerationConfig.greedy(8), TokenListener.NONE);
                    for (int i = 0; i < prompts.size(); i++) assertArrayEquals(fb.get(i).tokenIds(), qb.get(i).tokenIds(), "prompt " + i);
                }
            }
        }
    }
}
