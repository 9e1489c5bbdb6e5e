package dev.exeunt.model.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * A checkpoint made of one or more safetensors files, addressed by tensor name.
 *
 * <p>{@link #open(Path)} accepts:
 * <ul>
 *   <li>a directory holding {@code model.safetensors.index.json} (Hugging Face sharded layout:
 *       {@code {"metadata": {...}, "weight_map": {tensor name: shard file name}}}); every shard named
 *       there is opened and every name of the weight map must be present in its shard;</li>
 *   <li>a directory holding {@code model.safetensors};</li>
 *   <li>otherwise a directory: all {@code *.safetensors} files in it (sorted by file name); a tensor
 *       name present in two files is an error;</li>
 *   <li>a {@code .safetensors} file, or an {@code *.index.json} file.</li>
 * </ul>
 * All files are memory-mapped in one shared arena released by {@link #close()}.
 */
public final class SafetensorsCheckpoint implements AutoCloseable {
    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    private final Path location;
    private final Arena arena;
    private final List<SafetensorsFile> files;
    private final Map<String, SafetensorsFile> byName; // sorted by name
    private final Map<String, String> indexMetadata;

    private SafetensorsCheckpoint(Path location, Arena arena, List<SafetensorsFile> files,
                                  Map<String, SafetensorsFile> byName, Map<String, String> indexMetadata) {
        this.location = location;
        this.arena = arena;
        this.files = files;
        this.byName = byName;
        this.indexMetadata = indexMetadata;
    }

    public static SafetensorsCheckpoint open(Path location) throws IOException {
        Arena arena = Arena.ofShared();
        try {
            return open(location, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static SafetensorsCheckpoint open(Path location, Arena arena) throws IOException {
        if (Files.isDirectory(location)) {
            Path index = location.resolve(INDEX_FILE);
            if (Files.isRegularFile(index)) {
                return openIndex(location, index, arena);
            }
            Path single = location.resolve(SINGLE_FILE);
            if (Files.isRegularFile(single)) {
                return openFiles(location, List.of(single), arena);
            }
            List<Path> all = new ArrayList<>();
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(location, "*.safetensors")) {
                for (Path p : ds) {
                    if (Files.isRegularFile(p)) {
                        all.add(p);
                    }
                }
            }
            if (all.isEmpty()) {
                throw new CheckpointFormatException(location, "no " + INDEX_FILE + ", " + SINGLE_FILE
                        + " or *.safetensors file in this directory");
            }
            all.sort(null);
            return openFiles(location, all, arena);
        }
        if (!Files.isRegularFile(location)) {
            throw new java.nio.file.NoSuchFileException(location.toString());
        }
        if (location.getFileName().toString().endsWith(".index.json")) {
            return openIndex(location, location, arena);
        }
        return openFiles(location, List.of(location), arena);
    }

    private static SafetensorsCheckpoint openFiles(Path location, List<Path> paths, Arena arena) throws IOException {
        List<SafetensorsFile> files = new ArrayList<>();
        Map<String, SafetensorsFile> byName = new TreeMap<>();
        for (Path p : paths) {
            SafetensorsFile f = SafetensorsFile.open(p, arena);
            files.add(f);
            for (String name : f.names()) {
                SafetensorsFile prev = byName.putIfAbsent(name, f);
                if (prev != null) {
                    throw new CheckpointFormatException(location, "tensor '" + name + "' is present in both "
                            + prev.path().getFileName() + " and " + p.getFileName());
                }
            }
        }
        return new SafetensorsCheckpoint(location, arena, List.copyOf(files),
                Collections.unmodifiableMap(byName), Map.of());
    }

    private static SafetensorsCheckpoint openIndex(Path location, Path index, Arena arena) throws IOException {
        JsonNode root;
        try {
            root = JSON.readTree(Files.readAllBytes(index));
        } catch (JsonProcessingException e) {
            throw new CheckpointFormatException(index, "malformed JSON: " + e.getOriginalMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new CheckpointFormatException(index, "index is not a JSON object");
        }
        JsonNode wm = root.get("weight_map");
        if (wm == null || !wm.isObject()) {
            throw new CheckpointFormatException(index, "missing or non-object 'weight_map'");
        }
        Map<String, String> metadata = new TreeMap<>();
        JsonNode md = root.get("metadata");
        if (md != null && md.isObject()) {
            for (Iterator<Map.Entry<String, JsonNode>> it = md.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                metadata.put(e.getKey(), e.getValue().isTextual() ? e.getValue().textValue() : e.getValue().toString());
            }
        }
        Map<String, List<String>> namesByShard = new TreeMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = wm.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw new CheckpointFormatException(index, "weight_map entry for tensor '" + e.getKey()
                        + "' is not a file name: " + e.getValue());
            }
            namesByShard.computeIfAbsent(e.getValue().textValue(), k -> new ArrayList<>()).add(e.getKey());
        }
        Path dir = index.toAbsolutePath().getParent();
        List<String> missingFiles = new ArrayList<>();
        for (String shard : namesByShard.keySet()) {
            Path p = dir.resolve(shard).normalize();
            if (!p.startsWith(dir) || !Files.isRegularFile(p)) {
                missingFiles.add(shard);
            }
        }
        if (!missingFiles.isEmpty()) {
            throw new CheckpointFormatException(index, "shard files named in weight_map are missing: " + missingFiles);
        }
        List<SafetensorsFile> files = new ArrayList<>();
        Map<String, SafetensorsFile> byName = new TreeMap<>();
        List<String> missing = new ArrayList<>();
        for (Map.Entry<String, List<String>> e : namesByShard.entrySet()) {
            SafetensorsFile f = SafetensorsFile.open(dir.resolve(e.getKey()), arena);
            files.add(f);
            for (String name : e.getValue()) {
                if (f.contains(name)) {
                    byName.put(name, f);
                } else {
                    missing.add(name + " (in " + e.getKey() + ")");
                }
            }
        }
        if (!missing.isEmpty()) {
            throw new CheckpointFormatException(index, missing.size() + " tensors of weight_map are missing from"
                    + " their shard: " + summarize(missing));
        }
        return new SafetensorsCheckpoint(location, arena, List.copyOf(files),
                Collections.unmodifiableMap(byName), Collections.unmodifiableMap(metadata));
    }

    private static String summarize(List<String> names) {
        int show = Math.min(names.size(), 20);
        String s = String.join(", ", names.subList(0, show));
        return names.size() > show ? s + ", ... (" + (names.size() - show) + " more)" : s;
    }

    /** The directory or file this checkpoint was opened from. */
    public Path location() {
        return location;
    }

    /** The files of the checkpoint (shards in file-name order). */
    public List<SafetensorsFile> files() {
        return files;
    }

    /** The index's {@code metadata} (e.g. {@code total_size}); empty without an index. */
    public Map<String, String> indexMetadata() {
        return indexMetadata;
    }

    /**
     * The {@code __metadata__} of all files merged (sorted by key; on conflicting values the first file
     * in {@link #files()} order wins).
     */
    public Map<String, String> metadata() {
        Map<String, String> m = new TreeMap<>();
        for (SafetensorsFile f : files) {
            f.metadata().forEach(m::putIfAbsent);
        }
        return m;
    }

    /** All tensor names, sorted. */
    public SortedSet<String> names() {
        return Collections.unmodifiableSortedSet(new TreeSet<>(byName.keySet()));
    }

    public boolean contains(String name) {
        return byName.containsKey(name);
    }

    public SafetensorsTensorInfo tensor(String name) {
        return fileOf(name).tensor(name);
    }

    /** The file holding a tensor. */
    public SafetensorsFile fileOf(String name) {
        SafetensorsFile f = byName.get(name);
        if (f == null) {
            throw new NoSuchElementException(location + ": no tensor named '" + name + "' in this checkpoint");
        }
        return f;
    }

    public MemorySegment data(String name) {
        return fileOf(name).data(name);
    }

    /** The names of {@code wanted} that the checkpoint lacks, in the given order. */
    public List<String> missing(Collection<String> wanted) {
        List<String> out = new ArrayList<>();
        for (String n : wanted) {
            if (!byName.containsKey(n)) {
                out.add(n);
            }
        }
        return out;
    }

    /** Throws a {@link CheckpointFormatException} listing every name of {@code wanted} that is missing. */
    public void requireAll(Collection<String> wanted) throws CheckpointFormatException {
        List<String> miss = missing(wanted);
        if (!miss.isEmpty()) {
            throw new CheckpointFormatException(location, miss.size() + " of " + wanted.size()
                    + " required tensors are missing: " + summarize(miss));
        }
    }

    /** Tensor infos by name (sorted). */
    public Map<String, SafetensorsTensorInfo> tensors() {
        Map<String, SafetensorsTensorInfo> m = new LinkedHashMap<>();
        byName.forEach((n, f) -> m.put(n, f.tensor(n)));
        return m;
    }

    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }
}
