package dev.exeunt.model.train;

import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.optim.AdamW;
import dev.exeunt.tensor.ops.Ops;
import java.util.Map;

/**
 * What the gradients of a tensor-parallel rank need before the update: replicated parameters that each
 * rank only partly differentiates ({@link Parameters#needsTensorParallelSum}) get the sum over ranks, and clipping uses the norm
 * of the whole model's gradient, counting each split parameter's shards once each and each replicated
 * parameter once (every rank holds the same copy), summed over pipeline stages (a tied head's copy
 * on a later stage counted once). With one rank it is {@link AdamW#clipGradNorm}.
 */
public final class TensorParallelGradients {
    private TensorParallelGradients() {}

    /** Sums over the group the gradients {@link Parameters#needsTensorParallelSum} names. */
    public static void reducePartial(Parameters params, Map<String, Tensor> trainable) {
        TensorParallel tp = params.tensorParallel();
        if (tp.size() == 1) return;
        for (var e : trainable.entrySet()) {
            Tensor g = e.getValue().grad();
            if (g != null && params.needsTensorParallelSum(e.getKey())) tp.allReduceSum(g);
        }
    }

    /** Scales every gradient so the global L2 norm is at most {@code maxNorm}; returns the norm before clipping. */
    public static double clip(Parameters params, Map<String, Tensor> trainable, double maxNorm) {
        if (params.tensorParallel().size() == 1 && params.pipeline().stages() == 1) return AdamW.clipGradNorm(trainable, maxNorm);
        // Every stage's share, a tied copy counted only on stage 0, summed over the pipeline.
        double[] sq = {squaredNorm(params, trainable, name -> !params.isStageCopy(name))};
        params.pipeline().sumOverStages(sq);
        double norm = Math.sqrt(sq[0]);
        scaleTo(trainable, norm, maxNorm);
        return norm;
    }

    /**
     * The squared L2 norm of the gradients {@code counted} names, over the tensor-parallel group: split
     * parameters' shards summed over ranks, replicated ones once (every rank holds the same copy).
     * Collective over the group; every rank gets the same value.
     */
    public static double squaredNorm(Parameters params, Map<String, Tensor> trainable, java.util.function.Predicate<String> counted) {
        TensorParallel tp = params.tensorParallel();
        double split = 0, replicated = 0;
        for (var e : trainable.entrySet()) {
            Tensor g = e.getValue().grad();
            if (g == null || !counted.test(e.getKey())) continue;
            double sq = g.backend().sumOfSquares(g);
            if (params.shard(e.getKey()).isSplit()) split += sq;
            else replicated += sq;
        }
        if (tp.size() == 1) return split + replicated;
        return sum(split, tp) + replicated;
    }

    /** {@code value} summed over the group, sent as two floats (high and low part) to keep double precision. */
    private static double sum(double value, TensorParallel tp) {
        float hi = (float) value, lo = (float) (value - hi);
        try (Tensor t = Tensor.of(new float[] {hi, lo}, 2)) {
            tp.allReduceSum(t);
            float[] s = t.toFloatArray();
            return (double) s[0] + s[1];
        }
    }

    /** Scales every gradient by maxNorm / norm when norm exceeds maxNorm (> 0), as {@link AdamW#clipGradNorm} does. */
    public static void scaleTo(Map<String, Tensor> trainable, double norm, double maxNorm) {
        if (maxNorm > 0 && norm > maxNorm) {
            float s = (float) (maxNorm / (norm + 1e-6));
            try (var scope = Scope.open(); var ng = GradMode.noGrad()) {
                for (Tensor p : trainable.values()) if (p.grad() != null) p.grad().copyFrom(Ops.scale(p.grad(), s));
            }
        }
    }
}
