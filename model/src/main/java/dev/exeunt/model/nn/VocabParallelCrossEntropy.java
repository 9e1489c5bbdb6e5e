package dev.exeunt.model.nn;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;

/**
 * Cross-entropy and top probability of logits split along the vocabulary (rank r holds columns
 * [r*V/tp, (r+1)*V/tp) of every row), as in Megatron's vocab_parallel_cross_entropy: the row maximum
 * and the sum of exponentials are all-reduced (max, then sum), the target's logit comes from the rank
 * that owns it (a sum of zeros elsewhere), and the loss and its exact gradient
 * {@code (softmax - onehot) / temperature} follow without any rank holding a full row. With one rank it
 * is {@link NN#crossEntropy} and {@link NN#topProbability} unchanged.
 */
public final class VocabParallelCrossEntropy {
    private VocabParallelCrossEntropy() {}

    /** Masked-mean cross-entropy with {@link NN.CrossEntropyOptions} (the same scalar on every rank). */
    public static Tensor loss(Tensor logits, Tensor targets, NN.CrossEntropyOptions opt, TensorParallel tp) {
        if (tp.size() == 1) return NN.crossEntropy(logits, targets, opt);
        int vl = logits.dim(-1), n = (int) (logits.numel() / vl), start = tp.rank() * vl;
        if (targets.numel() != n) {
            throw new IllegalArgumentException("cross-entropy: " + n + " rows of logits " + Shape.str(logits.shape()) + " but "
                    + targets.numel() + " targets");
        }
        if (targets.dtype() != DType.I32) throw new IllegalArgumentException("targets must be I32, got " + targets.dtype());
        int[] tgt = targets.toIntArray();
        float[] mask = opt.mask() == null ? null : opt.mask().toFloatArray();
        float[] weight = opt.weight() == null ? null : opt.weight().toFloatArray();
        float invT = 1f / opt.temperature();
        Tensor softmax;
        double[] rowLoss = new double[n];
        double num = 0, den = 0;
        float[] coef = new float[n]; // d(numerator)/d(row loss) before the 1/denominator
        try (var g = GradMode.noGrad()) {
            Tensor z = Ops.scale(Ops.contiguous(logits.detach().reshape(n, vl)), invT);
            Tensor max = Ops.contiguous(Ops.max(z, 1, true));
            tp.allReduceMax(max);
            Tensor exp = Ops.exp(Ops.sub(z, max));
            Tensor sum = Ops.contiguous(Ops.sum(exp, 1, true));
            tp.allReduceSum(sum);
            softmax = Ops.contiguous(Ops.div(exp, sum)); // kept for the backward; freed with the caller's scope
            Tensor target = targetLogits(z, tgt, start, vl);
            tp.allReduceSum(target);
            float[] m = max.toFloatArray(), s = sum.toFloatArray(), t = target.toFloatArray();
            for (int r = 0; r < n; r++) {
                if (tgt[r] == opt.ignoreIndex()) continue;
                if (tgt[r] < 0 || tgt[r] >= vl * tp.size()) {
                    throw new IllegalArgumentException("target " + tgt[r] + " is out of range for vocabulary size " + vl * tp.size());
                }
                float mk = mask == null ? 1f : mask[r], w = weight == null ? 1f : weight[r];
                rowLoss[r] = Math.log(s[r]) + m[r] - t[r];
                num += (double) mk * w * rowLoss[r];
                den += mk;
                coef[r] = mk * w;
            }
        }
        float denom = (float) (den > 0 ? den : 1);
        Tensor loss = Tensor.full((float) (num / denom), logits.device(), 1);
        int[] shape = logits.shape();
        return Ops.record(loss, "vocabParallelCrossEntropy", new Tensor[] {logits}, gOut -> {
            float scale = gOut.item() / denom * invT;
            float[] rowScale = new float[n];
            for (int r = 0; r < n; r++) rowScale[r] = coef[r] * scale;
            Tensor rs = onDevice(Tensor.of(rowScale, n, 1), logits);
            Tensor d = Ops.contiguous(Ops.mul(softmax, rs));
            subtractAtTargets(d, tgt, start, vl, rowScale);
            return new Tensor[] {d.reshape(shape)};
        });
    }

