package dev.exeunt.tensor.cpu;

import dev.exeunt.tensor.Backend.Binary;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Strided elementwise kernels: binary ops over broadcast views, strided copies, fills and in-place
 * accumulation. Shapes are walked as [outer..., inner] where the inner (last) dim is vectorised
 * whenever its stride is 1 (or 0, a broadcast scalar).
 */
public final class CpuElementwise {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final int GRAIN = 1 << 15;

    private CpuElementwise() {}

    /**
     * out = a (op) b over {@code shape}; a and b have the given strides (0 for broadcast dims) and
     * offsets; out is contiguous.
     */
    public static void binary(Binary op, int[] shape, MemorySegment a, long aOff, long[] aStr,
                              MemorySegment b, long bOff, long[] bStr, MemorySegment out, long outOff) {
        int r = shape.length;
        int inner = r == 0 ? 1 : shape[r - 1];
        long outer = 1;
        for (int i = 0; i < r - 1; i++) outer *= shape[i];
        long aIn = r == 0 ? 1 : aStr[r - 1], bIn = r == 0 ? 1 : bStr[r - 1];
        int rowsPerTask = Math.max(1, GRAIN / Math.max(1, inner));
        CpuThreads.parallelFor((int) outer, rowsPerTask, (from, to) -> {
            for (int row = from; row < to; row++) {
                long ao = aOff, bo = bOff, rem = row;
                for (int d = r - 2; d >= 0; d--) {
                    long idx = rem % shape[d];
                    rem /= shape[d];
                    ao += idx * aStr[d];
                    bo += idx * bStr[d];
                }
                binaryRow(op, inner, a, ao, aIn, b, bo, bIn, out, outOff + (long) row * inner);
            }
        });
    }

    private static void binaryRow(Binary op, int n, MemorySegment a, long ao, long as, MemorySegment b, long bo, long bs,
                                  MemorySegment out, long oo) {
        int i = 0;
        if ((as == 1 || as == 0) && (bs == 1 || bs == 0)) {
            FloatVector va = as == 0 ? FloatVector.broadcast(S, a.getAtIndex(F, ao)) : null;
            FloatVector vb = bs == 0 ? FloatVector.broadcast(S, b.getAtIndex(F, bo)) : null;
            for (int bound = S.loopBound(n); i < bound; i += S.length()) {
                FloatVector x = as == 0 ? va : FloatVector.fromMemorySegment(S, a, (ao + i) * 4, LE);
                FloatVector y = bs == 0 ? vb : FloatVector.fromMemorySegment(S, b, (bo + i) * 4, LE);
                FloatVector z = switch (op) {
                    case ADD -> x.add(y);
                    case SUB -> x.sub(y);
                    case MUL -> x.mul(y);
                    case DIV -> x.div(y);
                    case EQ -> FloatVector.zero(S).blend(1f, x.compare(VectorOperators.EQ, y));
                };
                z.intoMemorySegment(out, (oo + i) * 4, LE);
            }
        }
        for (; i < n; i++) {
            float x = a.getAtIndex(F, ao + i * as), y = b.getAtIndex(F, bo + i * bs);
            float z = switch (op) {
                case ADD -> x + y;
                case SUB -> x - y;
                case MUL -> x * y;
                case DIV -> x / y;
                case EQ -> x == y ? 1f : 0f;
            };
            out.setAtIndex(F, oo + i, z);
        }
    }

