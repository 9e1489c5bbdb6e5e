package dev.exeunt.cli;

import static dev.exeunt.cli.CliEndToEndTest.exeunt;
import static dev.exeunt.cli.CliEndToEndTest.json;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The demo end to end at a tiny size: its thresholded sweep, then its speculative sweep and the line comparing them. */
class DemoCommandTest {
    @Test
    void theDemoEndsWithTheSpeculativeSpeedupBesideTheThresholdedOne(@TempDir Path tmp) throws Exception {
        Path corpus = tmp.resolve("corpus");
        Files.createDirectories(corpus);
        try (Stream<Path> files = Files.walk(Path.of("src/main/java"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).toList()) Files.copy(p, corpus.resolve(p.getFileName() + ".txt"));
        }
        // prompts of 32 held-out tokens plus 128 generated must fit the context
        List<String> tiny = List.of("demo", "--data", corpus.toString(), "--limit-mb", "0.2", "--iters", "3", "--layers", "2", "--d-model", "32",
                "--heads", "2", "--exits", "1", "--seq-len", "192", "--batch", "2", "--eval-batches", "1", "--out", tmp.resolve("out").toString());

        var text = exeunt(tiny.toArray(String[]::new));
        assertEquals(0, text.code(), text.err());
        assertTrue(text.out().contains("lossless self-speculative decoding"), text.out());
        String last = text.out().lines().filter(l -> l.startsWith("Speculative decoding at threshold")).findFirst().orElse("");
        assertTrue(last.matches("Speculative decoding at threshold 0\\.(40|20|10|05): \\d+\\.\\d\\dx, \\d+\\.\\d% identical tokens "
                + "\\((acceptance \\d+%|nothing drafted)\\)"), text.out());

        // the tokenized corpus stays beside the checkpoint, for the README's sweep line
        Path data = tmp.resolve("out/data.arrow");
        assertTrue(Files.exists(data), text.out());
        var sweep = exeunt("sweep", "--model", tmp.resolve("out").toString(), "--data", data.toString(), "--num-prompts", "1", "--prompt-tokens", "8",
                "--max-new-tokens", "4", "--repeats", "1", "--thresholds", "1,0.5");
        assertEquals(0, sweep.code(), sweep.err());

        var args = new java.util.ArrayList<>(tiny);
        args.add("--json");
        JsonNode demo = json(exeunt(args.toArray(String[]::new)));
        double t = demo.get("speculative_threshold").doubleValue();
        assertTrue(t == 0.4 || t == 0.2 || t == 0.1 || t == 0.05, demo.toString());
        assertTrue(demo.get("speculative_speedup").doubleValue() > 0, demo.toString());
        assertEquals(1.0, demo.get("speculative_agreement").doubleValue(), 1e-9, "speculative output is the full model's: " + demo);
        JsonNode rows = demo.get("speculative_sweep");
        assertEquals(4, rows.size(), demo.toString());
        double best = 0;
        for (JsonNode row : rows) {
            assertTrue(row.get("speculative").booleanValue(), row.toString());
            assertEquals(1, row.get("acceptance").size(), row.toString());
            var acc = row.get("acceptance").get(0);
            assertTrue(acc.get("drafted").longValue() >= acc.get("accepted").longValue() && acc.get("accepted").longValue() >= 0, row.toString());
            best = Math.max(best, row.get("speedup").doubleValue());
        }
        assertEquals(best, demo.get("speculative_speedup").doubleValue(), 1e-3, "the best speculative row is reported");
        for (JsonNode row : demo.get("sweep")) assertFalse(row.get("speculative").booleanValue(), row.toString());
    }
}
