package dev.exeunt.model.io;

import java.util.Arrays;
import java.util.Objects;

/**
 * One tensor entry of a safetensors header.
 *
 * @param name   tensor name
 * @param dtype  element type
 * @param shape  shape in row-major (PyTorch/NumPy) order; empty for a 0-dim scalar
 * @param begin  start of the data, relative to the start of the data region (after the header)
 * @param end    end (exclusive) of the data, relative to the start of the data region
 */
public record SafetensorsTensorInfo(String name, SafetensorsDtype dtype, long[] shape, long begin, long end) {
    public SafetensorsTensorInfo {
        Objects.requireNonNull(name);
        Objects.requireNonNull(dtype);
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public long byteSize() {
        return end - begin;
    }

    /** Product of the shape (1 for a scalar). */
    public long elementCount() {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SafetensorsTensorInfo t && name.equals(t.name) && dtype == t.dtype
                && Arrays.equals(shape, t.shape) && begin == t.begin && end == t.end;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape) + " @[" + begin + "," + end + ")";
    }
}
