package dev.exeunt.model.nn;

import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

/**
 * Megatron's two conjugate communications of a tensor-parallel region, as differentiable ops. A
 * column-parallel projection reads a replicated input and each rank's gradient of that input is only
 * its shard's contribution, so the input enters through {@link #copyToRegion} (identity forward, sum of
 * the gradient over ranks); a row-parallel projection leaves each rank with a partial sum, completed by
 * {@link #reduceFromRegion} (sum forward, identity backward). With one rank both return their input.
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

    /** A new contiguous tensor holding the sum over ranks of {@code t} (t itself is not modified). */
    static Tensor summed(Tensor t, TensorParallel tp) {
        Tensor s = Tensor.empty(t.dtype(), t.device(), t.shape());
        s.copyFrom(t);
        tp.allReduceSum(s);
        return s;
    }
}
