package dev.exeunt.model.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Optional;

/**
 * A read-only, memory-mapped GGUF file (llama.cpp / ggml model format), versions 2 and 3.
 *
 * <p>Layout (all little-endian): magic {@code "GGUF"}, {@code uint32} version, {@code uint64} tensor
 * count, {@code uint64} metadata count; the metadata key/value pairs (key: {@code uint64} length +
 * UTF-8 bytes; {@code uint32} value type; value — arrays are {@code uint32} element type,
 * {@code uint64} count, elements); the tensor infos (name, {@code uint32 n_dims},
 * {@code uint64 ne[n_dims]}, {@code uint32} ggml type, {@code uint64} offset relative to the data
 * section); zero padding to {@code general.alignment} (a {@code uint32}, default 32); the data
 * section, in which every tensor offset is a multiple of the alignment.
 *
 * <p>The whole structure is validated on open ({@link CheckpointFormatException} naming the file
 * and the key or tensor): magic, version, truncation anywhere, value types, alignment (power of two),
 * duplicate keys and tensor names, dims (at most 4, non-negative, {@code ne[0]} a multiple of the block
 * size), tensor offsets (aligned, data inside the file, no overlaps).
 */
public final class GgufFile implements AutoCloseable {
    public static final int MAGIC = 0x46554747; // "GGUF" read as little-endian uint32
    public static final int DEFAULT_ALIGNMENT = 32;
    public static final String ALIGNMENT_KEY = "general.alignment";
    public static final int MAX_DIMS = 4;
    /** Longest string a Java array holds; the format has no smaller limit. */
    static final long MAX_STRING = Integer.MAX_VALUE - 8;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final boolean ownsArena;
    private final MemorySegment mapping;
    private final int version;
    private final long alignment;
    private final long dataOffset;
    private final Map<String, GgufValue> metadata;
    private final Map<String, GgufTensorInfo> tensors;

    private GgufFile(Path path, Arena arena, boolean ownsArena, MemorySegment mapping, int version, long alignment,
                     long dataOffset, Map<String, GgufValue> metadata, Map<String, GgufTensorInfo> tensors) {
        this.path = path;
        this.arena = arena;
        this.ownsArena = ownsArena;
        this.mapping = mapping;
        this.version = version;
        this.alignment = alignment;
        this.dataOffset = dataOffset;
        this.metadata = metadata;
        this.tensors = tensors;
    }

