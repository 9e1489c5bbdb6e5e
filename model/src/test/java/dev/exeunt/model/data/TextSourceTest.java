package dev.exeunt.model.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TextSourceTest {
    @TempDir
    Path tmp;

    static void write(Path p, String s) throws IOException {
        Files.createDirectories(p.getParent());
        Files.writeString(p, s, StandardCharsets.UTF_8);
    }

    static List<TextSource.Document> all(TextSource src) throws IOException {
        List<TextSource.Document> out = new ArrayList<>();
        src.forEach(out::add);
        return out;
    }

    static List<String> names(List<TextSource.Document> docs, Path base) {
        List<String> out = new ArrayList<>();
        for (TextSource.Document d : docs) {
            out.add(base.relativize(Path.of(d.name())).toString().replace('\\', '/'));
        }
        return out;
    }

    private Path sampleTree() throws IOException {
        Path dir = tmp.resolve("tree");
        write(dir.resolve("b.txt"), "bee");
        write(dir.resolve("a/z.md"), "# zed\n");
        write(dir.resolve("a/y.java"), "class Y {}");
        write(dir.resolve("a.txt"), "ay");
        write(dir.resolve("noext"), "no extension");
        write(dir.resolve("img.PNG"), "not really png");
        write(dir.resolve(".hidden.txt"), "hidden");
        write(dir.resolve(".git/config.txt"), "hidden dir");
        write(dir.resolve("upper.TXT"), "upper-case extension");
        byte[] bin = "looks like text\0but has a NUL".getBytes(StandardCharsets.UTF_8);
        Files.write(dir.resolve("bin.txt"), bin);
        return dir;
    }

    @Test
    void directoryIsSortedFilteredAndSkipsBinary() throws IOException {
        Path dir = sampleTree();
        TextSource src = TextSource.of(dir);
        List<TextSource.Document> docs;
        long skipped;
        try (TextSource.Cursor c = src.open()) {
            docs = new ArrayList<>();
            for (TextSource.Document d; (d = c.next()) != null; ) {
                docs.add(d);
            }
            skipped = c.skippedBinary();
            assertEquals(docs.stream().mapToLong(TextSource.Document::bytes).sum(), c.bytesRead());
        }
        assertEquals(List.of("a.txt", "a/y.java", "a/z.md", "b.txt", "upper.TXT"), names(docs, dir));
        assertEquals("class Y {}", docs.get(1).text());
        assertEquals(1, skipped);

        List<TextSource.Document> every = all(new TextSource(src.options().withAllFiles(true)));
        assertEquals(List.of("a.txt", "a/y.java", "a/z.md", "b.txt", "img.PNG", "noext", "upper.TXT"), names(every, dir));

        List<TextSource.Document> md = all(new TextSource(src.options().withExtensions(List.of("MD", ".java"))));
        assertEquals(List.of("a/y.java", "a/z.md"), names(md, dir));
    }

    @Test
    void malformedUtf8IsReplacedAndBomDropped() throws IOException {
        Path f = tmp.resolve("bad.txt");
        Files.write(f, new byte[] {(byte) 0xEF, (byte) 0xBB, (byte) 0xBF, 'o', 'k', (byte) 0xFF, ' ', (byte) 0xC3, (byte) 0xA9});
        List<TextSource.Document> docs = all(TextSource.of(f));
        assertEquals(1, docs.size());
        assertEquals("ok\uFFFD é", docs.get(0).text());
        assertEquals(9, docs.get(0).bytes());
    }

    @Test
    void zipEntriesSortedByNameWithSameFilters() throws IOException {
        Path zip = tmp.resolve("src.zip");
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
            for (String[] e : new String[][] {{"java.base/java/lang/String.java", "final class String"},
                    {"b/readme.md", "read me"}, {"a/Main.java", "class Main"}, {"a/data.bin", "x"},
                    {"a/notes.txt", "bin\0ary"}}) {
                z.putNextEntry(new ZipEntry(e[0]));
                z.write(e[1].getBytes(StandardCharsets.UTF_8));
                z.closeEntry();
            }
            z.putNextEntry(new ZipEntry("emptydir/"));
            z.closeEntry();
        }
        List<TextSource.Document> docs = all(TextSource.of(zip));
        List<String> names = docs.stream().map(TextSource.Document::name).toList();
        assertEquals(List.of(zip + "!a/Main.java", zip + "!b/readme.md", zip + "!java.base/java/lang/String.java"), names);
        assertEquals("class Main", docs.get(0).text());
        assertTrue(TextSource.of(zip).estimateBytes() > 0);
    }

    @Test
    void jsonlLinesAreDocuments() throws IOException {
        Path f = tmp.resolve("data.jsonl");
        write(f, "{\"text\": \"first doc\", \"id\": 1}\n\n{\"text\": \"second\\nline \\u00e9\"}\n{\"text\":\"\"}\n");
        List<TextSource.Document> docs = all(TextSource.of(f));
        assertEquals(List.of("first doc", "second\nline é", ""), docs.stream().map(TextSource.Document::text).toList());
        assertEquals(f + ":3", docs.get(1).name());

        Path bad = tmp.resolve("bad.jsonl");
        write(bad, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
        IOException e = assertThrows(IOException.class, () -> all(TextSource.of(bad)));
        assertTrue(e.getMessage().contains(bad + ":2"), e.getMessage());
        Path bad2 = tmp.resolve("bad2.jsonl");
        write(bad2, "{\"text\": \"ok\"\n");
        e = assertThrows(IOException.class, () -> all(TextSource.of(bad2)));
        assertTrue(e.getMessage().contains(bad2 + ":1"), e.getMessage());
    }

    @Test
    void jsonlInsideDirectory() throws IOException {
        Path dir = tmp.resolve("mixed");
        write(dir.resolve("a.jsonl"), "{\"text\":\"j1\"}\n{\"text\":\"j2\"}\n");
        write(dir.resolve("b.txt"), "plain");
        assertEquals(List.of("j1", "j2", "plain"), all(TextSource.of(dir)).stream().map(TextSource.Document::text).toList());
    }

    @Test
    void limitBytesStopsAndCutsAtCharacterBoundary() throws IOException {
        Path dir = tmp.resolve("lim");
        write(dir.resolve("1.txt"), "0123456789");
        write(dir.resolve("2.txt"), "abcé"); // 5 bytes
        write(dir.resolve("3.txt"), "never read");
        TextSource src = new TextSource(TextSource.of(dir).options().withLimitBytes(14));
        List<TextSource.Document> docs = all(src);
        assertEquals(2, docs.size());
        assertEquals("abc", docs.get(1).text()); // é would need bytes 14..15
        assertEquals(14, docs.stream().mapToLong(TextSource.Document::bytes).sum());
        assertEquals(14, src.estimateBytes());

        // exactly at a document end: the next document is not read
        docs = all(src.withLimitBytes(10));
        assertEquals(List.of("0123456789"), docs.stream().map(TextSource.Document::text).toList());

        Path j = tmp.resolve("l.jsonl");
        write(j, "{\"text\":\"héllo\"}\n{\"text\":\"world\"}\n");
        docs = all(TextSource.of(j).withLimitBytes(9));
        assertEquals(List.of("héllo", "wor"), docs.stream().map(TextSource.Document::text).toList());
    }

    @Test
    void missingPathIsNamed() throws IOException {
        Path missing = tmp.resolve("does/not/exist.txt");
        write(tmp.resolve("ok.txt"), "fine");
        NoSuchFileException e = assertThrows(NoSuchFileException.class,
                () -> TextSource.of(tmp.resolve("ok.txt"), missing).open());
        assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("input not found"), e.getMessage());
    }

    @Test
    void multipleInputsInOrder() throws IOException {
        write(tmp.resolve("x.txt"), "x");
        write(tmp.resolve("d/y.txt"), "y");
        assertEquals(List.of("y", "x"), all(TextSource.of(tmp.resolve("d"), tmp.resolve("x.txt")))
                .stream().map(TextSource.Document::text).toList());
    }

    @Test
    void utf8Helpers() {
        byte[] b = "aé€😀".getBytes(StandardCharsets.UTF_8); // 1 + 2 + 3 + 4
        assertEquals(10, b.length);
        assertEquals(10, TextSource.utf8Boundary(b, 10));
        for (int n = 7; n < 10; n++) {
            assertEquals(6, TextSource.utf8Boundary(b, n));
        }
        assertEquals(3, TextSource.utf8Boundary(b, 5));
        assertEquals(1, TextSource.utf8Boundary(b, 2));
        assertEquals(10, TextSource.utf8Length("aé€😀"));
        assertEquals("aé€", TextSource.truncateUtf8("aé€😀", 9));
        assertEquals("aé€😀", TextSource.truncateUtf8("aé€😀", 10));
        assertEquals("", TextSource.truncateUtf8("é", 1));
        assertNull(null);
    }

    @Test
    void largeFileWithLimitReadsOnlyThePrefix() throws IOException {
        Path f = tmp.resolve("big.txt");
        try (OutputStream o = Files.newOutputStream(f)) {
            byte[] line = "the quick brown fox jumps over the lazy dog\n".getBytes(StandardCharsets.UTF_8);
            for (int i = 0; i < 50_000; i++) {
                o.write(line);
            }
        }
        List<TextSource.Document> docs = all(TextSource.of(f).withLimitBytes(1000));
        assertEquals(1, docs.size());
        assertEquals(1000, docs.get(0).text().length());
    }
}
