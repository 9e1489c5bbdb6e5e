package dev.exeunt.model.tokenizer;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Hand-made tokenizer.json files in the exact GPT-2, Llama-3 and Llama-2 structures; expected ids worked out by hand. */
class HfTokenizerJsonTest {

    static Path resource(String name) {
        try {
            return Path.of(HfTokenizerJsonTest.class.getResource("/tokenizer/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static BpeTokenizer load(String name) throws IOException {
        return HfTokenizerJson.load(resource(name));
    }

    // ---- GPT-2: 256 byte tokens in GPT-2 order ("!"=0 ... "Ġ"=220, "Ċ"=198), merges from 256, <|endoftext|>=273

    @Test
    void gpt2Structure() throws IOException {
        BpeTokenizer t = load("gpt2-tiny.json");
        assertEquals(BpeTokenizer.Flavour.BYTE_LEVEL, t.flavour());
        assertEquals(274, t.vocabSize());
        assertEquals(220, t.idOf("Ġ"));
        assertEquals(198, t.idOf("Ċ"));
        // "Hello" = H e l l o: "l l"(rank 0) -> ll, "H e"(3) -> He, "He ll"(4) -> Hell, "Hell o"(5) -> Hello=261
        // " world" = Ġ w o r l d: "o r"(1), "Ġ w"(2), "Ġw or"(6), "Ġwor l"(7), "Ġworl d"(8) -> Ġworld=264
        assertArrayEquals(new int[] {261, 264}, t.encode("Hello world"));
        // GPT-2 regex splits "\n\n" before a word into "\n", "\n" (\s+(?!\S) backs off), so "ĊĊ" is not used
        assertArrayEquals(new int[] {268, 198, 198, 272}, t.encode(" hello\n\nworld"));
        // at the end of text "\n\n" stays one piece and merges to ĊĊ=269; 'a' = 97-33 = 64
        assertArrayEquals(new int[] {64, 269}, t.encode("a\n\n"));
        // é = C3 A9: 0xC3 -> 106 + (0xC3-0xAE) = 127, 0xA9 -> 94 + (0xA9-0xA1) = 102
        assertArrayEquals(new int[] {127, 102}, t.encode("é"));
        assertArrayEquals(new int[] {261, 273, 264}, t.encode("Hello<|endoftext|> world"));
        // not parsed as special: '<' = 27, '|' = 91, ...
        int[] literal = t.encode("<|endoftext|>", false, false);
        assertEquals(27, literal[0]);
        assertEquals(91, literal[1]);
        assertEquals("<|endoftext|>", t.decode(literal));

        assertEquals(273, t.eosId().orElseThrow());
        assertEquals(273, t.bosId().orElseThrow());
        assertTrue(t.padId().isEmpty());
        assertTrue(t.isSpecial(273));
        assertEquals("Hello<|endoftext|> world", t.decode(new int[] {261, 273, 264}));
        assertEquals("Hello world", t.decode(new int[] {261, 273, 264}, true));
        assertEquals("Ġhello", t.tokenText(268));
        for (String s : RoundTrip.SAMPLES) assertEquals(s, t.decode(t.encode(s)), s);
    }

    @Test
    void decodeRejectsBadIds() throws IOException {
        BpeTokenizer t = load("gpt2-tiny.json");
        var e = assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {261, 274}));
        assertTrue(e.getMessage().contains("274") && e.getMessage().contains("vocabulary size 274"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {-1}));
        assertThrows(IllegalArgumentException.class, () -> t.newDecoder().append(9999));
    }

    // ---- Llama-3: Split regex + ByteLevel(use_regex false), ignore_merges, merges as [a, b] arrays, BOS template

    @Test
    void llama3Structure() throws IOException {
        BpeTokenizer t = load("llama3-tiny.json");
        assertEquals(BpeTokenizer.Flavour.BYTE_LEVEL, t.flavour());
        assertEquals(PreTokenizerPatterns.LLAMA3, t.splitRegex());
        assertEquals(270, t.bosId().orElseThrow()); // <|begin_of_text|>, from the TemplateProcessing
        assertEquals(271, t.eosId().orElseThrow()); // <|end_of_text|>
        assertEquals(273, t.idOf("<|eot_id|>"));
        // digits go in groups of at most three: "123" -> 12 (256) then 123 (257); "45" -> 258
        assertArrayEquals(new int[] {257, 258}, t.encode("12345"));
        // contractions are case-insensitive: "'M" is one piece (and a merge, 265); 'I' = 73-33 = 40
        assertArrayEquals(new int[] {40, 265}, t.encode("I'M"));
        // ignore_merges: " xyz" is in the vocabulary (269) although no merge builds it
        assertArrayEquals(new int[] {269}, t.encode(" xyz"));
        assertArrayEquals(new int[] {270, 266, 263}, t.encode("Hi world", true));
        // " ?[^\s\p{L}\p{N}]+[\r\n]*": "!!\n" is one piece -> "!!Ċ" (268); "\n\n" before a word stays together
        assertArrayEquals(new int[] {266, 268}, t.encode("Hi!!\n"));
        int[] ids = t.encode("<|begin_of_text|>Hi<|eot_id|>");
        assertArrayEquals(new int[] {270, 266, 273}, ids);
        assertEquals("Hi", t.decode(ids, true));
        for (String s : RoundTrip.SAMPLES) assertEquals(s, t.decode(t.encode(s)), s);
    }

    // ---- Llama-2 (SentencePiece BPE): <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF> = 3..258, then ▁=259 H=260 e=261 l=262 o=263 w=264 r=265 d=266

    @Test
    void llama2Structure() throws IOException {
        BpeTokenizer t = load("llama2-tiny.json");
        assertEquals(BpeTokenizer.Flavour.SENTENCEPIECE, t.flavour());
        assertEquals(1, t.bosId().orElseThrow());
        assertEquals(2, t.eosId().orElseThrow());
        // "▁Hello▁world": ▁H(267) ll(268) ell(269) ▁Hell(270) ▁Hello(271); ▁w(272) or(273) ▁wor ▁worl ▁world(276)
        assertArrayEquals(new int[] {271, 276}, t.encode("Hello world"));
        assertArrayEquals(new int[] {1, 271, 276}, t.encode("Hello world", true));
        // "\n" is not in the vocabulary: byte fallback <0x0A> = 3 + 10 = 13; "world" without ▁: w o r l d -> w or l d
        assertArrayEquals(new int[] {271, 13, 264, 273, 262, 266}, t.encode("Hello\nworld"));
        // é = C3 A9 -> <0xC3> = 198, <0xA9> = 172, after the prepended ▁ (259)
        assertArrayEquals(new int[] {259, 198, 172}, t.encode("é"));
        // two spaces: "▁▁Hello" -> "▁ ▁" merges last (rank 10) after ▁H..▁Hello: ▁(259) ▁Hello(271)
        assertArrayEquals(new int[] {259, 271}, t.encode(" Hello"));
        // special tokens in text; the legacy Prepend normalizer adds ▁ to each segment
        assertArrayEquals(new int[] {1, 271}, t.encode("<s>Hello"));
        assertEquals("Hello world", t.decode(new int[] {1, 271, 276}, true));
        assertEquals("<s> Hello world", t.decode(new int[] {1, 271, 276}));
        assertEquals("Hello\nworld", t.decode(t.encode("Hello\nworld")));
        assertEquals("é", t.decode(new int[] {259, 198, 172}));
        for (String s : RoundTrip.SAMPLES) {
            if (s.startsWith(" ")) continue; // SentencePiece drops one leading space by design
            if (s.contains("<s>") || s.contains("</s>") || s.contains("<unk>")) continue;
            assertEquals(s, t.decode(t.encode(s)), s);
        }
    }

    @Test
    void llama2MetaspaceStructure() throws IOException {
        BpeTokenizer t = load("llama2-metaspace-tiny.json");
        assertEquals(BpeTokenizer.Flavour.SENTENCEPIECE, t.flavour());
        assertArrayEquals(new int[] {271, 276}, t.encode("Hello world"));
        // prepend_scheme "first": no ▁ after a special token: H(260) ell(269) o(263)
        assertArrayEquals(new int[] {1, 260, 269, 263}, t.encode("<s>Hello"));
        assertEquals("Hello world", t.decode(new int[] {271, 276}));
    }

    @Test
    void saveAndReloadKeepsEverything(@TempDir Path dir) throws IOException {
        for (String name : List.of("gpt2-tiny.json", "llama3-tiny.json", "llama2-tiny.json", "llama2-metaspace-tiny.json")) {
            BpeTokenizer a = load(name);
            Path out = dir.resolve(name);
            HfTokenizerJson.save(a, out);
            BpeTokenizer b = HfTokenizerJson.load(out);
            assertEquals(a.vocab(), b.vocab(), name);
            assertEquals(a.merges(), b.merges(), name);
            assertEquals(a.addedTokens(), b.addedTokens(), name);
            assertEquals(a.bosId(), b.bosId(), name);
            assertEquals(a.eosId(), b.eosId(), name);
            for (String s : RoundTrip.SAMPLES) assertArrayEquals(a.encode(s), b.encode(s), name + ": " + s);
        }
    }

    @Test
    void overrideSpecialIds() throws IOException {
        BpeTokenizer t = load("llama3-tiny.json").toBuilder().eos(273).build();
        assertEquals(273, t.eosId().orElseThrow());
        assertEquals(270, t.bosId().orElseThrow());
        assertThrows(IllegalArgumentException.class, () -> load("llama3-tiny.json").toBuilder().eos(5000).build());
    }

    // ---- errors

    @Test
    void missingFile(@TempDir Path dir) {
        var e = assertThrows(NoSuchFileException.class, () -> HfTokenizerJson.load(dir.resolve("nope.json")));
        assertTrue(e.getMessage().contains("nope.json"));
    }

    @Test
    void malformedJson(@TempDir Path dir) throws IOException {
        Path p = dir.resolve("bad.json");
        Files.writeString(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}");
        var e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.load(p));
        assertTrue(e.getMessage().contains("bad.json") && e.getMessage().contains("malformed JSON"), e.getMessage());
    }

    @Test
    void unsupportedStructures() {
        var e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.parse("""
                {"normalizer": {"type": "BertNormalizer"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
                 "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0}}}"""));
        assertTrue(e.getMessage().contains("WordPiece"), e.getMessage());
        e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.parse("""
                {"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}"""));
        assertTrue(e.getMessage().contains("Unigram"), e.getMessage());
        e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.parse("""
                {"pre_tokenizer": {"type": "Whitespace"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"""));
        assertTrue(e.getMessage().contains("Whitespace"), e.getMessage());
        e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.parse("""
                {"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"""));
        assertTrue(e.getMessage().contains("'b'"), e.getMessage());
        e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.parse("[1, 2]"));
        assertTrue(e.getMessage().contains("object"), e.getMessage());
    }
}
