package dev.exeunt.tensor.cuda;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Shape and strides of a strided view, as the kernels' {@code struct Desc} (common.cu): {@code int rank; int pad;
 * long long shape[8]; long long stride[8];} = 136 bytes, passed to kernels by value. {@link #collapse} first merges
 * adjacent dims that are contiguous with each other in every operand, so most views become rank 1 or 2.
 */
record StridedDesc(long[] shape, long[] strides) {
    static final int MAX_DIMS = 8;
    static final int BYTES = 8 + 16 * MAX_DIMS;

    /**
     * Merges dims {@code d} and {@code d + 1} wherever every operand has {@code stride[d] == stride[d+1] * shape[d+1]}
     * and drops size-1 dims; returns one desc per operand, all of the same (collapsed) shape. An empty shape gives
     * rank 1 of size 1.
     */
    static StridedDesc[] collapse(int[] shape, long[]... strides) {
        List<Long> dims = new ArrayList<>();
        List<long[]> st = new ArrayList<>();
        for (int d = 0; d < shape.length; d++) {
            if (shape[d] == 1) continue;
            long[] s = new long[strides.length];
            for (int k = 0; k < strides.length; k++) s[k] = strides[k][d];
            if (!dims.isEmpty()) {
                int last = dims.size() - 1;
                long[] prev = st.get(last);
                boolean merge = true;
                for (int k = 0; k < strides.length; k++) {
                    if (prev[k] != s[k] * shape[d]) merge = false;
                }
                if (merge) {
                    dims.set(last, dims.get(last) * shape[d]);
                    st.set(last, s);
                    continue;
                }
            }
            dims.add((long) shape[d]);
            st.add(s);
        }
        if (dims.isEmpty()) {
            dims.add(1L);
            st.add(new long[strides.length]);
        }
        if (dims.size() > MAX_DIMS) {
            throw new IllegalArgumentException("strided view of shape " + Arrays.toString(shape)
                    + " has more than " + MAX_DIMS + " non-mergeable dims");
        }
        StridedDesc[] out = new StridedDesc[strides.length];
        long[] sh = dims.stream().mapToLong(Long::longValue).toArray();
        for (int k = 0; k < strides.length; k++) {
            long[] s = new long[sh.length];
            for (int d = 0; d < sh.length; d++) s[d] = st.get(d)[k];
            out[k] = new StridedDesc(sh, s);
        }
        return out;
    }

    int rank() {
        return shape.length;
    }

    /** Element offset of linear index {@code i} (the kernels' desc_offset, for tests). */
    long offsetOf(long i) {
        long off = 0;
        for (int d = shape.length - 1; d >= 0; d--) {
            off += (i % shape[d]) * strides[d];
            i /= shape[d];
        }
        return off;
    }

    /** Writes the 136-byte struct at {@code seg}. */
    void write(MemorySegment seg) {
        seg.fill((byte) 0);
        seg.set(ValueLayout.JAVA_INT, 0, shape.length);
        for (int d = 0; d < shape.length; d++) {
            seg.set(ValueLayout.JAVA_LONG, 8 + 8L * d, shape[d]);
            seg.set(ValueLayout.JAVA_LONG, 8 + 8L * MAX_DIMS + 8L * d, strides[d]);
        }
    }

    @Override
    public String toString() {
        return "StridedDesc" + Arrays.toString(shape) + "/" + Arrays.toString(strides);
    }
}
