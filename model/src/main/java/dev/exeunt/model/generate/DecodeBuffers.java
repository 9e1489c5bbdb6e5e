package dev.exeunt.model.generate;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.lang.foreign.MemorySegment;

/**
 * The workspace of the decode path: one off-heap block cut into the regions a step needs (offsets in
 * floats into {@link #seg}), sized for a number of packed rows and of logit rows. It grows (doubling)
 * only between steps, when a step needs more rows than any before, so a steady decode allocates nothing.
 */
final class DecodeBuffers implements AutoCloseable {
    final int d, qDim, qkvWidth, ffn, vocab, exits;
    private Tensor storage;
    MemorySegment seg;
    /** Whether this step is a prompt pass (see {@link DecodeMath#PROMPT_GEMM_ROWS}). */
    boolean prompt;
    int rowCap, logitCap;
    /** Packed hidden rows (two, swapped layer to layer), norm output, post-attention residual h and norm2(h). */
    long x0, x1, n, h, n2;
    long qkv, att, ff, ff2;
    /** Per exit: a layer exit's output rows. */
    long[] exitOut;
    /** Rows whose head is taken (exit checks, final head): their hidden, normalized, and logits. */
    long ck, ckn, logits;
    private float[] scores = new float[0], query = new float[0];

    DecodeBuffers(ModelConfig c, int exits) {
        this.d = c.dModel();
        this.qDim = c.nHeads() * c.headDim();
        this.qkvWidth = qDim + 2 * c.nKvHeads() * c.headDim();
        this.ffn = c.ffnHidden();
        this.vocab = c.vocabSize();
        this.exits = exits;
        this.exitOut = new long[exits];
    }

    /** Makes room for {@code rows} packed rows and {@code logitRows} rows of logits; contents are lost when it grows. */
    void ensure(int rows, int logitRows) {
        if (rows <= rowCap && logitRows <= logitCap && storage != null) return;
        int r = Math.max(rows, Math.max(8, rowCap * 2)), lr = Math.max(logitRows, Math.max(8, logitCap * 2));
        long perRow = 5L * d + qkvWidth + qDim + 2L * ffn + (long) exits * d;
        long total = perRow * r + (2L * d + vocab) * lr;
        if (total > Integer.MAX_VALUE) throw new IllegalStateException("decode workspace of " + total + " floats is too large");
        if (storage != null) storage.close();
        storage = Ops.unowned(() -> Tensor.empty(DType.F32, Device.CPU, (int) total));
        seg = storage.segment();
        long o = storage.offset();
        x0 = o; o += (long) r * d;
        x1 = o; o += (long) r * d;
        n = o; o += (long) r * d;
        h = o; o += (long) r * d;
        n2 = o; o += (long) r * d;
        qkv = o; o += (long) r * qkvWidth;
        att = o; o += (long) r * qDim;
        ff = o; o += (long) r * ffn;
        ff2 = o; o += (long) r * ffn;
        for (int e = 0; e < exits; e++) {
            exitOut[e] = o;
            o += (long) r * d;
        }
        ck = o; o += (long) lr * d;
        ckn = o; o += (long) lr * d;
        logits = o;
        rowCap = r;
        logitCap = lr;
    }

    /** Attention scores for one row over {@code n} positions (reused). */
    float[] scores(int n) {
        if (scores.length < n) scores = new float[Math.max(n, 2 * scores.length)];
        return scores;
    }

    /** One query head, scaled (reused). */
    float[] query(int hd) {
        if (query.length < hd) query = new float[hd];
        return query;
    }

    @Override
    public void close() {
        if (storage != null) storage.close();
        storage = null;
    }
}
