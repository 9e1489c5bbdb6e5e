package dev.exeunt.model.nn;

import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;

/**
 * Megatron's conjugate communications of a tensor-parallel region, as differentiable ops. A
 * column-parallel projection reads a replicated input and each rank's gradient of that input is only
 * its shard's contribution, so the input enters through {@link #copyToRegion} (identity forward, sum of
 * the gradient over ranks); a row-parallel projection leaves each rank with a partial sum, completed by
 * {@link #reduceFromRegion} (sum forward, identity backward). Under sequence parallelism the input
 * is instead gathered along the sequence ({@link #gatherSequence}, reduce-scatter backward) and the
 * partial sums reduce-scattered along it ({@link #reduceScatterSequence}, all-gather backward);
 * {@link #enter} and {@link #leave} pick the pair the layout uses. With one rank all return their input.
 */
public final class TensorParallelRegions {
    private TensorParallelRegions() {}

    /** Identity forward; the gradient is summed over the tensor-parallel ranks. */
    public static Tensor copyToRegion(Tensor x, TensorParallel tp) {
        if (tp.size() == 1) return x;
        return Ops.record(x.detach(), "copyToTensorParallelRegion", new Tensor[] {x}, g -> new Tensor[] {summed(g, tp)});
    }

    /** The sum over tensor-parallel ranks forward; identity backward. */
    public static Tensor reduceFromRegion(Tensor x, TensorParallel tp) {
        if (tp.size() == 1) return x;
        return Ops.record(summed(x, tp), "reduceFromTensorParallelRegion", new Tensor[] {x}, g -> new Tensor[] {g});
    }

    /** Where a column-parallel region reads its input: the whole sequence, replicated. */
    public static Tensor enter(Tensor x, TensorParallel tp) {
        return tp.sequenceParallel() ? gatherSequence(x, tp) : copyToRegion(x, tp);
    }

    /** What a row-parallel region leaves: the summed output, whole or (sequence parallel) this rank's positions. */
    public static Tensor leave(Tensor y, TensorParallel tp) {
        return tp.sequenceParallel() ? reduceScatterSequence(y, tp) : reduceFromRegion(y, tp);
    }

    /** [B, T/tp, D] per rank to [B, T, D] (rank r's positions at [r*T/tp, (r+1)*T/tp)); backward reduce-scatters. */
    public static Tensor gatherSequence(Tensor x, TensorParallel tp) {
        if (tp.size() == 1) return x;
        Tensor full;
        try (var g = GradMode.noGrad()) {
            full = sequenceGathered(x, tp);
        }
        return Ops.record(full, "gatherSequence", new Tensor[] {x}, g -> new Tensor[] {sequenceReduceScattered(g, tp)});
    }

    /** The sum over ranks of [B, T, D], each rank keeping its positions [B, T/tp, D]; backward all-gathers. */
    public static Tensor reduceScatterSequence(Tensor x, TensorParallel tp) {
        if (tp.size() == 1) return x;
        Tensor part;
        try (var g = GradMode.noGrad()) {
            part = sequenceReduceScattered(x, tp);
        }
        return Ops.record(part, "reduceScatterSequence", new Tensor[] {x}, g -> new Tensor[] {sequenceGathered(g, tp)});
    }

    private static Tensor sequenceGathered(Tensor x, TensorParallel tp) {
        int b = x.dim(0), t = x.dim(1), d = x.dim(2), n = tp.size();
        Tensor mine = Ops.contiguous(x.detach()).reshape(b * t * d);
        Tensor all = Tensor.empty(x.dtype(), x.device(), n * b * t * d);
        tp.allGather(mine, all);
        return Ops.contiguous(all.reshape(n, b, t, d).permute(1, 0, 2, 3)).reshape(b, n * t, d);
    }

    private static Tensor sequenceReduceScattered(Tensor x, TensorParallel tp) {
        int b = x.dim(0), t = x.dim(1), d = x.dim(2), n = tp.size();
        if (t % n != 0) throw new IllegalArgumentException("sequence parallelism: " + t + " positions do not split over " + n + " ranks");
        Tensor byRank = Ops.contiguous(x.detach().reshape(b, n, t / n, d).permute(1, 0, 2, 3)).reshape(b * t * d);
        Tensor part = Tensor.empty(x.dtype(), x.device(), b * (t / n) * d);
        tp.reduceScatter(byRank, part);
        return part.reshape(b, t / n, d);
    }

    /** A new contiguous tensor holding the sum over ranks of {@code t} (t itself is not modified). */
    static Tensor summed(Tensor t, TensorParallel tp) {
        Tensor s = Tensor.empty(t.dtype(), t.device(), t.shape());
        s.copyFrom(t);
        tp.allReduceSum(s);
        return s;
    }
}
