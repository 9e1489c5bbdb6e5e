package dev.exeunt.model.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.model.io.TokenDatasetReader;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.Tokenizer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PrepareTest {
    static final String[] WORDS = {"the", "model", "exits", "early", "when", "confident", "layer", "token", "tensor",
        "java", "vector", "über", "naïve", "データ", "😀", "class", "public", "static", "void", "return", "int", "{", "}",
        "(", ")", ";", "=", "+", "if", "else", "for", "while", "x", "y", "42", "3.14", "\"str\"", "//", "comment"};

    @TempDir
    static Path shared;

    static Path tokenizerJson;
    static Tokenizer tokenizer;

    static String randomDoc(Random r, int words) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < words; i++) {
            sb.append(WORDS[r.nextInt(WORDS.length)]);
            int k = r.nextInt(12);
            sb.append(k == 0 ? "\n" : k == 1 ? "\n    " : k == 2 ? ". " : " ");
        }
        return sb.toString();
    }

    @BeforeAll
    static void trainTokenizer() throws IOException {
        Random r = new Random(1);
        List<String> texts = new ArrayList<>();
        for (int i = 0; i < 50; i++) {
            texts.add(randomDoc(r, 200));
        }
        BpeTokenizer t = BpeTrainer.train(texts, 400, List.of(Prepare.EOT));
        tokenizerJson = shared.resolve("tok/tokenizer.json");
        HfTokenizerJson.save(t, tokenizerJson);
        tokenizer = HfTokenizerJson.load(tokenizerJson);
        assertTrue(tokenizer.eosId().isPresent());
    }

    @TempDir
    Path tmp;

    /** A directory of text files; returns the documents in the order TextSource reads them. */
    static List<String> makeTree(Path dir, int files, long seed) throws IOException {
        Random r = new Random(seed);
        List<String[]> made = new ArrayList<>();
        for (int i = 0; i < files; i++) {
            String rel = (i % 3 == 0 ? "sub" + (i % 4) + "/" : "") + "file" + i + (i % 2 == 0 ? ".txt" : ".java");
            String text = randomDoc(r, 20 + r.nextInt(300));
            Path p = dir.resolve(rel);
            Files.createDirectories(p.getParent());
            Files.writeString(p, text, StandardCharsets.UTF_8);
            made.add(new String[] {rel, text});
        }
        made.sort((a, b) -> a[0].compareTo(b[0]));
        return made.stream().map(a -> a[1]).toList();
    }

    static List<int[]> readBack(Path arrow) throws IOException {
        List<int[]> out = new ArrayList<>();
        try (TokenDatasetReader r = TokenDatasetReader.open(arrow); TokenDatasetReader.Documents d = r.documents()) {
            while (d.next()) {
                out.add(d.tokens());
            }
        }
        return out;
    }

    static int[] expected(Tokenizer tok, String doc) {
        int[] ids = tok.encode(doc, false, false);
        int[] out = java.util.Arrays.copyOf(ids, ids.length + 1);
        out[ids.length] = tok.eosId().getAsInt();
        return out;
    }

    static void assertDataset(Path arrow, Tokenizer tok, List<String> docs) throws IOException {
        List<int[]> got = readBack(arrow);
        assertEquals(docs.size(), got.size());
        for (int i = 0; i < docs.size(); i++) {
            assertArrayEquals(expected(tok, docs.get(i)), got.get(i), "document " + i);
        }
    }

    static long tokenCount(Tokenizer tok, List<String> docs) {
        return docs.stream().mapToLong(d -> expected(tok, d).length).sum();
    }

    /** Files in dir other than the ones named: no temp files left behind. */
    static List<String> listNames(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void directoryWithTokenizerJson() throws IOException {
        Path in = tmp.resolve("in");
        List<String> docs = makeTree(in, 40, 7);
        Path out = tmp.resolve("out/data.arrow");
        ByteArrayOutputStream progress = new ByteArrayOutputStream();
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(in).tokenizer(tokenizerJson).output(out)
                .threads(1).batchSize(16).progress(new PrintStream(progress, true, StandardCharsets.UTF_8)).build());
        assertDataset(out, tokenizer, docs);
        assertEquals(docs.size(), st.documents());
        assertEquals(tokenCount(tokenizer, docs), st.tokens());
        assertEquals(docs.stream().mapToLong(d -> d.getBytes(StandardCharsets.UTF_8).length).sum(), st.bytes());
        assertEquals(tokenizer.eosId().getAsInt(), st.eosId());
        assertTrue(st.tokensPerSecond() > 0);
        assertEquals(List.of("data.arrow"), listNames(out.getParent()));
        String p = progress.toString(StandardCharsets.UTF_8);
        assertTrue(p.contains("tokenize") && p.contains("100.0%") && p.contains("tokens"), p);
    }

    /** Files none of whose extensions are read make no dataset: an error that names the extensions and --all-files, and no output. */
    @Test
    void inputsWithNothingToReadAreAnErrorNotAnEmptyDataset() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("odd"));
        Files.writeString(in.resolve("notes.xyz"), "text the default extensions do not read");
        Path out = tmp.resolve("odd.arrow");
        var e = assertThrows(IllegalArgumentException.class,
                () -> Prepare.run(Prepare.Options.builder().input(in).tokenizer(tokenizerJson).output(out).threads(1).build()));
        assertTrue(e.getMessage().contains("no documents in") && e.getMessage().contains(".txt") && e.getMessage().contains("--all-files"), e.getMessage());
        assertFalse(Files.exists(out));
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(in).tokenizer(tokenizerJson).output(out).threads(1).allFiles(true).build());
        assertEquals(1, st.documents());
    }

    @Test
    void zipInput() throws IOException {
        Path in = tmp.resolve("in");
        List<String> docs = makeTree(in, 25, 11);
        Path zip = tmp.resolve("in.zip");
        List<Path> files;
        try (Stream<Path> s = Files.walk(in)) {
            files = new ArrayList<>(s.filter(Files::isRegularFile).toList());
        }
        java.util.Collections.shuffle(files, new Random(3)); // archive order is not the reading order
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
            for (Path f : files) {
                z.putNextEntry(new ZipEntry(in.relativize(f).toString().replace('\\', '/')));
                z.write(Files.readAllBytes(f));
                z.closeEntry();
            }
        }
        Path out = tmp.resolve("zip.arrow");
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(zip).tokenizer(tokenizerJson).output(out)
                .threads(2).build());
        assertDataset(out, tokenizer, docs);
        assertEquals(docs.size(), st.documents());
    }

    @Test
    void trainsTokenizerAndSavesItBesideOutput() throws IOException {
        Path in = tmp.resolve("in");
        List<String> docs = new ArrayList<>(makeTree(in, 20, 5));
        // a literal special-token string in the text stays plain text
        Files.writeString(in.resolve("zz_special.txt"), "before " + Prepare.EOT + " after");
        docs.add("before " + Prepare.EOT + " after");
        Path out = tmp.resolve("o/train.arrow");
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(in).trainTokenizer(350).output(out).build());
        Path tj = out.resolveSibling("tokenizer.json");
        assertEquals(tj.toAbsolutePath(), st.tokenizer().toAbsolutePath());
        BpeTokenizer re = HfTokenizerJson.load(tj);
        assertEquals(350, re.vocabSize());
        int eot = re.idOf(Prepare.EOT);
        assertEquals(349, eot);
        assertEquals(eot, re.eosId().getAsInt());
        assertEquals(eot, st.eosId());
        assertDataset(out, re, docs);
        int[] last = readBack(out).get(docs.size() - 1);
        assertEquals(1, java.util.Arrays.stream(last).filter(x -> x == eot).count(), "only the appended EOS");
        assertTrue(st.trainSeconds() > 0);
        assertEquals(List.of("tokenizer.json", "train.arrow"), listNames(out.getParent()));
    }

    @Test
    void jsonlInput() throws IOException {
        Random r = new Random(9);
        List<String> docs = new ArrayList<>();
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 30; i++) {
            String d = randomDoc(r, 5 + r.nextInt(50));
            docs.add(d);
            sb.append(new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode().put("text", d).put("i", i))
                    .append('\n');
        }
        Path in = tmp.resolve("data.jsonl");
        Files.writeString(in, sb.toString(), StandardCharsets.UTF_8);
        Path out = tmp.resolve("j.arrow");
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(in).tokenizer(tokenizerJson).output(out).build());
        assertDataset(out, tokenizer, docs);
        assertEquals(30, st.documents());
    }

    @Test
    void limitBytesStopsEarly() throws IOException {
        Path in = tmp.resolve("in");
        List<String> docs = makeTree(in, 40, 13);
        long limit = 0;
        int whole = 0;
        for (; whole < 5; whole++) {
            limit += docs.get(whole).getBytes(StandardCharsets.UTF_8).length;
        }
        limit += 10; // cuts the 6th document after 10 bytes (ASCII start assumed below)
        Path out = tmp.resolve("lim.arrow");
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(in).tokenizer(tokenizerJson).output(out)
                .limitBytes(limit).build());
        assertEquals(6, st.documents());
        assertEquals(limit, st.bytes());
        List<String> expect = new ArrayList<>(docs.subList(0, 5));
        byte[] sixth = docs.get(5).getBytes(StandardCharsets.UTF_8);
        int cut = TextSource.utf8Boundary(sixth, 10);
        expect.add(new String(sixth, 0, cut, StandardCharsets.UTF_8));
        assertDataset(out, tokenizer, expect);
    }

    @Test
    void binaryFileSkipped() throws IOException {
        Path in = tmp.resolve("in");
        List<String> docs = makeTree(in, 6, 17);
        byte[] bin = new byte[20_000];
        new Random(1).nextBytes(bin);
        bin[100] = 0;
        Files.write(in.resolve("aaa_binary.txt"), bin);
        Path out = tmp.resolve("b.arrow");
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(in).tokenizer(tokenizerJson).output(out).build());
        assertEquals(1, st.skippedBinary());
        assertDataset(out, tokenizer, docs);
    }

    @Test
    void missingPathIsNamedAndNothingWritten() throws IOException {
        Path missing = tmp.resolve("nope/corpus");
        Path out = tmp.resolve("m/out.arrow");
        NoSuchFileException e = assertThrows(NoSuchFileException.class, () -> Prepare.run(
                Prepare.Options.builder().input(missing).trainTokenizer(300).output(out).build()));
        assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());
        assertFalse(Files.exists(out.getParent()) && !listNames(out.getParent()).isEmpty());

        Path in = tmp.resolve("x.txt");
        Files.writeString(in, "text");
        Path missingTok = tmp.resolve("no/tokenizer.json");
        e = assertThrows(NoSuchFileException.class, () -> Prepare.run(
                Prepare.Options.builder().input(in).tokenizer(missingTok).output(out).build()));
        assertTrue(e.getMessage().contains(missingTok.toString()), e.getMessage());
    }

    @Test
    void failureLeavesNoPartialOutput() throws IOException {
        Path in = tmp.resolve("in");
        Files.createDirectories(in);
        StringBuilder sb = new StringBuilder();
        Random r = new Random(2);
        for (int i = 0; i < 3000; i++) {
            sb.append("{\"text\": \"").append(randomDoc(r, 5).replace("\"", "'").replace("\n", "\\n")).append("\"}\n");
        }
        sb.append("{\"text\": broken\n");
        Files.writeString(in.resolve("data.jsonl"), sb.toString());
        Path outDir = tmp.resolve("fail");
        Files.createDirectories(outDir);
        Path out = outDir.resolve("f.arrow");
        for (int threads : new int[] {1, 2}) {
            IOException e = assertThrows(IOException.class, () -> Prepare.run(Prepare.Options.builder().input(in)
                    .trainTokenizer(300).sampleBytes(1000).batchSize(100).threads(threads).output(out).build()));
            assertTrue(e.getMessage().contains("data.jsonl:3001"), e.getMessage());
            assertEquals(List.of(), listNames(outDir));
        }
        // an existing output survives a failed run untouched
        Files.writeString(out, "old");
        assertThrows(IOException.class, () -> Prepare.run(Prepare.Options.builder().input(in)
                .tokenizer(tokenizerJson).output(out).build()));
        assertEquals("old", Files.readString(out));
        assertEquals(List.of("f.arrow"), listNames(outDir));
    }

    @Test
    void parallelAndSequentialWriteIdenticalFiles() throws IOException {
        Path in = tmp.resolve("in");
        makeTree(in, 60, 23);
        Path seq = tmp.resolve("seq.arrow");
        Path par = tmp.resolve("par.arrow");
        Prepare.Options.builder();
        Prepare.Options base = Prepare.Options.builder().input(in).tokenizer(tokenizerJson).output(seq)
                .batchSize(7).threads(1).build();
        Prepare.Stats a = Prepare.run(base);
        Prepare.Stats b = Prepare.run(base.toBuilder().output(par).threads(3).build());
        assertArrayEquals(Files.readAllBytes(seq), Files.readAllBytes(par));
        assertEquals(a.tokens(), b.tokens());
        assertEquals(a.documents(), b.documents());
    }

    @Test
    void optionsValidation() {
        Path p = tmp.resolve("x");
        assertThrows(IllegalArgumentException.class, () -> Prepare.Options.builder().output(p).tokenizer(p).build());
        assertThrows(IllegalArgumentException.class, () -> Prepare.Options.builder().input(p).output(p).build());
        assertThrows(IllegalArgumentException.class,
                () -> Prepare.Options.builder().input(p).output(p).tokenizer(p).trainTokenizer(500).build());
        assertThrows(IllegalArgumentException.class, () -> Prepare.Options.builder().input(p).output(p).trainTokenizer(256).build());
        assertThrows(NullPointerException.class, () -> Prepare.Options.builder().input(p).tokenizer(p).build());
    }

    static final Path JDK_SRC = Path.of("/usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip");

    @Test
    void jdkSourceZip() throws IOException {
        assumeTrue(Files.isRegularFile(JDK_SRC), "no " + JDK_SRC);
        Path out = tmp.resolve("jdk/src.arrow");
        Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(JDK_SRC).trainTokenizer(1024)
                .sampleBytes(256 * 1024).limitBytes(1 << 20).threads(2).output(out).build());
        System.out.println("[PrepareTest] src.zip 1 MB: " + st);
        assertEquals(1 << 20, st.bytes());
        assertTrue(st.documents() > 3, "documents: " + st.documents());
        BpeTokenizer re = HfTokenizerJson.load(out.resolveSibling("tokenizer.json"));
        // the first documents read back as encode(text) + EOS
        List<String> first = new ArrayList<>();
        try (TextSource.Cursor c = TextSource.of(JDK_SRC).open()) {
            for (int i = 0; i < 3; i++) {
                first.add(c.next().text());
            }
        }
        List<int[]> got = readBack(out);
        assertEquals(st.documents(), got.size());
        for (int i = 0; i < first.size(); i++) {
            assertArrayEquals(expected(re, first.get(i)), got.get(i), "document " + i);
            assertEquals(first.get(i), re.decode(java.util.Arrays.copyOf(got.get(i), got.get(i).length - 1)));
        }
        // a 1024-token BPE trained on Java compresses Java source to well under a token per byte
        assertTrue(st.tokens() < st.bytes() / 2, st.toString());
    }
}
