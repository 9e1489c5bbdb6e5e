package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code bench decode --model}: llama-bench's pp and tg rows on a given checkpoint or GGUF file, in llama-bench's JSON fields. */
class BenchDecodeModelCliTest {
    @TempDir
    Path tmp;

    @Test
    void ppAndTgRowsOfACheckpointAndItsGguf() throws Exception {
        String dir = GenerateLayoutCliTest.writeModel(tmp.resolve("tiny"));
        Path gguf = tmp.resolve("tiny-q8.gguf");
        assertEquals(0, CliEndToEndTest.exeunt("export-gguf", "--model", dir, "--out", gguf.toString(), "--outtype", "q8_0").code());
        for (String model : new String[] {dir, gguf.toString()}) {
            var run = CliEndToEndTest.exeunt("bench", "decode", "--model", model, "--prompt", "8", "--generate", "4", "--repeats", "2", "--json");
            assertEquals(0, run.code(), run.err());
            var rows = new com.fasterxml.jackson.databind.ObjectMapper().readTree(run.out()); // one row per line, as llama-bench -o json
            assertEquals(2, rows.size(), rows.toString());
            assertEquals(8, rows.get(0).get("n_prompt").asInt());
            assertEquals(0, rows.get(0).get("n_gen").asInt());
            assertEquals(4, rows.get(1).get("n_gen").asInt());
            for (var r : rows) {
                for (String f : new String[] {"avg_ts", "stddev_ts", "median_ts", "samples_ts", "model_size", "model_n_params"}) assertTrue(r.has(f), f + " in " + r);
                assertTrue(r.get("avg_ts").asDouble() > 0 && r.get("samples_ts").size() == 2, r.toString());
                assertEquals(Path.of(model).getFileName().toString(), r.get("model_type").asText());
            }
            // rows name the type the weights are held in: a GPT-2 GGUF's Q8_0 matrices load dequantized (Conv1D layout)
            assertEquals("F32", rows.get(0).get("weight_type").asText(), rows.toString());
        }
        var missing = CliEndToEndTest.exeunt("bench", "decode", "--model", tmp.resolve("nope.gguf").toString());
        assertNotEquals(0, missing.code());
        assertTrue(missing.err().contains("does not exist"), missing.err());
    }

    @Test
    void theRandomModelWrittenAsGgufLoadsBackWithItsWeightsAndAByteVocabulary() throws Exception {
        var config = dev.exeunt.model.config.ModelConfig.llama(300, 64, 2, 4, 2, 128, 64, java.util.List.of());
        Path file = tmp.resolve("random.gguf");
        dev.exeunt.bench.DecodeBench.writeGguf(config, file);
        var cfg = dev.exeunt.model.generate.GenerationConfig.greedy(12);
        var prompt = java.util.List.of(new int[] {1, 70, 101, 33, 299});
        try (var written = dev.exeunt.bench.DecodeBench.randomModel(config, dev.exeunt.tensor.DType.F32, 1);
             var loaded = dev.exeunt.model.ModelLoader.load(file, dev.exeunt.tensor.Device.CPU)) {
            var tok = loaded.tokenizer();
            assertTrue(tok instanceof dev.exeunt.model.tokenizer.SpmTokenizer, String.valueOf(tok));
            assertEquals(300, tok.vocabSize());
            assertEquals("<0x41>", tok.tokenText(3 + 'A'));
            assertEquals(java.util.Arrays.toString(new dev.exeunt.model.generate.Generator(written).generate(prompt, cfg, dev.exeunt.model.generate.TokenListener.NONE).get(0).tokenIds()),
                    java.util.Arrays.toString(new dev.exeunt.model.generate.Generator(loaded.model()).generate(prompt, cfg, dev.exeunt.model.generate.TokenListener.NONE).get(0).tokenIds()),
                    "the file generates the in-memory model's tokens");
        }
        var wrongName = CliEndToEndTest.exeunt("bench", "decode", "--write-gguf", tmp.resolve("x.bin").toString());
        assertNotEquals(0, wrongName.code());
        assertTrue(wrongName.err().contains("must name a .gguf file"), wrongName.err());
        var both = CliEndToEndTest.exeunt("bench", "decode", "--write-gguf", tmp.resolve("y.gguf").toString(), "--types", "q8_0");
        assertNotEquals(0, both.code());
        assertTrue(both.err().contains("takes no --model or --types"), both.err());
    }
}
