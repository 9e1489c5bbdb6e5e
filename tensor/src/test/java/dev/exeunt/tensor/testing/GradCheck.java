package dev.exeunt.tensor.testing;

import static org.junit.jupiter.api.Assertions.fail;

import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;

/**
 * Checks autograd against central finite differences. The loss is L = sum(f(inputs) * w) for a fixed
 * random w, accumulated in float64 on the host, so the check sees the op itself and not a reduction.
 */
public final class GradCheck {
    private GradCheck() {}

    /**
     * @param f      the function under test (its output may have any shape)
     * @param inputs leaf tensors (F32, CPU); those with requiresGrad are checked
     * @param eps    finite-difference step
     * @param tol    allowed |analytic - numeric| / max(1, |numeric|) (absolute below 1)
     */
    public static void check(String what, Function<List<Tensor>, Tensor> f, List<Tensor> inputs, double eps, double tol) {
        float[] w;
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            Tensor out = f.apply(inputs);
            w = new float[(int) out.numel()];
            var rng = new SplittableRandom(99);
            for (int i = 0; i < w.length; i++) w[i] = (float) (rng.nextDouble() * 2 - 1);
        }
        for (Tensor in : inputs) in.clearGrad();
        try (var s = Scope.open()) {
            Tensor out = f.apply(inputs);
            out.backward(Tensor.of(w, out.shape()));
        }
        for (int which = 0; which < inputs.size(); which++) {
            Tensor in = inputs.get(which);
            if (!in.requiresGrad()) continue;
            if (in.grad() == null) fail(what + ": input " + which + " got no gradient");
            float[] analytic = in.grad().toFloatArray();
            int n = (int) in.numel();
            int[] shape = in.shape();
            int stride = Math.max(1, n / 40); // probe at most ~40 coordinates per input
            for (int i = 0; i < n; i += stride) {
                int[] idx = unravel(i, shape);
                float orig = in.get(idx);
                in.set((float) (orig + eps), idx);
                double plus = loss(f, inputs, w);
                in.set((float) (orig - eps), idx);
                double minus = loss(f, inputs, w);
                in.set(orig, idx);
                double numeric = (plus - minus) / (2 * eps);
                double err = Math.abs(analytic[i] - numeric) / Math.max(1.0, Math.abs(numeric));
                if (!(err <= tol)) {
                    fail(String.format("%s: d/d input%d[%d] analytic %.6g vs numeric %.6g (err %.3g > %.3g)",
                            what, which, i, analytic[i], numeric, err, tol));
                }
            }
            in.clearGrad();
        }
    }

    private static double loss(Function<List<Tensor>, Tensor> f, List<Tensor> inputs, float[] w) {
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            float[] out = f.apply(inputs).toFloatArray();
            double l = 0;
            for (int i = 0; i < out.length; i++) l += (double) out[i] * w[i];
            return l;
        }
    }

    static int[] unravel(int i, int[] shape) {
        int[] idx = new int[shape.length];
        for (int d = shape.length - 1; d >= 0; d--) {
            idx[d] = i % shape[d];
            i /= shape[d];
        }
        return idx;
    }
}
