package dev.exeunt.model.checkpoint;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.data.Prepare;
import dev.exeunt.model.io.TokenDatasetReader;
import dev.exeunt.model.io.TokenDatasetWriter;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.TokenizerHash;
import dev.exeunt.model.tokenizer.TokenizerMismatchException;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * A model, its tokenizer and its data belong together: the tokenizer hash recorded in config.json and in
 * the dataset's Arrow metadata refuses foreign tokenizers and datasets (unless forced) and accepts files
 * that record none.
 */
@ExtendWith(LeakCheck.class)
class TokenizerBindingTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final BpeTokenizer TOK = BpeTrainer.train(List.of("the quick brown fox jumps over the lazy dog ".repeat(20)), 300,
            List.of("<|endoftext|>"));

    static Path saved(Path dir) throws IOException {
        try (var m = EarlyExitModel.create(ModelCheckpointTest.config(TOK.vocabSize()), Device.CPU, 3)) {
            ModelCheckpoint.save(m, TOK, dir);
        }
        return dir;
    }

    /** The same vocabulary size, but two tokens' ids swapped: a different id mapping. */
    static String foreignTokenizerJson() throws IOException {
        ObjectNode root = (ObjectNode) JSON.readTree(HfTokenizerJson.toJson(TOK));
        ObjectNode vocab = (ObjectNode) root.path("model").path("vocab");
        int a = vocab.get("a").asInt(), b = vocab.get("b").asInt();
        vocab.put("a", b);
        vocab.put("b", a);
        return JSON.writeValueAsString(root);
    }

    @Test
    void hashIgnoresFormattingButNotTheMapping(@TempDir Path dir) throws IOException {
        String h = TokenizerHash.of(TOK);
        assertTrue(TokenizerHash.isWellFormed(h), h);
        Path compact = dir.resolve("compact.json");
        Files.writeString(compact, JSON.writeValueAsString(JSON.readTree(HfTokenizerJson.toJson(TOK)))); // no indentation
        assertNotEquals(Files.readString(compact), HfTokenizerJson.toJson(TOK));
        assertEquals(h, TokenizerHash.of(HfTokenizerJson.load(compact)));
        assertEquals(h, TokenizerHash.of(TOK.toBuilder().bos(null).eos(null).build()), "BOS/EOS choice is not the id mapping");
        Path foreign = dir.resolve("foreign.json");
        Files.writeString(foreign, foreignTokenizerJson());
        BpeTokenizer f = HfTokenizerJson.load(foreign);
        assertEquals(TOK.vocabSize(), f.vocabSize());
        assertNotEquals(h, TokenizerHash.of(f));
        var fewerMerges = TOK.toBuilder().merges(TOK.merges().subList(0, TOK.merges().size() - 1)).build();
        assertNotEquals(h, TokenizerHash.of(fewerMerges));
    }

    @Test
    void checkpointRecordsItsTokenizer(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp);
        assertEquals(TokenizerHash.of(TOK), JSON.readTree(dir.resolve("config.json").toFile()).path(ConfigJson.TOKENIZER_HASH).asText());
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
            assertEquals(TokenizerHash.of(TOK), loaded.tokenizerHash());
        }
    }

    @Test
    void foreignTokenizerOfTheSameSizeIsRefusedUnlessForced(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp);
        Files.writeString(dir.resolve("tokenizer.json"), foreignTokenizerJson());
        var e = assertThrows(TokenizerMismatchException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        String msg = e.getMessage();
        assertTrue(msg.contains(dir.resolve("tokenizer.json").toString()) && msg.contains(TokenizerHash.shortForm(TokenizerHash.of(TOK)))
                && msg.contains("--force"), msg);
        assertThrows(TokenizerMismatchException.class, () -> ModelCheckpoint.tokenizerHash(dir, false));
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU, true)) {
            assertEquals(TokenizerHash.of(TOK), loaded.tokenizerHash(), "the model's data still has to match what it was trained with");
        }
    }

    @Test
    void checkpointWithoutARecordedHashIsAccepted(@TempDir Path tmp) throws IOException {
        Path dir = saved(tmp);
        ObjectNode cfg = (ObjectNode) JSON.readTree(dir.resolve("config.json").toFile());
        cfg.remove(ConfigJson.TOKENIZER_HASH);
        JSON.writeValue(dir.resolve("config.json").toFile(), cfg);
        Files.writeString(dir.resolve("tokenizer.json"), foreignTokenizerJson());
        try (var loaded = ModelCheckpoint.load(dir, Device.CPU)) {
            assertEquals(TokenizerHash.of(loaded.tokenizer()), loaded.tokenizerHash());
        }
        cfg.put(ConfigJson.TOKENIZER_HASH, "md5:1234");
        JSON.writeValue(dir.resolve("config.json").toFile(), cfg);
        var e = assertThrows(IOException.class, () -> ModelCheckpoint.load(dir, Device.CPU));
        assertTrue(e.getMessage().contains(ConfigJson.TOKENIZER_HASH), e.getMessage());
    }

    @Test
    void datasetRecordsItsTokenizerAndForeignOnesAreRefused(@TempDir Path tmp) throws IOException {
        Path text = tmp.resolve("in.txt"), tokJson = tmp.resolve("tokenizer.json"), data = tmp.resolve("data.arrow");
        Files.writeString(text, "the lazy dog\nthe quick fox\n".repeat(30));
        HfTokenizerJson.save(TOK, tokJson);
        Prepare.run(Prepare.Options.builder().input(text).tokenizer(tokJson).output(data).build());
        Path foreign = tmp.resolve("foreign.json");
        Files.writeString(foreign, foreignTokenizerJson());
        String foreignHash = TokenizerHash.of(HfTokenizerJson.load(foreign));
        try (var r = TokenDatasetReader.open(data)) {
            assertEquals(TokenizerHash.of(TOK), r.tokenizerHash());
            assertEquals(tokJson.toString(), r.metadata(TokenDatasetWriter.TOKENIZER_PATH));
            assertFalse(r.checkTokenizer(TokenizerHash.of(TOK), "the model m uses", false));
            assertFalse(r.checkTokenizer(null, "a model without a hash", false));
            var e = assertThrows(TokenizerMismatchException.class, () -> r.checkTokenizer(foreignHash, "the model m uses", false));
            String msg = e.getMessage();
            assertTrue(msg.startsWith("dataset " + data + " was tokenized with tokenizer " + TokenizerHash.shortForm(TokenizerHash.of(TOK))
                    + " (" + tokJson + ") but the model m uses " + TokenizerHash.shortForm(foreignHash)) && msg.endsWith("--force to use them together"), msg);
            assertTrue(r.checkTokenizer(foreignHash, "the model m uses", true));
        }
        Path plain = tmp.resolve("plain.arrow");
        TokenDatasetWriter.write(plain, TokenDatasetWriter.Options.DEFAULT, null, w -> w.add(new int[] {1, 2, 3}));
        try (var r = TokenDatasetReader.open(plain)) {
            assertNull(r.tokenizerHash());
            assertFalse(r.checkTokenizer(foreignHash, "the model m uses", false), "datasets from elsewhere carry no hash and pass");
        }
    }
}
