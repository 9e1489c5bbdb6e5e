package dev.exeunt.model.nn;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;

/**
 * y = x W^T + b with W [out, in] (Hugging Face nn.Linear), or y = x W + b with W [in, out] when
 * {@code inputMajor} (GPT-2's Conv1D). Both feed GEMM directly, without a transposed copy. This is
 * the seam a tensor-parallel linear shards.
 *
 * <p>A block-quantized W (Q8_0, Q4_0, Q2_K, Q4_K, Q5_K, Q6_K; [out, in], GGUF block layout, e.g. loaded from a GGUF file) stays
 * quantized: the product goes through {@code Backend.linearQuantized}. Such weights are frozen and
 * the quantized path has no backward, so it refuses inputs that require a gradient.
 */
public record Linear(Tensor weight, Tensor bias, boolean inputMajor, Split split, TensorParallel tp) {
    /**
     * How the weight is cut over tensor-parallel ranks (Megatron's ColumnParallelLinear and
     * RowParallelLinear). COLUMN: each rank holds a slice of the output features (and of the bias) and
     * reads the whole input, which its caller passes through {@link TensorParallelRegions#enter}
     * once for all the projections sharing it (q, k, v; gate, up), as Megatron's fused QKV does. ROW:
     * each rank holds a slice of the input features, reads the matching slice of the input, and the
     * partial products are summed over ranks ({@link TensorParallelRegions#leave}) before the (whole,
     * replicated) bias is added once.
     */
    public enum Split { NONE, COLUMN, ROW }

    /** A dense linear on one rank. */
    public Linear(Tensor weight, Tensor bias, boolean inputMajor) {
        this(weight, bias, inputMajor, Split.NONE, TensorParallel.NONE);
    }

    public Tensor forward(Tensor x) {
        if (weight.dtype().isQuantized()) return forwardQuantized(x);
        Tensor y = inputMajor ? Ops.matmul(x, weight) : Ops.matmul(x, weight.transpose(0, 1));
        if (split == Split.ROW) y = TensorParallelRegions.leave(y, tp);
        return bias == null ? y : Ops.add(y, bias);
    }

    private Tensor forwardQuantized(Tensor x) {
        String what = weight.name() == null ? "a " + weight.dtype() + " weight" : weight.dtype() + " weight " + weight.name();
        if (inputMajor) throw new IllegalStateException("quantized weights must be [out, in] (not input-major): " + what);
        if (GradMode.isEnabled() && x.requiresGrad()) {
            throw new IllegalStateException("linear with " + what + " has no backward (quantized weights are frozen and "
                    + "the quantized kernels compute no input gradient); run it under GradMode.noGrad() or dequantize "
                    + "the weight (Tensor.to(DType.F32)) to train through it");
        }
        if (x.dtype() != DType.F32) throw new IllegalArgumentException("linear input must be F32, got " + x.dtype());
        int out = weight.dim(0), in = weight.dim(1);
        if (x.rank() < 1 || x.dim(-1) != in) {
            throw new IllegalArgumentException("linear input " + Shape.str(x.shape()) + " does not match " + what + " "
                    + Shape.str(weight.shape()));
        }
        int rows = (int) (x.numel() / in);
        int[] outShape = x.shape();
        outShape[outShape.length - 1] = out;
        Tensor xc = x.isContiguous() ? x : x.contiguous();
        Tensor x2 = xc.rank() == 2 ? xc : xc.reshape(rows, in);
        Tensor y = Tensor.empty(DType.F32, x.device(), rows, out);
        x.backend().linearQuantized(weight, x2, y);
        if (x2 != xc) x2.close();
        if (xc != x) xc.close();
        if (outShape.length != 2) {
            Tensor r = y.reshape(outShape);
            y.close();
            y = r;
        }
        return bias == null ? y : Ops.add(y, bias);
    }

    public int inFeatures() {
        return inputMajor ? weight.dim(0) : weight.dim(1);
    }

    public int outFeatures() {
        return inputMajor ? weight.dim(1) : weight.dim(0);
    }

    /** Creates a dense linear in {@code p} named {@code prefix.weight} / {@code prefix.bias}, whole on every rank. */
    public static Linear create(Parameters p, String prefix, int in, int out, boolean bias, boolean inputMajor, float std) {
        Tensor w = inputMajor ? p.normal(prefix + ".weight", std, in, out) : p.normal(prefix + ".weight", std, out, in);
        Tensor b = bias ? p.constant(prefix + ".bias", 0f, out) : null;
        return new Linear(w, b, inputMajor);
    }

    /**
     * A column-parallel linear: this rank's slice of each of {@code groups} equal blocks of the {@code out}
     * features (GPT-2's c_attn is 3 blocks, q k v, so each rank owns whole heads of each).
     */
    public static Linear column(Parameters p, String prefix, int in, int out, int groups, boolean bias, boolean inputMajor, float std) {
        TensorParallel tp = p.tensorParallel();
        int[] full = inputMajor ? new int[] {in, out} : new int[] {out, in};
        Tensor w = p.normal(prefix + ".weight", std, Shard.split(full, inputMajor ? 1 : 0, groups, tp));
        Tensor b = bias ? p.constant(prefix + ".bias", 0f, Shard.split(new int[] {out}, 0, groups, tp)) : null;
        return new Linear(w, b, inputMajor, Split.COLUMN, tp);
    }

    /** A row-parallel linear: this rank's slice of the {@code in} features; the bias is whole. */
    public static Linear row(Parameters p, String prefix, int in, int out, boolean bias, boolean inputMajor, float std) {
        TensorParallel tp = p.tensorParallel();
        int[] full = inputMajor ? new int[] {in, out} : new int[] {out, in};
        Tensor w = p.normal(prefix + ".weight", std, Shard.split(full, inputMajor ? 0 : 1, 1, tp));
        Tensor b = bias ? p.constant(prefix + ".bias", 0f, out) : null;
        return new Linear(w, b, inputMajor, Split.ROW, tp);
    }
}
