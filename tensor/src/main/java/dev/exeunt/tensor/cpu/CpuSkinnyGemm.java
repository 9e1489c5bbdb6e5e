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
 * accumulator chains (four column vectors for [k, n] weights, four interleaved parts of k for [n, k]), enough to hide
 * the FMA latency even for one row.
 */
public final class CpuSkinnyGemm {
    public static final int MAX_ROWS = 8;
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ThreadScratch PARTIALS = new ThreadScratch();
    /**
     * Kernels with sixteen accumulators, where they fit the registers: with 512-bit vectors (AVX-512 has 32);
     * AVX2's 16 would spill. [n, k] weights: two of B's rows per pass for two rows of A; [k, n]: four rows of A per
     * pass over B. Every element's chain is the same either way.
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
            // ~16K multiply-adds per chunk per row of A, so decode-sized layers still split.
            int grain = (int) Math.max(1, (1L << 14) / Math.max(1, k));
            if (!shared || work < (1L << 16)) dotRows(quads, 0, n, m, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
            else CpuThreads.parallelFor(n, grain, (j0, j1) -> dotRows(quads, j0, j1, m, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        } else {
            int chunks = (n + 4 * L - 1) / (4 * L);
            int grain = (int) Math.max(1, (1L << 14) / Math.max(1, (long) k * 4 * L));
            if (!shared || work < (1L << 16)) axpyColumns(quads, 0, chunks, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
            else CpuThreads.parallelFor(chunks, grain, (q0, q1) -> axpyColumns(quads, q0, q1, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        }
    }

    /**
     * B is [n, k]: C[r][j] = dot(A[r], B[j]) for the rows j in [j0, j1) of B, each read once for every row of A
     * (twice from L2 past two rows), at most two streams of weights per thread, far apart: four adjacent rows of B
     * interleaved (the kernel this replaced) read 19-24 GB/s over 48 matrices of 2048 x 768 on two threads where
     * one row at a time reads 32-44, the speed of a plain read loop (AMD Zen 5). More rows of A go in pairs over
     * L2-sized blocks of B: for four rows two pair passes read 22-27 GB/s, one four-row pass 20-22.
     */
    private static void dotRows(boolean quads, int j0, int j1, int m, int k, MemorySegment a, long aOff, int lda,
                                MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        MemorySegment partials = PARTIALS.get(4L * L * 4);
        // With more than two rows of A, B's rows go in blocks that stay in L2 while each pair of A's rows passes
        // over them; with one pass, the whole range at once (rows1 and rows2 pair B's rows half of it apart).
        int block = m <= 2 ? j1 - j0 : (int) Math.max(1, (256L << 10) / (4L * k));
        for (int jb = j0; jb < j1; jb += block) {
            int je = Math.min(j1, jb + block);
            for (int r = 0; r < m; r += 2) {
                long ar = aOff + (long) r * lda, cr = cOff + (long) r * ldc;
                if (r + 1 < m) rows2(quads, jb, je, k, a, ar, lda, b, bOff, ldb, c, cr, ldc, partials);
                else if (quads && 4L * k * (je - jb) > fourStreamsBytes) {
                    // the last of an odd count, or the only row: a range beyond L2 four streams at a time first
                    int quarter = (je - jb) / 4;
                    rowQuads(jb, quarter, k, a, ar, b, bOff, ldb, c, cr, partials);
                    rows1(jb + 4 * quarter, je, k, a, ar, b, bOff, ldb, c, cr, partials);
                } else rows1(jb, je, k, a, ar, b, bOff, ldb, c, cr, partials); // the last of an odd count
            }
        }
    }

    // Each row count has a method of its own holding the loop over B's rows, so that C2 compiles it as a unit
    // with its kernel and lane sums inlined: with the kernels all inlined into dotRows, one row read 19-24 GB/s.

