package dev.exeunt.model.generate;

import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.Attention;
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.model.nn.Linear;
import dev.exeunt.model.nn.Mlp;
import dev.exeunt.model.nn.Norm;
import dev.exeunt.model.nn.TransformerLayer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.CpuActivation;
import dev.exeunt.tensor.cpu.CpuElementwise;
import dev.exeunt.tensor.cpu.CpuGemm;
import dev.exeunt.tensor.cpu.CpuNorm;
import dev.exeunt.tensor.cpu.CpuKQuant;
import dev.exeunt.tensor.cpu.CpuPanelGemm;
import dev.exeunt.tensor.cpu.CpuQuant;
import dev.exeunt.tensor.cpu.CpuRope;
import dev.exeunt.tensor.cpu.CpuSkinnyGemm;
import dev.exeunt.tensor.cpu.CpuThreads;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The arithmetic of one decode step on the CPU, over packed rows in preallocated buffers: no tensor
 * objects, views or scopes per op, only kernel calls on memory segments (offsets in floats).
 *
 * <p>Every kernel here computes a row the same way whatever the number of rows beside it: the skinny
 * GEMM takes rows in chunks of at most 8 with per-row accumulators, quantized weights go one row at a
 * time, norms and attention run row by row. So a token's logits are bit for bit the same alone or in
 * a band of drafts being verified, which is what makes speculative decoding lossless to the last bit.
 * A prompt is the exception: with {@link DecodeBuffers#prompt} set, products of {@link #PROMPT_GEMM_ROWS}
 * rows or more go through the blocked GEMM (quantized weights dequantized panel by panel), which reads
 * each weight once for the whole prompt. Prompts are always computed that way, alone or not, so the full
 * model and speculative decoding still start from the same bits.
 */
final class DecodeMath {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private DecodeMath() {}

    /** Rows from which a prompt's products use the blocked GEMM rather than the row kernels. */
    static final int PROMPT_GEMM_ROWS = CpuPanelGemm.MIN_ROWS;

    /** Whether this path can run the model: CPU, one tensor-parallel rank, weights F32 or block-quantized. */
    static boolean supports(ModelConfig c, Tensor anyWeight, int tpSize) {
        return anyWeight.device().kind() == dev.exeunt.tensor.Device.Kind.CPU && tpSize == 1 && c.nHeads() % c.nKvHeads() == 0;
    }

    /**
     * out[r, j] = sum_i in[r, i] W[j, i] (+ bias[j]) for rows r in [0, rows): in has leading dimension
     * {@code ldIn} (>= in features), out {@code ldOut}.
     */
    static void linear(DecodeBuffers w, Linear lin, int rows, MemorySegment in, long inOff, int ldIn, MemorySegment out, long outOff,
                       int ldOut) {
        linearColumns(w, lin, 0, lin.outFeatures(), rows, in, inOff, ldIn, out, outOff, ldOut);
    }

    /** Outputs [col0, col0 + cols) of a linear (GPT-2's fused c_attn: only k and v). */
    static void linearColumns(DecodeBuffers w, Linear lin, int col0, int cols, int rows, MemorySegment in, long inOff, int ldIn,
                              MemorySegment out, long outOff, int ldOut) {
        linear(w, lin.weight(), lin.inputMajor(), lin.inFeatures(), col0, cols, rows, in, inOff, ldIn, out, outOff, ldOut);
        if (lin.bias() != null) addBias(lin.bias(), col0, rows, cols, out, outOff, ldOut);
    }

    /** Outputs [col0, col0 + nOut) of weight w ([out, in], or [in, out] when input-major; the head: the first nOut ids). */
    static void linear(DecodeBuffers buf, Tensor w, boolean inputMajor, int nIn, int col0, int nOut, int rows, MemorySegment in, long inOff,
                       int ldIn, MemorySegment out, long outOff, int ldOut) {
        MemorySegment ws = w.segment();
        boolean gemm = buf.prompt && rows >= PROMPT_GEMM_ROWS;
        if (w.dtype() == DType.F32) {
            int ldw = inputMajor ? w.dim(1) : w.dim(w.rank() - 1);
            long wOff = w.offset() + (inputMajor ? col0 : (long) col0 * ldw);
            if (gemm) {
                CpuGemm.sgemm(false, !inputMajor, rows, nOut, nIn, 1f, in, inOff, ldIn, ws, wOff, ldw, 0f, out, outOff, ldOut);
                return;
            }
            for (int r0 = 0; r0 < rows; r0 += CpuSkinnyGemm.MAX_ROWS) {
                int m = Math.min(CpuSkinnyGemm.MAX_ROWS, rows - r0);
                CpuSkinnyGemm.gemm(!inputMajor, m, nOut, nIn, in, inOff + (long) r0 * ldIn, ldIn, ws, wOff, ldw,
                        out, outOff + (long) r0 * ldOut, ldOut);
            }
            return;
        }
        if (inputMajor) throw new IllegalStateException("quantized weights must be [out, in], got an input-major " + w.dtype() + " weight");
        long wb = w.dtype().byteSize(w.offset() + (long) col0 * nIn);
        if (gemm) {
            CpuPanelGemm.gemm(w.dtype(), rows, nOut, nIn, ws, wb, in, inOff, ldIn, out, outOff, ldOut);
            return;
        }
        switch (w.dtype()) {
            case Q8_0, Q4_0 -> CpuQuant.gemvTokens(w.dtype() == DType.Q4_0, rows, nOut, nIn, ws, wb, in, inOff, ldIn, out, outOff, ldOut);
            case Q2_K, Q4_K, Q5_K, Q6_K -> CpuKQuant.gemm(w.dtype(), rows, nOut, nIn, ws, wb, in, inOff, ldIn, out, outOff, ldOut);
            default -> throw new IllegalArgumentException("decode: unsupported weight type " + w.dtype());
        }
    }

    private static void addBias(Tensor bias, int col0, int rows, int n, MemorySegment out, long outOff, int ldOut) {
        for (int r = 0; r < rows; r++) CpuElementwise.addInPlace(out, outOff + (long) r * ldOut, bias.segment(), bias.offset() + col0, n);
    }

    /** y = norm(x) row by row ([rows, d], contiguous). */
    static void norm(Norm n, int rows, int d, MemorySegment x, long xOff, MemorySegment y, long yOff) {
        Tensor g = n.weight();
        if (n.rms()) {
            CpuNorm.rmsNorm(x, xOff, g.segment(), g.offset(), y, yOff, null, 0, rows, d, n.eps());
        } else {
            Tensor b = n.bias();
            CpuNorm.layerNorm(x, xOff, g.segment(), g.offset(), b == null ? null : b.segment(), b == null ? 0 : b.offset(), y, yOff,
                    null, 0, null, 0, rows, d, n.eps());
        }
    }

    /** Qwen3's q_norm / k_norm in place: an RMSNorm over each of {@code heads} contiguous heads of hd values (none: nothing). */
    private static void headNorm(Norm n, int heads, int hd, MemorySegment x, long off) {
        if (n != null) norm(n, heads, hd, x, off, x, off);
    }

    /** One group of consecutive rows of a packed batch: one sequence's positions [startPos, startPos + count). */
    record Span(int row, int count, int startPos, KvCache cache) {}

    /**
     * A transformer block over packed rows: out = h + mlp(norm2(h)), h = x + attn(norm1(x)); h and
     * norm2(h) stay in {@code w.h} and {@code w.n2} for mlp exits. x and out are [rows, D] in w.
     */
    static void layer(ModelConfig c, TransformerLayer layer, DecodeBuffers w, MemorySegment x, long xOff, Span[] spans, int nSpans,
                      int rows, MemorySegment out, long outOff) {
        int d = c.dModel();
        norm(layer.norm1(), rows, d, x, xOff, w.seg, w.n);
        attention(c, layer.attn(), w, rows, spans, nSpans);
        linear(w, layer.attn().out(), rows, w.seg, w.att, w.qDim, w.seg, w.h, d);
        CpuElementwise.addInPlace(w.seg, w.h, x, xOff, (long) rows * d);
        norm(layer.norm2(), rows, d, w.seg, w.h, w.seg, w.n2);
        mlp(c, layer.mlp(), w, rows, w.seg, w.n2, out, outOff);
        CpuElementwise.addInPlace(out, outOff, w.seg, w.h, (long) rows * d);
    }

    /** out = mlp(in) for [rows, D] rows (the block's MLP or an mlp exit's branch). */
    static void mlp(ModelConfig c, Mlp mlp, DecodeBuffers w, int rows, MemorySegment in, long inOff, MemorySegment out, long outOff) {
        int d = c.dModel(), f = c.ffnHidden();
        // The activation kernels treat their masked tail with the same vector code as the body: elementwise exact.
        long n = (long) rows * f;
        if (c.family() == Family.GPT2) {
            linear(w, mlp.fc(), rows, in, inOff, d, w.seg, w.ff, f);
            CpuActivation.geluTanh(w.seg, w.ff, w.seg, w.ff, n);
        } else {
            linear(w, mlp.gate(), rows, in, inOff, d, w.seg, w.ff, f);
            linear(w, mlp.up(), rows, in, inOff, d, w.seg, w.ff2, f);
            CpuActivation.silu(w.seg, w.ff, w.seg, w.ff, n);
            CpuElementwise.multiplyInPlace(w.seg, w.ff, w.seg, w.ff2, n);
        }
        linear(w, mlp.proj(), rows, w.seg, w.ff, f, out, outOff, d);
    }

    /**
     * Self-attention of the normalized rows in {@code w.n} into {@code w.att} [rows, H*hd]: q, k, v
     * projected for all rows at once, then per span its keys and values appended to its cache and
     * each row attending causally over the cache up to its own position.
     */
    private static void attention(ModelConfig c, Attention a, DecodeBuffers w, int rows, Span[] spans, int nSpans) {
        int d = c.dModel(), h = c.nHeads(), hkv = c.nKvHeads(), hd = c.headDim(), qd = h * hd, kvd = hkv * hd;
        int ld = w.qkvWidth;
        long qkv = w.qkv;
        if (c.family() == Family.GPT2) {
            linear(w, a.qkv(), rows, w.seg, w.n, d, w.seg, qkv, ld);
        } else {
            linear(w, a.q(), rows, w.seg, w.n, d, w.seg, qkv, ld);
            linear(w, a.k(), rows, w.seg, w.n, d, w.seg, qkv + qd, ld);
            linear(w, a.v(), rows, w.seg, w.n, d, w.seg, qkv + qd + kvd, ld);
        }
        float scale = (float) (1.0 / Math.sqrt(hd));
        for (int s = 0; s < nSpans; s++) {
            Span sp = spans[s];
            long rowQkv = qkv + (long) sp.row() * ld;
            if (c.family() != Family.GPT2) {
                for (int i = 0; i < sp.count(); i++) {
                    headNorm(a.qNorm(), h, hd, w.seg, rowQkv + (long) i * ld);
                    headNorm(a.kNorm(), hkv, hd, w.seg, rowQkv + (long) i * ld + qd);
                }
                var scaling = c.attention().ropeScaling();
                CpuRope.forward(w.seg, rowQkv, ld, hd, sp.count(), h, hd, null, sp.startPos(), c.ropeTheta(), scaling);
                CpuRope.forward(w.seg, rowQkv + qd, ld, hd, sp.count(), hkv, hd, null, sp.startPos(), c.ropeTheta(), scaling);
            }
            KvCache cache = sp.cache();
            Tensor keys = cache.keys(), values = cache.values();
            if (cache.length() != sp.startPos()) {
                throw new IllegalStateException("KV cache holds " + cache.length() + " positions but the next write starts at " + sp.startPos());
            }
            if (sp.startPos() + sp.count() > cache.capacity()) {
                throw new IllegalStateException("KV cache full: " + (sp.startPos() + sp.count()) + " positions needed, capacity " + cache.capacity());
            }
            for (int i = 0; i < sp.count(); i++) {
                long src = rowQkv + (long) i * ld, dst = (long) (sp.startPos() + i) * kvd;
                MemorySegment.copy(w.seg, (src + qd) * 4, keys.segment(), (keys.offset() + dst) * 4, kvd * 4L);
                MemorySegment.copy(w.seg, (src + qd + kvd) * 4, values.segment(), (values.offset() + dst) * 4, kvd * 4L);
            }
            cache.extendTo(sp.startPos() + sp.count());
            float[] kt = cache.transposedKeys(DecodeVectors.LANES);
            int stride = cache.transposedStride(), window = c.attention().slidingWindow();
            // Each head of each row reads the cache and writes its own output: a prompt's heads split over the pool
            // (every row of a head together, so the causal rows' growing cost falls evenly; each chunk with its own
            // scratch); a decode step's few rows stay on the caller's buffers.
            CpuThreads.RangeBody heads = (h0, h1) -> {
                boolean own = h0 > 0 || h1 < h;
                int room = sp.startPos() + sp.count() + DecodeVectors.LANES;
                float[] scores = own ? new float[room] : w.scores(room);
                float[] query = own ? new float[hd] : w.query(hd);
                for (int i = 0; i < sp.count(); i++) {
                    int pos = sp.startPos() + i, first = window == 0 ? 0 : Math.max(0, pos - window + 1);
                    long qRow = rowQkv + (long) i * ld, oRow = w.att + (long) (sp.row() + i) * qd;
                    for (int head = h0; head < h1; head++) {
                        attendRow(w.seg, scores, query, qRow + (long) head * hd, kt, stride, values, head / (h / hkv), kvd, hd, first, pos, scale,
                                oRow + (long) head * hd);
                    }
                }
            };
            if (w.prompt && sp.count() >= PROMPT_GEMM_ROWS) CpuThreads.parallelFor(h, 1, heads);
            else heads.run(0, h);
        }
    }

    /**
     * One query head over cached positions [first, pos] (first > 0 under a sliding window):
     * softmax(q k^T * scale) v into out (hd floats); s (room for pos + 1 + a vector of scores) and qv (hd)
     * are scratch. The scores come a vector of positions at a time from
     * the transposed keys, so no lane sums; each position's score, and the softmax sum, depend only on
     * first and pos, never on the rows beside this one.
     */
    private static void attendRow(MemorySegment seg, float[] s, float[] qv, long q, float[] kt, int stride, Tensor values, int kvh, int kvd,
                                  int hd, int first, int pos, float scale, long out) {
        // scores from a lane-aligned position, so the vector reads stay inside each transposed row; the ones before first are masked
        int from = first - first % DecodeVectors.LANES, skip = first - from, n = pos + 1 - from;
        for (int t = 0; t < hd; t++) qv[t] = seg.getAtIndex(F, q + t) * scale;
        DecodeVectors.scores(qv, hd, kt, kvh * hd * stride + from, stride, n, s);
        for (int j = 0; j < skip; j++) s[j] = Float.NEGATIVE_INFINITY;
        float sum = DecodeVectors.softmaxInPlace(s, n);
        float inv = 1f / sum;
        MemorySegment vs = values.segment();
        long vb = values.offset() + (long) kvh * hd;
        DecodeVectors.weightedRows(s, skip, n, inv, vs, vb + (long) from * kvd, kvd, seg, out, hd);
    }

    /**
     * CALM's state propagation: a skipped layer's keys and values for one position, from the exited hidden
     * row x through only the layer's norm and k/v projections, appended to its cache.
     */
    static void keysValues(ModelConfig c, TransformerLayer layer, DecodeBuffers w, MemorySegment x, long xOff, int pos, KvCache cache) {
        int d = c.dModel(), hkv = c.nKvHeads(), hd = c.headDim(), kvd = hkv * hd, qd = c.nHeads() * hd;
        norm(layer.norm1(), 1, d, x, xOff, w.seg, w.n);
        long k = w.qkv + qd, v = k + kvd;
        Attention a = layer.attn();
        if (c.family() == Family.GPT2) {
            linearColumns(w, a.qkv(), qd, 2 * kvd, 1, w.seg, w.n, d, w.seg, k, w.qkvWidth);
        } else {
            linear(w, a.k(), 1, w.seg, w.n, d, w.seg, k, w.qkvWidth);
            linear(w, a.v(), 1, w.seg, w.n, d, w.seg, v, w.qkvWidth);
            headNorm(a.kNorm(), hkv, hd, w.seg, k);
            CpuRope.forward(w.seg, k, w.qkvWidth, hd, 1, hkv, hd, null, pos, c.ropeTheta(), c.attention().ropeScaling());
        }
        if (cache.length() != pos) throw new IllegalStateException("KV cache holds " + cache.length() + " positions but the propagated one is " + pos);
        Tensor keys = cache.keys(), values = cache.values();
        MemorySegment.copy(w.seg, k * 4, keys.segment(), (keys.offset() + (long) pos * kvd) * 4, kvd * 4L);
        MemorySegment.copy(w.seg, v * 4, values.segment(), (values.offset() + (long) pos * kvd) * 4, kvd * 4L);
        cache.extendTo(pos + 1);
    }
}