    /**
     * Each row's top probability and its argmax over the whole vocabulary (no gradient):
     * [maxProb (F32), argmax (I32, the lowest index among ties)], the same on every rank.
     */
    public static Tensor[] topProbability(Tensor logits, TensorParallel tp) {
        if (tp.size() == 1) return NN.topProbability(logits);
        int vl = logits.dim(-1), n = (int) (logits.numel() / vl), start = tp.rank() * vl;
        try (var g = GradMode.noGrad()) {
            Tensor z = Ops.contiguous(logits.detach().reshape(n, vl));
            Tensor localMax = Ops.contiguous(Ops.max(z, 1, true));
            Tensor max = Tensor.empty(DType.F32, z.device(), n, 1);
            max.copyFrom(localMax);
            tp.allReduceMax(max);
            Tensor sum = Ops.contiguous(Ops.sum(Ops.exp(Ops.sub(z, max)), 1, true));
            tp.allReduceSum(sum);
            float[] s = sum.toFloatArray(), m = max.toFloatArray(), lm = localMax.toFloatArray();
            int[] localArg = NN.topProbability(z)[1].toIntArray();
            float[] p = new float[n];
            int[] negIndex = new int[n];
            for (int r = 0; r < n; r++) {
                p[r] = 1f / s[r];
                // Ranks holding the row maximum offer their index; the max of -index picks the lowest.
                negIndex[r] = lm[r] == m[r] ? -(start + localArg[r]) : Integer.MIN_VALUE;
            }
            Tensor arg = onDevice(Tensor.ofInts(negIndex, n), logits);
            tp.allReduceMax(arg);
            int[] a = arg.toIntArray();
            for (int r = 0; r < n; r++) a[r] = -a[r];
            return new Tensor[] {onDevice(Tensor.of(p, n), logits), onDevice(Tensor.ofInts(a, n), logits)};
        }
    }

    /** z[r, target_r - start] for the rows whose target this rank owns, 0 elsewhere: [n, 1]. */
    private static Tensor targetLogits(Tensor z, int[] tgt, int start, int vl) {
        int n = tgt.length;
        float[] owned = new float[n];
        int[] flat = ownedPositions(tgt, start, vl, owned);
        Tensor picked = NN.embedding(z.reshape(n * vl, 1), Tensor.ofInts(flat, n));
        return Ops.contiguous(Ops.mul(picked, onDevice(Tensor.of(owned, n, 1), z)));
    }

    /** d[r, target_r - start] -= rowScale[r] for the rows whose target this rank owns. */
    private static void subtractAtTargets(Tensor d, int[] tgt, int start, int vl, float[] rowScale) {
        int n = tgt.length;
        float[] minus = new float[n];
        int[] flat = ownedPositions(tgt, start, vl, minus);
        for (int r = 0; r < n; r++) minus[r] *= -rowScale[r];
        Tensor ids = onDevice(Tensor.ofInts(flat, n), d);
        d.backend().embeddingBackward(ids, onDevice(Tensor.of(minus, n, 1), d), d.reshape(n * vl, 1));
    }

    /**
     * Each row's target position in the flattened [n, vl] shard (position 0 of its row when another rank
     * owns the target); {@code owned[r]} becomes 1 where this rank owns it, else 0.
     */
    private static int[] ownedPositions(int[] tgt, int start, int vl, float[] owned) {
        int[] flat = new int[tgt.length];
        for (int r = 0; r < tgt.length; r++) {
            boolean mine = tgt[r] >= start && tgt[r] < start + vl;
            flat[r] = r * vl + (mine ? tgt[r] - start : 0);
            owned[r] = mine ? 1f : 0f;
        }
        return flat;
    }

    private static Tensor onDevice(Tensor t, Tensor like) {
        return t.device().equals(like.device()) ? t : t.to(like.device());
    }
}
