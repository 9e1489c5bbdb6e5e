package dev.exeunt.tensor;

/**
 * The kernels behind {@link dev.exeunt.tensor.ops.Ops}. Every method works on tensors of this
 * backend's device; unless a parameter says otherwise, tensors are F32 and contiguous, outputs are
 * preallocated by the caller and overwritten. Ops (and so model code) never name a device: they call
 * {@code tensor.backend()}.
 */
public interface Backend {
    Device device();

    /** Uninitialised memory on this device. */
    Storage allocate(long bytes);

    // ------------------------------------------------------------ data movement

    /** dst = src element by element; both F32 (or both I32) of equal shape, any strides. */
    void copy(Tensor src, Tensor dst);

    void fill(Tensor dst, float value);

    /** Converts a contiguous tensor between dtypes (F32, BF16, F16, I32 to F32, quantize and dequantize). */
    void convert(Tensor src, Tensor dst);

    /** Copies between this device and the host; one of the two is a CPU tensor; both contiguous. */
    void transfer(Tensor src, Tensor dst);

    // ------------------------------------------------------------ linear algebra

    /**
     * Row-major batched GEMM: C[i] = alpha * op(A[i]) op(B[i]) + beta * C[i]; offsets and strides in
     * elements relative to each tensor's storage. beta == 0 ignores C's contents.
     */
    void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
              Tensor a, long aOff, int lda, long strideA,
              Tensor b, long bOff, int ldb, long strideB,
              float beta, Tensor c, long cOff, int ldc, long strideC, int batch);

    /** y[t, m] = sum_n W[m, n] x[t, n] for weights W stored quantized (Q8_0, Q4_0, Q2_K, Q4_K, Q5_K, Q6_K) or F32/BF16/F16. */
    void linearQuantized(Tensor w, Tensor x, Tensor y);

    // ------------------------------------------------------------ elementwise

    /** EQ gives 1 where a == b, else 0. */
    enum Binary { ADD, SUB, MUL, DIV, EQ }

    /** out = a (op) b where a and b are views already expanded to out's shape (zero strides allowed). */
    void binary(Binary op, Tensor a, Tensor b, Tensor out);

    enum Unary { EXP, LOG, TANH, RELU, SILU, GELU_TANH, GELU_ERF, SCALE, SQUARE, SQRT }

    /** y = f(x); {@code param} is the factor of SCALE. */
    void unary(Unary op, Tensor x, float param, Tensor y);

    /** dx = dy * f'(x) (y = f(x) is given too, for ops whose derivative is cheaper from y). */
    void unaryBackward(Unary op, Tensor x, Tensor y, Tensor dy, float param, Tensor dx);

    /** acc += x, in place (same shape, contiguous). */
    void addInPlace(Tensor acc, Tensor x);

    // ------------------------------------------------------------ reductions

    enum Reduce { SUM, MAX }

    /** out[o, i] = reduce_r x[o, r, i] viewing contiguous x as [outer, size(dim), inner]. */
    void reduce(Reduce op, Tensor x, int dim, Tensor out);

    /** Sum of squares of all elements (global-norm gradient clipping). */
    double sumOfSquares(Tensor x);

    // ------------------------------------------------------------ row ops over the last dim

    void softmax(Tensor x, Tensor y, boolean log);

    void softmaxBackward(Tensor y, Tensor dy, Tensor dx, boolean log);

    /** Saves per-row mean and rstd ([rows]) for the backward; beta may be null. */
    void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor y, Tensor mean, Tensor rstd);

    /** Writes dx; ADDS into dGamma and dBeta (either may be null). */
    void layerNormBackward(Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dy, Tensor dx, Tensor dGamma, Tensor dBeta);

    void rmsNorm(Tensor x, Tensor gamma, float eps, Tensor y, Tensor rstd);

    void rmsNormBackward(Tensor x, Tensor gamma, Tensor rstd, Tensor dy, Tensor dx, Tensor dGamma);

    /**
     * Rotary embedding (Hugging Face rotate-half convention) in place on x viewed as [B, T, H, D]
     * with D contiguous; token t of each sequence is at position {@code startPos + t}. inverse rotates back.
     */
    void rope(Tensor x, int startPos, float theta, boolean inverse);

    /** As above with scaled frequencies; a backend that has only the plain rotation refuses a scaling by name. */
    default void rope(Tensor x, int startPos, double theta, RopeScaling scaling, boolean inverse) {
        if (!scaling.isNone()) {
            throw new UnsupportedOperationException(getClass().getSimpleName() + " has no " + scaling.type() + " rope scaling; run the model on the CPU");
        }
        rope(x, startPos, (float) theta, inverse);
    }

    // ------------------------------------------------------------ embeddings

    /** out[i, :] = table[ids[i], :]; ids I32. Out-of-range ids throw naming the id and position. */
    void embedding(Tensor table, Tensor ids, Tensor out);

    /** dTable[ids[i], :] += dOut[i, :] (adds into dTable). */
    void embeddingBackward(Tensor ids, Tensor dOut, Tensor dTable);

    // ------------------------------------------------------------ attention

    /**
     * Causal attention over q [B, T, Hq, D], k/v [B, S, Hkv, D] (any token/head/batch strides, D
     * contiguous), S = pastLen + T; writes o [B, T, Hq, D] contiguous and, when not null, lse [B, Hq, T].
     */
    void attention(Tensor q, Tensor k, Tensor v, int pastLen, float scale, Tensor o, Tensor lse);

    /** Writes dq, dk, dv (same shapes as q, k, v, contiguous). */
    void attentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dO, int pastLen, float scale,
                           Tensor dq, Tensor dk, Tensor dv);

    /** As {@link #attention} with a sliding window: each query sees its last {@code window} keys (0: all). */
    default void attention(Tensor q, Tensor k, Tensor v, int pastLen, float scale, int window, Tensor o, Tensor lse) {
        if (window > 0) throw new UnsupportedOperationException(getClass().getSimpleName() + " has no sliding-window attention; run the model on the CPU");
        attention(q, k, v, pastLen, scale, o, lse);
    }

    /** As {@link #attentionBackward} with a sliding window. */
    default void attentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dO, int pastLen, float scale, int window,
                                   Tensor dq, Tensor dk, Tensor dv) {
        if (window > 0) throw new UnsupportedOperationException(getClass().getSimpleName() + " has no sliding-window attention; run the model on the CPU");
        attentionBackward(q, k, v, o, lse, dO, pastLen, scale, dq, dk, dv);
    }

    // ------------------------------------------------------------ losses and optimiser

    /**
     * Row-wise cross-entropy of logits [N, V] against I32 targets [N], fused with log-softmax (logits
     * divided by temperature). Rows whose target is {@code ignoreIndex} count for nothing; mask and
     * weight are optional [N] tensors (no gradient through either). Returns {numerator, denominator}
     * of the masked mean: sum mask_i * weight_i * CE_i and sum mask_i over rows not ignored. When
     * dLogits is not null it is overwritten with gradScale * d(numerator)/dlogits. rowLoss, maxProb and
     * argmax ([N], optional) receive each row's unweighted loss, top probability and top index.
     */
    double[] crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor mask, Tensor weight, float temperature,
                          Tensor rowLoss, Tensor dLogits, float gradScale, Tensor maxProb, Tensor argmax);

    /** One decoupled-weight-decay Adam step on a parameter, in place on p, m, v. */
    void adamw(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
               float weightDecay, int step);
}
