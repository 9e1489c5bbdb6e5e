package dev.exeunt.model.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * Streams text documents from files, directories, zip archives and JSON-lines files.
 *
 * <ul>
 *   <li>A plain file is one document: its bytes decoded as UTF-8, malformed bytes replaced by U+FFFD, a
 *       leading byte-order mark dropped.
 *   <li>A directory is walked recursively; its files are read in order of their relative path (with
 *       {@code /} separators, compared as strings), so the result does not depend on the file system.
 *       Hidden files and directories (name starting with {@code .}) are skipped. Only files whose
 *       extension is in {@link Options#extensions()} are read, unless {@link Options#allFiles()}.
 *   <li>A {@code .zip} archive (e.g. the JDK's {@code lib/src.zip}) is read entry by entry in order of
 *       entry name, with the same filters as a directory.
 *   <li>A {@code .jsonl} file (given directly or met in a directory or zip) holds one JSON object per
 *       line; each line's {@code "text"} string is one document. Blank lines are skipped; a line that is
 *       not an object with a string {@code "text"} field is an error naming the file and line.
 * </ul>
 *
 * A file (other than a JSON-lines file) whose first 8 KiB contain a NUL byte is binary and skipped
 * (counted in {@link Cursor#skippedBinary()}). Only one document is held in memory at a time (plus the
 * sorted list of file or entry names of the directory or zip being read).
 *
 * <p>{@link Options#limitBytes()} caps the input bytes read in total: the document that reaches the cap
 * is cut at the last whole UTF-8 character that fits, and reading stops after it.
 *
 * <p>Usage: {@code try (var c = TextSource.of(path).open()) { for (Document d; (d = c.next()) != null; ) ... }}.
 */
public final class TextSource {
    /** Extensions read from directories and zips by default (lower case, with the dot). */
    public static final List<String> DEFAULT_EXTENSIONS = List.of(
            ".txt", ".md", ".java", ".py", ".c", ".h", ".rs", ".go", ".js", ".ts", ".json", ".xml",
            ".html", ".csv", ".tex", ".rst", ".jsonl");

    /** Bytes examined for a NUL byte to detect binary files. */
    public static final int BINARY_PROBE = 8192;

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * One document.
     *
     * @param name  where it came from: a file path, {@code archive.zip!entry/name}, or {@code file.jsonl:LINE}
     * @param text  the text
     * @param bytes input bytes it was read from (the UTF-8 length of the text for JSON lines)
     */
    public record Document(String name, String text, long bytes) {}

    /**
     * What to read.
     *
     * @param inputs     files, directories, {@code .zip} or {@code .jsonl} files, read in this order
     * @param extensions extensions to read from directories and zips (case-insensitive; with or without the dot)
     * @param allFiles   read every (non-hidden, non-binary) file, ignoring {@code extensions}
     * @param limitBytes stop after this many input bytes; {@code <= 0} means no limit
     */
    public record Options(List<Path> inputs, List<String> extensions, boolean allFiles, long limitBytes) {
        public Options {
            inputs = List.copyOf(inputs);
            if (inputs.isEmpty()) {
                throw new IllegalArgumentException("no input paths");
            }
            List<String> norm = new ArrayList<>();
            for (String e : extensions) {
                String x = e.trim().toLowerCase(Locale.ROOT);
                if (x.isEmpty()) {
                    continue;
                }
                norm.add(x.startsWith(".") ? x : "." + x);
            }
            extensions = List.copyOf(norm);
        }

        public Options withExtensions(Collection<String> e) {
            return new Options(inputs, List.copyOf(e), allFiles, limitBytes);
        }

        public Options withAllFiles(boolean b) {
            return new Options(inputs, extensions, b, limitBytes);
        }

        public Options withLimitBytes(long n) {
            return new Options(inputs, extensions, allFiles, n);
        }
    }

    private final Options options;
    private final Set<String> extensions;

    public TextSource(Options options) {
        this.options = Objects.requireNonNull(options);
        this.extensions = new TreeSet<>(options.extensions());
    }

    /** A source over {@code inputs} with the default extensions and no byte limit. */
    public static TextSource of(Path... inputs) {
        return new TextSource(new Options(List.of(inputs), DEFAULT_EXTENSIONS, false, 0));
    }

    /** A source over {@code inputs} with the default extensions and no byte limit. */
    public static TextSource of(List<Path> inputs) {
        return new TextSource(new Options(inputs, DEFAULT_EXTENSIONS, false, 0));
    }

    public Options options() {
        return options;
    }

    /** A copy reading at most {@code limitBytes} bytes ({@code <= 0}: no limit). */
    public TextSource withLimitBytes(long limitBytes) {
        return new TextSource(options.withLimitBytes(limitBytes));
    }

    /** Throws {@link NoSuchFileException} naming the first input that does not exist. */
    public void checkInputs() throws NoSuchFileException {
        for (Path p : options.inputs()) {
            if (!Files.exists(p)) {
                throw new NoSuchFileException(p.toString(), null, "input not found");
            }
        }
    }

    /**
     * Total size in bytes of what would be read (file sizes, uncompressed zip entry sizes), capped by the
     * byte limit; for progress display. Lists directories and zip directories but reads no contents.
     */
    public long estimateBytes() throws IOException {
        checkInputs();
        long total = 0;
        for (Path p : options.inputs()) {
            if (Files.isDirectory(p)) {
                for (Path f : listDirectory(p)) {
                    total += Files.size(f);
                }
            } else if (isZip(p)) {
                try (ZipFile z = new ZipFile(p.toFile(), StandardCharsets.UTF_8)) {
                    for (ZipEntry e : zipEntries(z)) {
                        total += Math.max(0, e.getSize());
                    }
                }
            } else {
                total += Files.size(p);
            }
            if (options.limitBytes() > 0 && total >= options.limitBytes()) {
                return options.limitBytes();
            }
        }
        return total;
    }

    /** Starts reading. Fails with {@link NoSuchFileException} if an input does not exist. */
    public Cursor open() throws IOException {
        checkInputs();
        return new Cursor();
    }

    /** Reads every document in order (convenience over {@link #open()}). */
    public void forEach(DocumentConsumer consumer) throws IOException {
        try (Cursor c = open()) {
            for (Document d; (d = c.next()) != null; ) {
                consumer.accept(d);
            }
        }
    }

    /** Receives documents; may throw {@link IOException}. */
    @FunctionalInterface
    public interface DocumentConsumer {
        void accept(Document document) throws IOException;
    }

    // ------------------------------------------------------------------ filters and listing

    private boolean wanted(String name) {
        String base = name.substring(name.lastIndexOf('/') + 1);
        if (base.isEmpty() || base.startsWith(".")) {
            return false;
        }
        for (String part : name.split("/")) {
            if (part.startsWith(".") && !part.equals(".") && !part.equals("..")) {
                return false;
            }
        }
        if (options.allFiles()) {
            return true;
        }
        int dot = base.lastIndexOf('.');
        return dot > 0 && extensions.contains(base.substring(dot).toLowerCase(Locale.ROOT));
    }

    private static boolean isZip(Path p) {
        return Files.isRegularFile(p) && p.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".zip");
    }

    private static boolean isJsonl(String name) {
        return name.toLowerCase(Locale.ROOT).endsWith(".jsonl");
    }

    /** Wanted regular files under {@code dir}, sorted by relative path. */
    private List<Path> listDirectory(Path dir) throws IOException {
        List<String[]> found = new ArrayList<>();
        try (Stream<Path> s = Files.walk(dir)) {
            Iterator<Path> it = s.iterator();
            while (it.hasNext()) {
                Path f = it.next();
                if (!Files.isRegularFile(f)) {
                    continue;
                }
                String rel = dir.relativize(f).toString().replace(f.getFileSystem().getSeparator(), "/");
                if (wanted(rel)) {
                    found.add(new String[] {rel, f.toString()});
                }
            }
        } catch (java.io.UncheckedIOException e) {
            throw e.getCause();
        }
        found.sort((a, b) -> a[0].compareTo(b[0]));
        List<Path> out = new ArrayList<>(found.size());
        for (String[] f : found) {
            out.add(Path.of(f[1]));
        }
        return out;
    }

    /** Wanted file entries of a zip, sorted by name. */
    private List<ZipEntry> zipEntries(ZipFile z) {
        List<ZipEntry> out = new ArrayList<>();
        for (var en = z.entries(); en.hasMoreElements(); ) {
            ZipEntry e = en.nextElement();
            if (!e.isDirectory() && wanted(e.getName())) {
                out.add(e);
            }
        }
        out.sort((a, b) -> a.getName().compareTo(b.getName()));
        return out;
    }

    // ------------------------------------------------------------------ decoding helpers

    /** Length of the longest prefix of {@code b[0, n)} that does not end inside a UTF-8 sequence. */
    static int utf8Boundary(byte[] b, int n) {
        int i = n - 1;
        int back = 0;
        while (i >= 0 && back < 3 && (b[i] & 0xC0) == 0x80) {
            i--;
            back++;
        }
        if (i < 0) {
            return n;
        }
        int lead = b[i] & 0xFF;
        int need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        return n - i >= need ? n : i;
    }

    /** UTF-8 length of {@code s}; an unpaired surrogate counts 3 bytes (as its replacement U+FFFD). */
    static long utf8Length(CharSequence s) {
        long n = 0;
        int len = s.length();
        for (int i = 0; i < len; i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                n++;
            } else if (c < 0x800) {
                n += 2;
            } else if (Character.isHighSurrogate(c) && i + 1 < len && Character.isLowSurrogate(s.charAt(i + 1))) {
                n += 4;
                i++;
            } else {
                n += 3;
            }
        }
        return n;
    }

    /** The longest prefix of {@code s} whose UTF-8 length is at most {@code maxBytes}, cut between code points. */
    static String truncateUtf8(String s, long maxBytes) {
        long n = 0;
        int len = s.length();
        for (int i = 0; i < len; i++) {
            char c = s.charAt(i);
            int w;
            int chars = 1;
            if (c < 0x80) {
                w = 1;
            } else if (c < 0x800) {
                w = 2;
            } else if (Character.isHighSurrogate(c) && i + 1 < len && Character.isLowSurrogate(s.charAt(i + 1))) {
                w = 4;
                chars = 2;
            } else {
                w = 3;
            }
            if (n + w > maxBytes) {
                return s.substring(0, i);
            }
            n += w;
            i += chars - 1;
        }
        return s;
    }

    private static String decode(byte[] b, int len) {
        int off = 0;
        if (len >= 3 && (b[0] & 0xFF) == 0xEF && (b[1] & 0xFF) == 0xBB && (b[2] & 0xFF) == 0xBF) {
            off = 3;
        }
        return new String(b, off, len - off, StandardCharsets.UTF_8);
    }

    private static boolean hasNul(byte[] b, int len) {
        int n = Math.min(len, BINARY_PROBE);
        for (int i = 0; i < n; i++) {
            if (b[i] == 0) {
                return true;
            }
        }
        return false;
    }

    // ------------------------------------------------------------------ cursor

    /** One pass over the documents. Not thread-safe. */
    public final class Cursor implements AutoCloseable {
        private int inputIndex = -1;
        private Iterator<Path> files = Collections.emptyIterator();
        private ZipFile zip;
        private String zipName;
        private Iterator<ZipEntry> entries = Collections.emptyIterator();
        private BufferedReader jsonl;
        private String jsonlName;
        private long jsonlLine;
        private long bytes;
        private long documents;
        private long skippedBinary;
        private boolean done;

        private Cursor() {}

        /** Input bytes read so far. */
        public long bytesRead() {
            return bytes;
        }

        /** Documents returned so far. */
        public long documentsRead() {
            return documents;
        }

        /** Files skipped because they look binary. */
        public long skippedBinary() {
            return skippedBinary;
        }

        private long remaining() {
            return options.limitBytes() > 0 ? options.limitBytes() - bytes : -1;
        }

        /** The next document, or null at the end (or once the byte limit is reached). */
        public Document next() throws IOException {
            while (!done) {
                if (options.limitBytes() > 0 && bytes >= options.limitBytes()) {
                    finish();
                    return null;
                }
                Document d;
                if (jsonl != null) {
                    d = nextJsonl();
                    if (d != null) {
                        return counted(d);
                    }
                    continue;
                }
                if (entries.hasNext()) {
                    ZipEntry e = entries.next();
                    String name = zipName + "!" + e.getName();
                    if (isJsonl(name)) {
                        openJsonl(name, zip.getInputStream(e));
                        continue;
                    }
                    try (InputStream in = zip.getInputStream(e)) {
                        d = readDocument(name, in);
                    }
                    if (d != null) {
                        return counted(d);
                    }
                    continue;
                }
                if (files.hasNext()) {
                    Path f = files.next();
                    if (isJsonl(f.toString())) {
                        openJsonl(f.toString(), Files.newInputStream(f));
                        continue;
                    }
                    try (InputStream in = Files.newInputStream(f)) {
                        d = readDocument(f.toString(), in);
                    }
                    if (d != null) {
                        return counted(d);
                    }
                    continue;
                }
                closeZip();
                if (!advanceInput()) {
                    finish();
                    return null;
                }
            }
            return null;
        }

        private Document counted(Document d) {
            bytes += d.bytes();
            documents++;
            return d;
        }

        /** Reads one file-like document; null when skipped as binary. */
        private Document readDocument(String name, InputStream in) throws IOException {
            long rem = remaining();
            byte[] b = rem < 0 ? in.readAllBytes() : in.readNBytes((int) Math.min(rem, Integer.MAX_VALUE - 16));
            int len = b.length;
            if (hasNul(b, len)) {
                skippedBinary++;
                return null;
            }
            if (rem >= 0 && len >= rem) {
                // the byte limit is reached: cut at a character boundary; count the full `rem` so reading stops
                return new Document(name, decode(b, utf8Boundary(b, len)), rem);
            }
            return new Document(name, decode(b, len), len);
        }

        private void openJsonl(String name, InputStream src) {
            jsonl = new BufferedReader(new InputStreamReader(src, StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPLACE)
                    .onUnmappableCharacter(CodingErrorAction.REPLACE)), 1 << 16);
            jsonlName = name;
            jsonlLine = 0;
        }

        private Document nextJsonl() throws IOException {
            String line;
            while ((line = jsonl.readLine()) != null) {
                jsonlLine++;
                if (jsonlLine == 1 && line.startsWith("\uFEFF")) {
                    line = line.substring(1);
                }
                if (line.isBlank()) {
                    continue;
                }
                JsonNode node;
                try {
                    node = JSON.readTree(line);
                } catch (JsonProcessingException e) {
                    throw new IOException(jsonlName + ":" + jsonlLine + ": malformed JSON: " + e.getOriginalMessage(), e);
                }
                JsonNode t = node == null ? null : node.get("text");
                if (t == null || !t.isTextual()) {
                    throw new IOException(jsonlName + ":" + jsonlLine + ": expected an object with a string \"text\" field");
                }
                String text = t.asText();
                long n = utf8Length(text);
                long rem = remaining();
                if (rem >= 0 && n >= rem) {
                    return new Document(jsonlName + ":" + jsonlLine, truncateUtf8(text, rem), rem);
                }
                return new Document(jsonlName + ":" + jsonlLine, text, n);
            }
            jsonl.close();
            jsonl = null;
            return null;
        }

        private boolean advanceInput() throws IOException {
            inputIndex++;
            if (inputIndex >= options.inputs().size()) {
                return false;
            }
            Path p = options.inputs().get(inputIndex);
            if (!Files.exists(p)) {
                throw new NoSuchFileException(p.toString(), null, "input not found");
            }
            if (Files.isDirectory(p)) {
                files = listDirectory(p).iterator();
            } else if (isZip(p)) {
                zip = new ZipFile(p.toFile(), StandardCharsets.UTF_8);
                zipName = p.toString();
                entries = zipEntries(zip).iterator();
            } else {
                // a file named directly is read whatever its extension
                files = List.of(p).iterator();
            }
            return true;
        }

        private void closeZip() throws IOException {
            if (zip != null) {
                zip.close();
                zip = null;
                entries = Collections.emptyIterator();
            }
        }

        private void finish() throws IOException {
            done = true;
            close();
        }

        @Override
        public void close() throws IOException {
            try {
                if (jsonl != null) {
                    jsonl.close();
                    jsonl = null;
                }
            } finally {
                closeZip();
            }
        }
    }
}
