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
}
