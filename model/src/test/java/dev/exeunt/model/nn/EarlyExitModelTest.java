package dev.exeunt.model.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The early-exit objective's gradients, the zero-weight equivalence, and config validation. */
@ExtendWith(LeakCheck.class)
class EarlyExitModelTest {
    private static final int V = 11, T = 5, B = 2;

    private static List<ExitConfig> allKinds() {
        return List.of(
                new ExitConfig(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, false, WeightSchedule.constant(0.3), 1.0),
                new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(0.5), 1.5),
                new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.MLP, false, WeightSchedule.constant(0.7), 1.0),
                new ExitConfig(2, ExitConfig.Placement.PRE, ExitKind.LAYER, false, WeightSchedule.constant(0.4), 1.0));
    }

    private static Tensor[] batch(long seed) {
        var rng = new SplittableRandom(seed);
        int[] ids = new int[B * T], tgt = new int[B * T];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = rng.nextInt(V);
            tgt[i] = rng.nextInt(V);
        }
        return new Tensor[] {Tensor.ofInts(ids, B, T), Tensor.ofInts(tgt, B, T)};
    }

    @Test
    void gradientsOfTheFullObjectiveMatchFiniteDifferencesGpt2Tied() {
        checkGradients(ModelConfig.gpt2(V, 8, 3, 2, 16, allKinds()));
    }

    @Test
    void gradientsOfTheFullObjectiveMatchFiniteDifferencesLlamaUntied() {
        var exits = new java.util.ArrayList<>(allKinds());
        var cfg = ModelConfig.llama(V, 8, 3, 2, 1, 12, 16, exits);
        checkGradients(cfg);
    }

    /**
     * Dynamic token weights carry no gradient, so finite differences of the objective do not apply;
     * instead the loss must equal the exit cross-entropy weighted by the exit's own max probability.
     */
    @Test
    void dynamicTokenWeightsMultiplyEachTokenLossByItsMaxProbability() {
        var e = ExitConfig.post(1, ExitKind.NORM, 1.0);
        var cfg = ModelConfig.gpt2(V, 8, 2, 2, 16, List.of(e)).withDynamicTokenWeights(true);
        try (var model = EarlyExitModel.create(cfg, Device.CPU, 5); var s = Scope.open()) {
            Tensor[] b = batch(3);
            var losses = model.forwardBackward(b[0], b[1], null, 0, 1f);
            Exit exit = model.exits().get(0);
            Tensor hidden = model.layers().get(0).forward(model.embed(b[0], 0), 0, null);
            float[] logits = exit.logits(hidden).toFloatArray();
            int[] tgt = b[1].toIntArray();
            double sum = 0;
            for (int r = 0; r < tgt.length; r++) {
                double max = Double.NEGATIVE_INFINITY, z = 0;
                for (int c = 0; c < V; c++) max = Math.max(max, logits[r * V + c]);
                for (int c = 0; c < V; c++) z += Math.exp(logits[r * V + c] - max);
                double ce = Math.log(z) + max - logits[r * V + tgt[r]];
                sum += (1 / z) * ce;
            }
            assertEquals(sum / tgt.length, losses.exitLosses()[0], 1e-5);
            model.parameters().all().values().forEach(Tensor::clearGrad);
        }
    }

    /**
     * Self-distillation (exits also trained on the final head's top-1 token) reaches the exits' own
     * parameters only: every other gradient is bit for bit the one without it, the exits' gradients match
     * finite differences of the objective with its distillation terms (the final head's tokens do not move
     * with an exit's parameters), and the reported total is that objective.
     */
    @Test
    void selfDistillationTrainsTheExitsOnlyAndMatchesFiniteDifferences() {
        var plain = List.of(
                new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(0.5), 1.5),
                new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.MLP, false, WeightSchedule.constant(0.7), 1.0));
        var distilled = List.of(plain.get(0).withSelfDistill(2.0), plain.get(1).withSelfDistill(0.5));
        for (boolean llama : new boolean[] {false, true}) {
            ModelConfig a = llama ? ModelConfig.llama(V, 8, 3, 2, 1, 12, 16, plain) : ModelConfig.gpt2(V, 8, 3, 2, 16, plain);
            ModelConfig b = llama ? ModelConfig.llama(V, 8, 3, 2, 1, 12, 16, distilled) : ModelConfig.gpt2(V, 8, 3, 2, 16, distilled);
            try (var without = EarlyExitModel.create(a, Device.CPU, 5); var with = EarlyExitModel.create(b, Device.CPU, 5); var s = Scope.open()) {
                Tensor[] batch = batch(13);
                Tensor mask = Tensor.of(new float[] {1, 1, 0, 1, 1, 1, 1, 1, 1, 0}, B, T);
                without.parameters().zeroGrads();
                with.parameters().zeroGrads();
                without.forwardBackward(batch[0], batch[1], mask, 0, 1f);
                var losses = with.forwardBackward(batch[0], batch[1], mask, 0, 1f);
                assertEquals(with.objective(batch[0], batch[1], mask, 0), losses.total(), 1e-5 * Math.abs(losses.total()));
                boolean exitMoved = false;
                for (var e : with.parameters().all().entrySet()) {
                    float[] g = e.getValue().grad().toFloatArray(), g0 = without.parameters().get(e.getKey()).grad().toFloatArray();
                    if (!e.getKey().startsWith("exits.")) {
                        assertArrayEquals(g0, g, 0f, e.getKey() + " (llama " + llama + ") must not see the distillation terms");
                        continue;
                    }
                    exitMoved |= !java.util.Arrays.equals(g0, g);
                    Tensor p = e.getValue();
                    int n = (int) p.numel(), best = 0;
                    for (int i = 1; i < n; i++) if (Math.abs(g[i]) > Math.abs(g[best])) best = i;
                    probe(with, e.getKey() + " (llama " + llama + ")", p, g, new int[] {best, 0, n - 1}, 1e-3, batch, mask);
                }
                assertTrue(exitMoved, "the distillation terms changed no exit gradient");
                without.parameters().all().values().forEach(Tensor::clearGrad);
                with.parameters().all().values().forEach(Tensor::clearGrad);
            }
        }
    }

    @Test
    void selfDistillationNeedsTheFinalHeadAndItsOwnExitHead() {
        var e = ExitConfig.post(1, ExitKind.NORM, 1.0).withSelfDistill(1.0);
        try (var model = EarlyExitModel.create(ModelConfig.gpt2(V, 8, 2, 2, 16, List.of(e)), Device.CPU, 5); var s = Scope.open()) {
            Tensor[] b = batch(3);
            var f = model.forwardStageUndeferred(b[0], b[1], 0);
            var err = assertThrows(IllegalStateException.class, () -> model.backwardStage(f, null, b[1], null, 1f, null));
            assertTrue(err.getMessage().contains("self-distillation of the exit at layer 1"), err.getMessage());
            model.parameters().all().values().forEach(Tensor::clearGrad);
        }
        var shared = assertThrows(IllegalArgumentException.class,
                () -> new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.NORM, true, WeightSchedule.constant(1), 1.0, 1.0));
        assertTrue(shared.getMessage().contains("shares the token embedding"), shared.getMessage());
    }

    @Test
    void sharedExitHeadOnTiedModel() {
        var e = new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.NORM, true, WeightSchedule.constant(0.5), 1.0);
        checkGradients(ModelConfig.gpt2(V, 8, 2, 2, 16, List.of(e)));
    }

    private static void checkGradients(ModelConfig cfg) {
        try (var model = EarlyExitModel.create(cfg, Device.CPU, 5); var s = Scope.open()) {
            Tensor[] b = batch(9);
            Tensor mask = Tensor.of(new float[] {1, 1, 0, 1, 1, 1, 1, 1, 1, 0}, B, T);
            model.parameters().zeroGrads();
            model.forwardBackward(b[0], b[1], mask, 0, 1f);
            // Central differences err by about eps^2 / 6 times the third derivative: at 1e-2 that reached 10% on
            // c_proj.bias (followed by a d=8 LayerNorm) for most seeds once the initial values changed (analytic
            // values confirmed by eps -> 0); 1e-3 passes seeds 5..10, and the float objective's rounding
            // (~1e-6 relative) stays far under the tolerance.
            double eps = 1e-3;
            for (Map.Entry<String, Tensor> e : model.parameters().all().entrySet()) {
                Tensor p = e.getValue();
                if (p.grad() == null) fail("no gradient for " + e.getKey());
                float[] g = p.grad().toFloatArray();
                int n = (int) p.numel();
                // Probe the largest-gradient coordinate and a few fixed ones.
                int best = 0;
                for (int i = 1; i < n; i++) if (Math.abs(g[i]) > Math.abs(g[best])) best = i;
                probe(model, e.getKey(), p, g, new int[] {best, 0, n / 2, n - 1}, eps, b, mask);
            }
            model.parameters().all().values().forEach(Tensor::clearGrad);
        }
    }

    /** Central differences of the objective at coordinates {@code at} of p against its analytic gradient g. */
    private static void probe(EarlyExitModel model, String name, Tensor p, float[] g, int[] at, double eps, Tensor[] b, Tensor mask) {
        for (int i : at) {
            int[] idx = unravel(i, p.shape());
            float orig = p.get(idx);
            p.set(orig + (float) eps, idx);
            double plus = model.objective(b[0], b[1], mask, 0);
            p.set(orig - (float) eps, idx);
            double minus = model.objective(b[0], b[1], mask, 0);
            p.set(orig, idx);
            double num = (plus - minus) / (2 * eps);
            if (Math.abs(num - g[i]) > 2e-3 + 5e-2 * Math.abs(num)) {
                fail(String.format("%s[%d]: analytic %.6g vs numeric %.6g", name, i, g[i], num));
            }
        }
    }

    @Test
    void withAllExitWeightsZeroTheBackboneTrainsExactlyAsWithoutExits() {
        var zero = allKinds().stream().map(e -> e.withWeight(WeightSchedule.constant(0))).toList();
        var withExits = ModelConfig.gpt2(V, 8, 3, 2, 16, zero);
        var without = ModelConfig.gpt2(V, 8, 3, 2, 16, List.of());
        try (var a = EarlyExitModel.create(withExits, Device.CPU, 5); var b = EarlyExitModel.create(without, Device.CPU, 5)) {
            for (int step = 0; step < 3; step++) {
                try (var s = Scope.open()) {
                    Tensor[] batch = batch(100 + step);
                    a.parameters().zeroGrads();
                    b.parameters().zeroGrads();
                    var la = a.forwardBackward(batch[0], batch[1], null, step, 1f);
                    var lb = b.forwardBackward(batch[0], batch[1], null, step, 1f);
                    assertEquals(lb.total(), la.total());
                    for (var e : b.parameters().all().entrySet()) {
                        assertArrayEquals(e.getValue().grad().toFloatArray(),
                                a.parameters().get(e.getKey()).grad().toFloatArray(), e.getKey());
                    }
                }
            }
            a.parameters().all().values().forEach(Tensor::clearGrad);
            b.parameters().all().values().forEach(Tensor::clearGrad);
        }
    }

    @Test
    void misconfigurationsFailAtConfigTime() {
        var mlpPre = new ExitConfig(2, ExitConfig.Placement.PRE, ExitKind.MLP, false, WeightSchedule.constant(1), 1);
        var e1 = assertThrows(IllegalArgumentException.class, () -> ModelConfig.gpt2(V, 8, 3, 2, 16, List.of(mlpPre)));
        assertTrue(e1.getMessage().contains("must be a post exit"), e1.getMessage());
        var shared = new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.NORM, true, WeightSchedule.constant(1), 1);
        var e2 = assertThrows(IllegalArgumentException.class, () -> ModelConfig.llama(V, 8, 3, 2, 1, 12, 16, List.of(shared)));
        assertTrue(e2.getMessage().contains("untied"), e2.getMessage());
        var past = ExitConfig.post(4, ExitKind.NORM, 1);
        var e3 = assertThrows(IllegalArgumentException.class, () -> ModelConfig.gpt2(V, 8, 3, 2, 16, List.of(past)));
        assertTrue(e3.getMessage().contains("1..3"), e3.getMessage());
        var e4 = assertThrows(IllegalArgumentException.class, () -> ExitKind.parse("mlp+layer"));
        assertTrue(e4.getMessage().contains("exclusive"), e4.getMessage());
    }

    @Test
    void weightScheduleLinearAndCosine() {
        var lin = new WeightSchedule(0, 1, 10, WeightSchedule.Shape.LINEAR);
        assertEquals(0.5, lin.at(5), 1e-12);
        assertEquals(1, lin.at(50), 1e-12);
        var cos = new WeightSchedule(1, 0.2, 4, WeightSchedule.Shape.COSINE);
        assertEquals(1, cos.at(0), 1e-12);
        assertEquals(0.6, cos.at(2), 1e-12);
        assertEquals(0.2, cos.at(4), 1e-12);
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
