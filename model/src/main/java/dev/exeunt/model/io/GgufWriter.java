package dev.exeunt.model.io;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * Writes GGUF version 3 files: metadata in insertion order, tensor infos in insertion order, zero
 * padding to the alignment before the data section and after every tensor, so each tensor's offset is
 * the running sum of the padded sizes of the ones before it (as llama.cpp writes them).
 *
 * <p>The alignment is {@link GgufFile#DEFAULT_ALIGNMENT} unless set with {@link #alignment(int)} or by
 * putting a UINT32 {@code general.alignment}. Files go to a temporary file in the target directory,
 * renamed atomically onto the target; tensor data is streamed.
 */
public final class GgufWriter {
    public static final int VERSION = 3;

    private record Tensor(String name, GgmlType type, long[] dims, long byteSize, TensorDataSource source) {}

    private final Map<String, GgufValue> metadata = new LinkedHashMap<>();
    private final Map<String, Tensor> tensors = new LinkedHashMap<>();

    /** Sets {@code general.alignment} (a power of two). */
    public GgufWriter alignment(int alignment) {
        return put(GgufFile.ALIGNMENT_KEY, GgufValue.uint32(alignment));
    }

    /** Adds or replaces a metadata entry (the first insertion fixes its position). */
    public GgufWriter put(String key, GgufValue value) {
        Objects.requireNonNull(key);
        Objects.requireNonNull(value);
        if (key.isEmpty()) {
            throw new IllegalArgumentException("empty metadata key");
        }
        if (key.equals(GgufFile.ALIGNMENT_KEY)) {
            if (value.type() != GgufType.UINT32) {
                throw new IllegalArgumentException(GgufFile.ALIGNMENT_KEY + " must be UINT32");
            }
            long a = value.asLong();
            if (a == 0 || (a & (a - 1)) != 0) {
                throw new IllegalArgumentException(GgufFile.ALIGNMENT_KEY + " must be a power of two: " + a);
            }
        }
        metadata.put(key, value);
        return this;
    }

    public GgufWriter putString(String key, String v) {
        return put(key, GgufValue.string(v));
    }

    public GgufWriter putUint32(String key, long v) {
        return put(key, GgufValue.uint32(v));
    }

    public GgufWriter putFloat32(String key, float v) {
        return put(key, GgufValue.float32(v));
    }

    public GgufWriter putBool(String key, boolean v) {
        return put(key, GgufValue.bool(v));
    }

    /**
     * Adds a tensor copied from {@code data}.
     *
     * @param dims ggml dims, {@code ne[0]} (fastest varying) first; at most 4
     */
    public GgufWriter addTensor(String name, GgmlType type, long[] dims, MemorySegment data) {
        long size = byteSize(name, type, dims);
        if (data.byteSize() != size) {
            throw new IllegalArgumentException("tensor '" + name + "': segment has " + data.byteSize() + " bytes, "
                    + type + " ne=" + Arrays.toString(dims) + " needs " + size);
        }
        return addTensor(name, type, dims, size, TensorDataSource.of(data));
    }

    /** Adds a tensor whose bytes {@code source} streams at write time. */
    public GgufWriter addTensor(String name, GgmlType type, long[] dims, TensorDataSource source) {
        return addTensor(name, type, dims, byteSize(name, type, dims), source);
    }

    private GgufWriter addTensor(String name, GgmlType type, long[] dims, long size, TensorDataSource source) {
        Objects.requireNonNull(source);
        if (name.isEmpty()) {
            throw new IllegalArgumentException("empty tensor name");
        }
        if (tensors.putIfAbsent(name, new Tensor(name, type, dims.clone(), size, source)) != null) {
            throw new IllegalArgumentException("duplicate tensor name '" + name + "'");
        }
        return this;
    }

    private static long byteSize(String name, GgmlType type, long[] dims) {
        Objects.requireNonNull(name);
        Objects.requireNonNull(type);
        if (dims.length > GgufFile.MAX_DIMS) {
            throw new IllegalArgumentException("tensor '" + name + "': at most " + GgufFile.MAX_DIMS + " dims");
        }
        for (long d : dims) {
            if (d < 0) {
                throw new IllegalArgumentException("tensor '" + name + "': negative dim in " + Arrays.toString(dims));
            }
        }
        if (!type.hasKnownLayout()) {
            throw new IllegalArgumentException("tensor '" + name + "': cannot write ggml type " + type
                    + " (layout unknown)");
        }
        try {
            return type.byteSize(dims);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("tensor '" + name + "': " + e.getMessage(), e);
        }
    }

    private long alignmentValue() {
        GgufValue a = metadata.get(GgufFile.ALIGNMENT_KEY);
        return a == null ? GgufFile.DEFAULT_ALIGNMENT : a.asLong();
    }

    /** Everything before the data section, padded to the alignment. */
    byte[] headerBytes() {
        long alignment = alignmentValue();
        Le b = new Le();
        b.u32(GgufFile.MAGIC);
        b.u32(VERSION);
        b.u64(tensors.size());
        b.u64(metadata.size());
        for (Map.Entry<String, GgufValue> e : metadata.entrySet()) {
            b.string(e.getKey());
            b.u32(e.getValue().type().id());
            writeValue(b, e.getValue());
        }
        long offset = 0;
        for (Tensor t : tensors.values()) {
            b.string(t.name());
            b.u32(t.dims().length);
            for (long d : t.dims()) {
                b.u64(d);
            }
            b.u32(t.type().id());
            b.u64(offset);
            offset += GgufFile.alignUp(t.byteSize(), alignment);
        }
        b.pad(alignment);
        return b.toArray();
    }

    private static void writeValue(Le b, GgufValue v) {
        Object o = v.value();
        switch (v.type()) {
            case UINT8, INT8 -> b.u8((Byte) o);
            case UINT16, INT16 -> b.u16((Short) o);
            case UINT32, INT32 -> b.u32((Integer) o);
            case UINT64, INT64 -> b.u64((Long) o);
            case FLOAT32 -> b.u32(Float.floatToRawIntBits((Float) o));
            case FLOAT64 -> b.u64(Double.doubleToRawLongBits((Double) o));
            case BOOL -> b.u8((Boolean) o ? 1 : 0);
            case STRING -> b.string((String) o);
            case ARRAY -> {
                b.u32(v.elementType().id());
                b.u64(v.arrayLength());
                switch (v.elementType()) {
                    case UINT8, INT8 -> { for (byte x : (byte[]) o) b.u8(x); }
                    case UINT16, INT16 -> { for (short x : (short[]) o) b.u16(x); }
                    case UINT32, INT32 -> { for (int x : (int[]) o) b.u32(x); }
                    case UINT64, INT64 -> { for (long x : (long[]) o) b.u64(x); }
                    case FLOAT32 -> { for (float x : (float[]) o) b.u32(Float.floatToRawIntBits(x)); }
                    case FLOAT64 -> { for (double x : (double[]) o) b.u64(Double.doubleToRawLongBits(x)); }
                    case BOOL -> { for (boolean x : (boolean[]) o) b.u8(x ? 1 : 0); }
                    case STRING -> { for (String x : (String[]) o) b.string(x); }
                    case ARRAY -> { for (GgufValue x : (GgufValue[]) o) writeValue(b, x); }
                }
            }
        }
    }

    /** Writes the file (temporary file, then atomic rename onto {@code file}). */
    public void write(Path file) throws IOException {
        long alignment = alignmentValue();
        byte[] header = headerBytes();
        Path temp = IoUtil.tempFileFor(file);
        boolean done = false;
        try {
            try (FileChannel ch = FileChannel.open(temp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                IoUtil.writeFully(ch, ByteBuffer.wrap(header));
                for (Tensor t : tensors.values()) {
                    IoUtil.writeSource(ch, t.source(), t.byteSize(), file, "tensor '" + t.name() + "'");
                    IoUtil.writeZeros(ch, GgufFile.alignUp(t.byteSize(), alignment) - t.byteSize());
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

    /** Growable little-endian byte buffer. */
    private static final class Le {
        private byte[] a = new byte[4096];
        private int n;

        private void ensure(int k) {
            if (n + k > a.length) {
                a = Arrays.copyOf(a, Math.max(n + k, a.length * 2));
            }
        }

        void u8(int v) {
            ensure(1);
            a[n++] = (byte) v;
        }

        void u16(int v) {
            ensure(2);
            a[n++] = (byte) v;
            a[n++] = (byte) (v >>> 8);
        }

        void u32(int v) {
            ensure(4);
            for (int i = 0; i < 4; i++) {
                a[n++] = (byte) (v >>> (8 * i));
            }
        }

        void u64(long v) {
            ensure(8);
            for (int i = 0; i < 8; i++) {
                a[n++] = (byte) (v >>> (8 * i));
            }
        }

        void string(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            ensure(b.length);
            System.arraycopy(b, 0, a, n, b.length);
            n += b.length;
        }

        void pad(long alignment) {
            int target = Math.toIntExact(GgufFile.alignUp(n, alignment));
            ensure(target - n);
            n = target; // new bytes are already zero
        }

        byte[] toArray() {
            return Arrays.copyOf(a, n);
        }
    }
}