    /** Maps and parses a file; {@link #close()} unmaps it. */
    public static GgufFile open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try {
            return open(path, arena, true);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** Maps and parses a file in a caller-owned arena ({@link #close()} then does nothing). */
    public static GgufFile open(Path path, Arena arena) throws IOException {
        return open(path, arena, false);
    }

    private static GgufFile open(Path path, Arena arena, boolean owns) throws IOException {
        MemorySegment map;
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            map = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
        }
        Cursor c = new Cursor(path, map);
        if (map.byteSize() < 4) {
            throw new CheckpointFormatException(path, "not a GGUF file: only " + map.byteSize() + " bytes");
        }
        int magic = map.get(U32, 0);
        if (magic != MAGIC) {
            byte[] m = map.asSlice(0, 4).toArray(ValueLayout.JAVA_BYTE);
            StringBuilder sb = new StringBuilder();
            for (byte b : m) {
                sb.append(b >= 32 && b < 127 ? (char) b : '?');
            }
            throw new CheckpointFormatException(path, "bad magic '" + sb + "' (0x" + Integer.toHexString(magic)
                    + "), expected 'GGUF': not a GGUF file");
        }
        c.pos = 4;
        int version = c.u32("version");
        if (version != 2 && version != 3) {
            String hint = (version & 0xFFFF) == 0 ? " (a big-endian file?)" : version == 1 ? " (GGUF v1 is obsolete)" : "";
            throw new CheckpointFormatException(path, "unsupported GGUF version " + Integer.toUnsignedString(version)
                    + hint + "; supported: 2, 3");
        }
        long nTensors = c.u64("tensor count");
        long nKv = c.u64("metadata count");
        // each kv takes >= 12 bytes, each tensor info >= 24: reject absurd counts before looping
        if (nKv < 0 || nKv > c.remaining() / 12) {
            throw new CheckpointFormatException(path, "metadata count " + Long.toUnsignedString(nKv)
                    + " is impossible for a file of " + map.byteSize() + " bytes (truncated or corrupt)");
        }
        if (nTensors < 0 || nTensors > c.remaining() / 24) {
            throw new CheckpointFormatException(path, "tensor count " + Long.toUnsignedString(nTensors)
                    + " is impossible for a file of " + map.byteSize() + " bytes (truncated or corrupt)");
        }

        Map<String, GgufValue> metadata = new LinkedHashMap<>();
        for (long i = 0; i < nKv; i++) {
            String key = c.string("key of metadata entry " + i);
            if (key.isEmpty()) {
                throw new CheckpointFormatException(path, "metadata entry " + i + " has an empty key");
            }
            GgufType type = c.type("type of metadata '" + key + "'");
            GgufValue v = c.value(type, "metadata '" + key + "'", 0);
            if (metadata.putIfAbsent(key, v) != null) {
                throw new CheckpointFormatException(path, "duplicate metadata key '" + key + "'");
            }
        }

        long alignment = DEFAULT_ALIGNMENT;
        GgufValue al = metadata.get(ALIGNMENT_KEY);
        if (al != null) {
            if (al.type() != GgufType.UINT32) {
                throw new CheckpointFormatException(path, ALIGNMENT_KEY + " must be a UINT32, is " + al.type());
            }
            alignment = al.asLong();
            if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
                throw new CheckpointFormatException(path, ALIGNMENT_KEY + " = " + alignment + " is not a power of two");
            }
        }

        List<GgufTensorInfo> infos = new ArrayList<>();
        Map<String, GgufTensorInfo> byName = new LinkedHashMap<>();
        for (long i = 0; i < nTensors; i++) {
            String name = c.string("name of tensor info " + i);
            String where = "tensor '" + name + "'";
            int nDims = c.u32("n_dims of " + where);
            if (nDims < 0 || nDims > MAX_DIMS) {
                throw new CheckpointFormatException(path, where + " has " + Integer.toUnsignedString(nDims)
                        + " dimensions, at most " + MAX_DIMS + " allowed");
            }
            long[] dims = new long[nDims];
            for (int d = 0; d < nDims; d++) {
                dims[d] = c.u64("ne[" + d + "] of " + where);
                if (dims[d] < 0) {
                    throw new CheckpointFormatException(path, where + " has invalid ne[" + d + "] = "
                            + Long.toUnsignedString(dims[d]));
                }
            }
            int typeId = c.u32("type of " + where);
            GgmlType type = GgmlType.ofId(Integer.toUnsignedLong(typeId)).orElseThrow(() ->
                    new CheckpointFormatException(path, "unknown ggml type " + Integer.toUnsignedString(typeId)
                            + " for " + where));
            long offset = c.u64("offset of " + where);
            long size = -1;
            try {
                long n = 1;
                for (long d : dims) {
                    n = Math.multiplyExact(n, d);
                }
                if (type.hasKnownLayout()) {
                    size = type.byteSize(dims);
                }
            } catch (ArithmeticException e) {
                throw new CheckpointFormatException(path, where + " dims " + IoUtil.shapeString(dims) + " are too large");
            } catch (IllegalArgumentException e) {
                throw new CheckpointFormatException(path, where + " of type " + type + ": " + e.getMessage());
            }
            GgufTensorInfo info = new GgufTensorInfo(name, dims, type, offset, size);
            if (byName.putIfAbsent(name, info) != null) {
                throw new CheckpointFormatException(path, "duplicate tensor name '" + name + "'");
            }
            infos.add(info);
        }

        long dataOffset = alignUp(c.pos, alignment);
        long fileSize = map.byteSize();
        if (nTensors > 0 && dataOffset > fileSize) {
            throw new CheckpointFormatException(path, "truncated: data section would start at " + dataOffset
                    + " but the file has " + fileSize + " bytes");
        }
        long dataSize = Math.max(0, fileSize - dataOffset);
        for (GgufTensorInfo t : infos) {
            String where = "tensor '" + t.name() + "'";
            if (t.offset() < 0 || t.offset() % alignment != 0) {
                throw new CheckpointFormatException(path, where + " offset " + Long.toUnsignedString(t.offset())
                        + " is not a multiple of the alignment " + alignment);
            }
            long end = t.byteSize() < 0 ? t.offset() : t.offset() + t.byteSize();
            if (end < 0 || end > dataSize) {
                throw new CheckpointFormatException(path, where + " data [" + t.offset() + ", " + end
                        + ") (relative to the data section at " + dataOffset + ") goes beyond the end of the file ("
                        + dataSize + " data bytes; truncated?)");
            }
        }
        List<GgufTensorInfo> sorted = new ArrayList<>(infos);
        sorted.removeIf(t -> t.byteSize() <= 0);
        sorted.sort(Comparator.comparingLong(GgufTensorInfo::offset));
        for (int i = 1; i < sorted.size(); i++) {
            GgufTensorInfo a = sorted.get(i - 1);
            GgufTensorInfo b = sorted.get(i);
            if (b.offset() < a.offset() + a.byteSize()) {
                throw new CheckpointFormatException(path, "tensor '" + b.name() + "' data at offset " + b.offset()
                        + " overlaps tensor '" + a.name() + "' [" + a.offset() + ", " + (a.offset() + a.byteSize()) + ")");
            }
        }
        return new GgufFile(path, arena, owns, map, version, alignment, dataOffset,
                Collections.unmodifiableMap(metadata), Collections.unmodifiableMap(byName));
    }

    static long alignUp(long x, long alignment) {
        return (x + alignment - 1) / alignment * alignment;
    }

    /** Bounds-checked little-endian reader over the mapping. */
    private static final class Cursor {
        final Path path;
        final MemorySegment seg;
        long pos;

        Cursor(Path path, MemorySegment seg) {
            this.path = path;
            this.seg = seg;
        }

        long remaining() {
            return seg.byteSize() - pos;
        }

        void need(long n, String what) throws CheckpointFormatException {
            if (n < 0 || n > remaining()) {
                throw new CheckpointFormatException(path, "truncated: reading " + what + " needs "
                        + Long.toUnsignedString(n) + " bytes at offset " + pos + " but the file has " + seg.byteSize()
                        + " bytes");
            }
        }

        int u32(String what) throws CheckpointFormatException {
            need(4, what);
            int v = seg.get(U32, pos);
            pos += 4;
            return v;
        }

        long u64(String what) throws CheckpointFormatException {
            need(8, what);
            long v = seg.get(U64, pos);
            pos += 8;
            return v;
        }

        GgufType type(String what) throws CheckpointFormatException {
            int id = u32(what);
            return GgufType.ofId(Integer.toUnsignedLong(id)).orElseThrow(() ->
                    new CheckpointFormatException(path, "unknown value type " + Integer.toUnsignedString(id) + " in " + what));
        }

        String string(String what) throws CheckpointFormatException {
            long len = u64("length of " + what);
            need(len, what);
            if (len > MAX_STRING) {
                throw new CheckpointFormatException(path, what + " claims a string of " + len + " bytes, more than the "
                        + MAX_STRING + " a string can hold");
            }
            byte[] b = seg.asSlice(pos, len).toArray(ValueLayout.JAVA_BYTE);
            pos += len;
            try {
                return StandardCharsets.UTF_8.newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT)
                        .decode(java.nio.ByteBuffer.wrap(b)).toString();
            } catch (CharacterCodingException e) {
                // tokenizer vocabularies may hold partial UTF-8 sequences: keep them, lossy
                return new String(b, StandardCharsets.UTF_8);
            }
        }

        GgufValue value(GgufType type, String what, int depth) throws CheckpointFormatException {
            return switch (type) {
                case UINT8, INT8 -> { need(1, what); byte v = seg.get(ValueLayout.JAVA_BYTE, pos++); yield new GgufValue(type, null, v); }
                case UINT16, INT16 -> { need(2, what); short v = seg.get(U16, pos); pos += 2; yield new GgufValue(type, null, v); }
                case UINT32, INT32 -> new GgufValue(type, null, u32(what));
                case UINT64, INT64 -> new GgufValue(type, null, u64(what));
                case FLOAT32 -> { need(4, what); float v = seg.get(F32, pos); pos += 4; yield new GgufValue(type, null, v); }
                case FLOAT64 -> { need(8, what); double v = seg.get(F64, pos); pos += 8; yield new GgufValue(type, null, v); }
                case BOOL -> new GgufValue(type, null, bool(what));
                case STRING -> new GgufValue(type, null, string(what));
                case ARRAY -> array(what, depth);
            };
        }

        boolean bool(String what) throws CheckpointFormatException {
            need(1, what);
            byte b = seg.get(ValueLayout.JAVA_BYTE, pos);
            if (b != 0 && b != 1) {
                throw new CheckpointFormatException(path, "invalid bool byte " + (b & 0xFF) + " at offset " + pos
                        + " in " + what);
            }
            pos++;
            return b == 1;
        }

        GgufValue array(String what, int depth) throws CheckpointFormatException {
            if (depth > 64) {
                throw new CheckpointFormatException(path, "arrays nested too deeply in " + what);
            }
            GgufType et = type("element type of " + what);
            long n = u64("length of " + what);
            long minElem = switch (et) {
                case STRING -> 8;
                case ARRAY -> 12;
                default -> et.size();
            };
            if (n < 0 || n > Integer.MAX_VALUE - 8 || n * minElem > remaining()) {
                throw new CheckpointFormatException(path, "truncated: " + what + " claims " + Long.toUnsignedString(n)
                        + " elements of " + et + " at offset " + pos + " but only " + remaining() + " bytes remain");
            }
            int len = (int) n;
            String ew = what + " element";
            Object arr = switch (et) {
                case UINT8, INT8 -> { byte[] a = seg.asSlice(pos, len).toArray(ValueLayout.JAVA_BYTE); pos += len; yield a; }
                case UINT16, INT16 -> { short[] a = seg.asSlice(pos, 2L * len).toArray(U16); pos += 2L * len; yield a; }
                case UINT32, INT32 -> { int[] a = seg.asSlice(pos, 4L * len).toArray(U32); pos += 4L * len; yield a; }
                case UINT64, INT64 -> { long[] a = seg.asSlice(pos, 8L * len).toArray(U64); pos += 8L * len; yield a; }
                case FLOAT32 -> { float[] a = seg.asSlice(pos, 4L * len).toArray(F32); pos += 4L * len; yield a; }
                case FLOAT64 -> { double[] a = seg.asSlice(pos, 8L * len).toArray(F64); pos += 8L * len; yield a; }
                case BOOL -> { boolean[] a = new boolean[len]; for (int i = 0; i < len; i++) a[i] = bool(ew); yield a; }
                case STRING -> { String[] a = new String[len]; for (int i = 0; i < len; i++) a[i] = string(ew); yield a; }
                case ARRAY -> { GgufValue[] a = new GgufValue[len]; for (int i = 0; i < len; i++) a[i] = array(ew, depth + 1); yield a; }
            };
            return new GgufValue(GgufType.ARRAY, et, arr);
        }
    }

