package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The command line end to end on real text (this module's own sources): prepare, train without exits,
 * tune exits onto the result, then eval, generate and sweep the tuned model, all with --json.
 */
class CliEndToEndTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    record Run(int code, String out, String err) {}

    static Run exeunt(String... args) {
        var out = new ByteArrayOutputStream();
        var err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static JsonNode json(Run r) throws Exception {
        assertEquals(0, r.code(), r.err());
        return JSON.readTree(r.out().lines().filter(l -> l.startsWith("{") || l.startsWith("[")).reduce((a, b) -> b).orElseThrow());
    }

    @Test
    void prepareTrainTuneEvalGenerateSweep(@TempDir Path tmp) throws Exception {
        Path corpus = tmp.resolve("corpus");
        Files.createDirectories(corpus);
        try (Stream<Path> files = Files.walk(Path.of("src/main/java"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).toList()) {
                Files.copy(p, corpus.resolve(p.getFileName().toString() + ".txt"));
            }
        }
        String data = tmp.resolve("data/train.arrow").toString();
        var prep = json(exeunt("prepare", "--input", corpus.toString(), "--train-tokenizer", "400", "--out", data, "--json"));
        assertTrue(prep.get("tokens").asLong() > 10_000, prep.toString());

        String base = tmp.resolve("base").toString();
        var train = json(exeunt("train", "--data", data, "--out", base, "--layers", "2", "--d-model", "32", "--heads", "2",
                "--seq-len", "32", "--batch", "4", "--iters", "12", "--exits", "", "--json"));
        assertEquals(12, train.get("iterations").asInt());
        // eval scores the held-out windows by default: exactly what training's last validation scored
        var trained = new com.fasterxml.jackson.databind.ObjectMapper().readTree(Files.readAllLines(Path.of(base, "eval_log.jsonl")).getLast()).get("eval");
        var held = exeunt("eval", "--model", base, "--data", data, "--seq-len", "32", "--batch", "4", "--batches", "8", "--json");
        assertEquals(trained.get("final").get("loss").asDouble(), json(held).get("final").get("loss").asDouble(), 1e-5);
        var all = json(exeunt("eval", "--model", base, "--data", data, "--seq-len", "32", "--batch", "4", "--batches", "8", "--split", "all", "--json"));
        assertTrue(Math.abs(all.get("final").get("loss").asDouble() - trained.get("final").get("loss").asDouble()) > 1e-4,
                "--split all starts at the first (training) windows");

        String tuned = tmp.resolve("tuned").toString();
        var tune = json(exeunt("tune", "--model", base, "--data", data, "--exits", "1", "--exit-kind", "norm", "--init", "copy",
                "--out", tuned, "--seq-len", "32", "--batch", "4", "--iters", "6", "--json"));
        assertEquals(6, tune.get("iterations").asInt());

        var eval = json(exeunt("eval", "--model", tuned, "--data", data, "--batches", "2", "--json"));
        assertEquals(1, eval.get("exits").get(0).get("layer").asInt());
        assertTrue(eval.get("final").get("loss").asDouble() > 0);

        var gen = json(exeunt("generate", "--model", tuned, "--prompt", "public class", "--max-new-tokens", "8",
                "--threshold", "0.01", "--json"));
        assertEquals(gen.get("tokens").size(), gen.get("exits").size());
        for (JsonNode e : gen.get("exits")) assertTrue(e.asInt() == 1 || e.asInt() == 2, gen.toString());
        assertTrue(gen.get("tokens_per_s").asDouble() > 0);

        var sweep = json(exeunt("sweep", "--model", tuned, "--data", data, "--thresholds", "1,0.5", "--max-new-tokens", "4",
                "--num-prompts", "2", "--prompt-tokens", "8", "--repeats", "1", "--out", tmp.resolve("sweep").toString(), "--json"));
        assertEquals(2, sweep.size());
        assertEquals(1.0, sweep.get(0).get("agreement").asDouble(), 1e-9);
        assertTrue(Files.readString(tmp.resolve("sweep/sweep.svg")).startsWith("<svg"));
    }

    @Test
    void badInputGivesClearErrorsAndExitCodes(@TempDir Path tmp) {
        var unknown = exeunt("train", "--data", "x.arrow", "--out", tmp.toString(), "--learning-rate", "1");
        assertEquals(2, unknown.code());
        assertTrue(unknown.err().contains("--learning-rate"), unknown.err());
        var missing = exeunt("generate", "--model", tmp.resolve("nope").toString(), "--prompt", "x");
        assertEquals(1, missing.code());
        assertTrue(missing.err().contains("does not exist"), missing.err());
        assertEquals(2, exeunt("frobnicate").code());
    }
}
