package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Embedding lookup: gather rows of a {@code [vocab, dim]} F32 table by int32 ids, and the backward
 * scatter-add into the table's gradient.
 *
 * <p>Conventions: little-endian segments, element offsets, rows contiguous, segments accessible from any
 * thread. Every id is validated before anything is written; an id outside {@code [0, vocab)} raises
 * {@link IllegalArgumentException} naming the id, its position and the vocab size.
 */
public final class CpuEmbedding {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);
    private static final int GRAIN_ELEMS = 1 << 14;

    private CpuEmbedding() {}

    /** {@code out[i, :] = table[ids[i], :]} for {@code i < n}. out ([n, dim]) is overwritten. */
    public static void gather(MemorySegment table, long tableOff, int vocab, int dim,
                              MemorySegment ids, long idsOff, int n, MemorySegment out, long outOff) {
        int[] id = readIds(ids, idsOff, n, vocab);
        checkDim(dim);
        CpuThreads.parallelFor(n, grain(dim), (i0, i1) -> {
            for (int i = i0; i < i1; i++) {
                MemorySegment.copy(table, 4 * (tableOff + (long) id[i] * dim), out, 4 * (outOff + (long) i * dim), 4L * dim);
            }
        });
    }

    /**
     * Backward of {@link #gather}: {@code dTable[ids[i], :] += dOut[i, :]} for {@code i < n}. dTable ([vocab, dim]) is
     * <b>accumulated</b> into (the caller zeroes it). Rows are grouped by id (stable sort), each id's row
     * is owned by one thread and receives its contributions in increasing i: thread-safe and bitwise
     * deterministic whatever the thread count.
     */
    public static void scatterAdd(MemorySegment dOut, long dOutOff, MemorySegment ids, long idsOff, int n,
                                  MemorySegment dTable, long dTableOff, int vocab, int dim) {
        int[] id = readIds(ids, idsOff, n, vocab);
        checkDim(dim);
        if (n == 0) return;
        long[] order = new long[n];
        for (int i = 0; i < n; i++) order[i] = ((long) id[i] << 32) | i;
        Arrays.sort(order); // by id, then by position
        int[] groupStart = new int[n + 1];
        int groups = 0;
        for (int k = 0; k < n; k++) {
            if (k == 0 || (order[k] >>> 32) != (order[k - 1] >>> 32)) groupStart[groups++] = k;
        }
        groupStart[groups] = n;
        CpuThreads.parallelFor(groups, grain(dim), (g0, g1) -> {
            for (int g = g0; g < g1; g++) {
                long rowB = 4 * (dTableOff + (order[groupStart[g]] >>> 32) * dim);
                for (int k = groupStart[g]; k < groupStart[g + 1]; k++) {
                    int i = (int) order[k];
                    addRow(dOut, 4 * (dOutOff + (long) i * dim), dTable, rowB, dim);
                }
            }
        });
    }

    private static void addRow(MemorySegment src, long sb, MemorySegment dst, long db, int n) {
        int j = 0, bound = S.loopBound(n);
        for (; j < bound; j += L) {
            FloatVector.fromMemorySegment(S, dst, db + 4L * j, LE).add(FloatVector.fromMemorySegment(S, src, sb + 4L * j, LE))
                    .intoMemorySegment(dst, db + 4L * j, LE);
        }
        for (; j < n; j++) dst.set(F, db + 4L * j, dst.get(F, db + 4L * j) + src.get(F, sb + 4L * j));
    }

    private static int[] readIds(MemorySegment ids, long idsOff, int n, int vocab) {
        if (n < 0) throw new IllegalArgumentException("n < 0: " + n);
        if (vocab < 1) throw new IllegalArgumentException("vocab must be >= 1, got " + vocab);
        int[] id = new int[n];
        MemorySegment.copy(ids, I32, 4 * idsOff, id, 0, n);
        for (int i = 0; i < n; i++) {
            if (id[i] < 0 || id[i] >= vocab) {
                throw new IllegalArgumentException("token id " + id[i] + " at position " + i + " is out of range [0, " + vocab + ")");
            }
        }
        return id;
    }

    private static void checkDim(int dim) {
        if (dim < 1) throw new IllegalArgumentException("dim must be >= 1, got " + dim);
    }

    private static int grain(int dim) {
        return Math.max(1, GRAIN_ELEMS / dim);
    }
}
