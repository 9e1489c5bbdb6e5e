package dev.exeunt.tensor.ops;

import static dev.exeunt.tensor.ops.Ops.emptyF32;
import static dev.exeunt.tensor.ops.Ops.like;
import static dev.exeunt.tensor.ops.Ops.record;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import java.util.Arrays;

/**
 * Neural-network functions built on fused kernels: norms, rotary embeddings, embedding lookup,
 * causal attention and cross-entropy. Forward and backward side by side, as in {@link Ops}.
 */
public final class NN {
    private NN() {}

    private static Tensor contig(Tensor t) {
        return t.isContiguous() ? t : Ops.contiguous(t);
    }

    /** Ids, targets and masks are built on the host; they follow the tensor they index. */
    private static Tensor onDevice(Tensor t, Tensor like) {
        return t.device().equals(like.device()) ? t : Ops.toDevice(t, like.device());
    }

    private static int rows(Tensor x) {
        return (int) (x.numel() / x.dim(-1));
    }

    // ---------------------------------------------------------------- norms

    /** LayerNorm over the last dim; gamma [D], beta [D] or null. */
    public static Tensor layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps) {
        Tensor xc = contig(x);
        int n = rows(xc);
        Tensor y = like(xc), mean = emptyF32(x.device(), n), rstd = emptyF32(x.device(), n);
        x.backend().layerNorm(xc, gamma, beta, eps, y, mean, rstd);
        return record(y, "layerNorm", new Tensor[] {x, gamma, beta}, g -> {
            Tensor gc = contig(g);
            Tensor dx = like(xc);
            Tensor dGamma = gamma != null && gamma.requiresGrad() ? Tensor.zeros(x.device(), gamma.shape()) : null;
            Tensor dBeta = beta != null && beta.requiresGrad() ? Tensor.zeros(x.device(), beta.shape()) : null;
            x.backend().layerNormBackward(xc, gamma, mean, rstd, gc, dx, dGamma, dBeta);
            return new Tensor[] {dx, dGamma, dBeta};
        });
    }

    /** RMSNorm over the last dim (Llama: y = x / rms(x) * gamma). */
    public static Tensor rmsNorm(Tensor x, Tensor gamma, float eps) {
        Tensor xc = contig(x);
        Tensor y = like(xc), rstd = emptyF32(x.device(), rows(xc));
        x.backend().rmsNorm(xc, gamma, eps, y, rstd);
        return record(y, "rmsNorm", new Tensor[] {x, gamma}, g -> {
            Tensor gc = contig(g);
            Tensor dx = like(xc);
            Tensor dGamma = gamma.requiresGrad() ? Tensor.zeros(x.device(), gamma.shape()) : null;
            x.backend().rmsNormBackward(xc, gamma, rstd, gc, dx, dGamma);
            return new Tensor[] {dx, dGamma};
        });
    }

    // ---------------------------------------------------------------- rotary embedding

    /** Rotary position embedding of x [B, T, H, D]; token t is at position startPos + t. */
    public static Tensor rope(Tensor x, int startPos, float theta) {
        return rope(x, startPos, theta, dev.exeunt.tensor.RopeScaling.NONE);
    }

    /** As above with scaled frequencies ({@link dev.exeunt.tensor.RopeScaling}). */
    public static Tensor rope(Tensor x, int startPos, double theta, dev.exeunt.tensor.RopeScaling scaling) {
        if (x.rank() != 4) throw new IllegalArgumentException("rope expects [B, T, H, D], got " + Shape.str(x.shape()));
        if (x.dim(3) % 2 != 0) throw new IllegalArgumentException("rope needs an even head dim, got " + x.dim(3));
        Tensor y = emptyF32(x.device(), x.shape());
        Ops.copyInto(x, y);
        x.backend().rope(y, startPos, theta, scaling, false);
        return record(y, "rope", new Tensor[] {x}, g -> {
            Tensor dx = emptyF32(g.device(), g.shape());
            Ops.copyInto(g, dx);
            x.backend().rope(dx, startPos, theta, scaling, true);
            return new Tensor[] {dx};
        });
    }

    // ---------------------------------------------------------------- embedding

    /** Rows of table [V, D] for I32 ids of any shape: result [ids..., D]. */
    public static Tensor embedding(Tensor table, Tensor ids) {
        if (ids.dtype() != DType.I32) throw new IllegalArgumentException("embedding ids must be I32, got " + ids.dtype());
        Tensor idc = onDevice(contig(ids), table);
        int[] shape = Arrays.copyOf(ids.shape(), ids.rank() + 1);
        shape[ids.rank()] = table.dim(1);
        Tensor out = emptyF32(table.device(), shape);
        table.backend().embedding(table, idc, out);
        return record(out, "embedding", new Tensor[] {table}, g -> {
            Tensor dTable = Tensor.zeros(table.device(), table.shape());
            table.backend().embeddingBackward(idc, contig(g), dTable);
            return new Tensor[] {dTable};
        });
    }

    // ---------------------------------------------------------------- attention

    /**
     * Causal attention: q [B, T, Hq, D], k and v [B, S, Hkv, D] with S = pastLen + T; views of a fused
     * qkv projection are read in place. Returns [B, T, Hq, D].
     */
    public static Tensor attention(Tensor q, Tensor k, Tensor v, int pastLen, float scale) {
        return attention(q, k, v, pastLen, scale, 0);
    }

    /** As above, each query seeing only its last {@code window} keys, its own included (Mistral's sliding window; 0: all). */
    public static Tensor attention(Tensor q, Tensor k, Tensor v, int pastLen, float scale, int window) {
        int b = q.dim(0), t = q.dim(1), hq = q.dim(2), d = q.dim(3), s = k.dim(1), hkv = k.dim(2);
        if (k.rank() != 4 || v.rank() != 4 || k.dim(0) != b || k.dim(3) != d || !Arrays.equals(k.shape(), v.shape())
                || s != pastLen + t || hq % hkv != 0) {
            throw new IllegalArgumentException("attention shapes q " + Shape.str(q.shape()) + " k " + Shape.str(k.shape())
                    + " v " + Shape.str(v.shape()) + " pastLen " + pastLen);
        }
        Tensor o = emptyF32(q.device(), b, t, hq, d);
        boolean train = Ops.needsGrad(q, k, v);
        Tensor lse = train ? emptyF32(q.device(), b, hq, t) : null;
        q.backend().attention(q, k, v, pastLen, scale, window, o, lse);
        return record(o, "attention", new Tensor[] {q, k, v}, g -> {
            Tensor dq = emptyF32(q.device(), q.shape()), dk = emptyF32(q.device(), k.shape()), dv = emptyF32(q.device(), v.shape());
            q.backend().attentionBackward(q, k, v, o, lse, contig(g), pastLen, scale, window, dq, dk, dv);
            return new Tensor[] {dq, dk, dv};
        });
    }

    // ---------------------------------------------------------------- cross-entropy

    /** Options of {@link #crossEntropy}: ignore index, loss mask, per-token weights, temperature. */
    public record CrossEntropyOptions(int ignoreIndex, Tensor mask, Tensor weight, float temperature) {
        public static final CrossEntropyOptions DEFAULT = new CrossEntropyOptions(-100, null, null, 1f);

        public CrossEntropyOptions withMask(Tensor m) {
            return new CrossEntropyOptions(ignoreIndex, m, weight, temperature);
        }

        public CrossEntropyOptions withWeight(Tensor w) {
            return new CrossEntropyOptions(ignoreIndex, mask, w, temperature);
        }

        public CrossEntropyOptions withTemperature(float t) {
            return new CrossEntropyOptions(ignoreIndex, mask, weight, t);
        }
    }

    /** Mean token cross-entropy of logits [..., V] against I32 targets [...]: a scalar. */
    public static Tensor crossEntropy(Tensor logits, Tensor targets) {
        return crossEntropy(logits, targets, CrossEntropyOptions.DEFAULT);
    }

    /**
     * Masked-mean cross-entropy fused with log-softmax: sum_i mask_i w_i CE_i / sum_i mask_i over rows
     * not ignored (no gradient flows into mask or weight). The softmax is recomputed in the backward,
     * so only the logits stay alive.
     */
    public static Tensor crossEntropy(Tensor logits, Tensor targets, CrossEntropyOptions opt) {
        int v = logits.dim(-1);
        int n = rows(logits);
        if (targets.numel() != n) {
            throw new IllegalArgumentException("cross-entropy: " + n + " rows of logits " + Shape.str(logits.shape())
                    + " but " + targets.numel() + " targets");
        }
        if (targets.dtype() != DType.I32) throw new IllegalArgumentException("targets must be I32, got " + targets.dtype());
        Tensor lc = contig(logits), tc = onDevice(contig(targets), logits);
        Tensor mask = opt.mask() == null ? null : onDevice(contig(opt.mask()), logits);
        Tensor weight = opt.weight() == null ? null : onDevice(contig(opt.weight()), logits);
        double[] sums = logits.backend().crossEntropy(lc, tc, opt.ignoreIndex(), mask, weight, opt.temperature(),
                null, null, 0f, null, null);
        float denom = (float) (sums[1] > 0 ? sums[1] : 1);
        Tensor loss = Tensor.full((float) (sums[0] / denom), logits.device(), 1);
        return record(loss, "crossEntropy", new Tensor[] {logits}, g -> {
            Tensor dl = emptyF32(logits.device(), logits.shape());
            logits.backend().crossEntropy(lc, tc, opt.ignoreIndex(), mask, weight, opt.temperature(),
                    null, dl, g.item() / denom, null, null);
            return new Tensor[] {dl};
        });
    }

    /** Each row's top probability and argmax of logits [N, V] (no gradient): [maxProb (F32), argmax (I32)]. */
    public static Tensor[] topProbability(Tensor logits) {
        int n = rows(logits);
        Tensor lc = contig(logits);
        Tensor maxProb = emptyF32(logits.device(), n);
        Tensor argmax = Tensor.empty(DType.I32, logits.device(), n);
        Tensor targets = Tensor.empty(DType.I32, logits.device(), n);
        logits.backend().fill(targets, 0f);
        logits.backend().crossEntropy(lc, targets, -100, null, null, 1f, null, null, 0f, maxProb, argmax);
        targets.close();
        return new Tensor[] {maxProb, argmax};
    }
}
