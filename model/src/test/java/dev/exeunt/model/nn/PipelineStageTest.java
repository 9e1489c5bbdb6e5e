package dev.exeunt.model.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The model cut into pipeline stages, run stage after stage on one thread with EE-LLM's auxiliary-loss
 * backward (each stage backpropagates sum(output * outputGrad) + its exits' losses), gives the whole
 * model's losses and gradients: every parameter's gradient, summed over the stages holding a copy of it
 * (a tied head), equals the one-model gradient to float rounding. Exits sit on the first, a middle and the
 * last stage, of every kind, with shared and own heads.
 */
@ExtendWith(LeakCheck.class)
class PipelineStageTest {
    static final int V = 64, T = 8, B = 2, SEQ = 8;

    static ExitConfig exit(int layer, ExitConfig.Placement at, ExitKind kind, boolean shared) {
        return new ExitConfig(layer, at, kind, shared, WeightSchedule.constant(0.5), 1.0);
    }

    static ModelConfig gpt2() {
        return ModelConfig.gpt2(V, 32, 4, 4, SEQ, List.of(exit(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, true),
                exit(2, ExitConfig.Placement.POST, ExitKind.MLP, false), exit(3, ExitConfig.Placement.PRE, ExitKind.NORM, true),
                exit(4, ExitConfig.Placement.POST, ExitKind.LAYER, false)));
    }

    static ModelConfig llama() {
        return ModelConfig.llama(V, 32, 4, 4, 2, 48, SEQ, List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM, false),
                exit(3, ExitConfig.Placement.POST, ExitKind.MLP, false), exit(4, ExitConfig.Placement.PRE, ExitKind.LAYER, false)))
                .withDynamicTokenWeights(true);
    }

    @Test
    void stagesGiveTheWholeModelsLossesAndGradients() {
        for (ModelConfig mc : List.of(gpt2(), llama())) {
            for (int pp : new int[] {2, 4}) assertStagesMatch(mc, pp);
        }
    }

    void assertStagesMatch(ModelConfig mc, int pp) {
        Random r = new Random(pp);
        int[] ids = new int[B * T], tgt = new int[B * T];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(V);
            tgt[i] = r.nextInt(V);
        }
        Map<String, float[]> want = new LinkedHashMap<>();
        double wantTotal;
        try (var whole = EarlyExitModel.create(mc, Device.CPU, 5); var s = Scope.open()) {
            wantTotal = whole.forwardBackward(Tensor.ofInts(ids, B, T), Tensor.ofInts(tgt, B, T), null, 0, 1f).total();
            whole.parameters().all().forEach((k, v) -> want.put(k, v.grad().toFloatArray()));
            whole.parameters().all().values().forEach(Tensor::clearGrad);
        }
        List<EarlyExitModel> stages = new ArrayList<>();
        try (var s = Scope.open()) {
            for (int st = 0; st < pp; st++) {
                stages.add(EarlyExitModel.createStage(mc, Device.CPU, 5, TensorParallel.NONE, PipelineStage.balanced(4, pp, st)));
            }
            Tensor targets = Tensor.ofInts(tgt, B, T);
            List<EarlyExitModel.StageForward> forwards = new ArrayList<>();
            Tensor x = Tensor.ofInts(ids, B, T);
            for (EarlyExitModel stage : stages) {
                var f = stage.forwardStage(x, 0);
                forwards.add(f);
                x = f.output().detach(); // what the next stage receives: the values, no history
            }
            double total = 0;
            Tensor grad = null;
            for (int st = pp - 1; st >= 0; st--) {
                var f = forwards.get(st);
                total += stages.get(st).backwardStage(f, grad, targets, null, 1f, null).total();
                grad = st > 0 ? f.input().grad() : null;
                if (st > 0) assertNotNull(grad, "stage " + st + " computed no input gradient");
            }
            assertEquals(wantTotal, total, 1e-5 * Math.abs(wantTotal), mc.family() + " pp=" + pp + " total loss");
            for (var e : want.entrySet()) {
                float[] sum = new float[e.getValue().length];
                int holders = 0;
                for (EarlyExitModel stage : stages) {
                    if (!stage.parameters().has(e.getKey())) continue;
                    holders++;
                    float[] g = stage.parameters().get(e.getKey()).grad().toFloatArray();
                    for (int i = 0; i < g.length; i++) sum[i] += g[i];
                }
                assertTrue(holders >= 1, e.getKey() + " is on no stage");
                for (int i = 0; i < sum.length; i++) {
                    assertEquals(e.getValue()[i], sum[i], 1e-5 + 1e-4 * Math.abs(e.getValue()[i]), mc.family() + " pp=" + pp + " " + e.getKey() + "[" + i + "]");
                }
            }
            for (var f : forwards) if (f.input().requiresGrad()) f.input().clearGrad();
        } finally {
            for (EarlyExitModel stage : stages) stage.close();
        }
    }

    /**
     * The deferred exit forward (each exit's head and loss run after the backbone, backpropagated on their
     * own, joined through sum(input * grad)) gives the gradients of the plain objective
     * L_final + sum_i w_i L_i differentiated in one backward with the exits computed inline.
     */
    @Test
    void deferredExitsGiveTheUndeferredGradients() {
        for (ModelConfig mc : List.of(gpt2(), llama())) {
            Random r = new Random(9);
            int[] ids = new int[B * T], tgt = new int[B * T];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = r.nextInt(V);
                tgt[i] = r.nextInt(V);
            }
            try (var model = EarlyExitModel.create(mc, Device.CPU, 5); var s = Scope.open()) {
                Tensor in = Tensor.ofInts(ids, B, T), targets = Tensor.ofInts(tgt, B, T);
                model.forwardBackward(in, targets, null, 0, 1f);
                Map<String, float[]> deferred = new LinkedHashMap<>();
                model.parameters().all().forEach((k, v) -> deferred.put(k, v.grad().toFloatArray()));
                model.parameters().zeroGrads();
                // Undeferred: one graph, one backward.
                var f = model.forwardStage(in, 0);
                Tensor loss = VocabParallelCrossEntropy.loss(model.finalLogits(f.output()), targets,
                        dev.exeunt.tensor.ops.NN.CrossEntropyOptions.DEFAULT, TensorParallel.NONE);
                for (int i = 0; i < model.exits().size(); i++) {
                    Tensor li = model.exitLoss(model.exits().get(i), f.exitInputs()[i], targets, null, true);
                    loss = dev.exeunt.tensor.ops.Ops.add(loss, dev.exeunt.tensor.ops.Ops.scale(li, (float) f.exitWeights()[i]));
                }
                loss.backward();
                for (var e : deferred.entrySet()) {
                    float[] g = model.parameters().get(e.getKey()).grad().toFloatArray();
                    for (int i = 0; i < g.length; i++) {
                        assertEquals(g[i], e.getValue()[i], 1e-6 + 1e-4 * Math.abs(g[i]), mc.family() + " " + e.getKey() + "[" + i + "]");
                    }
                }
                // The stage API's undeferred mode (exits run in the forward) gives the same gradients again.
                model.parameters().zeroGrads();
                var undeferred = model.forwardStageUndeferred(in, targets, 0);
                model.backwardStage(undeferred, null, targets, null, 1f, null);
                for (var e : deferred.entrySet()) {
                    float[] g = model.parameters().get(e.getKey()).grad().toFloatArray();
                    for (int i = 0; i < g.length; i++) {
                        assertEquals(e.getValue()[i], g[i], 1e-6 + 1e-4 * Math.abs(g[i]), mc.family() + " undeferred " + e.getKey() + "[" + i + "]");
                    }
                }
                model.parameters().all().values().forEach(Tensor::clearGrad);
            }
        }
    }

    @Test
    void exitsLiveOnTheStageThatOwnsTheirLayerAndTiedHeadsAreCopied() {
        ModelConfig mc = gpt2();
        try (var first = EarlyExitModel.createStage(mc, Device.CPU, 5, TensorParallel.NONE, PipelineStage.balanced(4, 2, 0));
             var last = EarlyExitModel.createStage(mc, Device.CPU, 5, TensorParallel.NONE, PipelineStage.balanced(4, 2, 1))) {
            assertEquals(List.of(0, 1), first.exits().stream().map(Exit::index).toList());
            assertEquals(List.of(2, 3), last.exits().stream().map(Exit::index).toList());
            assertTrue(last.parameters().has("wte.weight"), "the tied head's copy");
            assertTrue(!last.parameters().has("wpe.weight") && !first.parameters().has("ln_f.weight"));
            try (var whole = EarlyExitModel.create(mc, Device.CPU, 5)) {
                assertEquals(java.util.Arrays.toString(whole.parameters().get("wte.weight").toFloatArray()),
                        java.util.Arrays.toString(last.parameters().get("wte.weight").toFloatArray()));
            }
        }
        assertThrows(IllegalArgumentException.class, () -> PipelineStage.balanced(4, 5, 0));
        assertThrows(IllegalArgumentException.class, () -> PipelineStage.of(new int[] {3, 0, 1}, 0));
        assertEquals(new PipelineStage(1, 3, 3, 5), PipelineStage.of(new int[] {3, 2, 1}, 1));
    }
}
