package dev.exeunt.cli;

import static dev.exeunt.cli.CliEndToEndTest.exeunt;
import static dev.exeunt.cli.CliEndToEndTest.json;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.tokenizer.HfTokenizerJson;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code tokenize}: a checkpoint's or a tokenizer file's ids and tokens for a text, the round trip, and refusals that name the problem. */
class TokenizeCommandTest {
    @TempDir
    Path tmp;

    @Test
    void idsTokensAndTheRoundTripOfACheckpointsTokenizer() throws Exception {
        String dir = GenerateLayoutCliTest.writeModel(tmp.resolve("model"));
        String text = "the lazy dog jumps <|endoftext|>";
        var j = json(exeunt("tokenize", "--model", dir, "--text", text, "--json"));
        int[] want = SpeculativeCliTest.TOK.encode(text);
        int[] ids = new int[j.get("ids").size()];
        for (int i = 0; i < ids.length; i++) ids[i] = j.get("ids").get(i).intValue();
        assertArrayEquals(want, ids);
        assertEquals(ids.length, j.get("count").intValue());
        assertEquals(ids.length, j.get("tokens").size());
        assertEquals(SpeculativeCliTest.TOK.tokenText(want[0]), j.get("tokens").get(0).textValue());
        assertTrue(j.get("round_trip").booleanValue(), j.toString());
        assertEquals(text, j.get("text").textValue());
        // the special token is one id unless --no-special
        var plain = json(exeunt("tokenize", "--model", dir, "--text", text, "--no-special", "--json"));
        assertTrue(plain.get("count").intValue() > ids.length, plain.toString());
        var human = exeunt("tokenize", "--model", dir, "--text", "the dog");
        assertEquals(0, human.code(), human.err());
        assertTrue(human.out().contains("round trip identical"), human.out());
    }

    @Test
    void aTokenizerFileWithItsBos() throws Exception {
        Path file = Path.of(TokenizeCommandTest.class.getResource("/tokenizer/llama2-tiny.json").toURI());
        var tok = HfTokenizerJson.load(file);
        var j = json(exeunt("tokenize", "--tokenizer", file.toString(), "--text", "Hello world", "--add-bos", "--json"));
        assertEquals(tok.bosId().getAsInt(), j.get("ids").get(0).intValue());
        assertTrue(j.get("round_trip").booleanValue(), j.toString());
        Path text = Files.writeString(tmp.resolve("in.txt"), "Hello world");
        var fromFile = json(exeunt("tokenize", "--tokenizer", file.toString(), "--file", text.toString(), "--json"));
        assertEquals(j.get("count").intValue() - 1, fromFile.get("count").intValue());
    }

    @Test
    void refusalsNameTheProblem() throws Exception {
        var both = exeunt("tokenize", "--model", "a", "--tokenizer", "b", "--text", "x");
        assertNotEquals(0, both.code());
        assertTrue(both.err().contains("exactly one of --model and --tokenizer"), both.err());
        Files.createDirectories(tmp.resolve("empty"));
        var none = exeunt("tokenize", "--model", tmp.resolve("empty").toString(), "--text", "x");
        assertNotEquals(0, none.code());
        assertTrue(none.err().contains("has no tokenizer.json"), none.err());
    }
}
