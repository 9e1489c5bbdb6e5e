package dev.exeunt.model.io;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * Writes a safetensors file.
 *
 * <p>Deterministic layout: the header is compact JSON with {@code "__metadata__"} first (keys sorted,
 * omitted when empty), then the tensors sorted by name (Java {@link String#compareTo} order), each
 * as {@code {"dtype":..,"shape":[..],"data_offsets":[begin,end]}}; the data of the tensors follows in
 * the same name order, packed without gaps. (The Hugging Face writer orders by dtype alignment, then
 * name; readers do not depend on the order.) The header is padded with spaces so the data region
 * starts at a multiple of 8 bytes.
 *
 * <p>{@link #write(Path)} streams into a temporary file in the target directory and renames it over
 * the target atomically; the whole file is never held in memory. Tensor bytes are written as given
 * (safetensors data is little-endian; producing it is the caller's job).
 */
public final class SafetensorsWriter {
    private static final ObjectMapper JSON = new ObjectMapper();

    private record Entry(SafetensorsDtype dtype, long[] shape, long byteSize, TensorDataSource source) {}

    private final Map<String, String> metadata = new TreeMap<>();
    private final Map<String, Entry> tensors = new TreeMap<>();

    public SafetensorsWriter metadata(String key, String value) {
        metadata.put(Objects.requireNonNull(key), Objects.requireNonNull(value));
        return this;
    }

    public SafetensorsWriter metadata(Map<String, String> entries) {
        entries.forEach(this::metadata);
        return this;
    }

    /** Adds a tensor whose bytes are copied from {@code data} at write time (size must match exactly). */
    public SafetensorsWriter add(String name, SafetensorsDtype dtype, long[] shape, MemorySegment data) {
        long size = byteSize(name, dtype, shape);
        if (data.byteSize() != size) {
            throw new IllegalArgumentException("tensor '" + name + "': segment has " + data.byteSize()
                    + " bytes, shape " + Arrays.toString(shape) + " of " + dtype + " needs " + size);
        }
        return put(name, new Entry(dtype, shape.clone(), size, TensorDataSource.of(data)));
    }

    /** Adds a tensor whose bytes are produced by {@code source} at write time (it must write exactly the size). */
    public SafetensorsWriter add(String name, SafetensorsDtype dtype, long[] shape, TensorDataSource source) {
        long size = byteSize(name, dtype, shape);
        return put(name, new Entry(dtype, shape.clone(), size, Objects.requireNonNull(source)));
    }

    private SafetensorsWriter put(String name, Entry e) {
        if (name.equals(SafetensorsFile.METADATA_KEY)) {
            throw new IllegalArgumentException("'" + name + "' is reserved for the metadata");
        }
        if (tensors.putIfAbsent(name, e) != null) {
            throw new IllegalArgumentException("duplicate tensor name '" + name + "'");
        }
        return this;
    }

    private static long byteSize(String name, SafetensorsDtype dtype, long[] shape) {
        Objects.requireNonNull(name);
        Objects.requireNonNull(dtype);
        long n = dtype.byteSize();
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("tensor '" + name + "': negative dimension in " + Arrays.toString(shape));
            }
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    public int size() {
        return tensors.size();
    }

    /** The full header: 8-byte little-endian length, then the space-padded JSON. */
    byte[] headerBytes() {
        ObjectNode root = JsonNodeFactory.instance.objectNode();
        if (!metadata.isEmpty()) {
            ObjectNode m = root.putObject(SafetensorsFile.METADATA_KEY);
            metadata.forEach(m::put);
        }
        long offset = 0;
        for (Map.Entry<String, Entry> e : tensors.entrySet()) {
            Entry t = e.getValue();
            ObjectNode o = root.putObject(e.getKey());
            o.put("dtype", t.dtype().name());
            ArrayNode shape = o.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            ArrayNode offs = o.putArray("data_offsets");
            offs.add(offset);
            offset += t.byteSize();
            offs.add(offset);
        }
        byte[] json;
        try {
            json = JSON.writeValueAsBytes(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        int padded = (json.length + 7) & ~7;
        ByteBuffer buf = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(padded).put(json);
        while (buf.hasRemaining()) {
            buf.put((byte) ' ');
        }
        return buf.array();
    }

    /** Writes the file (temp file in the same directory, then atomic rename onto {@code file}). */
    public void write(Path file) throws IOException {
        Path temp = IoUtil.tempFileFor(file);
        boolean done = false;
        try {
            try (FileChannel ch = FileChannel.open(temp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                IoUtil.writeFully(ch, ByteBuffer.wrap(headerBytes()));
                for (Map.Entry<String, Entry> e : tensors.entrySet()) {
                    Entry t = e.getValue();
                    IoUtil.writeSource(ch, t.source(), t.byteSize(), file, "tensor '" + e.getKey() + "'");
                }
                ch.force(true);
            }
            IoUtil.commit(temp, file);
            done = true;
        } finally {
            if (!done) {
                IoUtil.deleteQuietly(temp);
            }
        }
    }
}
