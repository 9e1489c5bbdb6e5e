package dev.exeunt.tensor.optim;

import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * AdamW with decoupled weight decay. Moments exist only for the parameters handed to {@link #step},
 * created on first use beside them (frozen parameters never get optimiser state).
 */
public final class AdamW implements AutoCloseable {
    public record Settings(float beta1, float beta2, float eps, float weightDecay) {
        public static final Settings DEFAULT = new Settings(0.9f, 0.95f, 1e-8f, 0.1f);
    }

    private final Settings settings;
    private final Map<String, Tensor[]> moments = new LinkedHashMap<>();
    private int step;

    public AdamW(Settings settings) {
        this.settings = settings;
    }

    public int stepCount() {
        return step;
    }

    /**
     * One update of every parameter with a gradient. Parameters whose name says they are a norm
     * weight or a bias (1-d) get no weight decay, as in GPT-2 and Llama recipes.
     */
    public void step(Map<String, Tensor> params, float lr) {
        step++;
        for (var e : params.entrySet()) {
            Tensor p = e.getValue();
            if (p.grad() == null) continue;
            Tensor[] mv = moments.computeIfAbsent(e.getKey(), k -> Ops.unowned(() -> new Tensor[] {
                    Tensor.zeros(p.device(), p.shape()), Tensor.zeros(p.device(), p.shape())}));
            float wd = p.rank() >= 2 ? settings.weightDecay() : 0f;
            p.backend().adamw(p, p.grad(), mv[0], mv[1], lr, settings.beta1(), settings.beta2(), settings.eps(), wd, step);
        }
    }

    /** Scales all gradients so their global L2 norm is at most {@code maxNorm}; returns the norm before clipping. */
    public static double clipGradNorm(Map<String, Tensor> params, double maxNorm) {
        double sq = 0;
        for (Tensor p : params.values()) if (p.grad() != null) sq += p.backend().sumOfSquares(p.grad());
        double norm = Math.sqrt(sq);
        if (maxNorm > 0 && norm > maxNorm) {
            float s = (float) (maxNorm / (norm + 1e-6));
            try (var scope = Scope.open(); var g = GradMode.noGrad()) {
                for (Tensor p : params.values()) {
                    if (p.grad() != null) p.grad().copyFrom(Ops.scale(p.grad(), s));
                }
            }
        }
        return norm;
    }

    /** Optimiser state as named tensors ({@code name.exp_avg}, {@code name.exp_avg_sq}) for checkpoints. */
    public Map<String, Tensor> state() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        moments.forEach((k, mv) -> {
            out.put(k + ".exp_avg", mv[0]);
            out.put(k + ".exp_avg_sq", mv[1]);
        });
        return out;
    }

    /** Restores moments and the step count saved by {@link #state()}. */
    public void load(Map<String, Tensor> state, int stepCount, Map<String, Tensor> params) {
        close();
        for (var e : params.entrySet()) {
            Tensor m = state.get(e.getKey() + ".exp_avg"), v = state.get(e.getKey() + ".exp_avg_sq");
            if (m == null || v == null) continue;
            Tensor p = e.getValue();
            moments.put(e.getKey(), Ops.unowned(() -> {
                Tensor mm = Tensor.zeros(p.device(), p.shape()), vv = Tensor.zeros(p.device(), p.shape());
                mm.copyFrom(m);
                vv.copyFrom(v);
                return new Tensor[] {mm, vv};
            }));
        }
        this.step = stepCount;
    }

    @Override
    public void close() {
        for (Tensor[] mv : moments.values()) {
            mv[0].close();
            mv[1].close();
        }
        moments.clear();
    }
}
