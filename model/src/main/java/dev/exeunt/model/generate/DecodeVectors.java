package dev.exeunt.model.generate;

import dev.exeunt.tensor.cpu.VectorMath;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * The vector loops of decode: attention's scores over positions, their softmax and the p-weighted sum of
 * values, and a head row's argmax and top probability (offsets in floats).
 */
final class DecodeVectors {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int LANES = S.length();
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    private DecodeVectors() {}

    static float dot(MemorySegment a, long aOff, MemorySegment b, long bOff, int n) {
        FloatVector acc = FloatVector.zero(S);
        int i = 0, bound = S.loopBound(n);
        for (; i < bound; i += S.length()) {
            acc = FloatVector.fromMemorySegment(S, a, (aOff + i) * 4, LE).fma(FloatVector.fromMemorySegment(S, b, (bOff + i) * 4, LE), acc);
        }
        float s = VectorMath.sum(acc); // a fixed lane order: the same compiled or interpreted
        for (; i < n; i++) s += a.getAtIndex(F, aOff + i) * b.getAtIndex(F, bOff + i);
        return s;
    }

    /**
     * out[0, n) = sum_j p[j] * scale * x[xOff + j * ld, + n) over j in [j0, j1): attention's value rows weighted by
     * their probabilities, each output vector accumulated in a register over the rows (the same fused chain
     * per element as y += p[j] * scale * x_j into a zeroed out, row after row, but without a call and a store per row:
     * as a call per row C2 did not inline it into the attention loop).
     */
    static void weightedRows(float[] p, int j0, int j1, float scale, MemorySegment x, long xOff, long ld, MemorySegment out, long outOff, int n) {
        int bound = S.loopBound(n);
        for (int i = 0; i < bound; i += S.length()) {
            FloatVector acc = FloatVector.zero(S);
            for (int j = j0; j < j1; j++) {
                acc = FloatVector.fromMemorySegment(S, x, (xOff + j * ld + i) * 4, LE).fma(FloatVector.broadcast(S, p[j] * scale), acc);
            }
            acc.intoMemorySegment(out, (outOff + i) * 4, LE);
        }
        for (int i = bound; i < n; i++) {
            float y = 0;
            for (int j = j0; j < j1; j++) y = y + p[j] * scale * x.getAtIndex(F, xOff + j * ld + i);
            out.setAtIndex(F, outOff + i, y);
        }
    }

    /**
     * s[j] = sum_t q[t] kt[base + t * stride + j] for j in [0, n) (lanes up to the next multiple of the
     * vector length are written too): each position in its own lane, summed over t in order.
     */
    static void scores(float[] q, int hd, float[] kt, int base, int stride, int n, float[] s) {
        for (int j = 0; j < n; j += LANES) {
            FloatVector acc = FloatVector.zero(S);
            for (int t = 0; t < hd; t++) acc = FloatVector.fromArray(S, kt, base + t * stride + j).fma(FloatVector.broadcast(S, q[t]), acc);
            acc.intoArray(s, j);
        }
    }

    /** s[0, n) becomes exp(s - max) (lanes past n are cleared); returns their sum, in an order fixed by n. */
    static float softmaxInPlace(float[] s, int n) {
        int nv = (n + LANES - 1) / LANES * LANES;
        for (int j = n; j < nv; j++) s[j] = Float.NEGATIVE_INFINITY;
        FloatVector mv = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        for (int j = 0; j < nv; j += LANES) mv = mv.max(FloatVector.fromArray(S, s, j));
        float max = mv.reduceLanes(VectorOperators.MAX); // exact in any order
        // The lanes past n take exp(0) and are cleared after: exp(-inf) would send every row's last vector
        // down exp's rare-argument path, which C2 leaves to the Vector API's allocating fallback.
        for (int j = n; j < nv; j++) s[j] = max;
        FloatVector sum = FloatVector.zero(S);
        for (int j = 0; j < nv; j += LANES) {
            FloatVector e = VectorMath.exp(FloatVector.fromArray(S, s, j).sub(max));
            if (j + LANES > n) e = FloatVector.zero(S).blend(e, S.indexInRange(j, n));
            e.intoArray(s, j);
            sum = sum.add(e);
        }
        return VectorMath.sum(sum);
    }

    /** The index of the largest of n floats at off (the lowest among ties; with NaNs, the first entry's if it is one). */
    static int argmax(MemorySegment seg, long off, int n) {
        int bound = S.loopBound(n);
        FloatVector mv = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        for (int j = 0; j < bound; j += LANES) mv = mv.max(FloatVector.fromMemorySegment(S, seg, (off + j) * 4, LE));
        float max = mv.reduceLanes(VectorOperators.MAX); // NaN if any lane saw one
        for (int j = bound; j < n; j++) max = Math.max(max, seg.getAtIndex(F, off + j));
        if (!Float.isNaN(max)) {
            for (int j = 0; j < n; j++) if (seg.getAtIndex(F, off + j) == max) return j;
        }
        int best = 0; // NaNs: the scalar scan, which never moves onto one
        for (int j = 1; j < n; j++) if (seg.getAtIndex(F, off + j) > seg.getAtIndex(F, off + best)) best = j;
        return best;
    }

    /** The softmax probability of the entry {@code max}: 1 / sum_j exp(x_j - max) over n floats at off (NaN in, NaN out). */
    static float topProbability(MemorySegment seg, long off, int n, float max) {
        int bound = S.loopBound(n);
        FloatVector sum = FloatVector.zero(S);
        for (int j = 0; j < bound; j += LANES) sum = sum.add(VectorMath.exp(FloatVector.fromMemorySegment(S, seg, (off + j) * 4, LE).sub(max)));
        float s = VectorMath.sum(sum);
        for (int j = bound; j < n; j++) s += VectorMath.exp(seg.getAtIndex(F, off + j) - max);
        return 1f / s;
    }
}
