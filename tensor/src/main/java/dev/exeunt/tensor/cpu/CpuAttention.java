package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Fused causal multi-head attention on the CPU, forward and backward, with grouped KV heads and an
 * online (flash-attention style) softmax: memory never grows with {@code T x S} per head; per-thread
 * scratch holds one block of {@link #BLOCK_KEYS} keys.
 *
 * <h2>Layout</h2>
 * All tensors are little-endian F32 in native {@link MemorySegment}s, addressed by {@link View}s whose
 * offsets and strides count floats (not bytes). The head dimension {@code D} is always contiguous.
 * <ul>
 *   <li>{@code q}: logical {@code [B, T, Hq, D]}; {@code k}, {@code v}: logical {@code [B, S, Hkv, D]}
 *       with {@code S = pastLen + T}. Strides are free, so views of a fused projection
 *       {@code [B, T, (Hq + 2 Hkv) D]} or a head-major KV cache {@code [B, Hkv, Smax, D]} work without copies.</li>
 *   <li>{@code o}, {@code dO}: logical {@code [B, T, Hq, D]} (usually {@link View#contiguous}).</li>
 *   <li>{@code lse}: contiguous {@code [B, Hq, T]} at {@code lseOffset} floats: the natural log of
 *       {@code sum_j exp(scale * q.k_j)} over the keys the row sees.</li>
 * </ul>
 * Query head {@code h} reads KV head {@code h / (Hq / Hkv)} (grouped-query attention as in Llama).
 * Query {@code t} (0-based in this call) sits at absolute position {@code pastLen + t} and sees keys
 * {@code j <= pastLen + t}; with a sliding window W (Mistral's), only the last W of them:
 * {@code pastLen + t - W < j}.
 *
 * <h2>Backward</h2>
 * {@link #backward} overwrites {@code dQ}, {@code dK} and {@code dV} (it never accumulates into them);
 * {@code dK}/{@code dV} sum the contributions of every query head sharing the KV head.
 *
 * <h2>Parallelism</h2>
 * Work runs on {@link CpuThreads}; if any segment is confined to one thread ({@code Arena.ofConfined()}),
 * the call runs serially on the caller instead (pool threads cannot touch confined memory).
 * Forward: tasks are (batch, KV head, block of query tokens), each covering all query heads of the
 * group so that every key block is loaded once for the group. Backward: tasks are (batch, KV head,
 * chunk of key blocks), each owning its rows of {@code dK}/{@code dV}; when there are fewer
 * (batch, KV head) pairs than twice the thread count the keys are split into chunks and each chunk
 * writes its {@code dQ} contributions into its own {@code [G, T, D]} buffer, summed at the end
 * (transient heap of {@code chunks x |dQ|}, with {@code chunks <= ceil(2 threads / (B Hkv))}).
 * Decode ({@code T = 1}) runs one task per (batch, KV head); keys are not split across threads.
 *
 * <h2>Scores</h2>
 * With at least {@value #TRANSPOSE_MIN_ROWS} query rows per task (prefill, training, backward) scores
 * are computed against a transposed key block, vectorized over keys; with fewer (decode) each score is
 * a dot product over D read straight from the key segment. Value accumulation is always vectorized over D.
 */
public final class CpuAttention {
    private static final VectorSpecies<Float> SP = FloatVector.SPECIES_PREFERRED;
    private static final int L = SP.length();
    /** Keys per block: four vectors of the preferred species (64 with AVX-512). */
    public static final int BLOCK_KEYS = 4 * L;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    static final int MODE_AUTO = 0, MODE_DOT = 1, MODE_TRANSPOSED = 2;
    /** From this many query rows per task, scores use a transposed key block (no lane reductions). */
    private static final int TRANSPOSE_MIN_ROWS = 8;
    private static final int FWD_TARGET_ROWS = 64;
    private static final int BWD_QUERY_BLOCK = 32;

    private CpuAttention() {}

    /**
     * Shape of one attention call.
     *
     * @param batch    B
     * @param queryLen T, the new query tokens of this call
     * @param pastLen  cached keys before the first query (0 in training); S = pastLen + T
     * @param qHeads   Hq
     * @param kvHeads  Hkv, dividing Hq
     * @param headDim  D
     * @param scale    score scale, usually {@code 1 / sqrt(D)}
     * @param window   keys each query sees, its own included (a sliding window); 0: all before it
     */
    public record Dims(int batch, int queryLen, int pastLen, int qHeads, int kvHeads, int headDim, float scale, int window) {
        public Dims(int batch, int queryLen, int pastLen, int qHeads, int kvHeads, int headDim, float scale) {
            this(batch, queryLen, pastLen, qHeads, kvHeads, headDim, scale, 0);
        }

        public Dims {
            if (window < 0) throw new IllegalArgumentException("window must be >= 0 (0: none), got " + window);
            if (batch < 0 || queryLen < 0 || pastLen < 0) throw new IllegalArgumentException("negative size: " + batch + ", " + queryLen + ", " + pastLen);
            if (qHeads < 1 || kvHeads < 1 || qHeads % kvHeads != 0)
                throw new IllegalArgumentException("qHeads (" + qHeads + ") must be a positive multiple of kvHeads (" + kvHeads + ")");
            if (headDim < 1) throw new IllegalArgumentException("headDim must be >= 1, got " + headDim);
            if (!Float.isFinite(scale)) throw new IllegalArgumentException("scale must be finite");
        }

        /** Dims with the usual {@code 1 / sqrt(headDim)} scale. */
        public static Dims of(int batch, int queryLen, int pastLen, int qHeads, int kvHeads, int headDim) {
            return new Dims(batch, queryLen, pastLen, qHeads, kvHeads, headDim, (float) (1.0 / Math.sqrt(headDim)));
        }

        /** S = pastLen + queryLen. */
        public int keyLen() {
            return pastLen + queryLen;
        }

        /** The first key position {@code pos} sees: 0, or pos - window + 1 with a window. */
        int firstKey(int pos) {
            return window == 0 ? 0 : Math.max(0, pos - window + 1);
        }

        /** Query heads per KV head. */
        public int group() {
            return qHeads / kvHeads;
        }
    }

    /**
     * A strided 4-d F32 view {@code [batch, token, head, d]} with d contiguous; offset and strides in floats.
     */
    public record View(MemorySegment seg, long offset, long batchStride, long tokenStride, long headStride) {
        public View {
            if (seg == null) throw new NullPointerException("seg");
        }

        /** A dense {@code [B, tokens, heads, headDim]} tensor starting at {@code offset} floats. */
        public static View contiguous(MemorySegment seg, long offset, int tokens, int heads, int headDim) {
            return new View(seg, offset, (long) tokens * heads * headDim, (long) heads * headDim, headDim);
        }

        /** Float index of element (b, t, h, 0). */
        public long at(int b, int t, int h) {
            return offset + b * batchStride + t * tokenStride + h * headStride;
        }
    }

    // ------------------------------------------------------------------------------------------
    // Forward

    /**
     * Computes {@code o = softmax(scale * q k^T + causal mask) v} and, when {@code lse} is non-null,
     * the per-row log-sum-exp into {@code lse[B, Hq, T]} at {@code lseOffset} floats.
     */
    public static void forward(Dims dims, View q, View k, View v, View o, MemorySegment lse, long lseOffset) {
        forward(dims, q, k, v, o, lse, lseOffset, MODE_AUTO);
    }

    static void forward(Dims dims, View q, View k, View v, View o, MemorySegment lse, long lseOffset, int mode) {
        final int B = dims.batch(), T = dims.queryLen(), Hkv = dims.kvHeads(), G = dims.group();
        if (B == 0 || T == 0) return;
        int bq = Math.max(1, Math.min(T, FWD_TARGET_ROWS / G));
        // Keep enough tasks to occupy the pool, but not below ~16 rows per task.
        while (bq > 1 && bq * G > 16 && (long) B * Hkv * ceilDiv(T, bq) < 4L * CpuThreads.threads()) bq = (bq + 1) / 2;
        final int blockT = bq;
        final int nqb = ceilDiv(T, blockT);
        final boolean par = shareable(q, k, v, o) && (lse == null || shareable(lse));
        parallelFor(par, B * Hkv * nqb, 1, (from, to) -> {
            var sc = new FwdScratch(blockT * G, dims.headDim(), mode != MODE_DOT && (mode == MODE_TRANSPOSED || blockT * G >= TRANSPOSE_MIN_ROWS));
            for (int task = from; task < to; task++) {
                int qb = zigzag(task % nqb, nqb), pair = task / nqb;
                int t0 = qb * blockT;
                forwardTask(dims, q, k, v, o, lse, lseOffset, mode, sc, pair / Hkv, pair % Hkv, t0, Math.min(blockT, T - t0));
            }
        });
    }

    private static final class FwdScratch {
        final float[] qr, acc, s, m, l, kb, kt;

        FwdScratch(int rows, int D, boolean transposed) {
            qr = new float[rows * D];
            acc = new float[rows * D];
            s = new float[rows * BLOCK_KEYS];
            m = new float[rows];
            l = new float[rows];
            kb = transposed ? new float[BLOCK_KEYS * D] : null;
            kt = transposed ? new float[D * BLOCK_KEYS] : null;
        }
    }

    private static void forwardTask(Dims dims, View q, View k, View v, View o, MemorySegment lse, long lseOffset, int mode,
                                    FwdScratch sc, int b, int kvh, int t0, int nt) {
        final int D = dims.headDim(), G = dims.group(), past = dims.pastLen(), T = dims.queryLen(), Hq = dims.qHeads();
        final float scale = dims.scale();
        final int rows = nt * G; // row r = tt * G + hh
        final float[] qr = sc.qr, acc = sc.acc, s = sc.s, m = sc.m, l = sc.l;
        for (int tt = 0; tt < nt; tt++)
            for (int hh = 0; hh < G; hh++)
                load(q.seg(), q.at(b, t0 + tt, kvh * G + hh), qr, (tt * G + hh) * D, D);
        Arrays.fill(m, 0, rows, Float.NEGATIVE_INFINITY);
        Arrays.fill(l, 0, rows, 0f);
        Arrays.fill(acc, 0, rows * D, 0f);
        boolean transposed = sc.kt != null && (mode == MODE_TRANSPOSED || rows >= TRANSPOSE_MIN_ROWS);
        int nKeys = past + t0 + nt; // keys visible to the last row; <= S
        int firstBlock = dims.firstKey(past + t0) / BLOCK_KEYS * BLOCK_KEYS; // the first row's window starts there
        for (int j0 = firstBlock; j0 < nKeys; j0 += BLOCK_KEYS) {
            int nk = Math.min(BLOCK_KEYS, nKeys - j0);
            if (transposed) {
                loadRows(k, b, j0, kvh, nk, D, sc.kb);
                transpose(sc.kb, nk, D, sc.kt);
                scoresT(qr, rows, D, sc.kt, s);
            } else {
                scoresDot(qr, rows, D, k.seg(), k.at(b, j0, kvh), k.tokenStride(), nk, s);
            }
            for (int r = 0; r < rows; r++) {
                int pos = past + t0 + r / G;
                int valid = Math.min(nk, pos - j0 + 1), from = Math.max(0, dims.firstKey(pos) - j0);
                onlineSoftmaxRow(s, r * BLOCK_KEYS, from, valid, scale, m, l, r, acc, r * D, D);
            }
            accumSeg(s, rows, nk, v.seg(), v.at(b, j0, kvh), v.tokenStride(), acc, D);
        }
        for (int r = 0; r < rows; r++) {
            int tt = r / G, hh = r % G, h = kvh * G + hh;
            float inv = 1f / l[r];
            int off = r * D;
            for (int d = 0; d < D; d++) acc[off + d] *= inv;
            store(acc, off, o.seg(), o.at(b, t0 + tt, h), D);
            if (lse != null) lse.setAtIndex(F32, lseOffset + ((long) b * Hq + h) * T + t0 + tt, m[r] + (float) Math.log(l[r]));
        }
    }

    /**
     * Turns one row of raw scores (BLOCK_KEYS wide, entries [from, valid) real) into probabilities
     * relative to the updated running max, rescaling the accumulator and running sum.
     */
    private static void onlineSoftmaxRow(float[] s, int so, int from, int valid, float scale, float[] m, float[] l, int r,
                                         float[] acc, int accOff, int D) {
        if (valid <= from) { // no key of this block is visible to the row
            Arrays.fill(s, so, so + BLOCK_KEYS, 0f);
            return;
        }
        FloatVector vs = FloatVector.broadcast(SP, scale);
        for (int c = 0; c < BLOCK_KEYS; c += L) FloatVector.fromArray(SP, s, so + c).mul(vs).intoArray(s, so + c);
        for (int jj = 0; jj < from; jj++) s[so + jj] = Float.NEGATIVE_INFINITY;
        for (int jj = valid; jj < BLOCK_KEYS; jj++) s[so + jj] = Float.NEGATIVE_INFINITY;
        FloatVector mx = FloatVector.fromArray(SP, s, so);
        for (int c = L; c < BLOCK_KEYS; c += L) mx = mx.max(FloatVector.fromArray(SP, s, so + c));
        float mOld = m[r];
        float mNew = Math.max(mOld, mx.reduceLanes(VectorOperators.MAX));
        FloatVector mv = FloatVector.broadcast(SP, mNew);
        FloatVector sum = FloatVector.zero(SP);
        for (int c = 0; c < BLOCK_KEYS; c += L) {
            FloatVector p = VectorMath.exp(FloatVector.fromArray(SP, s, so + c).sub(mv));
            p.intoArray(s, so + c);
            sum = sum.add(p);
        }
        float corr = mOld == Float.NEGATIVE_INFINITY ? 0f : VectorMath.exp(mOld - mNew);
        l[r] = l[r] * corr + VectorMath.sum(sum);
        if (corr != 1f) scaleRow(acc, accOff, D, corr);
        m[r] = mNew;
    }

    // ------------------------------------------------------------------------------------------
    // Backward

    /**
     * Gradients of attention given {@code dO}, the forward's {@code o} and {@code lse}. Overwrites
     * {@code dQ} (layout of q), {@code dK} and {@code dV} (layout of k, v; summed over the query heads
     * sharing each KV head).
     */
    public static void backward(Dims dims, View q, View k, View v, View o, MemorySegment lse, long lseOffset,
                                View dO, View dQ, View dK, View dV) {
        backward(dims, q, k, v, o, lse, lseOffset, dO, dQ, dK, dV, 0);
    }

    static void backward(Dims dims, View q, View k, View v, View o, MemorySegment lse, long lseOffset,
                         View dO, View dQ, View dK, View dV, int forceChunks) {
        final int B = dims.batch(), T = dims.queryLen(), Hq = dims.qHeads(), Hkv = dims.kvHeads(), D = dims.headDim();
        final int G = dims.group(), S = dims.keyLen();
        if (B == 0) return;
        if (T == 0) { // no queries: keys are unused, their gradients are zero
            zeroKv(dims, dK, dV);
            return;
        }
        if (lse == null) throw new NullPointerException("lse is required by the backward");
        // Per-row lse and Delta_i = rowsum(dO_i * O_i), as [B, Hq, T].
        final float[] lseH = new float[B * Hq * T];
        final float[] delta = new float[B * Hq * T];
        MemorySegment.copy(lse, F32, lseOffset * 4, lseH, 0, lseH.length);
        final boolean par = shareable(q, k, v, o) && shareable(dO, dQ, dK, dV);
        parallelFor(par, B * Hq, Math.max(1, 4096 / Math.max(1, T * D)), (from, to) -> {
            for (int bh = from; bh < to; bh++) {
                int b = bh / Hq, h = bh % Hq;
                for (int t = 0; t < T; t++)
                    delta[bh * T + t] = dotSeg(dO.seg(), dO.at(b, t, h), o.seg(), o.at(b, t, h), D);
            }
        });
        final int pairs = B * Hkv, nkb = ceilDiv(S, BLOCK_KEYS);
        int c = forceChunks > 0 ? forceChunks : (pairs >= 2 * CpuThreads.threads() ? 1 : ceilDiv(2 * CpuThreads.threads(), pairs));
        final int chunks = Math.max(1, Math.min(c, nkb));
        final float[][] parts = chunks > 1 ? new float[pairs * chunks][] : null;
        parallelFor(par, pairs * chunks, 1, (from, to) -> {
            var sc = new BwdScratch(D, chunks == 1 ? G * T * D : 0);
            for (int task = from; task < to; task++) {
                int ch = zigzag(task % chunks, chunks), pair = task / chunks;
                float[] dq;
                if (parts == null) {
                    dq = sc.dq;
                    Arrays.fill(dq, 0f);
                } else {
                    dq = parts[pair * chunks + ch] = new float[G * T * D];
                }
                int b = pair / Hkv, kvh = pair % Hkv;
                backwardTask(dims, q, k, v, dO, dK, dV, lseH, delta, sc, dq, b, kvh,
                        (int) ((long) ch * nkb / chunks), (int) ((long) (ch + 1) * nkb / chunks));
                if (parts == null) writeDq(dq, dQ, b, kvh, G, T, D);
            }
        });
        if (parts != null) {
            parallelFor(par, B * Hq, 1, (from, to) -> {
                float[] row = new float[D];
                for (int bh = from; bh < to; bh++) {
                    int b = bh / Hq, h = bh % Hq, kvh = h / G, hh = h % G;
                    int base = (b * Hkv + kvh) * chunks;
                    for (int t = 0; t < T; t++) {
                        int off = (hh * T + t) * D;
                        System.arraycopy(parts[base], off, row, 0, D);
                        for (int ch = 1; ch < chunks; ch++) addInto(parts[base + ch], off, row, D);
                        store(row, 0, dQ.seg(), dQ.at(b, t, h), D);
                    }
                }
            });
        }
    }

    private static final class BwdScratch {
        final float[] qr, dor, s, dp, kb, vb, kt, vt, dka, dva, dq;

        BwdScratch(int D, int dqSize) {
            qr = new float[BWD_QUERY_BLOCK * D];
            dor = new float[BWD_QUERY_BLOCK * D];
            s = new float[BWD_QUERY_BLOCK * BLOCK_KEYS];
            dp = new float[BWD_QUERY_BLOCK * BLOCK_KEYS];
            kb = new float[BLOCK_KEYS * D];
            vb = new float[BLOCK_KEYS * D];
            kt = new float[D * BLOCK_KEYS];
            vt = new float[D * BLOCK_KEYS];
            dka = new float[BLOCK_KEYS * D];
            dva = new float[BLOCK_KEYS * D];
            dq = new float[dqSize];
        }
    }

    /** Key blocks [kb0, kb1) of KV head kvh in batch b; dq is [G, T, D] and accumulates. */
    private static void backwardTask(Dims dims, View q, View k, View v, View dO, View dK, View dV,
                                     float[] lseH, float[] delta, BwdScratch sc, float[] dq, int b, int kvh, int kb0, int kb1) {
        final int D = dims.headDim(), G = dims.group(), past = dims.pastLen(), T = dims.queryLen(), Hq = dims.qHeads();
        final int S = dims.keyLen();
        final float scale = dims.scale();
        final float[] qr = sc.qr, dor = sc.dor, s = sc.s, dp = sc.dp;
        final FloatVector vscale = FloatVector.broadcast(SP, scale);
        for (int kbi = kb0; kbi < kb1; kbi++) {
            final int j0 = kbi * BLOCK_KEYS, nk = Math.min(BLOCK_KEYS, S - j0);
            loadRows(k, b, j0, kvh, nk, D, sc.kb);
            loadRows(v, b, j0, kvh, nk, D, sc.vb);
            transpose(sc.kb, nk, D, sc.kt);
            transpose(sc.vb, nk, D, sc.vt);
            Arrays.fill(sc.dka, 0, nk * D, 0f);
            Arrays.fill(sc.dva, 0, nk * D, 0f);
            final int tFirst = Math.max(0, j0 - past);
            // with a window, the last query that sees this block's last key
            final int tEnd = dims.window() == 0 ? T : (int) Math.min(T, (long) j0 + nk - 1 + dims.window() - past);
            for (int hh = 0; hh < G; hh++) {
                final int h = kvh * G + hh;
                final int rowBase = (b * Hq + h) * T;
                for (int t0 = tFirst; t0 < tEnd; t0 += BWD_QUERY_BLOCK) {
                    final int nt = Math.min(BWD_QUERY_BLOCK, tEnd - t0);
                    for (int r = 0; r < nt; r++) {
                        load(q.seg(), q.at(b, t0 + r, h), qr, r * D, D);
                        load(dO.seg(), dO.at(b, t0 + r, h), dor, r * D, D);
                    }
                    scoresT(qr, nt, D, sc.kt, s);
                    scoresT(dor, nt, D, sc.vt, dp);
                    for (int r = 0; r < nt; r++) {
                        int t = t0 + r, so = r * BLOCK_KEYS;
                        int valid = Math.min(nk, past + t - j0 + 1); // >= 1 since t >= tFirst
                        FloatVector vl = FloatVector.broadcast(SP, lseH[rowBase + t]);
                        FloatVector vd = FloatVector.broadcast(SP, delta[rowBase + t]);
                        for (int c = 0; c < BLOCK_KEYS; c += L) {
                            FloatVector p = VectorMath.exp(FloatVector.fromArray(SP, s, so + c).fma(vscale, vl.neg()));
                            FloatVector ds = p.mul(FloatVector.fromArray(SP, dp, so + c).sub(vd)).mul(vscale);
                            p.intoArray(s, so + c);
                            ds.intoArray(dp, so + c);
                        }
                        if (valid < BLOCK_KEYS) {
                            Arrays.fill(s, so + valid, so + BLOCK_KEYS, 0f);
                            Arrays.fill(dp, so + valid, so + BLOCK_KEYS, 0f);
                        }
                        int from = Math.min(valid, Math.max(0, dims.firstKey(past + t) - j0)); // keys before the window
                        if (from > 0) {
                            Arrays.fill(s, so, so + from, 0f);
                            Arrays.fill(dp, so, so + from, 0f);
                        }
                    }
                    // dV_j += sum_i P_ij dO_i ; dK_j += sum_i dS_ij q_i ; dQ_i += sum_j dS_ij k_j (dS carries the scale)
                    accum(s, 1, BLOCK_KEYS, nk, nt, dor, 0, sc.dva, 0, D);
                    accum(dp, 1, BLOCK_KEYS, nk, nt, qr, 0, sc.dka, 0, D);
                    accum(dp, BLOCK_KEYS, 1, nt, nk, sc.kb, 0, dq, (hh * T + t0) * D, D);
                }
            }
            for (int jj = 0; jj < nk; jj++) {
                store(sc.dka, jj * D, dK.seg(), dK.at(b, j0 + jj, kvh), D);
                store(sc.dva, jj * D, dV.seg(), dV.at(b, j0 + jj, kvh), D);
            }
        }
    }

    private static void writeDq(float[] dq, View dQ, int b, int kvh, int G, int T, int D) {
        for (int hh = 0; hh < G; hh++)
            for (int t = 0; t < T; t++) store(dq, (hh * T + t) * D, dQ.seg(), dQ.at(b, t, kvh * G + hh), D);
    }

    private static void zeroKv(Dims dims, View dK, View dV) {
        float[] zero = new float[dims.headDim()];
        for (int b = 0; b < dims.batch(); b++)
            for (int j = 0; j < dims.keyLen(); j++)
                for (int h = 0; h < dims.kvHeads(); h++) {
                    store(zero, 0, dK.seg(), dK.at(b, j, h), zero.length);
                    store(zero, 0, dV.seg(), dV.at(b, j, h), zero.length);
                }
    }

    // ------------------------------------------------------------------------------------------
    // Micro-kernels

    /**
     * {@code s[r][0..BLOCK_KEYS) = a[r] . kt[:, j]} for {@code r < rows}, with kt the transposed key block
     * ({@code kt[d * BLOCK_KEYS + j]}). Vectorized over keys: no lane reductions.
     */
    static void scoresT(float[] a, int rows, int D, float[] kt, float[] s) {
        int r = 0;
        for (; r + 4 <= rows; r += 4) {
            FloatVector c00 = FloatVector.zero(SP), c01 = c00, c02 = c00, c03 = c00;
            FloatVector c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            FloatVector c20 = c00, c21 = c00, c22 = c00, c23 = c00;
            FloatVector c30 = c00, c31 = c00, c32 = c00, c33 = c00;
            int a0 = r * D, a1 = a0 + D, a2 = a1 + D, a3 = a2 + D;
            for (int d = 0; d < D; d++) {
                int ko = d * BLOCK_KEYS;
                FloatVector k0 = FloatVector.fromArray(SP, kt, ko);
                FloatVector k1 = FloatVector.fromArray(SP, kt, ko + L);
                FloatVector k2 = FloatVector.fromArray(SP, kt, ko + 2 * L);
                FloatVector k3 = FloatVector.fromArray(SP, kt, ko + 3 * L);
                FloatVector x = FloatVector.broadcast(SP, a[a0 + d]);
                c00 = k0.fma(x, c00); c01 = k1.fma(x, c01); c02 = k2.fma(x, c02); c03 = k3.fma(x, c03);
                x = FloatVector.broadcast(SP, a[a1 + d]);
                c10 = k0.fma(x, c10); c11 = k1.fma(x, c11); c12 = k2.fma(x, c12); c13 = k3.fma(x, c13);
                x = FloatVector.broadcast(SP, a[a2 + d]);
                c20 = k0.fma(x, c20); c21 = k1.fma(x, c21); c22 = k2.fma(x, c22); c23 = k3.fma(x, c23);
                x = FloatVector.broadcast(SP, a[a3 + d]);
                c30 = k0.fma(x, c30); c31 = k1.fma(x, c31); c32 = k2.fma(x, c32); c33 = k3.fma(x, c33);
            }
            int so = r * BLOCK_KEYS;
            c00.intoArray(s, so); c01.intoArray(s, so + L); c02.intoArray(s, so + 2 * L); c03.intoArray(s, so + 3 * L);
            so += BLOCK_KEYS;
            c10.intoArray(s, so); c11.intoArray(s, so + L); c12.intoArray(s, so + 2 * L); c13.intoArray(s, so + 3 * L);
            so += BLOCK_KEYS;
            c20.intoArray(s, so); c21.intoArray(s, so + L); c22.intoArray(s, so + 2 * L); c23.intoArray(s, so + 3 * L);
            so += BLOCK_KEYS;
            c30.intoArray(s, so); c31.intoArray(s, so + L); c32.intoArray(s, so + 2 * L); c33.intoArray(s, so + 3 * L);
        }
        for (; r < rows; r++) {
            FloatVector c0 = FloatVector.zero(SP), c1 = c0, c2 = c0, c3 = c0;
            int a0 = r * D;
            for (int d = 0; d < D; d++) {
                int ko = d * BLOCK_KEYS;
                FloatVector x = FloatVector.broadcast(SP, a[a0 + d]);
                c0 = FloatVector.fromArray(SP, kt, ko).fma(x, c0);
                c1 = FloatVector.fromArray(SP, kt, ko + L).fma(x, c1);
                c2 = FloatVector.fromArray(SP, kt, ko + 2 * L).fma(x, c2);
                c3 = FloatVector.fromArray(SP, kt, ko + 3 * L).fma(x, c3);
            }
            int so = r * BLOCK_KEYS;
            c0.intoArray(s, so); c1.intoArray(s, so + L); c2.intoArray(s, so + 2 * L); c3.intoArray(s, so + 3 * L);
        }
    }

    /**
     * {@code s[r][jj] = a[r] . k[j0 + jj]} for {@code jj < nk}, reading keys straight from the segment (decode path):
     * dot products vectorized over D, four keys at a time.
     */
    static void scoresDot(float[] a, int rows, int D, MemorySegment kseg, long kIdx, long kStride, int nk, float[] s) {
        final int ub = SP.loopBound(D);
        for (int r = 0; r < rows; r++) {
            final int ao = r * D, so = r * BLOCK_KEYS;
            int jj = 0;
            for (; jj + 4 <= nk; jj += 4) {
                long b0 = (kIdx + jj * kStride) * 4, b1 = b0 + kStride * 4, b2 = b1 + kStride * 4, b3 = b2 + kStride * 4;
                FloatVector x0 = FloatVector.zero(SP), x1 = x0, x2 = x0, x3 = x0;
                for (int d = 0; d < ub; d += L) {
                    FloatVector qv = FloatVector.fromArray(SP, a, ao + d);
                    long db = (long) d * 4;
                    x0 = FloatVector.fromMemorySegment(SP, kseg, b0 + db, LE).fma(qv, x0);
                    x1 = FloatVector.fromMemorySegment(SP, kseg, b1 + db, LE).fma(qv, x1);
                    x2 = FloatVector.fromMemorySegment(SP, kseg, b2 + db, LE).fma(qv, x2);
                    x3 = FloatVector.fromMemorySegment(SP, kseg, b3 + db, LE).fma(qv, x3);
                }
                float s0 = VectorMath.sum(x0), s1 = VectorMath.sum(x1);
                float s2 = VectorMath.sum(x2), s3 = VectorMath.sum(x3);
                for (int d = ub; d < D; d++) {
                    float qd = a[ao + d];
                    long db = (long) d * 4;
                    s0 += qd * kseg.get(F32, b0 + db);
                    s1 += qd * kseg.get(F32, b1 + db);
                    s2 += qd * kseg.get(F32, b2 + db);
                    s3 += qd * kseg.get(F32, b3 + db);
                }
                s[so + jj] = s0;
                s[so + jj + 1] = s1;
                s[so + jj + 2] = s2;
                s[so + jj + 3] = s3;
            }
            for (; jj < nk; jj++) {
                long b0 = (kIdx + jj * kStride) * 4;
                FloatVector x0 = FloatVector.zero(SP);
                for (int d = 0; d < ub; d += L)
                    x0 = FloatVector.fromMemorySegment(SP, kseg, b0 + (long) d * 4, LE).fma(FloatVector.fromArray(SP, a, ao + d), x0);
                float s0 = VectorMath.sum(x0);
                for (int d = ub; d < D; d++) s0 += a[ao + d] * kseg.get(F32, b0 + (long) d * 4);
                s[so + jj] = s0;
            }
        }
    }

    /**
     * {@code acc[r][:] += sum_{jj < nk} p[r][jj] * v[j0 + jj][:]} for {@code r < rows}, reading values from the segment;
     * vectorized over D, four rows per pass.
     */
    static void accumSeg(float[] p, int rows, int nk, MemorySegment vseg, long vIdx, long vStride, float[] acc, int D) {
        final int ub = SP.loopBound(D);
        final long vsb = vStride * 4;
        int r = 0;
        for (; r + 4 <= rows; r += 4) {
            int p0 = r * BLOCK_KEYS, p1 = p0 + BLOCK_KEYS, p2 = p1 + BLOCK_KEYS, p3 = p2 + BLOCK_KEYS;
            int o0 = r * D, o1 = o0 + D, o2 = o1 + D, o3 = o2 + D;
            for (int d = 0; d < ub; d += L) {
                FloatVector a0 = FloatVector.fromArray(SP, acc, o0 + d), a1 = FloatVector.fromArray(SP, acc, o1 + d);
                FloatVector a2 = FloatVector.fromArray(SP, acc, o2 + d), a3 = FloatVector.fromArray(SP, acc, o3 + d);
                FloatVector b0 = FloatVector.zero(SP), b1 = b0, b2 = b0, b3 = b0;
                long vb = (vIdx + d) * 4;
                int jj = 0;
                for (; jj + 2 <= nk; jj += 2, vb += 2 * vsb) { // two keys per step: eight independent FMA chains
                    FloatVector x = FloatVector.fromMemorySegment(SP, vseg, vb, LE);
                    FloatVector y = FloatVector.fromMemorySegment(SP, vseg, vb + vsb, LE);
                    a0 = x.fma(FloatVector.broadcast(SP, p[p0 + jj]), a0);
                    a1 = x.fma(FloatVector.broadcast(SP, p[p1 + jj]), a1);
                    a2 = x.fma(FloatVector.broadcast(SP, p[p2 + jj]), a2);
                    a3 = x.fma(FloatVector.broadcast(SP, p[p3 + jj]), a3);
                    b0 = y.fma(FloatVector.broadcast(SP, p[p0 + jj + 1]), b0);
                    b1 = y.fma(FloatVector.broadcast(SP, p[p1 + jj + 1]), b1);
                    b2 = y.fma(FloatVector.broadcast(SP, p[p2 + jj + 1]), b2);
                    b3 = y.fma(FloatVector.broadcast(SP, p[p3 + jj + 1]), b3);
                }
                if (jj < nk) {
                    FloatVector x = FloatVector.fromMemorySegment(SP, vseg, vb, LE);
                    a0 = x.fma(FloatVector.broadcast(SP, p[p0 + jj]), a0);
                    a1 = x.fma(FloatVector.broadcast(SP, p[p1 + jj]), a1);
                    a2 = x.fma(FloatVector.broadcast(SP, p[p2 + jj]), a2);
                    a3 = x.fma(FloatVector.broadcast(SP, p[p3 + jj]), a3);
                }
                a0 = a0.add(b0); a1 = a1.add(b1); a2 = a2.add(b2); a3 = a3.add(b3);
                a0.intoArray(acc, o0 + d); a1.intoArray(acc, o1 + d); a2.intoArray(acc, o2 + d); a3.intoArray(acc, o3 + d);
            }
            for (int d = ub; d < D; d++) {
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                long vb = (vIdx + d) * 4;
                for (int jj = 0; jj < nk; jj++, vb += vsb) {
                    float x = vseg.get(F32, vb);
                    a0 += p[p0 + jj] * x; a1 += p[p1 + jj] * x; a2 += p[p2 + jj] * x; a3 += p[p3 + jj] * x;
                }
                acc[o0 + d] += a0; acc[o1 + d] += a1; acc[o2 + d] += a2; acc[o3 + d] += a3;
            }
        }
        for (; r < rows; r++) {
            int p0 = r * BLOCK_KEYS, o0 = r * D;
            for (int d = 0; d < ub; d += L) {
                FloatVector a0 = FloatVector.fromArray(SP, acc, o0 + d), a1 = FloatVector.zero(SP), a2 = a1, a3 = a1;
                long vb = (vIdx + d) * 4;
                int jj = 0;
                for (; jj + 4 <= nk; jj += 4, vb += 4 * vsb) { // four keys per step: independent FMA chains
                    a0 = FloatVector.fromMemorySegment(SP, vseg, vb, LE).fma(FloatVector.broadcast(SP, p[p0 + jj]), a0);
                    a1 = FloatVector.fromMemorySegment(SP, vseg, vb + vsb, LE).fma(FloatVector.broadcast(SP, p[p0 + jj + 1]), a1);
                    a2 = FloatVector.fromMemorySegment(SP, vseg, vb + 2 * vsb, LE).fma(FloatVector.broadcast(SP, p[p0 + jj + 2]), a2);
                    a3 = FloatVector.fromMemorySegment(SP, vseg, vb + 3 * vsb, LE).fma(FloatVector.broadcast(SP, p[p0 + jj + 3]), a3);
                }
                for (; jj < nk; jj++, vb += vsb)
                    a0 = FloatVector.fromMemorySegment(SP, vseg, vb, LE).fma(FloatVector.broadcast(SP, p[p0 + jj]), a0);
                a0.add(a1).add(a2.add(a3)).intoArray(acc, o0 + d);
            }
            for (int d = ub; d < D; d++) {
                float a0 = 0;
                long vb = (vIdx + d) * 4;
                for (int jj = 0; jj < nk; jj++, vb += vsb) a0 += p[p0 + jj] * vseg.get(F32, vb);
                acc[o0 + d] += a0;
            }
        }
    }

    /**
     * {@code acc[accOff + i*D + :] += sum_{j < nj} coef[i*ci + j*cj] * src[srcOff + j*D + :]} for {@code i < ni};
     * vectorized over D, four output rows per pass.
     */
    static void accum(float[] coef, int ci, int cj, int ni, int nj, float[] src, int srcOff, float[] acc, int accOff, int D) {
        final int ub = SP.loopBound(D);
        int i = 0;
        for (; i + 4 <= ni; i += 4) {
            int c0 = i * ci, c1 = c0 + ci, c2 = c1 + ci, c3 = c2 + ci;
            int o0 = accOff + i * D, o1 = o0 + D, o2 = o1 + D, o3 = o2 + D;
            for (int d = 0; d < ub; d += L) {
                FloatVector a0 = FloatVector.fromArray(SP, acc, o0 + d), a1 = FloatVector.fromArray(SP, acc, o1 + d);
                FloatVector a2 = FloatVector.fromArray(SP, acc, o2 + d), a3 = FloatVector.fromArray(SP, acc, o3 + d);
                FloatVector b0 = FloatVector.zero(SP), b1 = b0, b2 = b0, b3 = b0;
                int j = 0, cjo = 0, so = srcOff + d;
                for (; j + 2 <= nj; j += 2, cjo += 2 * cj, so += 2 * D) { // eight independent FMA chains
                    FloatVector x = FloatVector.fromArray(SP, src, so), y = FloatVector.fromArray(SP, src, so + D);
                    a0 = x.fma(FloatVector.broadcast(SP, coef[c0 + cjo]), a0);
                    a1 = x.fma(FloatVector.broadcast(SP, coef[c1 + cjo]), a1);
                    a2 = x.fma(FloatVector.broadcast(SP, coef[c2 + cjo]), a2);
                    a3 = x.fma(FloatVector.broadcast(SP, coef[c3 + cjo]), a3);
                    b0 = y.fma(FloatVector.broadcast(SP, coef[c0 + cjo + cj]), b0);
                    b1 = y.fma(FloatVector.broadcast(SP, coef[c1 + cjo + cj]), b1);
                    b2 = y.fma(FloatVector.broadcast(SP, coef[c2 + cjo + cj]), b2);
                    b3 = y.fma(FloatVector.broadcast(SP, coef[c3 + cjo + cj]), b3);
                }
                if (j < nj) {
                    FloatVector x = FloatVector.fromArray(SP, src, so);
                    a0 = x.fma(FloatVector.broadcast(SP, coef[c0 + cjo]), a0);
                    a1 = x.fma(FloatVector.broadcast(SP, coef[c1 + cjo]), a1);
                    a2 = x.fma(FloatVector.broadcast(SP, coef[c2 + cjo]), a2);
                    a3 = x.fma(FloatVector.broadcast(SP, coef[c3 + cjo]), a3);
                }
                a0 = a0.add(b0); a1 = a1.add(b1); a2 = a2.add(b2); a3 = a3.add(b3);
                a0.intoArray(acc, o0 + d); a1.intoArray(acc, o1 + d); a2.intoArray(acc, o2 + d); a3.intoArray(acc, o3 + d);
            }
            for (int d = ub; d < D; d++) {
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (int j = 0, cjo = 0, so = srcOff + d; j < nj; j++, cjo += cj, so += D) {
                    float x = src[so];
                    a0 += coef[c0 + cjo] * x; a1 += coef[c1 + cjo] * x; a2 += coef[c2 + cjo] * x; a3 += coef[c3 + cjo] * x;
                }
                acc[o0 + d] += a0; acc[o1 + d] += a1; acc[o2 + d] += a2; acc[o3 + d] += a3;
            }
        }
        for (; i < ni; i++) {
            int c0 = i * ci, o0 = accOff + i * D;
            for (int d = 0; d < ub; d += L) {
                FloatVector a0 = FloatVector.fromArray(SP, acc, o0 + d), a1 = FloatVector.zero(SP);
                int j = 0, cjo = 0, so = srcOff + d;
                for (; j + 2 <= nj; j += 2, cjo += 2 * cj, so += 2 * D) {
                    a0 = FloatVector.fromArray(SP, src, so).fma(FloatVector.broadcast(SP, coef[c0 + cjo]), a0);
                    a1 = FloatVector.fromArray(SP, src, so + D).fma(FloatVector.broadcast(SP, coef[c0 + cjo + cj]), a1);
                }
                if (j < nj) a0 = FloatVector.fromArray(SP, src, so).fma(FloatVector.broadcast(SP, coef[c0 + cjo]), a0);
                a0.add(a1).intoArray(acc, o0 + d);
            }
            for (int d = ub; d < D; d++) {
                float a0 = 0;
                for (int j = 0, cjo = 0, so = srcOff + d; j < nj; j++, cjo += cj, so += D) a0 += coef[c0 + cjo] * src[so];
                acc[o0 + d] += a0;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Helpers

    private static boolean shareable(MemorySegment seg) {
        return CpuThreads.shareable(seg);
    }

    private static boolean shareable(View... views) {
        for (View x : views) if (!shareable(x.seg())) return false;
        return true;
    }

    /** Runs on the shared pool, or inline when some segment is confined to the calling thread. */
    private static void parallelFor(boolean parallel, int n, int grain, CpuThreads.RangeBody body) {
        if (parallel) CpuThreads.parallelFor(n, grain, body);
        else if (n > 0) body.run(0, n);
    }

    /**
     * 0, n-1, 1, n-2, ...: under causal masking the work of query (or key) blocks grows (shrinks)
     * linearly with the index, so neighbouring tasks, which share a thread's range, pair heavy with light.
     */
    static int zigzag(int i, int n) {
        return (i & 1) == 0 ? i >> 1 : n - 1 - (i >> 1);
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    private static void load(MemorySegment seg, long idx, float[] dst, int off, int n) {
        MemorySegment.copy(seg, F32, idx * 4, dst, off, n);
    }

    private static void store(float[] src, int off, MemorySegment seg, long idx, int n) {
        MemorySegment.copy(src, off, seg, F32, idx * 4, n);
    }

    /** Rows j0 .. j0+nk of KV head h, batch b, into dst[jj * D + d]. */
    private static void loadRows(View x, int b, int j0, int h, int nk, int D, float[] dst) {
        for (int jj = 0; jj < nk; jj++) load(x.seg(), x.at(b, j0 + jj, h), dst, jj * D, D);
    }

    /** kt[d * BLOCK_KEYS + jj] = kb[jj * D + d], zero-padding keys nk .. BLOCK_KEYS. */
    private static void transpose(float[] kb, int nk, int D, float[] kt) {
        for (int jj = 0; jj < nk; jj++) {
            int src = jj * D;
            for (int d = 0, dst = jj; d < D; d++, dst += BLOCK_KEYS) kt[dst] = kb[src + d];
        }
        if (nk < BLOCK_KEYS)
            for (int d = 0; d < D; d++) Arrays.fill(kt, d * BLOCK_KEYS + nk, (d + 1) * BLOCK_KEYS, 0f);
    }

    private static void scaleRow(float[] x, int off, int n, float f) {
        int ub = SP.loopBound(n), d = 0;
        FloatVector vf = FloatVector.broadcast(SP, f);
        for (; d < ub; d += L) FloatVector.fromArray(SP, x, off + d).mul(vf).intoArray(x, off + d);
        for (; d < n; d++) x[off + d] *= f;
    }

    private static void addInto(float[] src, int off, float[] dst, int n) {
        int ub = SP.loopBound(n), d = 0;
        for (; d < ub; d += L) FloatVector.fromArray(SP, src, off + d).add(FloatVector.fromArray(SP, dst, d)).intoArray(dst, d);
        for (; d < n; d++) dst[d] += src[off + d];
    }

    private static float dotSeg(MemorySegment a, long ai, MemorySegment b, long bi, int n) {
        int ub = SP.loopBound(n), d = 0;
        long ab = ai * 4, bb = bi * 4;
        FloatVector acc = FloatVector.zero(SP);
        for (; d < ub; d += L)
            acc = FloatVector.fromMemorySegment(SP, a, ab + d * 4L, LE).fma(FloatVector.fromMemorySegment(SP, b, bb + d * 4L, LE), acc);
        float s = VectorMath.sum(acc);
        for (; d < n; d++) s += a.get(F32, ab + d * 4L) * b.get(F32, bb + d * 4L);
        return s;
    }
}
