package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.tensor.Device;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** generate with a SentencePiece (Llama-2) tokenizer: the first generated token keeps its leading space; bad lengths and temperatures are refused. */
class GenerateCommandTest {
    private static BpeTokenizer llama2() throws Exception {
        return HfTokenizerJson.load(Path.of(GenerateCommandTest.class.getResource("/tokenizer/llama2-tiny.json").toURI()));
    }

    /** A model whose every head prefers "▁world" (or, with padding rows, those rows). */
    private static Path model(Path dir, BpeTokenizer tok, int paddingRows) throws Exception {
        var cfg = ModelConfig.gpt2(tok.vocabSize() + paddingRows, 16, 2, 2, 64, List.of());
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 1)) {
            int world = tok.idOf("▁world");
            assertTrue(world >= 0);
            if (paddingRows == 0) dev.exeunt.cli.serve.TestRows.favour(m, world);
            else dev.exeunt.cli.serve.TestRows.favour(m, tok.vocabSize(), tok.vocabSize() + paddingRows - 1);
            ModelCheckpoint.save(m, tok, dir);
        }
        return dir;
    }

    @Test
    void theFirstGeneratedTokenKeepsItsLeadingSpace(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, llama2(), 0).toString();
        var text = CliEndToEndTest.exeunt("generate", "--model", dir, "--prompt", "Hello", "--max-new-tokens", "2");
        assertEquals(0, text.code(), text.err());
        assertTrue(text.out().startsWith("Hello world world"), text.out());
        var json = new ObjectMapper().readTree(CliEndToEndTest.exeunt("generate", "--model", dir, "--prompt", "Hello", "--max-new-tokens", "2", "--json").out());
        assertEquals(" world world", json.get("text").textValue());
    }

    @Test
    void paddingRowsAreNeverGenerated(@TempDir Path tmp) throws Exception {
        var tok = llama2();
        var json = CliEndToEndTest.json(CliEndToEndTest.exeunt("generate", "--model", model(tmp, tok, 5).toString(), "--prompt", "Hello",
                "--max-new-tokens", "4", "--json"));
        assertEquals(4, json.get("tokens").size());
        for (var t : json.get("tokens")) assertTrue(t.intValue() < tok.vocabSize(), json.toString());
    }

    @Test
    void lengthsAndTemperaturesThatCannotWorkAreRefused(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, llama2(), 0).toString();
        var huge = CliEndToEndTest.exeunt("generate", "--model", dir, "--prompt", "Hello", "--max-new-tokens", "2147483647");
        assertNotEquals(0, huge.code());
        assertTrue(huge.err().contains("--max-new-tokens 2147483647") && huge.err().contains("context of 64 tokens: at most"), huge.err());
        var cold = CliEndToEndTest.exeunt("generate", "--model", dir, "--prompt", "Hello", "--temperature", "1e-320");
        assertNotEquals(0, cold.code());
        assertTrue(cold.err().contains("--temperature must be 0 (greedy) or >= 1.0E-6"), cold.err());
        var sweep = CliEndToEndTest.exeunt("sweep", "--model", dir, "--prompt", "Hello", "--max-new-tokens", "2147483647", "--repeats", "1");
        assertNotEquals(0, sweep.code());
        assertTrue(sweep.err().contains("--max-new-tokens 2147483647"), sweep.err());
    }
}
