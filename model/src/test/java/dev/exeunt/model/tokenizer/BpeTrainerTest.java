package dev.exeunt.model.tokenizer;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Trains on real Java source from the JDK's src.zip, saves as tokenizer.json, reloads, and round-trips. */
class BpeTrainerTest {
    static final List<String> SPECIALS = List.of("<|endoftext|>", "<|pad|>");
    static List<String> corpus;
    static BpeTokenizer trained;

    /** About {@code maxChars} of java.base sources (java/util/*), in a fixed order. */
    static List<String> jdkSources(long maxChars) throws IOException {
        return jdkSourcesUnder("java.base/java/util/", maxChars);
    }

    /** About {@code maxChars} of JDK sources whose src.zip path starts with {@code prefix}, in a fixed order. */
    static List<String> jdkSourcesUnder(String prefix, long maxChars) throws IOException {
        Path zip = Path.of(System.getProperty("java.home"), "lib", "src.zip");
        List<String> texts = new ArrayList<>();
        if (!Files.isRegularFile(zip)) {
            // no src.zip in this JDK: fall back to this module's own sources
            try (var files = Files.walk(Path.of("src"))) {
                for (Path f : files.filter(f -> f.toString().endsWith(".java")).sorted().toList()) texts.add(Files.readString(f));
            }
            return texts;
        }
        try (ZipFile z = new ZipFile(zip.toFile())) {
            List<? extends ZipEntry> entries = z.stream()
                    .filter(e -> e.getName().startsWith(prefix) && e.getName().endsWith(".java"))
                    .sorted((a, b) -> a.getName().compareTo(b.getName()))
                    .toList();
            long total = 0;
            for (ZipEntry e : entries) {
                if (total >= maxChars) break;
                try (InputStream in = z.getInputStream(e)) {
                    String s = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                    texts.add(s);
                    total += s.length();
                }
            }
        }
        return texts;
    }

    @BeforeAll
    static void train() throws IOException {
        corpus = new ArrayList<>(jdkSources(1_500_000));
        // some text that is not Java, written here, so that the vocabulary sees non-ASCII too
        corpus.add("Byte-pair encoding starts from bytes and merges the most frequent pair. Ça marche très bien, naïvement. "
                + "日本語のテキストも少し。Ελληνικά κείμενα. Emoji 😀😀😀 are four bytes each.<|endoftext|>Next document.");
        trained = BpeTrainer.train(corpus, 1024, SPECIALS);
    }

    @Test
    void vocabularyLayout() {
        assertEquals(1024, trained.vocabSize());
        assertEquals(1024 - 256 - 2, trained.merges().size()); // no duplicate merge results on this corpus
        for (int b = 0; b < 256; b++) assertEquals(String.valueOf(ByteLevel.byteToChar(b)), trained.tokenText(b));
        assertEquals(1022, trained.idOf("<|endoftext|>"));
        assertEquals(1023, trained.idOf("<|pad|>"));
        assertEquals(1022, trained.eosId().orElseThrow());
        assertEquals(1023, trained.padId().orElseThrow());
        assertTrue(trained.isSpecial(1022));
        // the first merges of Java source are about indentation and common keywords
        assertEquals("Ġ", trained.merges().get(0).left());
        assertTrue(trained.idOf("Ġthe") > 0, "' the' learned");
        assertTrue(trained.idOf("public") > 0 || trained.idOf("Ġpublic") > 0, "'public' learned");
        // special tokens are never part of merges
        for (var m : trained.merges()) assertFalse((m.left() + m.right()).contains("<|endoftext|>"));
    }

    @Test
    void compressesJava() {
        String src = corpus.get(0);
        int[] ids = trained.encode(src);
        double bytesPerToken = (double) src.getBytes(StandardCharsets.UTF_8).length / ids.length;
        assertTrue(bytesPerToken > 2.5, "bytes/token " + bytesPerToken);
        assertEquals(src, trained.decode(ids));
    }

    @Test
    void roundTrips() {
        for (String s : RoundTrip.SAMPLES) assertEquals(s, trained.decode(trained.encode(s)), s);
        Random r = new Random(42);
        for (int i = 0; i < 300; i++) {
            String s = randomText(r, 1 + r.nextInt(60));
            assertEquals(s, trained.decode(trained.encode(s)), s);
            assertEquals(s, trained.decode(trained.encode(s, false, false)), s);
        }
        assertArrayEquals(new int[] {1022}, trained.encode("<|endoftext|>"));
    }

