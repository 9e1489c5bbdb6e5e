package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * C = A op(B) for a few rows of A (2..8): the shapes of batched decode and of KV recomputation, where
 * a handful of tokens go through a layer together. Each weight element is read once for all rows
 * (the packed GEMM would pack the whole weight first; one GEMV per row would read it m times).
 * Row-major, offsets and leading dims in floats, C overwritten.
 */
public final class CpuSkinnyGemm {
    public static final int MAX_ROWS = 8;
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    private CpuSkinnyGemm() {}

    /**
     * @param transB B is [n, k] (Hugging Face [out, in] weights) when true, [k, n] (input-major) when false
     */
    public static void gemm(boolean transB, int m, int n, int k, MemorySegment a, long aOff, int lda,
                            MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        if (m < 1 || m > MAX_ROWS) throw new IllegalArgumentException("skinny GEMM takes 1.." + MAX_ROWS + " rows, got " + m);
        boolean shared = CpuThreads.shareable(a, b, c);
        long work = (long) n * k;
        if (transB) {
            // ~16K multiply-adds per chunk per row: decode-sized layers (a few hundred wide) still split.
            int grain = (int) Math.max(1, (1L << 14) / Math.max(1, k));
            if (!shared || work < (1L << 16)) dotColumns(0, n, m, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
            else CpuThreads.parallelFor(n, grain, (j0, j1) -> dotColumns(j0, j1, m, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        } else {
            int chunks = (n + 2 * L - 1) / (2 * L);
            int grain = (int) Math.max(1, (1L << 14) / Math.max(1, (long) k * 2 * L));
            if (!shared || work < (1L << 16)) axpyColumns(0, chunks, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
            else CpuThreads.parallelFor(chunks, grain, (q0, q1) -> axpyColumns(q0, q1, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        }
    }

    /**
     * B is [n, k]: C[r][j] = dot(A[r], B[j]) for j in [j0, j1). Rows go in groups of up to four with
     * their accumulators in named locals (vectors in arrays would be boxed by the JIT).
     */
    private static void dotColumns(int j0, int j1, int m, int k, MemorySegment a, long aOff, int lda,
                                   MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        for (int r0 = 0; r0 < m; r0 += 4) {
            int rows = Math.min(4, m - r0);
            long a0 = aOff + (long) r0 * lda;
            for (int j = j0; j < j1; j++) dot4(rows, k, a, a0, lda, b, bOff + (long) j * ldb, c, cOff + (long) r0 * ldc + j, ldc);
        }
    }

    private static void dot4(int rows, int k, MemorySegment a, long a0, int lda, MemorySegment b, long bj,
                             MemorySegment c, long c0, int ldc) {
        FloatVector s0 = FloatVector.zero(S), s1 = s0, s2 = s0, s3 = s0;
        int kv = S.loopBound(k);
        for (int i = 0; i < kv; i += L) {
            FloatVector w = FloatVector.fromMemorySegment(S, b, (bj + i) * 4, LE);
            s0 = FloatVector.fromMemorySegment(S, a, (a0 + i) * 4, LE).fma(w, s0);
            if (rows > 1) s1 = FloatVector.fromMemorySegment(S, a, (a0 + lda + i) * 4, LE).fma(w, s1);
            if (rows > 2) s2 = FloatVector.fromMemorySegment(S, a, (a0 + 2L * lda + i) * 4, LE).fma(w, s2);
            if (rows > 3) s3 = FloatVector.fromMemorySegment(S, a, (a0 + 3L * lda + i) * 4, LE).fma(w, s3);
        }
        float[] sums = {VectorMath.sum(s0), VectorMath.sum(s1), VectorMath.sum(s2), VectorMath.sum(s3)};
        for (int r = 0; r < rows; r++) {
            float s = sums[r];
            long ar = a0 + (long) r * lda;
            for (int i = kv; i < k; i++) s += a.getAtIndex(F, ar + i) * b.getAtIndex(F, bj + i);
            c.setAtIndex(F, c0 + (long) r * ldc, s);
        }
    }

    /**
     * B is [k, n]: column chunks q in [q0, q1) of two vectors each; for every i, B[i][chunk] is loaded
     * once and added into each row's accumulators with A[r][i] as the factor (rows in groups of four).
     */
    private static void axpyColumns(int q0, int q1, int m, int n, int k, MemorySegment a, long aOff, int lda,
                                    MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        for (int q = q0; q < q1; q++) {
            int col = q * 2 * L;
            if (col + 2 * L > n) {
                scalarColumns(col, n, m, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
                continue;
            }
            for (int r0 = 0; r0 < m; r0 += 4) {
                axpy4(Math.min(4, m - r0), k, a, aOff + (long) r0 * lda, lda, b, bOff + col, ldb, c, cOff + (long) r0 * ldc + col, ldc);
            }
        }
    }

    private static void axpy4(int rows, int k, MemorySegment a, long a0, int lda, MemorySegment b, long b0, int ldb,
                              MemorySegment c, long c0, int ldc) {
        FloatVector z = FloatVector.zero(S);
        FloatVector l0 = z, h0 = z, l1 = z, h1 = z, l2 = z, h2 = z, l3 = z, h3 = z;
        for (int i = 0; i < k; i++) {
            long bi = (b0 + (long) i * ldb) * 4;
            FloatVector w0 = FloatVector.fromMemorySegment(S, b, bi, LE);
            FloatVector w1 = FloatVector.fromMemorySegment(S, b, bi + 4L * L, LE);
            FloatVector x0 = FloatVector.broadcast(S, a.getAtIndex(F, a0 + i));
            l0 = w0.fma(x0, l0);
            h0 = w1.fma(x0, h0);
            if (rows > 1) {
                FloatVector x1 = FloatVector.broadcast(S, a.getAtIndex(F, a0 + lda + i));
                l1 = w0.fma(x1, l1);
                h1 = w1.fma(x1, h1);
            }
            if (rows > 2) {
                FloatVector x2 = FloatVector.broadcast(S, a.getAtIndex(F, a0 + 2L * lda + i));
                l2 = w0.fma(x2, l2);
                h2 = w1.fma(x2, h2);
            }
            if (rows > 3) {
                FloatVector x3 = FloatVector.broadcast(S, a.getAtIndex(F, a0 + 3L * lda + i));
                l3 = w0.fma(x3, l3);
                h3 = w1.fma(x3, h3);
            }
        }
        long cb = c0 * 4;
        l0.intoMemorySegment(c, cb, LE);
        h0.intoMemorySegment(c, cb + 4L * L, LE);
        if (rows > 1) {
            l1.intoMemorySegment(c, cb + 4L * ldc, LE);
            h1.intoMemorySegment(c, cb + 4L * ldc + 4L * L, LE);
        }
        if (rows > 2) {
            l2.intoMemorySegment(c, cb + 8L * ldc, LE);
            h2.intoMemorySegment(c, cb + 8L * ldc + 4L * L, LE);
        }
        if (rows > 3) {
            l3.intoMemorySegment(c, cb + 12L * ldc, LE);
            h3.intoMemorySegment(c, cb + 12L * ldc + 4L * L, LE);
        }
    }

    private static void scalarColumns(int col0, int n, int m, int k, MemorySegment a, long aOff, int lda,
                                      MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        for (int r = 0; r < m; r++) {
            for (int j = col0; j < n; j++) {
                float s = 0;
                for (int i = 0; i < k; i++) s += a.getAtIndex(F, aOff + (long) r * lda + i) * b.getAtIndex(F, bOff + (long) i * ldb + j);
                c.setAtIndex(F, cOff + (long) r * ldc + j, s);
            }
        }
    }
}
