package dev.exeunt.model.io;

import java.util.Arrays;
import java.util.Objects;

/**
 * One tensor info of a GGUF file.
 *
 * @param name     tensor name
 * @param dims     ggml dims {@code ne[0..n_dims)}: {@code ne[0]} varies fastest (the reverse of the
 *                 row-major {@link #shape()})
 * @param type     element type
 * @param offset   data offset relative to the start of the data section
 * @param byteSize size of the data in bytes, or -1 when the type's layout is unknown
 */
public record GgufTensorInfo(String name, long[] dims, GgmlType type, long offset, long byteSize) {
    public GgufTensorInfo {
        Objects.requireNonNull(name);
        Objects.requireNonNull(type);
        dims = dims.clone();
    }

    @Override
    public long[] dims() {
        return dims.clone();
    }

    /** Row-major (PyTorch/NumPy order) shape: {@code dims} reversed. */
    public long[] shape() {
        long[] s = new long[dims.length];
        for (int i = 0; i < dims.length; i++) {
            s[i] = dims[dims.length - 1 - i];
        }
        return s;
    }

    public long elementCount() {
        long n = 1;
        for (long d : dims) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GgufTensorInfo t && name.equals(t.name) && Arrays.equals(dims, t.dims)
                && type == t.type && offset == t.offset && byteSize == t.byteSize;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, Arrays.hashCode(dims), type, offset, byteSize);
    }

    @Override
    public String toString() {
        return name + " " + type + " ne=" + Arrays.toString(dims) + " @" + offset + " (" + byteSize + " bytes)";
    }
}
