package dev.exeunt.model.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The directory layout Hugging Face {@code datasets}' {@code Dataset.save_to_disk} writes: Arrow IPC
 * stream files {@code data-00000-of-0000M.arrow}, a {@code state.json} whose {@code "_data_files"}
 * lists them in order, and a {@code dataset_info.json} with the features. {@code load_from_disk} reads
 * the shards in the order of {@code state.json}; so does {@link #shards(Path)}.
 */
public final class HfDatasetDirectory {
    public static final String STATE = "state.json";
    public static final String INFO = "dataset_info.json";
    private static final Pattern SHARD = Pattern.compile("data-(\\d{5})-of-(\\d{5})\\.arrow");
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private HfDatasetDirectory() {}

    /** Name of shard {@code i} of {@code n}, as {@code datasets} names it. */
    public static String shardName(int i, int n) {
        return String.format(java.util.Locale.ROOT, "data-%05d-of-%05d.arrow", i, n);
    }

    /**
     * The shard files of a dataset directory, in order: those {@code state.json} lists, or (without a
     * {@code state.json}) every {@code data-NNNNN-of-MMMMM.arrow}, which must then be all M of them.
     */
    public static List<Path> shards(Path dir) throws IOException {
        Path state = dir.resolve(STATE);
        if (Files.isRegularFile(state)) {
            return fromState(dir, state);
        }
        TreeMap<Integer, Path> found = new TreeMap<>();
        int of = -1;
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                Matcher m = SHARD.matcher(p.getFileName().toString());
                if (!m.matches()) continue;
                int n = Integer.parseInt(m.group(2));
                if (of >= 0 && n != of) {
                    throw new CheckpointFormatException(dir, "shards of different counts: " + p.getFileName()
                            + " and one of " + of);
                }
                of = n;
                found.put(Integer.parseInt(m.group(1)), p);
            }
        }
        if (found.isEmpty()) {
            throw new CheckpointFormatException(dir, "a dataset directory needs " + STATE
                    + " or data-NNNNN-of-MMMMM.arrow files; found neither");
        }
        for (int i = 0; i < of; i++) {
            if (!found.containsKey(i)) {
                throw new CheckpointFormatException(dir, "shard " + shardName(i, of) + " is missing");
            }
        }
        if (found.size() != of) {
            throw new CheckpointFormatException(dir, found.size() + " shards named '-of-" + String.format("%05d", of)
                    + "' but their indices are not 0.." + (of - 1));
        }
        return List.copyOf(found.values());
    }

    private static List<Path> fromState(Path dir, Path state) throws IOException {
        JsonNode root;
        try {
            root = JSON.readTree(state.toFile());
        } catch (IOException e) {
            throw new CheckpointFormatException(state, "not valid JSON: " + e.getMessage());
        }
        JsonNode files = root == null ? null : root.get("_data_files");
        if (files == null || !files.isArray() || files.isEmpty()) {
            throw new CheckpointFormatException(state, "'_data_files' must be a non-empty array of {\"filename\": ...}");
        }
        JsonNode indices = root.get("_indices_data_files");
        if (indices != null && !indices.isNull()) {
            // an indices mapping (old save_to_disk after shuffle/select) reorders the rows: reading the data raw would be wrong
            throw new CheckpointFormatException(state, "lists '_indices_data_files': the rows are reordered by an indices"
                    + " mapping, which is not supported; save it again with datasets >= 2.0 (flatten_indices)");
        }
        List<Path> out = new ArrayList<>();
        for (int i = 0; i < files.size(); i++) {
            JsonNode f = files.get(i).get("filename");
            if (f == null || !f.isTextual()) {
                throw new CheckpointFormatException(state, "'_data_files[" + i + "].filename' must be a string");
            }
            String name = f.asText();
            Path p = dir.resolve(name).normalize();
            // a file name, not a path: state.json must not point outside its directory
            if (name.isEmpty() || !p.getParent().equals(dir.normalize()) || name.contains("/") || name.contains("\\")) {
                throw new CheckpointFormatException(state, "'_data_files[" + i + "].filename' = '" + name
                        + "' is not a file name inside the directory");
            }
            if (!Files.isRegularFile(p)) {
                throw new CheckpointFormatException(state, "lists " + name + ", which does not exist");
            }
            out.add(p);
        }
        return out;
    }

    /**
     * Writes {@code state.json} and {@code dataset_info.json} for {@code shardNames} (in order) into
     * {@code dir}, as {@code save_to_disk} does; {@code int64} says the ids' dtype.
     */
    public static void writeMetadata(Path dir, List<String> shardNames, boolean int64) throws IOException {
        ObjectNode state = JSON.createObjectNode();
        var files = state.putArray("_data_files");
        for (String n : shardNames) files.addObject().put("filename", n);
        state.put("_fingerprint", Integer.toHexString(shardNames.hashCode()));
        state.putNull("_format_columns");
        state.putObject("_format_kwargs");
        state.putNull("_format_type");
        state.put("_output_all_columns", false);
        state.putNull("_split");
        ObjectNode info = JSON.createObjectNode();
        info.put("citation", "");
        info.put("description", "");
        ObjectNode feature = info.putObject("features").putObject(TokenDatasetWriter.COLUMN);
        feature.putObject("feature").put("dtype", int64 ? "int64" : "int32").put("_type", "Value");
        feature.put("_type", "Sequence");
        info.put("homepage", "");
        info.put("license", "");
        writeAtomically(dir.resolve(INFO), JSON.writeValueAsBytes(info));
        writeAtomically(dir.resolve(STATE), JSON.writeValueAsBytes(state)); // last: its presence means complete
    }

    private static void writeAtomically(Path target, byte[] bytes) throws IOException {
        Path tmp = IoUtil.tempFileFor(target);
        try {
            Files.write(tmp, bytes);
            IoUtil.commit(tmp, target);
        } catch (IOException | RuntimeException e) {
            IoUtil.deleteQuietly(tmp);
            throw e;
        }
    }
}
