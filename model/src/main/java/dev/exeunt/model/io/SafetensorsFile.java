package dev.exeunt.model.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * A read-only, memory-mapped safetensors file.
 *
 * <p>Layout: 8-byte little-endian header length {@code N}, {@code N} bytes of UTF-8 JSON
 * ({@code {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}}), then the
 * data region; offsets are relative to the start of the data region ({@code 8 + N}). Everything is
 * validated when the file is opened: header length, JSON syntax, dtypes, shapes, offsets (in range,
 * not reversed, not overlapping), byte sizes against {@code product(shape) * dtype size}, and that the
 * data region is long enough. Failures throw {@link CheckpointFormatException} naming the file and
 * tensor.
 *
 * <p>Segments returned by {@link #data} are read-only slices of the mapping, valid until the arena the
 * file was opened with is closed ({@link #close()} for {@link #open(Path)}).
 */
public final class SafetensorsFile implements AutoCloseable {
    /** Upper bound on the header size; the reference implementation uses the same limit. */
    public static final long MAX_HEADER_SIZE = 100_000_000L;

    static final String METADATA_KEY = "__metadata__";
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    private final Path path;
    private final Arena arena;
    private final boolean ownsArena;
    private final MemorySegment mapping;
    private final long dataStart;
    private final Map<String, String> metadata;
    private final Map<String, SafetensorsTensorInfo> tensors; // in file (offset) order

    private SafetensorsFile(Path path, Arena arena, boolean ownsArena, MemorySegment mapping, long dataStart,
                            Map<String, String> metadata, Map<String, SafetensorsTensorInfo> tensors) {
        this.path = path;
        this.arena = arena;
        this.ownsArena = ownsArena;
        this.mapping = mapping;
        this.dataStart = dataStart;
        this.metadata = metadata;
        this.tensors = tensors;
    }

    /** Maps and validates a file; the mapping is released by {@link #close()}. */
    public static SafetensorsFile open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try {
            return open(path, arena, true);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * Maps and validates a file inside a caller-owned arena: the segments stay valid until that arena
     * is closed, and {@link #close()} does nothing.
     */
    public static SafetensorsFile open(Path path, Arena arena) throws IOException {
        return open(path, arena, false);
    }

    private static SafetensorsFile open(Path path, Arena arena, boolean owns) throws IOException {
        MemorySegment map;
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) {
                throw new CheckpointFormatException(path, "not a safetensors file: " + size
                        + " bytes, shorter than the 8-byte header length");
            }
            map = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
        }
        long fileSize = map.byteSize();
        long n = map.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
        if (n < 0 || n > fileSize - 8) {
            throw new CheckpointFormatException(path, "header length " + Long.toUnsignedString(n)
                    + " goes beyond the end of the file (" + fileSize + " bytes)");
        }
        if (n > MAX_HEADER_SIZE) {
            throw new CheckpointFormatException(path, "header length " + n + " exceeds the limit of "
                    + MAX_HEADER_SIZE + " bytes");
        }
        byte[] header = map.asSlice(8, n).toArray(ValueLayout.JAVA_BYTE);
        long dataStart = 8 + n;
        long dataLen = fileSize - dataStart;

        JsonNode root;
        try {
            // decoded here, not by Jackson: it guesses UTF-16/32 from the first bytes, and the format says UTF-8
            String text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(header)).toString();
            root = JSON.readTree(text);
        } catch (CharacterCodingException e) {
            throw new CheckpointFormatException(path, "header of " + n + " bytes is not valid UTF-8");
        } catch (JsonProcessingException e) {
            throw new CheckpointFormatException(path, "malformed JSON header: " + e.getOriginalMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new CheckpointFormatException(path, "header is not a JSON object");
        }

        Map<String, String> metadata = new TreeMap<>();
        List<SafetensorsTensorInfo> infos = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode v = e.getValue();
            if (name.equals(METADATA_KEY)) {
                if (!v.isObject()) {
                    throw new CheckpointFormatException(path, METADATA_KEY + " must be an object of strings");
                }
                for (Iterator<Map.Entry<String, JsonNode>> m = v.fields(); m.hasNext(); ) {
                    Map.Entry<String, JsonNode> kv = m.next();
                    if (!kv.getValue().isTextual()) {
                        throw new CheckpointFormatException(path, METADATA_KEY + " value for key '"
                                + kv.getKey() + "' is not a string: " + kv.getValue());
                    }
                    metadata.put(kv.getKey(), kv.getValue().textValue());
                }
                continue;
            }
            infos.add(parseTensor(path, name, v, dataLen));
        }

        // overlap check, in offset order
        infos.sort(Comparator.comparingLong(SafetensorsTensorInfo::begin)
                .thenComparingLong(SafetensorsTensorInfo::end));
        SafetensorsTensorInfo furthest = null;
        for (SafetensorsTensorInfo t : infos) {
            if (furthest != null && t.begin() < furthest.end() && t.byteSize() > 0) {
                throw new CheckpointFormatException(path, "tensor '" + t.name() + "' data [" + t.begin() + ", "
                        + t.end() + ") overlaps tensor '" + furthest.name() + "' data [" + furthest.begin() + ", "
                        + furthest.end() + ")");
            }
            if (furthest == null || t.end() > furthest.end()) {
                furthest = t;
            }
        }
        Map<String, SafetensorsTensorInfo> byName = new LinkedHashMap<>();
        for (SafetensorsTensorInfo t : infos) {
            byName.put(t.name(), t);
        }
        return new SafetensorsFile(path, arena, owns, map, dataStart,
                Collections.unmodifiableMap(metadata), Collections.unmodifiableMap(byName));
    }

    private static SafetensorsTensorInfo parseTensor(Path path, String name, JsonNode v, long dataLen)
            throws CheckpointFormatException {
        String where = "tensor '" + name + "': ";
        if (!v.isObject()) {
            throw new CheckpointFormatException(path, where + "entry is not a JSON object: " + v);
        }
        JsonNode dt = v.get("dtype");
        if (dt == null || !dt.isTextual()) {
            throw new CheckpointFormatException(path, where + "missing or non-string 'dtype'");
        }
        SafetensorsDtype dtype = SafetensorsDtype.fromName(dt.textValue()).orElseThrow(() ->
                new CheckpointFormatException(path, where + "unknown dtype '" + dt.textValue() + "'"));
        long[] shape = longArray(path, where, v.get("shape"), "shape", -1);
        long[] offs = longArray(path, where, v.get("data_offsets"), "data_offsets", 2);
        long begin = offs[0];
        long end = offs[1];
        if (end < begin) {
            throw new CheckpointFormatException(path, where + "data_offsets [" + begin + ", " + end
                    + "] are reversed");
        }
        long elements = 1;
        long expected;
        try {
            for (long d : shape) {
                elements = Math.multiplyExact(elements, d);
            }
            expected = Math.multiplyExact(elements, dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new CheckpointFormatException(path, where + "shape " + IoUtil.shapeString(shape)
                    + " is too large");
        }
        if (end - begin != expected) {
            throw new CheckpointFormatException(path, where + "byte size " + (end - begin) + " (data_offsets ["
                    + begin + ", " + end + "]) does not match shape " + IoUtil.shapeString(shape) + " of " + dtype
                    + " (" + elements + " elements * " + dtype.byteSize() + " bytes = " + expected + ")");
        }
        if (end > dataLen) {
            throw new CheckpointFormatException(path, where + "data_offsets [" + begin + ", " + end
                    + "] go beyond the data region of " + dataLen + " bytes (file truncated?)");
        }
        return new SafetensorsTensorInfo(name, dtype, shape, begin, end);
    }

    private static long[] longArray(Path path, String where, JsonNode node, String field, int requiredLength)
            throws CheckpointFormatException {
        if (node == null || !node.isArray()) {
            throw new CheckpointFormatException(path, where + "missing or non-array '" + field + "'");
        }
        if (requiredLength >= 0 && node.size() != requiredLength) {
            throw new CheckpointFormatException(path, where + "'" + field + "' must have " + requiredLength
                    + " entries: " + node);
        }
        long[] out = new long[node.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode x = node.get(i);
            if (!x.isIntegralNumber() || !x.canConvertToLong() || x.longValue() < 0) {
                throw new CheckpointFormatException(path, where + "'" + field + "' entries must be non-negative"
                        + " integers: " + node);
            }
            out[i] = x.longValue();
        }
        return out;
    }

    public Path path() {
        return path;
    }

    /** The {@code __metadata__} map (sorted by key; empty when absent). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** All tensors, in the order of their data in the file. */
    public List<SafetensorsTensorInfo> tensors() {
        return List.copyOf(tensors.values());
    }

    /** Tensor names, sorted. */
    public SortedSet<String> names() {
        return Collections.unmodifiableSortedSet(new TreeSet<>(tensors.keySet()));
    }

    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    /** The header entry of a tensor; {@link NoSuchElementException} naming the file when absent. */
    public SafetensorsTensorInfo tensor(String name) {
        SafetensorsTensorInfo t = tensors.get(name);
        if (t == null) {
            throw new NoSuchElementException(path + ": no tensor named '" + name + "'");
        }
        return t;
    }

    /** File offset where the data region starts ({@code 8 + header length}). */
    public long dataStart() {
        return dataStart;
    }

    /** Read-only slice of the mapping holding a tensor's raw (little-endian) bytes. */
    public MemorySegment data(String name) {
        SafetensorsTensorInfo t = tensor(name);
        return mapping.asSlice(dataStart + t.begin(), t.byteSize());
    }

    /** The whole mapped file (read-only). */
    public MemorySegment mapping() {
        return mapping;
    }

    /** Unmaps the file if it was opened with {@link #open(Path)}; segments become inaccessible. */
    @Override
    public void close() {
        if (ownsArena && arena.scope().isAlive()) {
            arena.close();
        }
    }
}