    /** Copies a strided view into a strided destination of the same shape (elements of {@code bytes} bytes). */
    public static void copy(int[] shape, int bytes, MemorySegment src, long sOff, long[] sStr,
                            MemorySegment dst, long dOff, long[] dStr) {
        int r = shape.length;
        int inner = r == 0 ? 1 : shape[r - 1];
        long outer = 1;
        for (int i = 0; i < r - 1; i++) outer *= shape[i];
        long sIn = r == 0 ? 1 : sStr[r - 1], dIn = r == 0 ? 1 : dStr[r - 1];
        int rowsPerTask = Math.max(1, GRAIN / Math.max(1, inner));
        CpuThreads.parallelFor((int) outer, rowsPerTask, (from, to) -> {
            for (int row = from; row < to; row++) {
                long so = sOff, dso = dOff, rem = row;
                for (int d = r - 2; d >= 0; d--) {
                    long idx = rem % shape[d];
                    rem /= shape[d];
                    so += idx * sStr[d];
                    dso += idx * dStr[d];
                }
                if (sIn == 1 && dIn == 1) {
                    MemorySegment.copy(src, so * bytes, dst, dso * bytes, (long) inner * bytes);
                } else if (bytes == 4) {
                    for (int i = 0; i < inner; i++) {
                        dst.setAtIndex(ValueLayout.JAVA_INT_UNALIGNED, dso + i * dIn,
                                src.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, so + i * sIn));
                    }
                } else {
                    for (int i = 0; i < inner; i++) {
                        MemorySegment.copy(src, (so + i * sIn) * bytes, dst, (dso + i * dIn) * bytes, bytes);
                    }
                }
            }
        });
    }

    /** out[i] = x[i] * s over n contiguous floats. */
    public static void scale(MemorySegment x, long xOff, float s, MemorySegment out, long oOff, long n) {
        CpuThreads.parallelFor(blocks(n), 1, (from, to) -> {
            long lo = (long) from * GRAIN, hi = Math.min(n, (long) to * GRAIN);
            long i = lo;
            for (long bound = lo + S.loopBound(hi - lo); i < bound; i += S.length()) {
                FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE).mul(s).intoMemorySegment(out, (oOff + i) * 4, LE);
            }
            for (; i < hi; i++) out.setAtIndex(F, oOff + i, x.getAtIndex(F, xOff + i) * s);
        });
    }

    /** acc[i] += x[i] over n contiguous floats. */
    public static void addInPlace(MemorySegment acc, long accOff, MemorySegment x, long xOff, long n) {
        CpuThreads.parallelFor(blocks(n), 1, (from, to) -> {
            long lo = (long) from * GRAIN, hi = Math.min(n, (long) to * GRAIN);
            long i = lo;
            for (long bound = lo + S.loopBound(hi - lo); i < bound; i += S.length()) {
                FloatVector.fromMemorySegment(S, acc, (accOff + i) * 4, LE)
                        .add(FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE))
                        .intoMemorySegment(acc, (accOff + i) * 4, LE);
            }
            for (; i < hi; i++) acc.setAtIndex(F, accOff + i, acc.getAtIndex(F, accOff + i) + x.getAtIndex(F, xOff + i));
        });
    }

    /** acc[i] *= x[i] over n contiguous floats. */
    public static void multiplyInPlace(MemorySegment acc, long accOff, MemorySegment x, long xOff, long n) {
        CpuThreads.parallelFor(blocks(n), 1, (from, to) -> {
            long lo = (long) from * GRAIN, hi = Math.min(n, (long) to * GRAIN);
            long i = lo;
            for (long bound = lo + S.loopBound(hi - lo); i < bound; i += S.length()) {
                FloatVector.fromMemorySegment(S, acc, (accOff + i) * 4, LE)
                        .mul(FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE))
                        .intoMemorySegment(acc, (accOff + i) * 4, LE);
            }
            for (; i < hi; i++) acc.setAtIndex(F, accOff + i, acc.getAtIndex(F, accOff + i) * x.getAtIndex(F, xOff + i));
        });
    }

    /** Sum of squares in double precision (per-block partials, then added in a fixed order). */
    public static double sumOfSquares(MemorySegment x, long xOff, long n) {
        int blocks = blocks(n);
        double[] partial = new double[blocks];
        CpuThreads.parallelFor(blocks, 1, (from, to) -> {
            for (int blk = from; blk < to; blk++) {
                long lo = (long) blk * GRAIN, hi = Math.min(n, lo + GRAIN);
                FloatVector acc = FloatVector.zero(S);
                long i = lo;
                for (long bound = lo + S.loopBound(hi - lo); i < bound; i += S.length()) {
                    FloatVector v = FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE);
                    acc = v.fma(v, acc);
                }
                double s = VectorMath.sum(acc);
                for (; i < hi; i++) {
                    float v = x.getAtIndex(F, xOff + i);
                    s += v * v;
                }
                partial[blk] = s;
            }
        });
        double total = 0;
        for (double p : partial) total += p;
        return total;
    }

    private static int blocks(long n) {
        return (int) ((n + GRAIN - 1) / GRAIN);
    }
}
