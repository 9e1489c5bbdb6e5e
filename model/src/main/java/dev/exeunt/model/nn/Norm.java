package dev.exeunt.model.nn;

import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.NN;

/** LayerNorm (weight and bias) or RMSNorm (weight only) over the last dim. */
public record Norm(Tensor weight, Tensor bias, float eps, boolean rms) {
    public Tensor forward(Tensor x) {
        return rms ? NN.rmsNorm(x, weight, eps) : NN.layerNorm(x, weight, bias, eps);
    }

    public static Norm create(Parameters p, String prefix, int dim, boolean rms, float eps) {
        Tensor w = p.constant(prefix + ".weight", 1f, dim);
        Tensor b = rms ? null : p.constant(prefix + ".bias", 0f, dim);
        return new Norm(w, b, eps, rms);
    }
}
