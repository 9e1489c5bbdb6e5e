package dev.exeunt.model.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.GgufFile;
import dev.exeunt.model.io.GgufValue;
import dev.exeunt.model.io.GgufWriter;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.tokenizer.PreTokenizerPatterns;
import dev.exeunt.model.tokenizer.SpmTokenizer;
import dev.exeunt.model.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Tokenizers written into GGUF metadata with {@link GgufWriter} and read back. */
class GgufTokenizerTest {
    @TempDir
    Path dir;

    private Tokenizer roundTrip(GgufWriter w) throws IOException {
        Path p = dir.resolve("tok.gguf");
        w.write(p);
        try (GgufFile f = GgufFile.open(p)) {
            return GgufTokenizers.load(f);
        }
    }

    /** A Llama-2-like SentencePiece vocabulary: unk, bos, eos, 256 byte tokens, then scored pieces. */
    private static GgufWriter spm(boolean addSpacePrefix) {
        List<String> tokens = new ArrayList<>(List.of("<unk>", "<s>", "</s>"));
        List<Integer> types = new ArrayList<>(List.of(2, 3, 3));
        for (int b = 0; b < 256; b++) {
            tokens.add(String.format("<0x%02X>", b));
            types.add(6);
        }
        String[][] pieces = {
            {"▁", "-10"}, {"h", "-11"}, {"e", "-12"}, {"l", "-13"}, {"o", "-14"}, {"w", "-15"}, {"r", "-16"}, {"d", "-17"},
            {"ll", "-1"}, {"▁h", "-2"}, {"he", "-3"}, {"llo", "-4"}, {"▁he", "-5"}, {"▁hello", "-6"}, {"or", "-7"},
            {"▁w", "-8"}, {"ld", "-9"}, {"<|user|>", "0"}};
        List<Float> scores = new ArrayList<>();
        for (int i = 0; i < tokens.size(); i++) scores.add(0f);
        for (String[] p : pieces) {
            tokens.add(p[0]);
            scores.add(Float.parseFloat(p[1]));
            types.add(p[0].equals("<|user|>") ? 4 : 1);
        }
        float[] s = new float[scores.size()];
        for (int i = 0; i < s.length; i++) s[i] = scores.get(i);
        GgufWriter w = new GgufWriter();
        w.putString("tokenizer.ggml.model", "llama");
        w.put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens));
        w.put("tokenizer.ggml.scores", GgufValue.float32Array(s));
        w.put("tokenizer.ggml.token_type", GgufValue.int32Array(types.stream().mapToInt(Integer::intValue).toArray()));
        w.putUint32("tokenizer.ggml.bos_token_id", 1);
        w.putUint32("tokenizer.ggml.eos_token_id", 2);
        w.putUint32("tokenizer.ggml.unknown_token_id", 0);
        if (!addSpacePrefix) w.putBool("tokenizer.ggml.add_space_prefix", false);
        return w;
    }

    private static final int BYTE0 = 3, PIECES = 259;

    private static int piece(String p) {
        String[] order = {"▁", "h", "e", "l", "o", "w", "r", "d", "ll", "▁h", "he", "llo", "▁he", "▁hello", "or", "▁w", "ld", "<|user|>"};
        for (int i = 0; i < order.length; i++) if (order[i].equals(p)) return PIECES + i;
        throw new IllegalArgumentException(p);
    }

    @Test
    void sentencePieceMergesByScoreAsLlamaCpp() throws IOException {
        Tokenizer t = roundTrip(spm(true));
        assertInstanceOf(SpmTokenizer.class, t);
        // "▁hello▁world": ll, ▁h, llo, ▁he, ▁hello, then or, ▁w, ld (worked by hand)
        assertArrayEquals(new int[] {1, piece("▁hello"), piece("▁w"), piece("or"), piece("ld")}, t.encode("hello world", true));
        // characters outside the vocabulary fall back to their UTF-8 bytes; "\n" is <0x0A>
        assertArrayEquals(new int[] {piece("▁h"), BYTE0 + 0xC3, BYTE0 + 0xA9, BYTE0 + 0x0A, piece("o")}, t.encode("hé\no"));
        // control tokens only when parsing specials; text after a special token gets the space prefix again
        assertArrayEquals(new int[] {piece("▁he"), 2, piece("▁hello")}, t.encode("he</s>hello", false, true));
        int[] literal = t.encode("he</s>", false, false);
        assertEquals(BYTE0 + '<', literal[1]);
        // user-defined tokens always match
        assertArrayEquals(new int[] {piece("<|user|>"), piece("▁hello")}, t.encode("<|user|>hello", false, false));
        for (String s : List.of("hello world", "  hello   world ", "héllo\n\twörld 🦊", "he</s>llo", "")) {
            assertEquals(s, t.decode(t.encode(s, true, false), true), s);
        }
        assertEquals("hello", t.decode(new int[] {1, piece("▁hello"), 2}, true));
        assertEquals("<s>hello</s>", t.decode(new int[] {1, piece("▁hello"), 2}, false).replace(" hello", "hello"));
        assertEquals(1, t.bosId().getAsInt());
        assertEquals(2, t.eosId().getAsInt());
        assertTrue(t.isSpecial(1) && !t.isSpecial(piece("ll")));
    }

    @Test
    void sentencePieceWithoutSpacePrefix() throws IOException {
        Tokenizer t = roundTrip(spm(false));
        assertArrayEquals(new int[] {piece("he"), piece("llo")}, t.encode("hello"));
        assertEquals("hello world", t.decode(t.encode("hello world")));
    }

    @Test
    void byteLevelBpeMatchesTheTrainedTokenizer() throws IOException {
        List<String> texts = List.of("the quick brown fox jumps over the lazy dog", "the lazy dog sleeps all day long",
                "quick quick quick brown brown fox");
        BpeTokenizer trained = BpeTrainer.train(texts, 290, List.of("<|endoftext|>"));
        int eot = trained.idOf("<|endoftext|>");
        trained = trained.toBuilder().bos(eot).eos(eot).build();
        GgufWriter w = new GgufWriter();
        GgufTestFiles.putByteLevelTokenizer(w, trained, null);
        Tokenizer t = roundTrip(w);
        BpeTokenizer b = assertInstanceOf(BpeTokenizer.class, t);
        assertEquals(PreTokenizerPatterns.GPT2, b.splitRegex());
        assertEquals(trained.vocabSize(), t.vocabSize());
        for (String s : List.of("the quick brown fox", "lazy dogs sleep<|endoftext|>quick", "ünïcödé 🦊 text\n\n  spaces", "")) {
            assertArrayEquals(trained.encode(s), t.encode(s), s);
            assertEquals(s, t.decode(t.encode(s)), s);
        }
        assertEquals(1, t.encode("<|endoftext|>").length);
        assertEquals(trained.isSpecial(eot), t.isSpecial(eot));
        assertEquals(eot, t.eosId().getAsInt());
    }

    @Test
    void llamaBpePreTokenizerUsesTheLlama3Regex() throws IOException {
        // hand-made byte-level vocabulary: bytes, then "ab" and "abc"; Llama-3 splits digits in threes
        List<String> tokens = new ArrayList<>();
        for (int i = 0; i < 256; i++) tokens.add(String.valueOf(dev.exeunt.model.tokenizer.ByteLevel.byteToChar(i)));
        tokens.add("ab");
        tokens.add("abc");
        tokens.add("<|begin_of_text|>");
        int[] types = new int[tokens.size()];
        java.util.Arrays.fill(types, 1);
        types[258] = 3;
        GgufWriter w = new GgufWriter();
        w.putString("tokenizer.ggml.model", "gpt2");
        w.putString("tokenizer.ggml.pre", "llama-bpe");
        w.put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens));
        w.put("tokenizer.ggml.token_type", GgufValue.int32Array(types));
        w.put("tokenizer.ggml.merges", GgufValue.stringArray(List.of("a b", "ab c")));
        w.putUint32("tokenizer.ggml.bos_token_id", 258);
        Tokenizer t = roundTrip(w);
        assertEquals(PreTokenizerPatterns.LLAMA3, ((BpeTokenizer) t).splitRegex());
        // token i is byte i here; "abcd" merges to abc + d, digits stay bytes ("123", "4")
        assertArrayEquals(new int[] {258, 257, 'd', '1', '2', '3', '4'}, t.encode("abcd1234", true));
        assertEquals("abcd1234", t.decode(t.encode("abcd1234", true), true));
    }

    @Test
    void unsupportedTokenizerModel() throws IOException {
        GgufWriter w = new GgufWriter();
        w.putString("tokenizer.ggml.model", "bert");
        w.put("tokenizer.ggml.tokens", GgufValue.stringArray(List.of("[CLS]", "a")));
        var e = assertThrows(CheckpointFormatException.class, () -> roundTrip(w));
        assertTrue(e.getMessage().contains("unsupported tokenizer model 'bert'"), e.getMessage());
    }
}
