package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * C = A op(B) for a few rows of A (1..8): the shapes of decode, batched decode and KV recomputation,
 * where a handful of tokens go through a layer together. Each weight element is read once for all rows
 * (the packed GEMM would pack the whole weight first; one GEMV per row would read it m times).
 * Row-major, offsets and leading dims in floats, C overwritten.
 *
 * <p>Row-invariant: every element of C is accumulated in the same order whatever m is and whichever
 * row of A it comes from, so a token's product is bit for bit the same alone or in a batch (the decode
 * path relies on this to verify speculative drafts exactly). Each row keeps four independent
 * accumulator chains (four columns), enough to hide the FMA latency even for one row.
 */
public final class CpuSkinnyGemm {
    public static final int MAX_ROWS = 8;
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ThreadScratch PARTIALS = new ThreadScratch();
    /**
     * Four rows per pass over B where sixteen accumulators and four weight vectors fit the registers: with
     * 512-bit vectors (AVX-512 has 32); AVX2's 16 would spill. Every element's chain is the same either way.
     */
    private static final boolean QUADS = Boolean.parseBoolean(System.getProperty("exeunt.skinny.quads", String.valueOf(S.vectorBitSize() >= 512)));

    private CpuSkinnyGemm() {}

    /**
     * @param transB B is [n, k] (Hugging Face [out, in] weights) when true, [k, n] (input-major) when false
     */
    public static void gemm(boolean transB, int m, int n, int k, MemorySegment a, long aOff, int lda,
                            MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        gemm(QUADS, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
    }

    /** {@link #gemm} with the four-row kernels on or off (either is correct anywhere; tests run both). */
    static void gemm(boolean quads, boolean transB, int m, int n, int k, MemorySegment a, long aOff, int lda,
                     MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        if (m < 1 || m > MAX_ROWS) throw new IllegalArgumentException("skinny GEMM takes 1.." + MAX_ROWS + " rows, got " + m);
        boolean shared = CpuThreads.shareable(a, b, c);
        long work = (long) n * k;
        if (transB) {
            // Groups of four columns; ~16K multiply-adds per chunk per row, so decode-sized layers still split.
            int groups = (n + 3) / 4;
            int grain = (int) Math.max(1, (1L << 12) / Math.max(1, k));
            if (!shared || work < (1L << 16)) dotColumns(0, groups, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
            else CpuThreads.parallelFor(groups, grain, (g0, g1) -> dotColumns(g0, g1, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        } else {
            int chunks = (n + 4 * L - 1) / (4 * L);
            int grain = (int) Math.max(1, (1L << 14) / Math.max(1, (long) k * 4 * L));
            if (!shared || work < (1L << 16)) axpyColumns(quads, 0, chunks, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
            else CpuThreads.parallelFor(chunks, grain, (q0, q1) -> axpyColumns(quads, q0, q1, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        }
    }

    /** B is [n, k]: C[r][j] = dot(A[r], B[j]) for column groups [g0, g1) of four, each row on its own. */
    private static void dotColumns(int g0, int g1, int m, int n, int k, MemorySegment a, long aOff, int lda,
                                   MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        MemorySegment partials = PARTIALS.get(8L * L * 4);
        for (int g = g0; g < g1; g++) {
            int j = 4 * g;
            if (j + 4 > n) {
                for (int jj = j; jj < n; jj++) {
                    for (int r = 0; r < m; r++) {
                        c.setAtIndex(F, cOff + (long) r * ldc + jj, dot1(k, a, aOff + (long) r * lda, b, bOff + (long) jj * ldb));
                    }
                }
                continue;
            }
            // Rows in pairs: one kernel for every row count, so the one a single token runs all the time is
            // the one verification's few-row passes run too (a separate four-row kernel stayed uncompiled
            // through a whole short generation, at C1 speed).
            for (int r = 0; r < m; r += 2) {
                dot4(Math.min(2, m - r), k, a, aOff + (long) r * lda, lda, b, bOff + (long) j * ldb, ldb, c, cOff + (long) r * ldc + j, ldc, partials);
            }
        }
    }

    /**
     * One or two rows of A against four consecutive rows of B: four chains per row, each B vector loaded
     * once for both rows and each A vector once for all four columns; partials (8 vectors) is scratch.
     */
    private static void dot4(int rows, int k, MemorySegment a, long ar, int lda, MemorySegment b, long bj, int ldb,
                             MemorySegment c, long c0, int ldc, MemorySegment partials) {
        FloatVector s0 = FloatVector.zero(S), s1 = s0, s2 = s0, s3 = s0, u0 = s0, u1 = s0, u2 = s0, u3 = s0;
        long b0 = bj * 4, b1 = b0 + 4L * ldb, b2 = b1 + 4L * ldb, b3 = b2 + 4L * ldb, xb = ar * 4, yb = xb + 4L * lda;
        boolean two = rows > 1;
        int kv = S.loopBound(k);
        for (int i = 0; i < kv; i += L) {
            FloatVector w0 = FloatVector.fromMemorySegment(S, b, b0 + 4L * i, LE);
            FloatVector w1 = FloatVector.fromMemorySegment(S, b, b1 + 4L * i, LE);
            FloatVector w2 = FloatVector.fromMemorySegment(S, b, b2 + 4L * i, LE);
            FloatVector w3 = FloatVector.fromMemorySegment(S, b, b3 + 4L * i, LE);
            FloatVector x = FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE);
            s0 = w0.fma(x, s0);
            s1 = w1.fma(x, s1);
            s2 = w2.fma(x, s2);
            s3 = w3.fma(x, s3);
            if (two) {
                FloatVector y = FloatVector.fromMemorySegment(S, a, yb + 4L * i, LE);
                u0 = w0.fma(y, u0);
                u1 = w1.fma(y, u1);
                u2 = w2.fma(y, u2);
                u3 = w3.fma(y, u3);
            }
        }
        // The eight chains go to memory and their lane sums are taken in a method of their own: summed here,
        // the sums came past C2's inlining budget for this method (NodeCountInliningCutoff), so half the
        // chains went to a call as boxed vectors, an allocation each, and two rows cost twice one.
        s0.intoMemorySegment(partials, 0, LE);
        s1.intoMemorySegment(partials, 4L * L, LE);
        s2.intoMemorySegment(partials, 8L * L, LE);
        s3.intoMemorySegment(partials, 12L * L, LE);
        if (two) {
            u0.intoMemorySegment(partials, 16L * L, LE);
            u1.intoMemorySegment(partials, 20L * L, LE);
            u2.intoMemorySegment(partials, 24L * L, LE);
            u3.intoMemorySegment(partials, 28L * L, LE);
        }
        for (int r = 0; r < rows; r++) {
            for (int col = 0; col < 4; col++) {
                float t = tail(k, kv, a, ar + (long) r * lda, b, bj + (long) col * ldb);
                c.setAtIndex(F, c0 + (long) r * ldc + col, VectorMath.sumAt(S, partials, (4L * r + col) * L * 4) + t);
            }
        }
    }

    /** The scalar tail of a dot product, i in [kv, k) (zero when k is a multiple of the vector length). */
    private static float tail(int k, int kv, MemorySegment a, long ar, MemorySegment b, long bj) {
        float t = 0;
        for (int i = kv; i < k; i++) t += a.getAtIndex(F, ar + i) * b.getAtIndex(F, bj + i);
        return t;
    }

    /** The same arithmetic as one lane group of {@link #dot4}, for the last columns. */
    private static float dot1(int k, MemorySegment a, long ar, MemorySegment b, long bj) {
        FloatVector s = FloatVector.zero(S);
        int kv = S.loopBound(k);
        for (int i = 0; i < kv; i += L) {
            s = FloatVector.fromMemorySegment(S, b, (bj + i) * 4, LE).fma(FloatVector.fromMemorySegment(S, a, (ar + i) * 4, LE), s);
        }
        return VectorMath.sum(s) + tail(k, kv, a, ar, b, bj);
    }

    /**
     * B is [k, n]: column chunks q in [q0, q1) of four vectors each; for every i, B[i][chunk] is loaded
     * once and added into each row's accumulators with A[r][i] as the factor (rows in fours with quads,
     * the rest in pairs). A verification pass of eight rows reads each chunk twice instead of four times:
     * on the demo model a layer's product took 0.74 us per row at eight rows against 1.13-1.47 in pairs
     * (AMD Zen 5, one thread).
     */
    private static void axpyColumns(boolean quads, int q0, int q1, int m, int n, int k, MemorySegment a, long aOff, int lda,
                                    MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        for (int q = q0; q < q1; q++) {
            int col = q * 4 * L;
            if (col + 4 * L > n) {
                // The last chunk: whole vectors one at a time, then the columns past the last vector.
                for (; col + L <= n; col += L) {
                    for (int r0 = 0; r0 < m; r0 += 2) {
                        axpy1(Math.min(2, m - r0), k, a, aOff + (long) r0 * lda, lda, b, bOff + col, ldb, c, cOff + (long) r0 * ldc + col, ldc);
                    }
                }
                scalarColumns(col, n, m, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
                continue;
            }
            int r0 = 0;
            if (quads) for (; r0 + 4 <= m; r0 += 4) axpy4(k, a, aOff + (long) r0 * lda, lda, b, bOff + col, ldb, c, cOff + (long) r0 * ldc + col, ldc);
            for (; r0 < m; r0 += 2) {
                axpy2(Math.min(2, m - r0), k, a, aOff + (long) r0 * lda, lda, b, bOff + col, ldb, c, cOff + (long) r0 * ldc + col, ldc);
            }
        }
    }

    /**
     * {@link #axpy2} for four rows at once (sixteen accumulators: machines with 32 vector registers). Written
     * out like axpy2 on purpose: with the stores in a helper taking four vectors, C2 boxed them and a four-row
     * product took 800 us instead of 4.
     */
    private static void axpy4(int k, MemorySegment a, long a0, int lda, MemorySegment b, long b0, int ldb,
                              MemorySegment c, long c0, int ldc) {
        FloatVector z = FloatVector.zero(S);
        FloatVector p0 = z, p1 = z, p2 = z, p3 = z, q0 = z, q1 = z, q2 = z, q3 = z;
        FloatVector r0 = z, r1 = z, r2 = z, r3 = z, s0 = z, s1 = z, s2 = z, s3 = z;
        long a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        for (int i = 0; i < k; i++) {
            long bi = (b0 + (long) i * ldb) * 4;
            FloatVector w0 = FloatVector.fromMemorySegment(S, b, bi, LE);
            FloatVector w1 = FloatVector.fromMemorySegment(S, b, bi + 4L * L, LE);
            FloatVector w2 = FloatVector.fromMemorySegment(S, b, bi + 8L * L, LE);
            FloatVector w3 = FloatVector.fromMemorySegment(S, b, bi + 12L * L, LE);
            FloatVector x = FloatVector.broadcast(S, a.getAtIndex(F, a0 + i));
            p0 = w0.fma(x, p0);
            p1 = w1.fma(x, p1);
            p2 = w2.fma(x, p2);
            p3 = w3.fma(x, p3);
            x = FloatVector.broadcast(S, a.getAtIndex(F, a1 + i));
            q0 = w0.fma(x, q0);
            q1 = w1.fma(x, q1);
            q2 = w2.fma(x, q2);
            q3 = w3.fma(x, q3);
            x = FloatVector.broadcast(S, a.getAtIndex(F, a2 + i));
            r0 = w0.fma(x, r0);
            r1 = w1.fma(x, r1);
            r2 = w2.fma(x, r2);
            r3 = w3.fma(x, r3);
            x = FloatVector.broadcast(S, a.getAtIndex(F, a3 + i));
            s0 = w0.fma(x, s0);
            s1 = w1.fma(x, s1);
            s2 = w2.fma(x, s2);
            s3 = w3.fma(x, s3);
        }
        long cb = c0 * 4, step = 4L * ldc;
        p0.intoMemorySegment(c, cb, LE);
        p1.intoMemorySegment(c, cb + 4L * L, LE);
        p2.intoMemorySegment(c, cb + 8L * L, LE);
        p3.intoMemorySegment(c, cb + 12L * L, LE);
        q0.intoMemorySegment(c, cb + step, LE);
        q1.intoMemorySegment(c, cb + step + 4L * L, LE);
        q2.intoMemorySegment(c, cb + step + 8L * L, LE);
        q3.intoMemorySegment(c, cb + step + 12L * L, LE);
        r0.intoMemorySegment(c, cb + 2 * step, LE);
        r1.intoMemorySegment(c, cb + 2 * step + 4L * L, LE);
        r2.intoMemorySegment(c, cb + 2 * step + 8L * L, LE);
        r3.intoMemorySegment(c, cb + 2 * step + 12L * L, LE);
        s0.intoMemorySegment(c, cb + 3 * step, LE);
        s1.intoMemorySegment(c, cb + 3 * step + 4L * L, LE);
        s2.intoMemorySegment(c, cb + 3 * step + 8L * L, LE);
        s3.intoMemorySegment(c, cb + 3 * step + 12L * L, LE);
    }

    /** {@link #axpy2} for one vector of columns (the same fused chain per element). */
    private static void axpy1(int rows, int k, MemorySegment a, long a0, int lda, MemorySegment b, long b0, int ldb,
                              MemorySegment c, long c0, int ldc) {
        FloatVector p = FloatVector.zero(S), q = p;
        boolean two = rows > 1;
        for (int i = 0; i < k; i++) {
            FloatVector w = FloatVector.fromMemorySegment(S, b, (b0 + (long) i * ldb) * 4, LE);
            p = w.fma(FloatVector.broadcast(S, a.getAtIndex(F, a0 + i)), p);
            if (two) q = w.fma(FloatVector.broadcast(S, a.getAtIndex(F, a0 + lda + i)), q);
        }
        p.intoMemorySegment(c, c0 * 4, LE);
        if (two) q.intoMemorySegment(c, (c0 + ldc) * 4, LE);
    }

    private static void axpy2(int rows, int k, MemorySegment a, long a0, int lda, MemorySegment b, long b0, int ldb,
                              MemorySegment c, long c0, int ldc) {
        FloatVector z = FloatVector.zero(S);
        FloatVector p0 = z, p1 = z, p2 = z, p3 = z, q0 = z, q1 = z, q2 = z, q3 = z;
        boolean two = rows > 1;
        for (int i = 0; i < k; i++) {
            long bi = (b0 + (long) i * ldb) * 4;
            FloatVector w0 = FloatVector.fromMemorySegment(S, b, bi, LE);
            FloatVector w1 = FloatVector.fromMemorySegment(S, b, bi + 4L * L, LE);
            FloatVector w2 = FloatVector.fromMemorySegment(S, b, bi + 8L * L, LE);
            FloatVector w3 = FloatVector.fromMemorySegment(S, b, bi + 12L * L, LE);
            FloatVector x0 = FloatVector.broadcast(S, a.getAtIndex(F, a0 + i));
            p0 = w0.fma(x0, p0);
            p1 = w1.fma(x0, p1);
            p2 = w2.fma(x0, p2);
            p3 = w3.fma(x0, p3);
            if (two) {
                FloatVector x1 = FloatVector.broadcast(S, a.getAtIndex(F, a0 + lda + i));
                q0 = w0.fma(x1, q0);
                q1 = w1.fma(x1, q1);
                q2 = w2.fma(x1, q2);
                q3 = w3.fma(x1, q3);
            }
        }
        long cb = c0 * 4;
        p0.intoMemorySegment(c, cb, LE);
        p1.intoMemorySegment(c, cb + 4L * L, LE);
        p2.intoMemorySegment(c, cb + 8L * L, LE);
        p3.intoMemorySegment(c, cb + 12L * L, LE);
        if (two) {
            long cb1 = cb + 4L * ldc;
            q0.intoMemorySegment(c, cb1, LE);
            q1.intoMemorySegment(c, cb1 + 4L * L, LE);
            q2.intoMemorySegment(c, cb1 + 8L * L, LE);
            q3.intoMemorySegment(c, cb1 + 12L * L, LE);
        }
    }

    /** The last columns (fewer than one vector): per element, the same order as the vector lanes (i ascending, fused). */
    private static void scalarColumns(int col0, int n, int m, int k, MemorySegment a, long aOff, int lda,
                                      MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        for (int r = 0; r < m; r++) {
            for (int j = col0; j < n; j++) {
                float s = 0;
                for (int i = 0; i < k; i++) s = Math.fma(a.getAtIndex(F, aOff + (long) r * lda + i), b.getAtIndex(F, bOff + (long) i * ldb + j), s);
                c.setAtIndex(F, cOff + (long) r * ldc + j, s);
            }
        }
    }
}
