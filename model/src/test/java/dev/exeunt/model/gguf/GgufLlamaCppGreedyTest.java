package dev.exeunt.model.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Greedy tokens against llama.cpp's own engine on the same files ({@code gguf-reference/llamacpp.txt}, written by
 * {@code make_llamacpp_fixtures.sh} with llama.cpp's llama-quantize and llama_decode): the F32 file and its gguf-py
 * Q8_0 / Q4_0 versions, and k-quant files as llama-quantize writes them (Q4_K_M and Q5_K_M mixing Q6_K tensors in,
 * Q6_K, Q4_0 with a Q6_K output tensor, and Q2_K with Q3_K tensors and a Q6_K output). llama.cpp multiplies quantized weights by 8-bit quantized activations
 * where Exeunt keeps them in floats, so a step whose top two logits (in llama.cpp) are closer than {@link #GAP} may
 * go either way: each prompt is compared up to its first such step, and those prefixes must hold a third of the tokens
 * or more (21 to 48 of 48 here).
 */
@ExtendWith(LeakCheck.class)
class GgufLlamaCppGreedyTest {
    /** Top-2 logit gap below which llama.cpp's activation rounding may decide a quantized file's token. */
    private static final double GAP = 0.05;
    /** The F32 file's gap floor: both sides are float32, only summation orders differ. */
    private static final double GAP_F32 = 1e-3;

    private static Path dir() throws URISyntaxException {
        return Path.of(GgufLlamaCppGreedyTest.class.getResource("/gguf-reference/llamacpp.txt").toURI()).getParent();
    }

    private static int[] ints(String s) {
        return Arrays.stream(s.trim().split(" ")).mapToInt(Integer::parseInt).toArray();
    }

    /** A llama.cpp run: its tokens and each step's top-2 logit gap. */
    private record Run(int[] tokens, double[] gaps) {
        static Run parse(String s) {
            String[] items = s.trim().split(" ");
            int[] t = new int[items.length];
            double[] g = new double[items.length];
            for (int i = 0; i < items.length; i++) {
                String[] tg = items[i].split("/");
                t[i] = Integer.parseInt(tg[0]);
                g[i] = Double.parseDouble(tg[1]);
            }
            return new Run(t, g);
        }

        /** Tokens before the first step whose gap is under min. */
        int trusted(double min) {
            int n = 0;
            while (n < gaps.length && gaps[n] >= min) n++;
            return n;
        }
    }

    private static Set<DType> weightTypes(EarlyExitModel m) {
        Set<DType> types = EnumSet.noneOf(DType.class);
        for (var layer : m.layers()) {
            var a = layer.attn();
            var mlp = layer.mlp();
            for (var l : Arrays.asList(a.qkv(), a.q(), a.k(), a.v(), a.out(), mlp.gate(), mlp.up(), mlp.fc(), mlp.proj())) {
                if (l != null) types.add(l.weight().dtype());
            }
        }
        types.add(m.lmHead().dtype());
        return types;
    }

    @Test
    void greedyTokensEqualLlamaCppsOnTheSameFiles() throws Exception {
        List<int[]> prompts = new ArrayList<>();
        for (String line : Files.readAllLines(dir().resolve("expected.txt"))) {
            if (line.startsWith("prompt ")) prompts.add(ints(line.split(":", 2)[1]));
        }
        Map<String, List<Run>> runs = new LinkedHashMap<>();
        for (String line : Files.readAllLines(dir().resolve("llamacpp.txt"))) {
            if (line.startsWith("#")) continue;
            String[] kv = line.split(":", 2);
            runs.computeIfAbsent(kv[0].split(" ")[0], k -> new ArrayList<>()).add(Run.parse(kv[1]));
        }
        Map<String, Set<DType>> types = Map.of(
                "llama-f32.gguf", EnumSet.of(DType.F32), "llama-q8_0.gguf", EnumSet.of(DType.Q8_0), "llama-q4_0.gguf", EnumSet.of(DType.Q4_0),
                "kquant-q4_k_m.gguf", EnumSet.of(DType.Q4_K, DType.Q6_K), "kquant-q5_k_m.gguf", EnumSet.of(DType.Q5_K, DType.Q6_K),
                "kquant-q6_k.gguf", EnumSet.of(DType.Q6_K), "kquant-q4_0.gguf", EnumSet.of(DType.Q4_0, DType.Q6_K),
                "kquant-q2_k.gguf", EnumSet.of(DType.Q2_K, DType.Q6_K)); // its Q3_K tensors load as Q6_K
        assertEquals(types.keySet(), runs.keySet(), "files in llamacpp.txt");
        for (var e : runs.entrySet()) {
            String file = e.getKey();
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(dir().resolve(file), Device.CPU)) {
                var model = loaded.model();
                assertEquals(types.get(file), weightTypes(model), file + ": the weight types llama-quantize wrote, kept in memory");
                var gen = new Generator(model);
                var out = gen.generate(prompts, GenerationConfig.greedy(e.getValue().get(0).tokens().length), TokenListener.NONE);
                double min = file.contains("f32") ? GAP_F32 : GAP;
                int compared = 0, total = 0;
                for (int i = 0; i < prompts.size(); i++) {
                    Run run = e.getValue().get(i);
                    int n = run.trusted(min);
                    assertArrayEquals(Arrays.copyOf(run.tokens(), n), Arrays.copyOf(out.get(i).tokenIds(), n),
                            file + ", prompt " + i + ": the first " + n + " tokens (llama.cpp's gaps there >= " + min + ")");
                    compared += n;
                    total += run.tokens().length;
                }
                assertTrue(compared * 3 >= total, file + ": only " + compared + " of " + total + " tokens had clear gaps");
                if (file.contains("f32")) assertEquals(total, compared, "every F32 step has a clear gap");
            }
        }
    }
}
