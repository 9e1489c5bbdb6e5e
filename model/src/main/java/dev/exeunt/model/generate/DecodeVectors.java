package dev.exeunt.model.generate;

import dev.exeunt.tensor.cpu.VectorMath;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/** The two vector loops of decode attention: a head's q.k and the p-weighted sum of values (offsets in floats). */
final class DecodeVectors {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
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
}
