package dev.exeunt.tensor.cpu;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicInteger;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Single-precision GEMM / GEMV on the CPU, row-major like cblas {@code CblasRowMajor}. Matrices live in
 * MemorySegments of little-endian floats; every offset, leading dimension and stride is in float elements.
 *
 * <p>Large products use the Goto/BLIS scheme: op(B) is packed into NR-column panels (KC x NC block, shared by
 * all threads, packed in parallel), op(A) into MR-row panels (MC x KC block, one per thread, L2 resident), and a
 * register-blocked MR x NR microkernel built on {@code FloatVector.fma} runs over the packed panels. NR is two
 * vectors of the preferred species; MR is 12 for 512-bit vectors (24 of 32 registers hold accumulators) and 4
 * for narrower ones (8 of 16): with 6 rows, the twelve accumulators, two B vectors and the broadcasts C2 hoists
 * came to 17 registers, one accumulator went through the stack on every step, and the kernel ran at 50 GFLOP/s
 * on a core where 4 rows run 105 (AMD Zen 5 under -XX:UseAVX=2, two 256-bit FMAs a cycle). The microkernel
 * only accumulates and writes its MR x NR result to an L1 tile; alpha/beta are applied when the tile is stored
 * into C. Keeping the kernel method that small matters: a kernel that also stores into C exceeds C2's
 * NodeCountInliningCutoff, its vector helpers stop inlining and every FloatVector gets boxed (about 20x slower).
 * On the AMD EPYC VM (Zen 5, AVX-512) this kernel alone runs at about 115 GFLOP/s on one core, that VM's FMA
 * peak (one 512-bit FMA a cycle). Small or skinny products use a direct path without packing.
 *
 * <p>GEMV is memory-bound: the non-transposed case runs four row dot products per pass (one x load feeds four
 * FMAs), rows split over threads; the transposed case streams contiguous row blocks per thread into native
 * partial accumulators (axpy of four rows at a time) and sums the partials.
 *
 * <p>System properties (read once, mainly for tuning): {@code exeunt.gemm.vectorBits} (128/256/512, default the
 * preferred species), {@code exeunt.gemm.mr} (4, 6, 8, 12 or 14), {@code exeunt.gemm.kc}, {@code exeunt.gemm.mc},
 * {@code exeunt.gemm.nc}, {@code exeunt.gemm.itemsPerThread} (row blocks per thread in the dynamic row split).
 *
 * <p>Work is split over {@link CpuThreads}; segments confined to the calling thread are processed on it alone.
 */
public final class CpuGemm {
    static final VectorSpecies<Float> S = species();
    static final int VL = S.length();
    static final int NR = 2 * VL;
    static final int MR = intProp("exeunt.gemm.mr", VL >= 16 ? 12 : 4);
    static final int MC_TARGET = intProp("exeunt.gemm.mc", 480);
    static final int KC = intProp("exeunt.gemm.kc", kcFor(CpuCaches.get().l2(), MC_TARGET));
    static final int IPT = intProp("exeunt.gemm.itemsPerThread", 4);
    static final int NC = roundUp(intProp("exeunt.gemm.nc", 4096), NR);
    static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    /** m*n*k at or below this runs the direct (unpacked) path. */
    static final long DIRECT_MNK = 40L * 40 * 40;
    /** Direct-path work above this is split across threads. */
    static final long PARALLEL_MNK = 1L << 18;

    private static volatile int maxThreads = 0;

    private static final ThreadLocal<float[][]> A_BUF = ThreadLocal.withInitial(() -> new float[1][0]);
    /**
     * The packed-B buffer and GEMV partials are held by the calling thread across parallel regions. A pool worker
     * that waits in a join may run other tasks, which could call back in here on the same thread; the busy flag
     * makes such a nested call use fresh buffers instead of the ones still in use.
     */
    private static final class Held {
        float[] floats = new float[0];
        MemorySegment segment = MemorySegment.NULL;
        boolean busy;
    }

    private static final ThreadLocal<Held> HELD = ThreadLocal.withInitial(Held::new);
    private static final ThreadLocal<float[][]> TMP = ThreadLocal.withInitial(() -> new float[1][0]);
    private static final ThreadLocal<float[]> TILE = ThreadLocal.withInitial(() -> new float[14 * 2 * VL]);

    private CpuGemm() {}

    private static VectorSpecies<Float> species() {
        String s = System.getProperty("exeunt.gemm.vectorBits");
        if (s == null || s.isBlank()) return FloatVector.SPECIES_PREFERRED;
        return switch (Integer.parseInt(s.trim())) {
            case 64 -> FloatVector.SPECIES_64;
            case 128 -> FloatVector.SPECIES_128;
            case 256 -> FloatVector.SPECIES_256;
            case 512 -> FloatVector.SPECIES_512;
            default -> throw new IllegalArgumentException("exeunt.gemm.vectorBits must be 64/128/256/512: " + s);
        };
    }

    private static int intProp(String name, int def) {
        String s = System.getProperty(name);
        return s == null || s.isBlank() ? def : Integer.parseInt(s.trim());
    }

    /**
     * The depth of a packed block: the largest of 512, 384 and 256 whose MC x KC block of A fills at most half of L2
     * (the B panel and C tiles use the rest), at least 256. Each KC block re-reads and re-writes C, so a deeper block
     * on a larger L2 saves that traffic: with a 2 MiB L2 (Intel Xeon), 2048^3 on one thread ran 117-121 GFLOP/s at
     * KC 512 against 105-108 at 256; with 1 MiB (AMD Zen 5) 256 is what fits.
     */
    static int kcFor(long l2Bytes, int mc) {
        for (int kc : new int[] {512, 384}) if ((long) mc * kc * 4 <= l2Bytes / 2) return kc;
        return 256;
    }

    private static int roundUp(int x, int m) {
        return (x + m - 1) / m * m;
    }

    /** Caps the threads these kernels use (0 or less: all of {@link CpuThreads#threads()}). Cannot exceed the pool. */
    public static void setMaxThreads(int n) {
        maxThreads = Math.max(0, n);
    }

    /** Threads the kernels split work over. */
    public static int threads() {
        int t = CpuThreads.threads(), cap = maxThreads;
        return cap > 0 ? Math.min(cap, t) : t;
    }

    /** threads(), or 1 when a segment is confined to the calling thread (pool threads could not touch it). */
    static int threadsFor(MemorySegment a, MemorySegment b, MemorySegment c) {
        int t = threads();
        if (t > 1 && !CpuThreads.shareable(a, b, c)) return 1;
        return t;
    }

    /** Row-panel height of the microkernel in use. */
    public static int microkernelRows() {
        return MR;
    }

