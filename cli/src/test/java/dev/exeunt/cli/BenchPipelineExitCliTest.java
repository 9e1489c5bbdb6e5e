package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * {@code bench pipeline-exit --json} on a tiny shape: a row per stage count and rate with both methods'
 * tokens/s; tokens that exit on stage 0 leave the later stages cache-filling work (none at rate 0), and
 * the overlap is a fraction.
 */
class BenchPipelineExitCliTest {
    @Test
    void rowsPerStageCountAndRate() throws Exception {
        var rows = CliEndToEndTest.json(CliEndToEndTest.exeunt("bench", "pipeline-exit", "--dim", "32", "--layers", "4", "--heads", "2",
                "--ffn", "64", "--vocab", "128", "--generate", "16", "--repeats", "1", "--pp", "2,4", "--rates", "0,0.75", "--json"));
        assertEquals(4, rows.size(), rows.toString());
        for (var r : rows) {
            for (String f : new String[] {"stages", "exit_rate", "recompute_tokens_per_s", "pipeline_tokens_per_s", "speedup", "fill_ms_per_token",
                    "overlap"}) {
                assertTrue(r.has(f), f + " in " + r);
            }
            assertTrue(r.get("recompute_tokens_per_s").asDouble() > 0 && r.get("pipeline_tokens_per_s").asDouble() > 0, r.toString());
            double overlap = r.get("overlap").asDouble(), fill = r.get("fill_ms_per_token").asDouble();
            assertTrue(overlap >= 0 && overlap <= 1, r.toString());
            if (r.get("exit_rate").asDouble() == 0) assertEquals(0, fill, r.toString());
            else assertTrue(fill > 0, "tokens exiting on stage 0 leave fill work on the later stages: " + r);
        }
        assertEquals(4, rows.get(3).get("stages").asInt());
    }

    @Test
    void stageCountsThatCannotCutTheModelAreRefused() {
        var r = CliEndToEndTest.exeunt("bench", "pipeline-exit", "--layers", "4", "--dim", "32", "--heads", "2", "--ffn", "64", "--vocab", "128",
                "--pp", "8");
        assertTrue(r.code() != 0 && r.err().contains("--pp must list stage counts in 2..4"), r.err());
    }
}
