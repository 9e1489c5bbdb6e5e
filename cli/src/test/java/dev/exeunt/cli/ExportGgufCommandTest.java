package dev.exeunt.cli;

import static dev.exeunt.cli.CliEndToEndTest.exeunt;
import static dev.exeunt.cli.CliEndToEndTest.json;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code export-gguf}: the exported file generates the checkpoint's tokens and exits; the backbone alone; refusals. */
class ExportGgufCommandTest {
    @TempDir
    Path tmp;

    private static JsonNode generate(String model) throws Exception {
        return json(exeunt("generate", "--model", model, "--prompt-ids", "5,6,7", "--max-new-tokens", "16", "--threshold", "0.4",
                "--temperature", "0", "--json"));
    }

    @Test
    void exportedFileGeneratesTheCheckpointsTokensAndExits() throws Exception {
        String dir = GenerateLayoutCliTest.writeModel(tmp.resolve("model"));
        Path file = tmp.resolve("model.gguf");
        var r = exeunt("export-gguf", "--model", dir, "--out", file.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("F32="), r.out());
        JsonNode a = generate(dir), b = generate(file.toString());
        assertEquals(a.get("tokens"), b.get("tokens"));
        assertEquals(a.get("exits"), b.get("exits"));
        assertTrue(a.get("exits").toString().contains("1"), "an exit fired, so the exits took part: " + a.get("exits"));
        var ids = json(exeunt("tokenize", "--model", file.toString(), "--text", "the lazy dog", "--json"));
        assertEquals(json(exeunt("tokenize", "--model", dir, "--text", "the lazy dog", "--json")).get("ids"), ids.get("ids"));

        Path backbone = tmp.resolve("backbone-q8.gguf");
        r = exeunt("export-gguf", "--model", dir, "--out", backbone.toString(), "--outtype", "q8_0", "--no-exits");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("Q8_0="), r.out());
        assertTrue(Files.size(backbone) < Files.size(file) / 2, "q8_0 matrices take about a quarter of f32's bytes");
        JsonNode c = generate(backbone.toString());
        assertEquals(16, c.get("tokens").size());
        assertTrue(c.get("exits").toString().matches("\\[(4,)*4]"), "no exits in a backbone file: " + c.get("exits"));
    }

    @Test
    void refusalsNameTheProblem() throws Exception {
        String dir = GenerateLayoutCliTest.writeModel(tmp.resolve("model"));
        var r = exeunt("export-gguf", "--model", dir, "--out", tmp.resolve("m.gguf").toString(), "--outtype", "q5_k");
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("unknown --outtype 'q5_k'"), r.err());
        r = exeunt("export-gguf", "--model", dir, "--out", tmp.resolve("m.bin").toString());
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("--out must name a .gguf file"), r.err());
        r = exeunt("export-gguf", "--model", tmp.resolve("missing").toString(), "--out", tmp.resolve("m.gguf").toString());
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("does not exist"), r.err());
    }
}
