package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Sum and max along one dim of a contiguous tensor viewed as [outer, r, inner]: out[o, i] =
 * reduce over j of x[o, j, i]. When inner > 1 the vector runs along inner (rows are added
 * elementwise); when inner == 1 it runs along r (a horizontal reduction).
 */
public final class CpuReduce {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    private CpuReduce() {}

    public static void reduce(boolean max, long outer, int r, long inner, MemorySegment x, long xOff,
                              MemorySegment out, long oOff) {
        if (inner == 1) {
            int grain = Math.max(1, (1 << 14) / Math.max(1, r));
            CpuThreads.parallelFor((int) outer, grain, (from, to) -> {
                for (int o = from; o < to; o++) out.setAtIndex(F, oOff + o, reduceRow(max, x, xOff + (long) o * r, r));
            });
            return;
        }
        // Parallelise over outer x inner-chunks so a single large row is still split.
        int chunk = 1024;
        int innerChunks = (int) ((inner + chunk - 1) / chunk);
        CpuThreads.parallelFor((int) (outer * innerChunks), 1, (from, to) -> {
            for (int task = from; task < to; task++) {
                long o = task / innerChunks;
                long lo = (long) (task % innerChunks) * chunk, hi = Math.min(inner, lo + chunk);
                long base = xOff + o * r * inner, dst = oOff + o * inner;
                MemorySegment.copy(x, (base + lo) * 4, out, (dst + lo) * 4, (hi - lo) * 4);
                for (int j = 1; j < r; j++) {
                    long src = base + (long) j * inner;
                    long i = lo;
                    for (long bound = lo + S.loopBound(hi - lo); i < bound; i += S.length()) {
                        FloatVector acc = FloatVector.fromMemorySegment(S, out, (dst + i) * 4, LE);
                        FloatVector v = FloatVector.fromMemorySegment(S, x, (src + i) * 4, LE);
                        (max ? acc.max(v) : acc.add(v)).intoMemorySegment(out, (dst + i) * 4, LE);
                    }
                    for (; i < hi; i++) {
                        float acc = out.getAtIndex(F, dst + i), v = x.getAtIndex(F, src + i);
                        out.setAtIndex(F, dst + i, max ? Math.max(acc, v) : acc + v);
                    }
                }
            }
        });
    }

    static float reduceRow(boolean max, MemorySegment x, long off, int n) {
        int i = 0;
        float result;
        if (n >= S.length()) {
            FloatVector acc = FloatVector.fromMemorySegment(S, x, off * 4, LE);
            for (i = S.length(); i <= n - S.length(); i += S.length()) {
                FloatVector v = FloatVector.fromMemorySegment(S, x, (off + i) * 4, LE);
                acc = max ? acc.max(v) : acc.add(v);
            }
            result = max ? acc.reduceLanes(VectorOperators.MAX) : VectorMath.sum(acc);
        } else {
            result = max ? Float.NEGATIVE_INFINITY : 0f;
        }
        for (; i < n; i++) {
            float v = x.getAtIndex(F, off + i);
            result = max ? Math.max(result, v) : result + v;
        }
        return result;
    }
}
