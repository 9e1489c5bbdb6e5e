package dev.exeunt.model.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * GGUF files written by llama.cpp's own gguf-py (F32, and Q8_0 / Q4_0 from its quantizers) generate the
 * greedy tokens of a float64 forward written in llama.cpp's conventions (adjacent-pair RoPE on the weights
 * as stored, grouped-query heads): see {@code gguf-reference/make_reference.py}, which wrote the files and
 * {@code expected.txt}. Unlike the round trips through Exeunt's own writer, this catches a convention both
 * sides could share by mistake (the q/k permutation, the dims order, a quantized block layout). One prompt
 * is long enough for the prompt pass's blocked GEMM, the other goes through the row kernels.
 */
@ExtendWith(LeakCheck.class)
class GgufReferenceGreedyTest {
    private static Path dir() throws URISyntaxException {
        return Path.of(GgufReferenceGreedyTest.class.getResource("/gguf-reference/expected.txt").toURI()).getParent();
    }

    private static int[] ints(String s) {
        return Arrays.stream(s.trim().split(" ")).mapToInt(Integer::parseInt).toArray();
    }

    @Test
    void greedyTokensEqualTheReferenceForwardInEveryType() throws Exception {
        List<int[]> prompts = new ArrayList<>();
        Map<String, List<int[]>> expected = new LinkedHashMap<>();
        for (String line : Files.readAllLines(dir().resolve("expected.txt"))) {
            if (line.startsWith("#")) continue;
            String[] kv = line.split(":", 2);
            if (kv[0].startsWith("prompt ")) prompts.add(ints(kv[1]));
            else expected.computeIfAbsent(kv[0].split(" ")[0], k -> new ArrayList<>()).add(ints(kv[1]));
        }
        assertEquals(3, expected.size(), "fixtures in expected.txt");
        Map<String, DType> typeOf = Map.of("llama-f32.gguf", DType.F32, "llama-q8_0.gguf", DType.Q8_0, "llama-q4_0.gguf", DType.Q4_0);
        assertTrue(prompts.stream().anyMatch(p -> p.length >= 16), "one prompt takes the prompt GEMM");
        for (var e : expected.entrySet()) {
            try (ModelCheckpoint.Loaded loaded = GgufModelLoader.load(dir().resolve(e.getKey()), Device.CPU)) {
                var model = loaded.model();
                assertEquals(typeOf.get(e.getKey()), model.layers().get(0).mlp().proj().weight().dtype(), e.getKey() + " stays quantized");
                int n = e.getValue().get(0).length;
                var gen = new Generator(model);
                var cfg = GenerationConfig.greedy(n);
                for (int i = 0; i < prompts.size(); i++) {
                    int[] alone = gen.generate(List.of(prompts.get(i)), cfg, TokenListener.NONE).get(0).tokenIds();
                    assertArrayEquals(e.getValue().get(i), alone, e.getKey() + ", prompt " + i);
                }
                var batch = gen.generate(prompts, cfg, TokenListener.NONE);
                for (int i = 0; i < prompts.size(); i++) assertArrayEquals(e.getValue().get(i), batch.get(i).tokenIds(), e.getKey() + " batched, prompt " + i);
            }
        }
        // Q8_0's error is small enough to keep the F32 file's tokens here; Q4_0's is not (the reference diverges too).
        for (int i = 0; i < prompts.size(); i++) assertArrayEquals(expected.get("llama-f32.gguf").get(i), expected.get("llama-q8_0.gguf").get(i));
    }
}