    public Path path() {
        return path;
    }

    /** GGUF version (2 or 3). */
    public int version() {
        return version;
    }

    /** Alignment of the data section and of tensor offsets. */
    public long alignment() {
        return alignment;
    }

    /** Absolute file offset of the data section. */
    public long dataOffset() {
        return dataOffset;
    }

    /** All metadata, in file order. */
    public Map<String, GgufValue> metadata() {
        return metadata;
    }

    public Optional<GgufValue> get(String key) {
        return Optional.ofNullable(metadata.get(key));
    }

    /** All tensor infos, in file order. */
    public List<GgufTensorInfo> tensors() {
        return List.copyOf(tensors.values());
    }

    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    public GgufTensorInfo tensor(String name) {
        GgufTensorInfo t = tensors.get(name);
        if (t == null) {
            throw new NoSuchElementException(path + ": no tensor named '" + name + "'");
        }
        return t;
    }

    /**
     * Read-only slice of the mapping holding a tensor's raw bytes (ggml layout, little-endian).
     *
     * @throws UnsupportedOperationException for types whose layout is not known ({@link GgmlType#hasKnownLayout()})
     */
    public MemorySegment data(String name) {
        GgufTensorInfo t = tensor(name);
        if (!t.type().hasKnownLayout()) {
            throw new UnsupportedOperationException(path + ": unsupported ggml type " + t.type().id() + " ("
                    + t.type() + ") for tensor '" + name + "'");
        }
        return mapping.asSlice(dataOffset + t.offset(), t.byteSize());
    }

    /** The tokenizer metadata ({@code tokenizer.ggml.*}). */
    public GgufTokenizerData tokenizer() throws CheckpointFormatException {
        return GgufTokenizerData.from(metadata, path);
    }

    @Override
    public void close() {
        if (ownsArena && arena.scope().isAlive()) {
            arena.close();
        }
    }
}