    /**
     * One row of A against B's rows [j0, j1): rows j and j + half together (two streams half the range apart, each
     * x load feeding both), the last of an odd count alone. Against one row at a time: the same 30-47 GB/s from
     * memory, 100-120 instead of 67-91 from L2 (one 512 x 768 matrix; AMD Zen 5, two threads). dotRows sends a range
     * larger than half of L2 four streams at a time ({@link #rowQuads}) before the rest comes here.
     */
    private static void rows1(int j0, int j1, int k, MemorySegment a, long ar, MemorySegment b, long bOff, int ldb,
                              MemorySegment c, long cr, MemorySegment partials) {
        int kv = S.loopBound(k), half = (j1 - j0) / 2;
        for (int j = j0; j < j0 + half; j++) {
            long bj = bOff + (long) j * ldb, bh = bj + (long) half * ldb;
            dot1RowPair(k, a, ar, b, bj, bh, partials);
            c.setAtIndex(F, cr + j, VectorMath.sumAt(S, partials, 0) + tail(k, kv, a, ar, b, bj));
            c.setAtIndex(F, cr + j + half, VectorMath.sumAt(S, partials, 4L * L) + tail(k, kv, a, ar, b, bh));
        }
        if ((j1 - j0) % 2 != 0) {
            long bj = bOff + (long) (j1 - 1) * ldb;
            dot1Row(k, a, ar, b, bj, partials);
            c.setAtIndex(F, cr + j1 - 1, VectorMath.sumAt(S, partials, 0) + tail(k, kv, a, ar, b, bj));
        }
    }

    /**
     * A thread's rows of B at least this large come from beyond L2, where four streams keep more lines in flight than
     * two: one row of A over 48 matrices of 2048 x 768 on two threads read 20.0 GB/s with two streams a thread and
     * 23.3-24.5 with four, a plain read loop's 22-23 (Intel Xeon, from memory; 46 -> 47-51 from L3). In L2 four streams
     * gained nothing (one 512 x 768 matrix: 120 GB/s for four against 95-193 for two across runs), so ranges that fit
     * keep two. Not final only so that tests can take the four-stream kernel on small matrices.
     */
    static long fourStreamsBytes = CpuCaches.get().l2() / 2;

    /**
     * One row of A against B's rows j, j + q, j + 2q and j + 3q for j in [j0, j0 + q): four streams a quarter of the
     * range apart, each x load feeding four rows (sixteen chains: 32 vector registers).
     */
    private static void rowQuads(int j0, int q, int k, MemorySegment a, long ar, MemorySegment b, long bOff, int ldb,
                                 MemorySegment c, long cr, MemorySegment partials) {
        long step = (long) q * ldb;
        int kv = S.loopBound(k);
        for (int j = j0; j < j0 + q; j++) {
            long bj = bOff + (long) j * ldb;
            dot1RowQuad(k, a, ar, b, bj, step, partials);
            for (int i = 0; i < 4; i++) {
                long bi = bj + i * step;
                c.setAtIndex(F, cr + j + (long) i * q, VectorMath.sumAt(S, partials, 4L * L * i) + tail(k, kv, a, ar, b, bi));
            }
        }
    }

    /**
     * Two rows of A against B's rows [j0, j1); with 32 vector registers (quads) B's rows j and j + half together as
     * in {@link #rows1}, sixteen chains.
     */
    private static void rows2(boolean quads, int j0, int j1, int k, MemorySegment a, long ar, int lda, MemorySegment b, long bOff,
                              int ldb, MemorySegment c, long cr, int ldc, MemorySegment partials) {
        int kv = S.loopBound(k), half = quads ? (j1 - j0) / 2 : 0;
        for (int j = j0; j < j0 + half; j++) {
            long bj = bOff + (long) j * ldb, bh = bj + (long) half * ldb;
            dot2RowsPair(k, a, ar, lda, b, bj, bh, partials);
            c.setAtIndex(F, cr + j, VectorMath.sumAt(S, partials, 0) + tail(k, kv, a, ar, b, bj));
            c.setAtIndex(F, cr + ldc + j, VectorMath.sumAt(S, partials, 4L * L) + tail(k, kv, a, ar + lda, b, bj));
            c.setAtIndex(F, cr + j + half, VectorMath.sumAt(S, partials, 8L * L) + tail(k, kv, a, ar, b, bh));
            c.setAtIndex(F, cr + ldc + j + half, VectorMath.sumAt(S, partials, 12L * L) + tail(k, kv, a, ar + lda, b, bh));
        }
        for (int j = j0 + 2 * half; j < j1; j++) {
            long bj = bOff + (long) j * ldb;
            dot2Rows(k, a, ar, lda, b, bj, partials);
            c.setAtIndex(F, cr + j, VectorMath.sumAt(S, partials, 0) + tail(k, kv, a, ar, b, bj));
            c.setAtIndex(F, cr + ldc + j, VectorMath.sumAt(S, partials, 4L * L) + tail(k, kv, a, ar + lda, b, bj));
        }
    }

