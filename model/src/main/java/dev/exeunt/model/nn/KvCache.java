package dev.exeunt.model.nn;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

/**
 * Keys and values of one attention layer for a batch of sequences, allocated once: [B, maxLen, Hkv,
 * headDim] each. {@code length} is how many positions hold valid entries; with early exit, deep
 * layers' caches lag behind shallow ones until the next full-depth token fills them.
 */
public final class KvCache implements AutoCloseable {
    private final Tensor keys;
    private final Tensor values;
    private int length;
    /** The decode path's copy of the keys, [Hkv][headDim][stride] (see {@link #transposedKeys}), valid below transposedLength. */
    private float[] transposed;
    private int transposedLength, transposedStride;

    public KvCache(Device device, int batch, int maxLen, int kvHeads, int headDim) {
        this.keys = Ops.unowned(() -> Tensor.empty(DType.F32, device, batch, maxLen, kvHeads, headDim));
        this.values = Ops.unowned(() -> Tensor.empty(DType.F32, device, batch, maxLen, kvHeads, headDim));
    }

    public int length() {
        return length;
    }

    public int capacity() {
        return keys.dim(1);
    }

    /** The key storage [B, maxLen, Hkv, headDim]: the decode path writes positions directly, then {@link #extendTo}. */
    public Tensor keys() {
        return keys;
    }

    public Tensor values() {
        return values;
    }

    /**
     * The keys of a one-sequence cache transposed per kv head, [Hkv][headDim][stride] with stride the
     * capacity rounded up to {@code lanes}: one head's scores over all positions are then contiguous
     * vector loads. Kept up to date lazily from {@link #keys} (positions written since the last call).
     */
    public float[] transposedKeys(int lanes) {
        int kvHeads = keys.dim(2), hd = keys.dim(3);
        if (keys.dim(0) != 1) throw new IllegalStateException("transposed keys are kept for one-sequence caches, not " + keys.dim(0));
        if (transposed == null) {
            transposedStride = (capacity() + lanes - 1) / lanes * lanes;
            transposed = new float[kvHeads * hd * transposedStride];
        }
        var seg = keys.segment();
        long base = keys.offset();
        int kvd = kvHeads * hd, stride = transposedStride;
        for (int p = transposedLength; p < length; p++) {
            long row = base + (long) p * kvd;
            for (int i = 0; i < kvd; i++) transposed[i * stride + p] = seg.getAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, row + i);
        }
        transposedLength = length;
        return transposed;
    }

    /** The position stride of {@link #transposedKeys}. */
    public int transposedStride() {
        return transposedStride;
    }

    /** Marks positions up to {@code newLength} as written (by a caller that wrote them into {@link #keys} and {@link #values}). */
    public void extendTo(int newLength) {
        if (newLength < length || newLength > capacity()) {
            throw new IllegalArgumentException("cannot extend a KV cache of " + length + " positions to " + newLength + " (capacity " + capacity() + ")");
        }
        length = newLength;
    }

    /** Writes k, v [B, T, Hkv, hd] at positions [start, start+T) and returns views of positions [0, start+T). */
    Tensor[] append(Tensor k, Tensor v, int start) {
        int t = k.dim(1);
        if (start != length) {
            throw new IllegalStateException("KV cache holds " + length + " positions but the next write starts at " + start);
        }
        if (start + t > capacity()) {
            throw new IllegalStateException("KV cache full: " + (start + t) + " positions needed, capacity " + capacity());
        }
        Tensor ks = keys.narrow(1, start, t), vs = values.narrow(1, start, t);
        ks.copyFrom(k);
        vs.copyFrom(v);
        ks.close();
        vs.close();
        length = start + t;
        return new Tensor[] {keys.narrow(1, 0, length), values.narrow(1, 0, length)};
    }

    /** Makes this cache hold what {@code src} holds (beam search: a beam continues another's prefix). */
    public void copyFrom(KvCache src) {
        if (src.capacity() != capacity() || src.keys.dim(0) != keys.dim(0)) {
            throw new IllegalArgumentException("KV caches of different shapes: capacity " + src.capacity() + " into " + capacity());
        }
        int n = src.length;
        if (n > 0) {
            try (Tensor dk = keys.narrow(1, 0, n); Tensor sk = src.keys.narrow(1, 0, n); Tensor dv = values.narrow(1, 0, n);
                 Tensor sv = src.values.narrow(1, 0, n)) {
                dk.copyFrom(sk);
                dv.copyFrom(sv);
            }
        }
        length = n;
        transposedLength = 0;
    }

    /** Forgets positions from {@code newLength} on (e.g. to reuse the cache for a new prompt). */
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) throw new IllegalArgumentException("cannot truncate " + length + " to " + newLength);
        length = newLength;
        transposedLength = Math.min(transposedLength, newLength);
    }

    @Override
    public void close() {
        keys.close();
        values.close();
    }
}
