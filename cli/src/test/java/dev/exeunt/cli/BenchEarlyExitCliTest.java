package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * {@code bench early-exit --json} on a tiny shape: a row per weight type and rate with the fields the
 * issue names; the forced rates are what the tokens did, and the ideal speedup follows the weights read
 * (below 1 at rate 0, where every check is paid and nothing is saved; above it at rate 0.75).
 */
class BenchEarlyExitCliTest {
    @Test
    void rowsPerTypeAndRateWithTheIdealSpeedup() throws Exception {
        var rows = CliEndToEndTest.json(CliEndToEndTest.exeunt("bench", "early-exit", "--dim", "32", "--layers", "8", "--heads", "2",
                "--ffn", "64", "--vocab", "256", "--generate", "40", "--repeats", "1", "--types", "f32,q8_0", "--rates", "0,0.75", "--json"));
        assertEquals(4, rows.size(), rows.toString());
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
        assertEquals("q8_0", rows.get(2).get("weight_type").asText());
    }
}
