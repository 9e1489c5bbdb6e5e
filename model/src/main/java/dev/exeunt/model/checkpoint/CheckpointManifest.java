package dev.exeunt.model.checkpoint;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.io.CheckpointFormatException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.zip.CRC32C;

/**
 * The last file written into a staged checkpoint ({@value #FILE}): every other file with its size and
 * CRC32C, plus the save's generation (one more than the copy it replaces) and iteration. A directory is
 * a complete checkpoint exactly when this file parses and every file it lists has the listed size: the
 * manifest is written only after all of them were fsynced, so a crash cannot leave it beside a short
 * file. Logs are listed apart with the length they had at the save; they keep growing in the published
 * directory and are not part of completeness (losing a log line must never cost a run).
 * {@code config.json} and {@code tokenizer.json} are checked for presence only: people edit them by
 * hand in Hugging Face directories, and their own readers validate them (the strict config reader, the
 * tokenizer hash), so an edit is not damage.
 */
public record CheckpointManifest(long generation, int iteration, Map<String, Entry> files, Map<String, Long> logs) {
    public static final String FILE = "checkpoint_manifest.json";
    static final String TEMP = FILE + ".tmp";
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Files whose size and checksum may change after the save (hand edits); they must only be present. */
    private static final Set<String> EDITABLE = Set.of(ModelCheckpoint.CONFIG, ModelCheckpoint.TOKENIZER);

    /** One file of the checkpoint. */
    public record Entry(long bytes, long crc32c) {}

    public CheckpointManifest {
        files = Collections.unmodifiableMap(new TreeMap<>(files));
        logs = Collections.unmodifiableMap(new TreeMap<>(logs));
    }

    /** Describes every regular file now in {@code dir} (reading each for its checksum); {@code logNames} go to {@link #logs}. */
    static CheckpointManifest describe(Path dir, long generation, int iteration, Set<String> logNames) throws IOException {
        Map<String, Entry> files = new TreeMap<>();
        Map<String, Long> logs = new TreeMap<>();
        try (var entries = Files.list(dir)) {
            for (Path p : entries.sorted().toList()) {
                String name = p.getFileName().toString();
                if (name.equals(FILE) || name.equals(TEMP) || !Files.isRegularFile(p)) continue;
                if (logNames.contains(name)) logs.put(name, Files.size(p));
                else files.put(name, new Entry(Files.size(p), crc32c(p)));
            }
        }
        return new CheckpointManifest(generation, iteration, files, logs);
    }

    /** Writes the manifest durably: a temp file, fsynced, renamed into place, then the directory fsynced. */
    void write(Path dir) throws IOException {
        ObjectNode o = JSON.createObjectNode();
        o.put("format", "exeunt-checkpoint");
        o.put("generation", generation);
        o.put("iteration", iteration);
        ObjectNode f = o.putObject("files");
        for (var e : files.entrySet()) {
            f.putObject(e.getKey()).put("bytes", e.getValue().bytes()).put("crc32c", String.format("%08x", e.getValue().crc32c()));
        }
        ObjectNode l = o.putObject("logs");
        for (var e : logs.entrySet()) l.put(e.getKey(), e.getValue());
        Path temp = dir.resolve(TEMP);
        try (FileChannel ch = FileChannel.open(temp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            ByteBuffer bytes = ByteBuffer.wrap(JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(o));
            while (bytes.hasRemaining()) ch.write(bytes);
            ch.force(true);
        }
        CrashPoints.reach(CrashPoints.MANIFEST_TEMP_WRITTEN);
        Files.move(temp, dir.resolve(FILE), StandardCopyOption.ATOMIC_MOVE);
        Fsync.directory(dir);
    }

    /** The manifest of {@code dir}; empty when it has none, an error naming the problem when it does not parse. */
    public static Optional<CheckpointManifest> read(Path dir) throws CheckpointFormatException {
        Path file = dir.resolve(FILE);
        if (!Files.isRegularFile(file)) return Optional.empty();
        try {
            JsonNode o = JSON.readTree(file.toFile());
            if (o == null || !"exeunt-checkpoint".equals(o.path("format").asText())) {
                throw new CheckpointFormatException(file, "not an Exeunt checkpoint manifest (no \"format\": \"exeunt-checkpoint\")");
            }
            Map<String, Entry> files = new TreeMap<>();
            for (var e : o.path("files").properties()) {
                long bytes = e.getValue().path("bytes").asLong(-1);
                String crc = e.getValue().path("crc32c").asText("");
                if (bytes < 0 || !crc.matches("[0-9a-f]{8}")) {
                    throw new CheckpointFormatException(file, "entry " + e.getKey() + " lacks a valid \"bytes\" or \"crc32c\"");
                }
                files.put(e.getKey(), new Entry(bytes, Long.parseLong(crc, 16)));
            }
            if (files.isEmpty()) throw new CheckpointFormatException(file, "lists no files");
            Map<String, Long> logs = new TreeMap<>();
            for (var e : o.path("logs").properties()) {
                logs.put(e.getKey(), e.getValue().asLong());
            }
            if (!o.path("generation").canConvertToLong() || !o.path("iteration").canConvertToInt()) {
                throw new CheckpointFormatException(file, "lacks \"generation\" or \"iteration\"");
            }
            return Optional.of(new CheckpointManifest(o.path("generation").asLong(), o.path("iteration").asInt(), files, logs));
        } catch (JacksonException e) {
            throw new CheckpointFormatException(file, "manifest is not valid JSON: " + e.getOriginalMessage(), e);
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (IOException e) {
            throw new CheckpointFormatException(file, "cannot read the manifest: " + e.getMessage(), e);
        }
    }

    /** Why {@code dir} does not hold every listed file at its listed size; null when it does (sizes only: cheap). */
    String missingOrShort(Path dir) throws IOException {
        for (var e : files.entrySet()) {
            Path p = dir.resolve(e.getKey());
            if (!Files.isRegularFile(p)) return "lacks " + e.getKey() + ", which its manifest lists";
            if (EDITABLE.contains(e.getKey())) continue;
            long size = Files.size(p);
            if (size != e.getValue().bytes()) {
                return e.getKey() + " is " + size + " bytes but its manifest says " + e.getValue().bytes();
            }
        }
        return null;
    }

    /** Checks sizes and checksums of every listed file; the error names the first file that differs. */
    public void verify(Path dir) throws IOException {
        String problem = missingOrShort(dir);
        if (problem != null) throw new CheckpointFormatException(dir, "damaged checkpoint: " + problem);
        for (var e : files.entrySet()) {
            if (EDITABLE.contains(e.getKey())) continue;
            long crc = crc32c(dir.resolve(e.getKey()));
            if (crc != e.getValue().crc32c()) {
                throw new CheckpointFormatException(dir.resolve(e.getKey()), String.format("damaged checkpoint: CRC32C is %08x "
                        + "but the manifest says %08x (the file changed after it was saved)", crc, e.getValue().crc32c()));
            }
        }
    }

    private static long crc32c(Path file) throws IOException {
        CRC32C crc = new CRC32C();
        ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            while (ch.read(buf) >= 0) {
                buf.flip();
                crc.update(buf);
                buf.clear();
            }
        }
        return crc.getValue();
    }
}