    static String randomText(Random r, int n) {
        int[][] ranges = {{0x20, 0x7e}, {0x20, 0x7e}, {0x20, 0x7e}, {0x9, 0xd}, {0xa0, 0x24f}, {0x370, 0x3ff},
                {0x3040, 0x30ff}, {0x4e00, 0x4fff}, {0x1f600, 0x1f64f}, {0x1d400, 0x1d7ff}, {0x2000, 0x206f}};
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            int[] g = ranges[r.nextInt(ranges.length)];
            int cp = g[0] + r.nextInt(g[1] - g[0] + 1);
            if (Character.isSurrogate((char) cp)) continue;
            sb.appendCodePoint(cp);
        }
        return sb.toString();
    }

    @Test
    void streamingDecoderEqualsFullDecode() {
        List<String> texts = new ArrayList<>(RoundTrip.SAMPLES);
        texts.add(corpus.get(1).substring(0, 3000));
        Random r = new Random(7);
        for (int i = 0; i < 100; i++) texts.add(randomText(r, 40));
        for (String s : texts) {
            int[] ids = trained.encode(s);
            TokenDecoder d = trained.newDecoder();
            StringBuilder sb = new StringBuilder();
            for (int id : ids) {
                String piece = d.append(id);
                // never emits half a character
                if (!piece.isEmpty()) assertFalse(Character.isHighSurrogate(piece.charAt(piece.length() - 1)));
                assertFalse(piece.contains("\uFFFD"), s);
                sb.append(piece);
            }
            sb.append(d.flush());
            assertEquals(trained.decode(ids), sb.toString());
        }
    }

    @Test
    void saveReloadIdentical(@TempDir Path dir) throws IOException {
        Path p = dir.resolve("tokenizer.json");
        HfTokenizerJson.save(trained, p);
        String json = Files.readString(p);
        assertTrue(json.contains("\"type\" : \"ByteLevel\""), "ByteLevel pre-tokenizer/decoder");
        BpeTokenizer back = HfTokenizerJson.load(p);
        assertEquals(trained.vocab(), back.vocab());
        assertEquals(trained.merges(), back.merges());
        assertEquals(trained.addedTokens(), back.addedTokens());
        assertEquals(trained.eosId(), back.eosId());
        assertEquals(trained.padId(), back.padId());
        assertFalse(back.addPrefixSpace());
        for (String s : corpus.subList(0, 5)) assertArrayEquals(trained.encode(s), back.encode(s));
        for (String s : RoundTrip.SAMPLES) assertArrayEquals(trained.encode(s), back.encode(s));
        // saving again gives the same bytes
        Path p2 = dir.resolve("again.json");
        HfTokenizerJson.save(back, p2);
        assertEquals(json, Files.readString(p2));
    }

    @Test
    void deterministic() {
        List<String> small = corpus.subList(0, 6);
        BpeTokenizer a = BpeTrainer.train(small, 600, SPECIALS);
        List<String> reversed = new ArrayList<>(small);
        java.util.Collections.reverse(reversed);
        BpeTokenizer b = BpeTrainer.train(reversed.stream(), 600, SPECIALS); // order of texts does not matter
        assertEquals(a.merges(), b.merges());
        assertEquals(a.vocab(), b.vocab());
    }

    @Test
    void trainerMatchesNaiveBpe() {
        // the incremental algorithm gives the same merges as recounting all pairs after every merge
        List<String> small = corpus.subList(0, 3);
        BpeTokenizer fast = BpeTrainer.train(small, 256 + 60, List.of());
        List<BpeTokenizer.Merge> naive = NaiveBpe.train(small, 60);
        assertEquals(naive, fast.merges());
    }

    @Test
    void progressAndMinFrequency() {
        int[] calls = {0};
        BpeTokenizer t = new BpeTrainer(100_000, List.of()).minFrequency(2).progress((done, wanted) -> calls[0]++)
                .addText("abababab cdcd").train();
        assertEquals(calls[0], t.merges().size());
        assertTrue(t.vocabSize() < 300); // stops when no pair is seen twice
        assertThrows(IllegalArgumentException.class, () -> new BpeTrainer(100, List.of()));
    }

    @Test
    void encodeMatchesNaiveMerging() {
        // heap-based merging == "merge the lowest-ranked adjacent pair, leftmost first, until none is left"
        java.util.Map<String, Integer> rank = new java.util.HashMap<>();
        for (int i = 0; i < trained.merges().size(); i++) {
            var m = trained.merges().get(i);
            rank.putIfAbsent(m.left() + " " + m.right(), i);
        }
        Random r = new Random(3);
        List<String> words = new ArrayList<>();
        for (String s : corpus.subList(0, 4)) for (String w : s.split("(?<=\\s)")) words.add(w);
        for (int i = 0; i < 200; i++) words.add(randomText(r, 1 + r.nextInt(30)));
        words.add("                                                                ");
        for (String w : words) {
            List<String> sym = new ArrayList<>();
            for (byte b : w.getBytes(StandardCharsets.UTF_8)) sym.add(String.valueOf(ByteLevel.byteToChar(b)));
            while (true) {
                int best = -1, bestRank = Integer.MAX_VALUE;
                for (int i = 0; i + 1 < sym.size(); i++) {
                    Integer rk = rank.get(sym.get(i) + " " + sym.get(i + 1));
                    if (rk != null && rk < bestRank) { bestRank = rk; best = i; }
                }
                if (best < 0) break;
                sym.set(best, sym.get(best) + sym.remove(best + 1));
            }
            int[] expected = sym.stream().mapToInt(trained::idOf).toArray();
            byte[] bytes = w.getBytes(StandardCharsets.UTF_8);
            int[] ids = new int[bytes.length];
            for (int i = 0; i < bytes.length; i++) ids[i] = trained.idOf(String.valueOf(ByteLevel.byteToChar(bytes[i])));
            assertArrayEquals(expected, trained.applyMerges(ids, ids.length), w);
        }
    }

    @Test
    void manySpecialTokensScanFast() {
        List<AddedToken> added = new ArrayList<>();
        java.util.Map<String, Integer> vocab = new java.util.LinkedHashMap<>(trained.vocab());
        for (int i = 0; i < 256; i++) {
            String s = "<|reserved_special_token_" + i + "|>";
            added.add(new AddedToken(vocab.size(), s, true));
            vocab.put(s, vocab.size());
        }
        BpeTokenizer t = trained.toBuilder().vocab(vocab).addedTokens(added).build();
        StringBuilder sb = new StringBuilder();
        for (String s : corpus) sb.append(s).append("<|reserved_special_token_17|>");
        String text = sb.toString();
        long t0 = System.nanoTime();
        int[] ids = t.encode(text);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(text, t.decode(ids));
        int id17 = t.idOf("<|reserved_special_token_17|>");
        assertEquals(corpus.size(), java.util.Arrays.stream(ids).filter(x -> x == id17).count());
        assertTrue(ms < 5000, ms + " ms");
    }
}
