package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.Device;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bench early-exit --json} on a tiny shape: a row per weight type and rate with the fields the
 * issue names; the forced rates are what the tokens did, and the ideal speedup follows the weights read
 * (below 1 at rate 0, where every check is paid and nothing is saved; above it at rate 0.75), and with
 * --kv-fill propagate the ideal also pays the skipped layers' k / v projections (lower, never at rate 0).
 */
class BenchEarlyExitCliTest {
    @Test
    void rowsPerTypeAndRateWithTheIdealSpeedup() throws Exception {
        var rows = CliEndToEndTest.json(CliEndToEndTest.exeunt("bench", "early-exit", "--dim", "32", "--layers", "8", "--heads", "2",
                "--ffn", "64", "--vocab", "256", "--generate", "40", "--repeats", "1", "--types", "f32,q8_0", "--rates", "0,0.75",
                "--kv-fill", "recompute,propagate", "--json"));
        assertEquals(8, rows.size(), rows.toString());
        for (var r : rows) {
            for (String f : new String[] {"weight_type", "exit_rate", "tokens_per_s", "speedup", "ideal_speedup"}) assertTrue(r.has(f), f + " in " + r);
            double rate = r.get("exit_rate").asDouble(), measured = r.get("measured_exit_rate").asDouble(), ideal = r.get("ideal_speedup").asDouble();
            if (rate == 0) {
                assertEquals(0, measured);
                assertTrue(ideal < 1, r.toString());
            } else {
                assertTrue(measured > 0.5 && measured < 0.95, r.toString());
                assertTrue(ideal > 1, r.toString());
            }
            assertTrue(r.get("tokens_per_s").asDouble() > 0);
        }
        assertEquals("q8_0", rows.get(4).get("weight_type").asText());
        for (int t = 0; t < 8; t += 4) { // per type: recompute at 0 and 0.75, then propagate at 0 and 0.75
            assertEquals("recompute", rows.get(t).get("kv_fill").asText());
            assertEquals("propagate", rows.get(t + 2).get("kv_fill").asText());
            assertEquals(rows.get(t).get("ideal_speedup").asDouble(), rows.get(t + 2).get("ideal_speedup").asDouble(), 1e-9);
            double recompute = rows.get(t + 1).get("ideal_speedup").asDouble(), propagate = rows.get(t + 3).get("ideal_speedup").asDouble();
            assertTrue(propagate < recompute && propagate > 1, rows.toString());
        }
        var bad = CliEndToEndTest.exeunt("bench", "early-exit", "--kv-fill", "copy");
        assertTrue(bad.code() != 0 && bad.err().contains("--kv-fill"), bad.err());
    }

    /** --model: a checkpoint's own exits forced (a tied GPT-2, whose head is its embedding), the ideal from its own weights. */
    @Test
    void aCheckpointsOwnExitsForced(@TempDir Path tmp) throws Exception {
        var tok = BpeTrainer.train(List.of("the quick brown fox jumps over the lazy dog ".repeat(20)), 300, List.of("<|endoftext|>"));
        var cfg = ModelConfig.gpt2(tok.vocabSize(), 32, 8, 2, 64, List.of(ExitConfig.post(2, ExitKind.NORM, 1.0), ExitConfig.post(4, ExitKind.NORM, 1.0)));
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 3)) {
            ModelCheckpoint.save(m, tok, tmp.resolve("ckpt"));
        }
        String dir = tmp.resolve("ckpt").toString();
        var rows = CliEndToEndTest.json(CliEndToEndTest.exeunt("bench", "early-exit", "--model", dir, "--generate", "40", "--repeats", "1",
                "--rates", "0,0.75", "--json"));
        assertEquals(2, rows.size(), rows.toString());
        assertEquals("f32", rows.get(0).get("weight_type").asText());
        assertEquals(0, rows.get(0).get("measured_exit_rate").asDouble());
        assertTrue(rows.get(0).get("ideal_speedup").asDouble() < 1, rows.toString());
        double measured = rows.get(1).get("measured_exit_rate").asDouble(), ideal = rows.get(1).get("ideal_speedup").asDouble();
        assertTrue(measured > 0.5 && measured < 0.95 && ideal > 1, rows.toString());
        var tooLong = CliEndToEndTest.exeunt("bench", "early-exit", "--model", dir, "--generate", "64");
        assertTrue(tooLong.code() != 0 && tooLong.err().contains("context of 64"), tooLong.err());
        var types = CliEndToEndTest.exeunt("bench", "early-exit", "--model", dir, "--types", "q8_0");
        assertTrue(types.code() != 0 && types.err().contains("--types"), types.err());
    }
}