    /** Column-panel width of the microkernel in use (two vectors). */
    public static int microkernelCols() {
        return NR;
    }

    // ------------------------------------------------------------------------------------------------ API

    /**
     * C = alpha * op(A) * op(B) + beta * C, row-major. op(A) is m x k (A is m x k, or k x m when transA), op(B) is
     * k x n (B is k x n, or n x k when transB), C is m x n. beta == 0 ignores C's old contents; k == 0 scales C.
     */
    public static void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                             MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                             float beta, MemorySegment c, long cOff, int ldc) {
        check(transA, transB, m, n, k, lda, ldb, ldc);
        gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc, MR, threadsFor(a, b, c));
    }

    /** {@link #sgemm} over {@code batch} matrices; item i uses offsets aOff + i*strideA, bOff + i*strideB, cOff + i*strideC. */
    public static void sgemmBatched(boolean transA, boolean transB, int m, int n, int k, float alpha,
                                    MemorySegment a, long aOff, int lda, long strideA,
                                    MemorySegment b, long bOff, int ldb, long strideB,
                                    float beta, MemorySegment c, long cOff, int ldc, long strideC, int batch) {
        check(transA, transB, m, n, k, lda, ldb, ldc);
        if (batch < 0) throw new IllegalArgumentException("batch < 0: " + batch);
        if (batch == 0 || m == 0 || n == 0) return;
        int t = threadsFor(a, b, c);
        long work = (long) m * n * Math.max(k, 1);
        if (t > 1 && batch >= t && work <= 256L * 256 * 256) {
            // many small products: one thread per item
            CpuThreads.parallelFor(batch, 1, (from, to) -> {
                for (int i = from; i < to; i++)
                    gemm(transA, transB, m, n, k, alpha, a, aOff + i * strideA, lda, b, bOff + i * strideB, ldb,
                         beta, c, cOff + i * strideC, ldc, MR, 1);
            });
        } else {
            for (int i = 0; i < batch; i++)
                gemm(transA, transB, m, n, k, alpha, a, aOff + i * strideA, lda, b, bOff + i * strideB, ldb,
                     beta, c, cOff + i * strideC, ldc, MR, t);
        }
    }

    private static void check(boolean transA, boolean transB, int m, int n, int k, int lda, int ldb, int ldc) {
        if (m < 0 || n < 0 || k < 0) throw new IllegalArgumentException("negative size m=" + m + " n=" + n + " k=" + k);
        int aCols = transA ? m : k, bCols = transB ? k : n;
        if (lda < Math.max(1, aCols)) throw new IllegalArgumentException("lda=" + lda + " < " + aCols);
        if (ldb < Math.max(1, bCols)) throw new IllegalArgumentException("ldb=" + ldb + " < " + bCols);
        if (ldc < Math.max(1, n)) throw new IllegalArgumentException("ldc=" + ldc + " < " + n);
    }

    /** Package-private entry that picks the microkernel height and thread count (tests use it). */
    static void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc, int mr, int threads) {
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0f) {
            scale(m, n, beta, c, cOff, ldc);
            return;
        }
        long mnk = (long) m * n * k;
        if (mnk <= DIRECT_MNK || m < 4 || n < 8) {
            direct(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc,
                   mnk > PARALLEL_MNK ? threads : 1);
        } else {
            packed(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc, mr, threads);
        }
    }

    /** C = beta * C (beta == 0 writes zeros). */
    static void scale(int m, int n, float beta, MemorySegment c, long cOff, int ldc) {
        if (beta == 1f) return;
        for (int i = 0; i < m; i++) {
            long row = (cOff + (long) i * ldc) * 4;
            if (beta == 0f) {
                c.asSlice(row, (long) n * 4).fill((byte) 0);
            } else {
                for (int j = 0; j < n; j++) c.set(F, row + 4L * j, beta * c.get(F, row + 4L * j));
            }
        }
    }

    private static float[] buf(ThreadLocal<float[][]> tl, int size) {
        float[][] h = tl.get();
        if (h[0].length < size) h[0] = new float[size];
        return h[0];
    }

    // ------------------------------------------------------------------------------------- direct path

    /** Unpacked path for small or skinny products: rows of C accumulate in a float[], split over rows or columns. */
    static void direct(boolean transA, boolean transB, int m, int n, int k, float alpha,
                       MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                       float beta, MemorySegment c, long cOff, int ldc, int threads) {
        if (threads <= 1) {
            directBlock(transA, transB, 0, m, 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        } else if (m >= 2 * threads) {
            CpuThreads.parallelFor(threads, 1, (f, t) -> {
                int r0 = (int) ((long) m * f / threads), r1 = (int) ((long) m * t / threads);
                directBlock(transA, transB, r0, r1, 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            });
        } else {
            CpuThreads.parallelFor(threads, 1, (f, t) -> {
                int c0 = roundUp((int) ((long) n * f / threads), VL), c1 = t == threads ? n : roundUp((int) ((long) n * t / threads), VL);
                if (c1 > n) c1 = n;
                if (c0 < c1) directBlock(transA, transB, 0, m, c0, c1, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            });
        }
    }

    private static void directBlock(boolean transA, boolean transB, int i0, int i1, int j0, int j1, int k, float alpha,
                                    MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                                    float beta, MemorySegment c, long cOff, int ldc) {
        int nn = j1 - j0;
        float[] t = buf(TMP, nn + k);
        // t[0, nn): the C row accumulator, t[nn, nn + k): row i of op(A)
        int ar = nn;
        for (int i = i0; i < i1; i++) {
            if (!transA) MemorySegment.copy(a, F, (aOff + (long) i * lda) * 4, t, ar, k);
            else for (int p = 0; p < k; p++) t[ar + p] = a.get(F, (aOff + (long) p * lda + i) * 4);
            if (!transB) {
                java.util.Arrays.fill(t, 0, nn, 0f);
                for (int p = 0; p < k; p++) {
                    FloatVector av = FloatVector.broadcast(S, t[ar + p]);
                    float as = t[ar + p];
                    long brow = (bOff + (long) p * ldb + j0) * 4;
                    int j = 0;
                    for (; j <= nn - VL; j += VL) {
                        FloatVector bv = FloatVector.fromMemorySegment(S, b, brow + 4L * j, LE);
                        bv.fma(av, FloatVector.fromArray(S, t, j)).intoArray(t, j);
                    }
                    for (; j < nn; j++) t[j] += as * b.get(F, brow + 4L * j);
                }
            } else {
                for (int j = 0; j < nn; j++) t[j] = dot(t, ar, b, (bOff + (long) (j0 + j) * ldb) * 4, k);
            }
            long crow = (cOff + (long) i * ldc + j0) * 4;
            if (beta == 0f) for (int j = 0; j < nn; j++) c.set(F, crow + 4L * j, alpha * t[j]);
            else for (int j = 0; j < nn; j++) c.set(F, crow + 4L * j, alpha * t[j] + beta * c.get(F, crow + 4L * j));
        }
    }

    /** sum_p x[xo + p] * seg[byteOff + 4p], p in [0, len). */
    private static float dot(float[] x, int xo, MemorySegment seg, long byteOff, int len) {
        FloatVector acc0 = FloatVector.zero(S), acc1 = FloatVector.zero(S);
        int p = 0;
        for (; p <= len - 2 * VL; p += 2 * VL) {
            acc0 = FloatVector.fromMemorySegment(S, seg, byteOff + 4L * p, LE).fma(FloatVector.fromArray(S, x, xo + p), acc0);
            acc1 = FloatVector.fromMemorySegment(S, seg, byteOff + 4L * (p + VL), LE).fma(FloatVector.fromArray(S, x, xo + p + VL), acc1);
        }
        float s = VectorMath.sum(acc0.add(acc1));
        for (; p < len; p++) s += x[xo + p] * seg.get(F, byteOff + 4L * p);
        return s;
    }

    // ------------------------------------------------------------------------------------- packed path

    static void packed(boolean transA, boolean transB, int m, int n, int k, float alpha,
                       MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                       float beta, MemorySegment c, long cOff, int ldc, int mr, int threads) {
        final int mc = Math.max(mr, MC_TARGET / mr * mr);
        final int mPanelsAll = (m + mr - 1) / mr;
        // thread grid: split m (no duplicated A packing) unless m is too short to share. Below eight row panels a
        // thread, the row split's two parallel regions per block (B packing, then row blocks) and its uneven last
        // block cost more than packing A on every thread: a 128-token prompt's products (128 x 682..2048 x 768)
        // ran 1.2-1.45x faster split by columns, on 2 threads (AMD Zen 5), and no slower at m = 64 or 256.
        final int tm, tn;
        final int nPanelsAll = (Math.min(n, NC) + NR - 1) / NR;
        if (threads <= 1) { tm = 1; tn = 1; }
        else if (mPanelsAll < 8 * threads && nPanelsAll >= threads) { tm = 1; tn = threads; }
        else { tm = threads; tn = 1; }
        // with a row split, hand out row blocks of at most mc, at least four per thread when m allows
        final int mcItem = tm > 1 ? Math.max(mr, Math.min(mc, roundUp((m + IPT * threads - 1) / (IPT * threads), mr))) : mc;
        final int items = (m + mcItem - 1) / mcItem;
        final int ncMax = Math.min(NC, roundUp(n, NR));
        final int kcMax = Math.min(KC, k);
        final Held held = HELD.get();
        final boolean mine = !held.busy;
        final float[] bBuf;
        if (mine) {
            if (held.floats.length < ncMax * kcMax) held.floats = new float[ncMax * kcMax];
            bBuf = held.floats;
            held.busy = true;
        } else {
            bBuf = new float[ncMax * kcMax];
        }
        try {
            packedLoops(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc, mr, threads,
                        mc, tm, tn, mcItem, items, bBuf);
        } finally {
            if (mine) held.busy = false;
        }
    }

    private static void packedLoops(boolean transA, boolean transB, int m, int n, int k, float alpha,
                                    MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                                    float beta, MemorySegment c, long cOff, int ldc, int mr, int threads,
                                    int mc, int tm, int tn, int mcItem, int items, float[] bBuf) {
        for (int jc = 0; jc < n; jc += NC) {
            final int nc = Math.min(NC, n - jc);
            final int nPanels = (nc + NR - 1) / NR;
            final int jcF = jc;
            for (int pc = 0; pc < k; pc += KC) {
                final int kc = Math.min(KC, k - pc);
                final int pcF = pc;
                final float betaEff = pc == 0 ? beta : 1f;
                if (tn > 1) {
                    // column split: each thread packs its own B panels and runs them against the whole (short or
                    // small) A, so one parallel region per (jc, pc) block suffices
                    CpuThreads.parallelFor(tn, 1, (f, t) -> {
                        for (int tj = f; tj < t; tj++) {
                            int q0 = (int) ((long) nPanels * tj / tn), q1 = (int) ((long) nPanels * (tj + 1) / tn);
                            if (q0 >= q1) continue;
                            packB(transB, b, bOff, ldb, pcF, kc, jcF, nc, q0, q1, bBuf);
                            macro(transA, a, aOff, lda, 0, m, pcF, kc, bBuf, jcF, nc, q0, q1, alpha, betaEff, c, cOff, ldc, mr, mc);
                        }
                    });
                    continue;
                }
                if (threads > 1 && nPanels >= 2) {
                    // B panels in groups of four, handed out dynamically
                    AtomicInteger nextPanel = new AtomicInteger();
                    CpuThreads.parallelFor(Math.min(threads, nPanels), 1, (f, t) -> {
                        for (int p0; (p0 = nextPanel.getAndAdd(4)) < nPanels; )
                            packB(transB, b, bOff, ldb, pcF, kc, jcF, nc, p0, Math.min(nPanels, p0 + 4), bBuf);
                    });
                } else {
                    packB(transB, b, bOff, ldb, pcF, kc, jcF, nc, 0, nPanels, bBuf);
                }
                if (tm > 1) {
                    // rows in blocks handed out dynamically, so a descheduled or slower thread does not hold up the rest
                    AtomicInteger next = new AtomicInteger();
                    CpuThreads.parallelFor(threads, 1, (f, t) -> {
                        for (int it; (it = next.getAndIncrement()) < items; ) {
                            int i0 = it * mcItem;
                            macro(transA, a, aOff, lda, i0, Math.min(m, i0 + mcItem), pcF, kc, bBuf, jcF, nc, 0, nPanels,
                                  alpha, betaEff, c, cOff, ldc, mr, mc);
                        }
                    });
                } else {
                    macro(transA, a, aOff, lda, 0, m, pcF, kc, bBuf, jcF, nc, 0, nPanels, alpha, betaEff, c, cOff, ldc, mr, mc);
                }
            }
        }
    }

    /** Rows [i0, i1) of C against B panels [q0, q1) of the current (jc, pc) block; packs A per MC block. */
    private static void macro(boolean transA, MemorySegment a, long aOff, int lda, int i0, int i1, int pc, int kc,
                              float[] bBuf, int jc, int nc, int q0, int q1, float alpha, float beta,
                              MemorySegment c, long cOff, int ldc, int mr, int mc) {
        float[] aBuf = buf(A_BUF, mc * kc + kc);
        float[] tile = TILE.get();
        long ldcb = 4L * ldc;
        for (int ic = i0; ic < i1; ic += mc) {
            int mcc = Math.min(mc, i1 - ic);
            int mPanels = (mcc + mr - 1) / mr;
            packA(transA, a, aOff, lda, ic, mcc, pc, kc, mr, aBuf);
            for (int q = q0; q < q1; q++) {
                int j = jc + q * NR;
                int nr = Math.min(NR, jc + nc - j);
                int bo = q * NR * kc;
                for (int r = 0; r < mPanels; r++) {
                    int i = ic + r * mr;
                    int rows = Math.min(mr, ic + mcc - i);
                    int ao = r * mr * kc;
                    long co = (cOff + (long) i * ldc + j) * 4;
                    kernel(mr, kc, aBuf, ao, bBuf, bo, tile);
                    if (rows == mr && nr == NR) storeTile(tile, mr, c, co, ldcb, alpha, beta);
                    else storeTilePartial(tile, rows, nr, c, co, ldcb, alpha, beta);
                }
            }
        }
    }

    /** C tile (mr x NR at byte offset co) = alpha * tile + beta * C (beta == 0: C ignored). */
    private static void storeTile(float[] tile, int mr, MemorySegment c, long co, long ldcb, float alpha, float beta) {
        if (beta == 0f) {
            for (int i = 0; i < mr; i++) {
                long off = co + i * ldcb;
                FloatVector.fromArray(S, tile, i * NR).mul(alpha).intoMemorySegment(c, off, LE);
                FloatVector.fromArray(S, tile, i * NR + VL).mul(alpha).intoMemorySegment(c, off + 4L * VL, LE);
            }
        } else {
            FloatVector av = FloatVector.broadcast(S, alpha);
            for (int i = 0; i < mr; i++) {
                long off = co + i * ldcb;
                FloatVector o0 = FloatVector.fromMemorySegment(S, c, off, LE).mul(beta);
                FloatVector o1 = FloatVector.fromMemorySegment(S, c, off + 4L * VL, LE).mul(beta);
                FloatVector.fromArray(S, tile, i * NR).fma(av, o0).intoMemorySegment(c, off, LE);
                FloatVector.fromArray(S, tile, i * NR + VL).fma(av, o1).intoMemorySegment(c, off + 4L * VL, LE);
            }
        }
    }

    private static void storeTilePartial(float[] tile, int rows, int nr, MemorySegment c, long co, long ldcb, float alpha, float beta) {
        for (int ii = 0; ii < rows; ii++) {
            long row = co + ii * ldcb;
            if (beta == 0f) for (int jj = 0; jj < nr; jj++) c.set(F, row + 4L * jj, alpha * tile[ii * NR + jj]);
            else for (int jj = 0; jj < nr; jj++)
                c.set(F, row + 4L * jj, alpha * tile[ii * NR + jj] + beta * c.get(F, row + 4L * jj));
        }
    }

    private static void kernel(int mr, int kc, float[] ap, int ao, float[] bp, int bo, float[] tile) {
        switch (mr) {
            case 12 -> kernel12(kc, ap, ao, bp, bo, tile);
            case 6 -> kernel6(kc, ap, ao, bp, bo, tile);
            case 8 -> kernel8(kc, ap, ao, bp, bo, tile);
            case 14 -> kernel14(kc, ap, ao, bp, bo, tile);
            case 4 -> kernel4(kc, ap, ao, bp, bo, tile);
            default -> throw new IllegalStateException("no microkernel with " + mr + " rows");
        }
    }

    /**
     * Packs rows [i0, i0+mc) x cols [pc, pc+kc) of op(A) into MR-row panels: panel r at r*mr*kc, element (i, p) at
     * p*mr + i. Rows past the end are zero.
     */
    static void packA(boolean transA, MemorySegment a, long aOff, int lda, int i0, int mc, int pc, int kc, int mr, float[] buf) {
        int panels = (mc + mr - 1) / mr;
        if (!transA) {
            // rows are contiguous along p: bulk-copy each row into the scratch tail, then interleave
            int tmp = panels * mr * kc;
            for (int r = 0; r < panels; r++) {
                int base = r * mr * kc;
                int rows = Math.min(mr, mc - r * mr);
                for (int ii = 0; ii < rows; ii++) {
                    MemorySegment.copy(a, F, (aOff + (long) (i0 + r * mr + ii) * lda + pc) * 4, buf, tmp, kc);
                    for (int p = 0, o = base + ii; p < kc; p++, o += mr) buf[o] = buf[tmp + p];
                }
                for (int ii = rows; ii < mr; ii++)
                    for (int p = 0, o = base + ii; p < kc; p++, o += mr) buf[o] = 0f;
            }
        } else {
            // op(A)(i, p) = A[p*lda + i]: each p is a contiguous run of mr floats
            for (int r = 0; r < panels; r++) {
                int base = r * mr * kc;
                int rows = Math.min(mr, mc - r * mr);
                long src = (aOff + (long) pc * lda + i0 + r * mr) * 4;
                for (int p = 0; p < kc; p++, src += 4L * lda) {
                    int o = base + p * mr;
                    if (rows == mr) MemorySegment.copy(a, F, src, buf, o, mr);
                    else {
                        for (int ii = 0; ii < rows; ii++) buf[o + ii] = a.get(F, src + 4L * ii);
                        for (int ii = rows; ii < mr; ii++) buf[o + ii] = 0f;
                    }
                }
            }
        }
    }

    /**
     * Packs NR-column panels [q0, q1) of op(B) rows [pc, pc+kc), cols [jc, jc+nc): panel q at q*NR*kc, element
     * (p, j) at p*NR + j. Columns past the end are zero.
     */
    static void packB(boolean transB, MemorySegment b, long bOff, int ldb, int pc, int kc, int jc, int nc,
                      int q0, int q1, float[] buf) {
        float[] tile = null;
        for (int q = q0; q < q1; q++) {
            int base = q * NR * kc;
            int j = jc + q * NR;
            int cols = Math.min(NR, jc + nc - j);
            if (!transB) {
                long src = (bOff + (long) pc * ldb + j) * 4;
                long step = 4L * ldb;
                if (cols == NR) {
                    for (int p = 0, o = base; p < kc; p++, o += NR, src += step) {
                        FloatVector.fromMemorySegment(S, b, src, LE).intoArray(buf, o);
                        FloatVector.fromMemorySegment(S, b, src + 4L * VL, LE).intoArray(buf, o + VL);
                    }
                } else {
                    for (int p = 0, o = base; p < kc; p++, o += NR, src += step) {
                        for (int jj = 0; jj < cols; jj++) buf[o + jj] = b.get(F, src + 4L * jj);
                        for (int jj = cols; jj < NR; jj++) buf[o + jj] = 0f;
                    }
                }
            } else {
                // op(B)(p, j) = B[j*ldb + p]: column j of the panel is a contiguous run of kc floats
                int p0 = 0;
                if (cols == NR) {
                    if (tile == null) tile = new float[VL * VL];
                    p0 = packTransposedTiles(b, bOff, ldb, pc, kc, j, buf, base, tile);
                }
                for (int jj = 0; jj < cols; jj++) {
                    long src = (bOff + (long) (j + jj) * ldb + pc) * 4;
                    for (int p = p0, o = base + p0 * NR + jj; p < kc; p++, o += NR) buf[o] = b.get(F, src + 4L * p);
                }
                for (int jj = cols; jj < NR; jj++)
                    for (int p = 0, o = base + jj; p < kc; p++, o += NR) buf[o] = 0f;
            }
        }
    }

    /** Lane offsets of a VL x VL tile's column: row r of the tile starts at r * VL. */
    private static final int[] TILE_COLUMN = java.util.stream.IntStream.range(0, VL).map(r -> r * VL).toArray();

    /**
     * A whole panel of transposed B, VL x VL tiles at a time: VL rows of B loaded as vectors into a tile,
     * then each column of the tile gathered into one vector of the panel (3-4x fewer instructions than an
     * element at a time, which was a fifth of a prompt pass). Returns the first p not done (kc rounded down).
     */
    private static int packTransposedTiles(MemorySegment b, long bOff, int ldb, int pc, int kc, int j, float[] buf, int base, float[] tile) {
        int kv = kc - kc % VL;
        for (int h = 0; h < NR; h += VL) {
            long row = (bOff + (long) (j + h) * ldb + pc) * 4;
            for (int p0 = 0; p0 < kv; p0 += VL) {
                for (int r = 0; r < VL; r++) FloatVector.fromMemorySegment(S, b, row + 4L * ((long) r * ldb + p0), LE).intoArray(tile, r * VL);
                for (int p = 0; p < VL; p++) FloatVector.fromArray(S, tile, p, TILE_COLUMN, 0).intoArray(buf, base + (p0 + p) * NR + h);
            }
        }
        return kv;
    }

    // ------------------------------------------------------------------------------------------------ GEMV

    /**
     * y = alpha * op(A) * x + beta * y with A m x n row-major (leading dimension lda). Not transposed: x has n
     * entries, y has m. Transposed: x has m entries, y has n. beta == 0 ignores y's old contents.
     */
    public static void sgemv(boolean trans, int m, int n, float alpha, MemorySegment a, long aOff, int lda,
                             MemorySegment x, long xOff, float beta, MemorySegment y, long yOff) {
        if (m < 0 || n < 0) throw new IllegalArgumentException("negative size m=" + m + " n=" + n);
        if (lda < Math.max(1, n)) throw new IllegalArgumentException("lda=" + lda + " < " + n);
        int outLen = trans ? n : m;
        int inLen = trans ? m : n;
        if (outLen == 0) return;
        if (inLen == 0 || alpha == 0f) {
            scale(1, outLen, beta, y, yOff, outLen);
            return;
        }
        int threads = (long) m * n >= (1L << 15) ? threadsFor(a, x, y) : 1;
        if (!trans) {
            if (threads <= 1) gemvRows(0, m, n, alpha, a, aOff, lda, x, xOff, beta, y, yOff);
            else CpuThreads.parallelFor(threads, 1, (f, t) -> {
                int r0 = (int) ((long) m * f / threads) & ~3, r1 = t == threads ? m : (int) ((long) m * t / threads) & ~3;
                gemvRows(r0, r1, n, alpha, a, aOff, lda, x, xOff, beta, y, yOff);
            });
        } else {
            if (threads <= 1) gemvCols(0, n, m, alpha, a, aOff, lda, x, xOff, beta, y, yOff);
            else if (m >= 64 * threads) {
                // split rows: each thread streams a contiguous block of A into its own partial y, then sum
                Held held = HELD.get();
                boolean mine = !held.busy;
                long bytes = 4L * threads * n;
                MemorySegment parts;
                if (mine) {
                    if (held.segment.byteSize() < bytes) held.segment = Arena.ofAuto().allocate(bytes, 64);
                    parts = held.segment;
                    held.busy = true;
                } else {
                    parts = Arena.ofAuto().allocate(bytes, 64);
                }
                try {
                    CpuThreads.parallelFor(threads, 1, (f, t) -> {
                        for (int q = f; q < t; q++)
                            gemvRowsPartial((int) ((long) m * q / threads), (int) ((long) m * (q + 1) / threads), n,
                                            a, aOff, lda, x, xOff, parts, (long) q * n);
                    });
                    for (int j = 0; j < n; j++) {
                        float sum = parts.get(F, 4L * j);
                        for (int q = 1; q < threads; q++) sum += parts.get(F, 4L * ((long) q * n + j));
                        putY(y, yOff + j, alpha * sum, beta);
                    }
                } finally {
                    if (mine) held.busy = false;
                }
            } else CpuThreads.parallelFor(threads, 1, (f, t) -> {
                int c0 = (int) ((long) n * f / threads) / VL * VL, c1 = t == threads ? n : (int) ((long) n * t / threads) / VL * VL;
                gemvCols(c0, c1, m, alpha, a, aOff, lda, x, xOff, beta, y, yOff);
            });
        }
    }

    /** Non-transposed GEMV for rows [r0, r1): four row dot products share each x load. */
    private static void gemvRows(int r0, int r1, int n, float alpha, MemorySegment a, long aOff, int lda,
                                 MemorySegment x, long xOff, float beta, MemorySegment y, long yOff) {
        long xb = xOff * 4, ldab = 4L * lda;
        int i = r0;
        for (; i + 4 <= r1; i += 4) {
            long a0 = (aOff + (long) i * lda) * 4, a1 = a0 + ldab, a2 = a1 + ldab, a3 = a2 + ldab;
            FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
            int j = 0;
            for (; j <= n - VL; j += VL) {
                long o = 4L * j;
                FloatVector xv = FloatVector.fromMemorySegment(S, x, xb + o, LE);
                s0 = FloatVector.fromMemorySegment(S, a, a0 + o, LE).fma(xv, s0);
                s1 = FloatVector.fromMemorySegment(S, a, a1 + o, LE).fma(xv, s1);
                s2 = FloatVector.fromMemorySegment(S, a, a2 + o, LE).fma(xv, s2);
                s3 = FloatVector.fromMemorySegment(S, a, a3 + o, LE).fma(xv, s3);
            }
            float d0 = VectorMath.sum(s0);
            float d1 = VectorMath.sum(s1);
            float d2 = VectorMath.sum(s2);
            float d3 = VectorMath.sum(s3);
            for (; j < n; j++) {
                float xj = x.get(F, xb + 4L * j);
                d0 += a.get(F, a0 + 4L * j) * xj;
                d1 += a.get(F, a1 + 4L * j) * xj;
                d2 += a.get(F, a2 + 4L * j) * xj;
                d3 += a.get(F, a3 + 4L * j) * xj;
            }
            putY(y, yOff + i, alpha * d0, beta);
            putY(y, yOff + i + 1, alpha * d1, beta);
            putY(y, yOff + i + 2, alpha * d2, beta);
            putY(y, yOff + i + 3, alpha * d3, beta);
        }
        for (; i < r1; i++) {
            long a0 = (aOff + (long) i * lda) * 4;
            FloatVector s0 = FloatVector.zero(S);
            int j = 0;
            for (; j <= n - VL; j += VL)
                s0 = FloatVector.fromMemorySegment(S, a, a0 + 4L * j, LE).fma(FloatVector.fromMemorySegment(S, x, xb + 4L * j, LE), s0);
            float d0 = VectorMath.sum(s0);
            for (; j < n; j++) d0 += a.get(F, a0 + 4L * j) * x.get(F, xb + 4L * j);
            putY(y, yOff + i, alpha * d0, beta);
        }
    }

    private static void putY(MemorySegment y, long idx, float v, float beta) {
        long o = idx * 4;
        y.set(F, o, beta == 0f ? v : v + beta * y.get(F, o));
    }

    /** Columns of the transposed GEMV handled per accumulator block (fits in L1). */
    static final int GEMV_COLS = 4096;

    private static final ThreadLocal<MemorySegment[]> NATIVE_TMP = ThreadLocal.withInitial(() -> new MemorySegment[] {MemorySegment.NULL});

    /** Per-thread native scratch of at least {@code floats} floats (native accumulators measured faster than float[] here). */
    private static MemorySegment nativeBuf(long floats) {
        MemorySegment[] h = NATIVE_TMP.get();
        if (h[0].byteSize() < floats * 4) h[0] = Arena.ofAuto().allocate(floats * 4, 64);
        return h[0];
    }

    /** Transposed GEMV for output columns [c0, c1) over all rows, in L1-sized column blocks. */
    private static void gemvCols(int c0, int c1, int m, float alpha, MemorySegment a, long aOff, int lda,
                                 MemorySegment x, long xOff, float beta, MemorySegment y, long yOff) {
        MemorySegment acc = nativeBuf(GEMV_COLS);
        for (int jb = c0; jb < c1; jb += GEMV_COLS) {
            int w = Math.min(GEMV_COLS, c1 - jb);
            acc.asSlice(0, 4L * w).fill((byte) 0);
            gemvAcc(0, m, jb, w, a, aOff, lda, x, xOff, acc, 0);
            for (int j = 0; j < w; j++) putY(y, yOff + jb + j, alpha * acc.get(F, 4L * j), beta);
        }
    }

    /** Transposed GEMV, rows [r0, r1) only, all n columns: partial sums into part[partOff, +n) floats (zeroed here). */
    private static void gemvRowsPartial(int r0, int r1, int n, MemorySegment a, long aOff, int lda,
                                       MemorySegment x, long xOff, MemorySegment part, long partOff) {
        part.asSlice(partOff * 4, 4L * n).fill((byte) 0);
        for (int jb = 0; jb < n; jb += GEMV_COLS)
            gemvAcc(r0, r1, jb, Math.min(GEMV_COLS, n - jb), a, aOff, lda, x, xOff, part, (partOff + jb) * 4);
    }

    /**
     * acc[j] += sum_{i in [r0, r1)} x[i] * A[i][jb + j] for j in [0, w), acc at byte offset accb: axpy of four rows
     * at a time in two FMA chains.
     */
    private static void gemvAcc(int r0, int r1, int jb, int w, MemorySegment a, long aOff, int lda,
                                MemorySegment x, long xOff, MemorySegment acc, long accb) {
        long ldab = 4L * lda, xb = xOff * 4;
        int i = r0;
        for (; i + 4 <= r1; i += 4) {
            long xi = xb + 4L * i;
            float x0 = x.get(F, xi), x1 = x.get(F, xi + 4), x2 = x.get(F, xi + 8), x3 = x.get(F, xi + 12);
            FloatVector v0 = FloatVector.broadcast(S, x0), v1 = FloatVector.broadcast(S, x1),
                        v2 = FloatVector.broadcast(S, x2), v3 = FloatVector.broadcast(S, x3);
            long a0 = (aOff + (long) i * lda + jb) * 4;
            int j = 0;
            for (; j <= w - VL; j += VL) {
                long o = a0 + 4L * j, ob = accb + 4L * j;
                FloatVector s = FloatVector.fromMemorySegment(S, acc, ob, LE);
                FloatVector u = FloatVector.fromMemorySegment(S, a, o + 2 * ldab, LE).mul(v2);
                s = FloatVector.fromMemorySegment(S, a, o, LE).fma(v0, s);
                u = FloatVector.fromMemorySegment(S, a, o + 3 * ldab, LE).fma(v3, u);
                s = FloatVector.fromMemorySegment(S, a, o + ldab, LE).fma(v1, s);
                s.add(u).intoMemorySegment(acc, ob, LE);
            }
            for (; j < w; j++) {
                long o = a0 + 4L * j, ob = accb + 4L * j;
                acc.set(F, ob, acc.get(F, ob) + a.get(F, o) * x0 + a.get(F, o + ldab) * x1
                        + a.get(F, o + 2 * ldab) * x2 + a.get(F, o + 3 * ldab) * x3);
            }
        }
        for (; i < r1; i++) {
            float x0 = x.get(F, xb + 4L * i);
            FloatVector v0 = FloatVector.broadcast(S, x0);
            long a0 = (aOff + (long) i * lda + jb) * 4;
            int j = 0;
            for (; j <= w - VL; j += VL) {
                long ob = accb + 4L * j;
                FloatVector.fromMemorySegment(S, a, a0 + 4L * j, LE).fma(v0, FloatVector.fromMemorySegment(S, acc, ob, LE))
                        .intoMemorySegment(acc, ob, LE);
            }
            for (; j < w; j++) acc.set(F, accb + 4L * j, acc.get(F, accb + 4L * j) + a.get(F, a0 + 4L * j) * x0);
        }
    }

    // ---- generated microkernels (MR rows x 2 species vectors) ----
    /** 4 x NR microkernel: tile[i*NR + j] = sum_p Apanel(i, p) * Bpanel(p, j) over kc steps. */
    static void kernel4(int kc, float[] ap, int ao, float[] bp, int bo, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, ao += 4, bo += NR) {
            FloatVector b0 = FloatVector.fromArray(S, bp, bo);
            FloatVector b1 = FloatVector.fromArray(S, bp, bo + VL);
            FloatVector a0 = FloatVector.broadcast(S, ap[ao + 0]);
            c00 = b0.fma(a0, c00); c01 = b1.fma(a0, c01);
            FloatVector a1 = FloatVector.broadcast(S, ap[ao + 1]);
            c10 = b0.fma(a1, c10); c11 = b1.fma(a1, c11);
            FloatVector a2 = FloatVector.broadcast(S, ap[ao + 2]);
            c20 = b0.fma(a2, c20); c21 = b1.fma(a2, c21);
            FloatVector a3 = FloatVector.broadcast(S, ap[ao + 3]);
            c30 = b0.fma(a3, c30); c31 = b1.fma(a3, c31);
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + VL);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + VL);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + VL);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + VL);
    }

    /** 6 x NR microkernel: tile[i*NR + j] = sum_p Apanel(i, p) * Bpanel(p, j) over kc steps. */
    static void kernel6(int kc, float[] ap, int ao, float[] bp, int bo, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, ao += 6, bo += NR) {
            FloatVector b0 = FloatVector.fromArray(S, bp, bo);
            FloatVector b1 = FloatVector.fromArray(S, bp, bo + VL);
            FloatVector a0 = FloatVector.broadcast(S, ap[ao + 0]);
            c00 = b0.fma(a0, c00); c01 = b1.fma(a0, c01);
            FloatVector a1 = FloatVector.broadcast(S, ap[ao + 1]);
            c10 = b0.fma(a1, c10); c11 = b1.fma(a1, c11);
            FloatVector a2 = FloatVector.broadcast(S, ap[ao + 2]);
            c20 = b0.fma(a2, c20); c21 = b1.fma(a2, c21);
            FloatVector a3 = FloatVector.broadcast(S, ap[ao + 3]);
            c30 = b0.fma(a3, c30); c31 = b1.fma(a3, c31);
            FloatVector a4 = FloatVector.broadcast(S, ap[ao + 4]);
            c40 = b0.fma(a4, c40); c41 = b1.fma(a4, c41);
            FloatVector a5 = FloatVector.broadcast(S, ap[ao + 5]);
            c50 = b0.fma(a5, c50); c51 = b1.fma(a5, c51);
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + VL);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + VL);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + VL);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + VL);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + VL);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + VL);
    }

    /** 8 x NR microkernel: tile[i*NR + j] = sum_p Apanel(i, p) * Bpanel(p, j) over kc steps. */
    static void kernel8(int kc, float[] ap, int ao, float[] bp, int bo, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S);
        FloatVector c60 = FloatVector.zero(S), c61 = FloatVector.zero(S);
        FloatVector c70 = FloatVector.zero(S), c71 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, ao += 8, bo += NR) {
            FloatVector b0 = FloatVector.fromArray(S, bp, bo);
            FloatVector b1 = FloatVector.fromArray(S, bp, bo + VL);
            FloatVector a0 = FloatVector.broadcast(S, ap[ao + 0]);
            c00 = b0.fma(a0, c00); c01 = b1.fma(a0, c01);
            FloatVector a1 = FloatVector.broadcast(S, ap[ao + 1]);
            c10 = b0.fma(a1, c10); c11 = b1.fma(a1, c11);
            FloatVector a2 = FloatVector.broadcast(S, ap[ao + 2]);
            c20 = b0.fma(a2, c20); c21 = b1.fma(a2, c21);
            FloatVector a3 = FloatVector.broadcast(S, ap[ao + 3]);
            c30 = b0.fma(a3, c30); c31 = b1.fma(a3, c31);
            FloatVector a4 = FloatVector.broadcast(S, ap[ao + 4]);
            c40 = b0.fma(a4, c40); c41 = b1.fma(a4, c41);
            FloatVector a5 = FloatVector.broadcast(S, ap[ao + 5]);
            c50 = b0.fma(a5, c50); c51 = b1.fma(a5, c51);
            FloatVector a6 = FloatVector.broadcast(S, ap[ao + 6]);
            c60 = b0.fma(a6, c60); c61 = b1.fma(a6, c61);
            FloatVector a7 = FloatVector.broadcast(S, ap[ao + 7]);
            c70 = b0.fma(a7, c70); c71 = b1.fma(a7, c71);
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + VL);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + VL);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + VL);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + VL);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + VL);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + VL);
        c60.intoArray(tile, 6 * NR); c61.intoArray(tile, 6 * NR + VL);
        c70.intoArray(tile, 7 * NR); c71.intoArray(tile, 7 * NR + VL);
    }

    /** 12 x NR microkernel: tile[i*NR + j] = sum_p Apanel(i, p) * Bpanel(p, j) over kc steps. */
    static void kernel12(int kc, float[] ap, int ao, float[] bp, int bo, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S);
        FloatVector c60 = FloatVector.zero(S), c61 = FloatVector.zero(S);
        FloatVector c70 = FloatVector.zero(S), c71 = FloatVector.zero(S);
        FloatVector c80 = FloatVector.zero(S), c81 = FloatVector.zero(S);
        FloatVector c90 = FloatVector.zero(S), c91 = FloatVector.zero(S);
        FloatVector c100 = FloatVector.zero(S), c101 = FloatVector.zero(S);
        FloatVector c110 = FloatVector.zero(S), c111 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, ao += 12, bo += NR) {
            FloatVector b0 = FloatVector.fromArray(S, bp, bo);
            FloatVector b1 = FloatVector.fromArray(S, bp, bo + VL);
            FloatVector a0 = FloatVector.broadcast(S, ap[ao + 0]);
            c00 = b0.fma(a0, c00); c01 = b1.fma(a0, c01);
            FloatVector a1 = FloatVector.broadcast(S, ap[ao + 1]);
            c10 = b0.fma(a1, c10); c11 = b1.fma(a1, c11);
            FloatVector a2 = FloatVector.broadcast(S, ap[ao + 2]);
            c20 = b0.fma(a2, c20); c21 = b1.fma(a2, c21);
            FloatVector a3 = FloatVector.broadcast(S, ap[ao + 3]);
            c30 = b0.fma(a3, c30); c31 = b1.fma(a3, c31);
            FloatVector a4 = FloatVector.broadcast(S, ap[ao + 4]);
            c40 = b0.fma(a4, c40); c41 = b1.fma(a4, c41);
            FloatVector a5 = FloatVector.broadcast(S, ap[ao + 5]);
            c50 = b0.fma(a5, c50); c51 = b1.fma(a5, c51);
            FloatVector a6 = FloatVector.broadcast(S, ap[ao + 6]);
            c60 = b0.fma(a6, c60); c61 = b1.fma(a6, c61);
            FloatVector a7 = FloatVector.broadcast(S, ap[ao + 7]);
            c70 = b0.fma(a7, c70); c71 = b1.fma(a7, c71);
            FloatVector a8 = FloatVector.broadcast(S, ap[ao + 8]);
            c80 = b0.fma(a8, c80); c81 = b1.fma(a8, c81);
            FloatVector a9 = FloatVector.broadcast(S, ap[ao + 9]);
            c90 = b0.fma(a9, c90); c91 = b1.fma(a9, c91);
            FloatVector a10 = FloatVector.broadcast(S, ap[ao + 10]);
            c100 = b0.fma(a10, c100); c101 = b1.fma(a10, c101);
            FloatVector a11 = FloatVector.broadcast(S, ap[ao + 11]);
            c110 = b0.fma(a11, c110); c111 = b1.fma(a11, c111);
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + VL);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + VL);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + VL);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + VL);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + VL);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + VL);
        c60.intoArray(tile, 6 * NR); c61.intoArray(tile, 6 * NR + VL);
        c70.intoArray(tile, 7 * NR); c71.intoArray(tile, 7 * NR + VL);
        c80.intoArray(tile, 8 * NR); c81.intoArray(tile, 8 * NR + VL);
        c90.intoArray(tile, 9 * NR); c91.intoArray(tile, 9 * NR + VL);
        c100.intoArray(tile, 10 * NR); c101.intoArray(tile, 10 * NR + VL);
        c110.intoArray(tile, 11 * NR); c111.intoArray(tile, 11 * NR + VL);
    }

    /** 14 x NR microkernel: tile[i*NR + j] = sum_p Apanel(i, p) * Bpanel(p, j) over kc steps. */
    static void kernel14(int kc, float[] ap, int ao, float[] bp, int bo, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S);
        FloatVector c60 = FloatVector.zero(S), c61 = FloatVector.zero(S);
        FloatVector c70 = FloatVector.zero(S), c71 = FloatVector.zero(S);
        FloatVector c80 = FloatVector.zero(S), c81 = FloatVector.zero(S);
        FloatVector c90 = FloatVector.zero(S), c91 = FloatVector.zero(S);
        FloatVector c100 = FloatVector.zero(S), c101 = FloatVector.zero(S);
        FloatVector c110 = FloatVector.zero(S), c111 = FloatVector.zero(S);
        FloatVector c120 = FloatVector.zero(S), c121 = FloatVector.zero(S);
        FloatVector c130 = FloatVector.zero(S), c131 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++, ao += 14, bo += NR) {
            FloatVector b0 = FloatVector.fromArray(S, bp, bo);
            FloatVector b1 = FloatVector.fromArray(S, bp, bo + VL);
            FloatVector a0 = FloatVector.broadcast(S, ap[ao + 0]);
            c00 = b0.fma(a0, c00); c01 = b1.fma(a0, c01);
            FloatVector a1 = FloatVector.broadcast(S, ap[ao + 1]);
            c10 = b0.fma(a1, c10); c11 = b1.fma(a1, c11);
            FloatVector a2 = FloatVector.broadcast(S, ap[ao + 2]);
            c20 = b0.fma(a2, c20); c21 = b1.fma(a2, c21);
            FloatVector a3 = FloatVector.broadcast(S, ap[ao + 3]);
            c30 = b0.fma(a3, c30); c31 = b1.fma(a3, c31);
            FloatVector a4 = FloatVector.broadcast(S, ap[ao + 4]);
            c40 = b0.fma(a4, c40); c41 = b1.fma(a4, c41);
            FloatVector a5 = FloatVector.broadcast(S, ap[ao + 5]);
            c50 = b0.fma(a5, c50); c51 = b1.fma(a5, c51);
            FloatVector a6 = FloatVector.broadcast(S, ap[ao + 6]);
            c60 = b0.fma(a6, c60); c61 = b1.fma(a6, c61);
            FloatVector a7 = FloatVector.broadcast(S, ap[ao + 7]);
            c70 = b0.fma(a7, c70); c71 = b1.fma(a7, c71);
            FloatVector a8 = FloatVector.broadcast(S, ap[ao + 8]);
            c80 = b0.fma(a8, c80); c81 = b1.fma(a8, c81);
            FloatVector a9 = FloatVector.broadcast(S, ap[ao + 9]);
            c90 = b0.fma(a9, c90); c91 = b1.fma(a9, c91);
            FloatVector a10 = FloatVector.broadcast(S, ap[ao + 10]);
            c100 = b0.fma(a10, c100); c101 = b1.fma(a10, c101);
            FloatVector a11 = FloatVector.broadcast(S, ap[ao + 11]);
            c110 = b0.fma(a11, c110); c111 = b1.fma(a11, c111);
            FloatVector a12 = FloatVector.broadcast(S, ap[ao + 12]);
            c120 = b0.fma(a12, c120); c121 = b1.fma(a12, c121);
            FloatVector a13 = FloatVector.broadcast(S, ap[ao + 13]);
            c130 = b0.fma(a13, c130); c131 = b1.fma(a13, c131);
        }
        c00.intoArray(tile, 0 * NR); c01.intoArray(tile, 0 * NR + VL);
        c10.intoArray(tile, 1 * NR); c11.intoArray(tile, 1 * NR + VL);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + VL);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + VL);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + VL);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + VL);
        c60.intoArray(tile, 6 * NR); c61.intoArray(tile, 6 * NR + VL);
        c70.intoArray(tile, 7 * NR); c71.intoArray(tile, 7 * NR + VL);
        c80.intoArray(tile, 8 * NR); c81.intoArray(tile, 8 * NR + VL);
        c90.intoArray(tile, 9 * NR); c91.intoArray(tile, 9 * NR + VL);
        c100.intoArray(tile, 10 * NR); c101.intoArray(tile, 10 * NR + VL);
        c110.intoArray(tile, 11 * NR); c111.intoArray(tile, 11 * NR + VL);
        c120.intoArray(tile, 12 * NR); c121.intoArray(tile, 12 * NR + VL);
        c130.intoArray(tile, 13 * NR); c131.intoArray(tile, 13 * NR + VL);
    }

    // ---- end generated ----
}
