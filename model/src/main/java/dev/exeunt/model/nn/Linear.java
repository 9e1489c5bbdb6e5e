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
 * <p>A block-quantized W (Q8_0, Q4_0; [out, in], GGUF block layout, e.g. loaded from a GGUF file) stays
 * quantized: the product goes through {@code Backend.linearQuantized}. Such weights are frozen and
 * the quantized path has no backward, so it refuses inputs that require a gradient.
 */
public record Linear(Tensor weight, Tensor bias, boolean inputMajor) {
    public Tensor forward(Tensor x) {
        if (weight.dtype().isQuantized()) return forwardQuantized(x);
        Tensor y = inputMajor ? Ops.matmul(x, weight) : Ops.matmul(x, weight.transpose(0, 1));
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

    /** Creates a linear in {@code p} named {@code prefix.weight} / {@code prefix.bias}. */
    public static Linear create(Parameters p, String prefix, int in, int out, boolean bias, boolean inputMajor, float std) {
        Tensor w = inputMajor ? p.normal(prefix + ".weight", std, in, out) : p.normal(prefix + ".weight", std, out, in);
        Tensor b = bias ? p.constant(prefix + ".bias", 0f, out) : null;
        return new Linear(w, b, inputMajor);
    }
}