    // The kernels below give every (row of A, row of B) the same arithmetic: four chains over the vectors of
    // k in turn (i, i + L, i + 2L, i + 3L), the vectors past the last group of four added to the first chain,
    // then (s0 + s1) + (s2 + s3) into partials; the rows methods add its lanes and the scalar tail. Each B vector's
    // multiply-adds follow its load: with the four loads first, one row streamed at 17-22 GB/s instead of 30-33
    // (the same machine and matrices as above).

    /** One row of A (from float offset ar) against the row of B at bj. */
    private static void dot1Row(int k, MemorySegment a, long ar, MemorySegment b, long bj, MemorySegment partials) {
        FloatVector s0 = FloatVector.zero(S), s1 = s0, s2 = s0, s3 = s0;
        long wb = bj * 4, xb = ar * 4;
        int k4 = k - k % (4 * L), kv = S.loopBound(k);
        for (int i = 0; i < k4; i += 4 * L) {
            s0 = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE).fma(FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE), s0);
            s1 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + L), LE).fma(FloatVector.fromMemorySegment(S, a, xb + 4L * (i + L), LE), s1);
            s2 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 2 * L), LE).fma(FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 2 * L), LE), s2);
            s3 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 3 * L), LE).fma(FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 3 * L), LE), s3);
        }
        for (int i = k4; i < kv; i += L) {
            s0 = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE).fma(FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE), s0);
        }
        s0.add(s1).add(s2.add(s3)).intoMemorySegment(partials, 0, LE);
    }

    /** {@link #dot1Row} for the rows of B at bj and bh at once, each x vector loaded once for both. */
    private static void dot1RowPair(int k, MemorySegment a, long ar, MemorySegment b, long bj, long bh, MemorySegment partials) {
        FloatVector s0 = FloatVector.zero(S), s1 = s0, s2 = s0, s3 = s0, u0 = s0, u1 = s0, u2 = s0, u3 = s0;
        long wb = bj * 4, vb = bh * 4, xb = ar * 4;
        int k4 = k - k % (4 * L), kv = S.loopBound(k);
        for (int i = 0; i < k4; i += 4 * L) {
            FloatVector x = FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE);
            s0 = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE).fma(x, s0);
            u0 = FloatVector.fromMemorySegment(S, b, vb + 4L * i, LE).fma(x, u0);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + L), LE);
            s1 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + L), LE).fma(x, s1);
            u1 = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + L), LE).fma(x, u1);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 2 * L), LE);
            s2 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 2 * L), LE).fma(x, s2);
            u2 = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + 2 * L), LE).fma(x, u2);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 3 * L), LE);
            s3 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 3 * L), LE).fma(x, s3);
            u3 = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + 3 * L), LE).fma(x, u3);
        }
        for (int i = k4; i < kv; i += L) {
            FloatVector x = FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE);
            s0 = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE).fma(x, s0);
            u0 = FloatVector.fromMemorySegment(S, b, vb + 4L * i, LE).fma(x, u0);
        }
        s0.add(s1).add(s2.add(s3)).intoMemorySegment(partials, 0, LE);
        u0.add(u1).add(u2.add(u3)).intoMemorySegment(partials, 4L * L, LE);
    }

    /** {@link #dot1Row} for the rows of B at bj, bj + step, bj + 2 step and bj + 3 step at once, each x vector loaded once for all four. */
    private static void dot1RowQuad(int k, MemorySegment a, long ar, MemorySegment b, long bj, long step, MemorySegment partials) {
        FloatVector z = FloatVector.zero(S);
        FloatVector s0 = z, s1 = z, s2 = z, s3 = z, t0 = z, t1 = z, t2 = z, t3 = z;
        FloatVector u0 = z, u1 = z, u2 = z, u3 = z, v0 = z, v1 = z, v2 = z, v3 = z;
        long wb = bj * 4, tb = wb + 4 * step, ub = tb + 4 * step, vb = ub + 4 * step, xb = ar * 4;
        int k4 = k - k % (4 * L), kv = S.loopBound(k);
        for (int i = 0; i < k4; i += 4 * L) {
            FloatVector x = FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE);
            s0 = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE).fma(x, s0);
            t0 = FloatVector.fromMemorySegment(S, b, tb + 4L * i, LE).fma(x, t0);
            u0 = FloatVector.fromMemorySegment(S, b, ub + 4L * i, LE).fma(x, u0);
            v0 = FloatVector.fromMemorySegment(S, b, vb + 4L * i, LE).fma(x, v0);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + L), LE);
            s1 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + L), LE).fma(x, s1);
            t1 = FloatVector.fromMemorySegment(S, b, tb + 4L * (i + L), LE).fma(x, t1);
            u1 = FloatVector.fromMemorySegment(S, b, ub + 4L * (i + L), LE).fma(x, u1);
            v1 = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + L), LE).fma(x, v1);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 2 * L), LE);
            s2 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 2 * L), LE).fma(x, s2);
            t2 = FloatVector.fromMemorySegment(S, b, tb + 4L * (i + 2 * L), LE).fma(x, t2);
            u2 = FloatVector.fromMemorySegment(S, b, ub + 4L * (i + 2 * L), LE).fma(x, u2);
            v2 = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + 2 * L), LE).fma(x, v2);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 3 * L), LE);
            s3 = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 3 * L), LE).fma(x, s3);
            t3 = FloatVector.fromMemorySegment(S, b, tb + 4L * (i + 3 * L), LE).fma(x, t3);
            u3 = FloatVector.fromMemorySegment(S, b, ub + 4L * (i + 3 * L), LE).fma(x, u3);
            v3 = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + 3 * L), LE).fma(x, v3);
        }
        for (int i = k4; i < kv; i += L) {
            FloatVector x = FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE);
            s0 = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE).fma(x, s0);
            t0 = FloatVector.fromMemorySegment(S, b, tb + 4L * i, LE).fma(x, t0);
            u0 = FloatVector.fromMemorySegment(S, b, ub + 4L * i, LE).fma(x, u0);
            v0 = FloatVector.fromMemorySegment(S, b, vb + 4L * i, LE).fma(x, v0);
        }
        s0.add(s1).add(s2.add(s3)).intoMemorySegment(partials, 0, LE);
        t0.add(t1).add(t2.add(t3)).intoMemorySegment(partials, 4L * L, LE);
        u0.add(u1).add(u2.add(u3)).intoMemorySegment(partials, 8L * L, LE);
        v0.add(v1).add(v2.add(v3)).intoMemorySegment(partials, 12L * L, LE);
    }

    /**
     * Two rows of A (lda apart from float offset ar) against the row of B at bj; each B vector loaded once.
     * Its own kernel rather than dot1Row's loop with a "second row?" test in it: that test alone held one
     * row to 17-22 GB/s.
     */
    private static void dot2Rows(int k, MemorySegment a, long ar, int lda, MemorySegment b, long bj, MemorySegment partials) {
        FloatVector s0 = FloatVector.zero(S), s1 = s0, s2 = s0, s3 = s0, u0 = s0, u1 = s0, u2 = s0, u3 = s0;
        long wb = bj * 4, xb = ar * 4, yb = xb + 4L * lda;
        int k4 = k - k % (4 * L), kv = S.loopBound(k);
        for (int i = 0; i < k4; i += 4 * L) {
            FloatVector w = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE);
            s0 = w.fma(FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE), s0);
            u0 = w.fma(FloatVector.fromMemorySegment(S, a, yb + 4L * i, LE), u0);
            w = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + L), LE);
            s1 = w.fma(FloatVector.fromMemorySegment(S, a, xb + 4L * (i + L), LE), s1);
            u1 = w.fma(FloatVector.fromMemorySegment(S, a, yb + 4L * (i + L), LE), u1);
            w = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 2 * L), LE);
            s2 = w.fma(FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 2 * L), LE), s2);
            u2 = w.fma(FloatVector.fromMemorySegment(S, a, yb + 4L * (i + 2 * L), LE), u2);
            w = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 3 * L), LE);
            s3 = w.fma(FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 3 * L), LE), s3);
            u3 = w.fma(FloatVector.fromMemorySegment(S, a, yb + 4L * (i + 3 * L), LE), u3);
        }
        for (int i = k4; i < kv; i += L) {
            FloatVector w = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE);
            s0 = w.fma(FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE), s0);
            u0 = w.fma(FloatVector.fromMemorySegment(S, a, yb + 4L * i, LE), u0);
        }
        s0.add(s1).add(s2.add(s3)).intoMemorySegment(partials, 0, LE);
        u0.add(u1).add(u2.add(u3)).intoMemorySegment(partials, 4L * L, LE);
    }

    /** {@link #dot2Rows} for the rows of B at bj and bh at once (sixteen chains: 32 vector registers). */
    private static void dot2RowsPair(int k, MemorySegment a, long ar, int lda, MemorySegment b, long bj, long bh,
                                     MemorySegment partials) {
        FloatVector z = FloatVector.zero(S);
        FloatVector s0 = z, s1 = z, s2 = z, s3 = z, u0 = z, u1 = z, u2 = z, u3 = z; // B row bj, A rows 0 and 1
        FloatVector p0 = z, p1 = z, p2 = z, p3 = z, q0 = z, q1 = z, q2 = z, q3 = z; // B row bh
        long wb = bj * 4, vb = bh * 4, xb = ar * 4, yb = xb + 4L * lda;
        int k4 = k - k % (4 * L), kv = S.loopBound(k);
        for (int i = 0; i < k4; i += 4 * L) {
            FloatVector x = FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE), y = FloatVector.fromMemorySegment(S, a, yb + 4L * i, LE);
            FloatVector w = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE), v = FloatVector.fromMemorySegment(S, b, vb + 4L * i, LE);
            s0 = w.fma(x, s0);
            u0 = w.fma(y, u0);
            p0 = v.fma(x, p0);
            q0 = v.fma(y, q0);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + L), LE);
            y = FloatVector.fromMemorySegment(S, a, yb + 4L * (i + L), LE);
            w = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + L), LE);
            v = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + L), LE);
            s1 = w.fma(x, s1);
            u1 = w.fma(y, u1);
            p1 = v.fma(x, p1);
            q1 = v.fma(y, q1);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 2 * L), LE);
            y = FloatVector.fromMemorySegment(S, a, yb + 4L * (i + 2 * L), LE);
            w = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 2 * L), LE);
            v = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + 2 * L), LE);
            s2 = w.fma(x, s2);
            u2 = w.fma(y, u2);
            p2 = v.fma(x, p2);
            q2 = v.fma(y, q2);
            x = FloatVector.fromMemorySegment(S, a, xb + 4L * (i + 3 * L), LE);
            y = FloatVector.fromMemorySegment(S, a, yb + 4L * (i + 3 * L), LE);
            w = FloatVector.fromMemorySegment(S, b, wb + 4L * (i + 3 * L), LE);
            v = FloatVector.fromMemorySegment(S, b, vb + 4L * (i + 3 * L), LE);
            s3 = w.fma(x, s3);
            u3 = w.fma(y, u3);
            p3 = v.fma(x, p3);
            q3 = v.fma(y, q3);
        }
        for (int i = k4; i < kv; i += L) {
            FloatVector x = FloatVector.fromMemorySegment(S, a, xb + 4L * i, LE), y = FloatVector.fromMemorySegment(S, a, yb + 4L * i, LE);
            FloatVector w = FloatVector.fromMemorySegment(S, b, wb + 4L * i, LE), v = FloatVector.fromMemorySegment(S, b, vb + 4L * i, LE);
            s0 = w.fma(x, s0);
            u0 = w.fma(y, u0);
            p0 = v.fma(x, p0);
            q0 = v.fma(y, q0);
        }
        s0.add(s1).add(s2.add(s3)).intoMemorySegment(partials, 0, LE);
        u0.add(u1).add(u2.add(u3)).intoMemorySegment(partials, 4L * L, LE);
        p0.add(p1).add(p2.add(p3)).intoMemorySegment(partials, 8L * L, LE);
        q0.add(q1).add(q2.add(q3)).intoMemorySegment(partials, 12L * L, LE);
    }

    /** The scalar tail of a dot product, i in [kv, k) (zero when k is a multiple of the vector length). */
    private static float tail(int k, int kv, MemorySegment a, long ar, MemorySegment b, long bj) {
        float t = 0;
        for (int i = kv; i < k; i++) t += a.getAtIndex(F, ar + i) * b.getAtIndex(F, bj + i);
        return t;
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
            if (quads && m - r0 == 3) {
                axpy3(k, a, aOff + (long) r0 * lda, lda, b, bOff + col, ldb, c, cOff + (long) r0 * ldc + col, ldc);
                r0 = m;
            }
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

    /**
     * {@link #axpy4} for three rows (twelve accumulators), so that three rows, and seven, take one pass over B fewer:
     * on the demo model's layers (one thread of two, Intel Xeon) three rows cost 1.44x one row's time in two passes.
     */
    private static void axpy3(int k, MemorySegment a, long a0, int lda, MemorySegment b, long b0, int ldb,
                              MemorySegment c, long c0, int ldc) {
        FloatVector z = FloatVector.zero(S);
        FloatVector p0 = z, p1 = z, p2 = z, p3 = z, q0 = z, q1 = z, q2 = z, q3 = z, r0 = z, r1 = z, r2 = z, r3 = z;
        long a1 = a0 + lda, a2 = a1 + lda;
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
