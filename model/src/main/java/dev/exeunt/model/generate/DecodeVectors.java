package dev.exeunt.model.generate;

import dev.exeunt.tensor.cpu.VectorMath;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/** The vector loops of decode attention: scores over positions, their softmax, the p-weighted sum of values (offsets in floats). */
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

    /** y += alpha * x over n floats. */
    static void axpy(float alpha, MemorySegment x, long xOff, MemorySegment y, long yOff, int n) {
        FloatVector av = FloatVector.broadcast(S, alpha);
        int i = 0, bound = S.loopBound(n);
        for (; i < bound; i += S.length()) {
            FloatVector yv = FloatVector.fromMemorySegment(S, y, (yOff + i) * 4, LE);
            FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE).fma(av, yv).intoMemorySegment(y, (yOff + i) * 4, LE);
        }
        for (; i < n; i++) y.setAtIndex(F, yOff + i, y.getAtIndex(F, yOff + i) + alpha * x.getAtIndex(F, xOff + i));
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
        FloatVector sum = FloatVector.zero(S);
        for (int j = 0; j < nv; j += LANES) {
            FloatVector e = VectorMath.exp(FloatVector.fromArray(S, s, j).sub(max));
            e.intoArray(s, j);
            sum = sum.add(e);
        }
        return VectorMath.sum(sum);
    }
}
