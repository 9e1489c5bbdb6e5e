package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code train --pp 2} (and {@code --pp 2 --tp 2}) validates as one rank does: {@code eval_log.jsonl}
 * has one rank's lines, numbers within 1e-5 relative plus the log's 6-decimal rounding, and the
 * command's result carries the last validation.
 */
class TrainPipelineValidationCliTest {
    private static List<String> evalLog(String data, Path out, String... layout) throws Exception {
        List<String> a = new java.util.ArrayList<>(List.of("train", "--data", data, "--out", out.toString(), "--layers", "2",
                "--d-model", "32", "--heads", "2", "--seq-len", "16", "--iters", "2", "--exits", "1", "--exit-kind", "mlp",
                "--exit-weight", "0.5", "--batch", "8", "--micro-batch-size", "2", "--eval-every", "1", "--eval-batches", "2",
                "--val-fraction", "0.2", "--json"));
        a.addAll(List.of(layout));
        var result = CliEndToEndTest.json(CliEndToEndTest.exeunt(a.toArray(String[]::new)));
        List<String> log = Files.readAllLines(out.resolve("eval_log.jsonl"));
        // The command's result reports the last validation (world rank 0's, a stage under pp).
        assertTrue(result.get("eval").isObject(), result.toString());
        var last = new ObjectMapper().readTree(log.getLast()).get("eval");
        assertEquals(last.get("final").get("loss").asDouble(), result.get("eval").get("final").get("loss").asDouble(), result.toString());
        return log;
    }

    @Test
    void pipelineStagesWriteOneRanksValidation(@TempDir Path tmp) throws Exception {
        String data = TrainDataParallelCliTest.prepare(tmp);
        List<String> one = evalLog(data, tmp.resolve("one"));
        assertEquals(2, one.size());
        for (String[] layout : new String[][] {{"--pp", "2"}, {"--pp", "2", "--tp", "2"}}) {
            List<String> got = evalLog(data, tmp.resolve(String.join("", layout)), layout);
            assertEquals(one.size(), got.size(), String.join(" ", layout));
            for (int l = 0; l < one.size(); l++) {
                Matcher a = TrainDataParallelCliTest.NUMBER.matcher(one.get(l)), b = TrainDataParallelCliTest.NUMBER.matcher(got.get(l));
                int numbers = 0;
                while (a.find()) {
                    assertTrue(b.find(), got.get(l));
                    double x = Double.parseDouble(a.group()), y = Double.parseDouble(b.group());
                    assertEquals(x, y, 1e-5 * Math.abs(x) + 1e-6, String.join(" ", layout) + " line " + l + ": " + got.get(l) + " vs " + one.get(l));
                    numbers++;
                }
                assertFalse(b.find(), got.get(l));
                assertTrue(numbers >= 8, one.get(l)); // iter, tokens, final loss and perplexity, the exit's layer, loss, perplexity, agreement
            }
        }
    }
}
