package dev.exeunt.model.nn;

import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

/**
 * y = x W^T + b with W [out, in] (Hugging Face nn.Linear), or y = x W + b with W [in, out] when
 * {@code inputMajor} (GPT-2's Conv1D). Both feed GEMM directly, without a transposed copy. This is
 * the seam a tensor-parallel linear shards.
 */
public record Linear(Tensor weight, Tensor bias, boolean inputMajor) {
    public Tensor forward(Tensor x) {
        Tensor y = inputMajor ? Ops.matmul(x, weight) : Ops.matmul(x, weight.transpose(0, 1));
        return bias == null ? y : Ops.add(y, bias);
    }

    public int inFeatures() {
        return inputMajor ? weight.dim(0) : weight.dim(1);
    }

    public int outFeatures() {
        return inputMajor ? weight.dim(1) : weight.dim(0);
    }

    /** Creates a linear in {@code p} named {@code prefix.weight} / {@code prefix.bias}. */
    public static Linear create(Parameters p, String prefix, int in, int out, boolean bias, boolean inputMajor, float std) {
        Tensor w = inputMajor ? p.normal(prefix + ".weight", std, in, out) : p.normal(prefix + ".weight", std, out, in);
        Tensor b = bias ? p.constant(prefix + ".bias", 0f, out) : null;
        return new Linear(w, b, inputMajor);
    }
}
