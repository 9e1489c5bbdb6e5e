package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.MicroBatchRunner;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Bubble filling at pp=4 (8 layers, 8 micro-batches of 4 rows, 2 fills per phase): the gradients of one
 * step equal a hand-computed one-rank reference, the gradient of the global batch plus, for each fill,
 * the gradient of its exits' weighted losses (those on the stages its route backpropagates through),
 * added only to the parameters of those stages; the stages past the last exit get bit for bit the
 * gradients of the run without fills; the logged fill losses are the reference's.
 */
@ExtendWith(LeakCheck.class)
class PipelineBubbleFillTest {
    static final int SEQ = 8, VOCAB = 64, P = 4, MICRO = 8, ROWS = 4;

    static ExitConfig exit(int layer, ExitKind kind, double w) {
        return new ExitConfig(layer, ExitConfig.Placement.POST, kind, false, WeightSchedule.constant(w), 1.0);
    }

    /** What one stage produced: every parameter's gradient and the step's losses. */
    record StageResult(Map<String, float[]> grads, MicroBatchRunner.Losses losses, List<BubbleFill.Route> warm, List<BubbleFill.Route> cool) {}

    static List<TokenWindows.Batch> batches(int n) {
        Random rnd = new Random(5);
        int[] tokens = new int[600];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rnd.nextInt(VOCAB);
        var windows = TokenWindows.of(tokens, SEQ);
        var it = windows.batches(windows.all(), ROWS, 7, true, true);
        List<TokenWindows.Batch> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(it.next(0, 1));
        return out;
    }

    static PipelineStage stageOf(ModelConfig mc, int s) {
        return PipelineStage.balanced(mc.nLayers(), P, s);
    }

    static List<StageResult> pipeline(ModelConfig mc, int fills, List<TokenWindows.Batch> data) {
        return pipeline(mc, fills, data, true);
    }

    static List<StageResult> pipeline(ModelConfig mc, int fills, List<TokenWindows.Batch> data, boolean defer) {
        return LocalWorld.run(P, pg -> {
            try (var state = ParallelState.create(pg, 1, 1, P).validate(mc)) {
                var pipeline = new ProcessGroupPipelineParallel(state.ppGroup());
                try (var model = EarlyExitModel.createStage(mc, Device.CPU, 3, TensorParallel.NONE, pipeline, stageOf(mc, state.ppRank()));
                     var runner = new OneFOneBRunner(model, pipeline).fillBubbles(new BubbleFill(fills, 2.0), model).deferExits(defer)) {
                    model.parameters().zeroGrads();
                    var losses = runner.run(model, data.subList(0, MICRO), data.subList(MICRO, MICRO + runner.fillMicroBatches()), SEQ, 0, null);
                    Map<String, float[]> grads = new LinkedHashMap<>();
                    model.parameters().trainable().forEach((k, v) -> grads.put(k, v.grad().toFloatArray()));
                    var fill = new BubbleFill(fills, 2.0);
                    boolean[] holds = holds(mc);
                    return new StageResult(grads, losses, fill.warmup(holds), fill.cooldown(holds));
                }
            }
        });
    }

    static boolean[] holds(ModelConfig mc) {
        boolean[] holds = new boolean[P];
        for (var e : mc.exits()) for (int s = 0; s < P; s++) holds[s] |= stageOf(mc, s).owns(e);
        return holds;
    }

    /** The first stage holding each parameter (a tied head's copies belong to the embedding's stage). */
    static Map<String, Integer> stageOfParameter(ModelConfig mc) {
        Map<String, Integer> where = new LinkedHashMap<>();
        for (int s = 0; s < P; s++) {
            try (var m = EarlyExitModel.createStage(mc, Device.CPU, 3, TensorParallel.NONE, stageOf(mc, s))) {
                for (String name : m.parameters().trainable().keySet()) where.putIfAbsent(name, s);
            }
        }
        return where;
    }

    /** The reference: one whole model, the global batch's gradient plus each fill's exits-only gradient on its route's stages. */
    static Map<String, float[]> reference(ModelConfig mc, List<TokenWindows.Batch> data, List<BubbleFill.Route> routes, double[] fillLossMeans) {
        Map<String, Integer> stageOfParam = stageOfParameter(mc);
        try (var model = EarlyExitModel.create(mc, Device.CPU, 3)) {
            var params = model.parameters().trainable();
            model.parameters().zeroGrads();
            for (int i = 0; i < MICRO; i++) {
                try (var s = Scope.open()) {
                    var b = data.get(i);
                    model.forwardBackward(Tensor.ofInts(b.inputs(), ROWS, SEQ), Tensor.ofInts(b.targets(), ROWS, SEQ), null, 0, 1f / MICRO);
                }
            }
            Map<String, float[]> ref = new LinkedHashMap<>();
            params.forEach((k, v) -> ref.put(k, v.grad().toFloatArray()));
            double[] lossSums = new double[mc.exits().size()];
            int[] counts = new int[mc.exits().size()];
            for (int f = 0; f < routes.size(); f++) {
                BubbleFill.Route route = routes.get(f);
                var b = data.get(MICRO + f);
                model.parameters().zeroGrads();
                try (var s = Scope.open()) {
                    Tensor targets = Tensor.ofInts(b.targets(), ROWS, SEQ);
                    Tensor[][] inputs = model.exitInputs(Tensor.ofInts(b.inputs(), ROWS, SEQ));
                    Tensor loss = null;
                    for (int e = 0; e < mc.exits().size(); e++) {
                        int stage = -1;
                        for (int st = 0; st < P; st++) if (stageOf(mc, st).owns(mc.exits().get(e))) stage = st;
                        if (!route.backwards(stage)) continue;
                        Tensor l = model.exitLoss(model.exits().get(e), inputs[e], targets, null, true);
                        lossSums[e] += l.item();
                        counts[e]++;
                        Tensor weighted = Ops.scale(l, (float) (mc.exits().get(e).weight().at(0) / MICRO));
                        loss = loss == null ? weighted : Ops.add(loss, weighted);
                    }
                    loss.backward();
                }
                params.forEach((k, v) -> {
                    if (!route.backwards(stageOfParam.get(k)) || v.grad() == null) return;
                    float[] g = v.grad().toFloatArray(), acc = ref.get(k);
                    for (int i = 0; i < g.length; i++) acc[i] += g[i];
                });
            }
            for (int e = 0; e < lossSums.length; e++) fillLossMeans[e] = counts[e] == 0 ? Double.NaN : lossSums[e] / counts[e];
            return ref;
        }
    }

    static double maxAbs(float[] a) {
        double m = 0;
        for (float x : a) m = Math.max(m, Math.abs(x));
        return m;
    }

    void assertFillGradients(ModelConfig mc, int expectedFills, int lastExitStage) {
        List<TokenWindows.Batch> data = batches(MICRO + expectedFills);
        List<StageResult> with = pipeline(mc, 2, data);
        List<StageResult> without = pipeline(mc, 0, data);
        List<BubbleFill.Route> routes = new ArrayList<>(with.get(0).warm());
        routes.addAll(with.get(0).cool());
        assertEquals(expectedFills, routes.size(), "fills that run: " + routes);
        double[] refLosses = new double[mc.exits().size()];
        Map<String, float[]> ref = reference(mc, data, routes, refLosses);
        Map<String, Integer> owner = stageOfParameter(mc);
        double worst = 0;
        boolean fillsChangedSomething = false;
        for (int s = 0; s < P; s++) {
            for (var e : with.get(s).grads().entrySet()) {
                float[] got = e.getValue(), want = ref.get(e.getKey()), plain = without.get(s).grads().get(e.getKey());
                assertNotNull(want, e.getKey());
                double tol = 2e-5 * Math.max(1e-3, maxAbs(want));
                for (int i = 0; i < got.length; i++) {
                    worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1e-3, maxAbs(want)));
                    assertTrue(Math.abs(got[i] - want[i]) <= tol, "stage " + s + " " + e.getKey() + "[" + i + "]: " + got[i] + " vs reference " + want[i]);
                }
                // A tied head's copy on a late stage is the embedding (stage 0's tensor), which the fills do train.
                if (owner.get(e.getKey()) > lastExitStage) assertArrayEquals(plain, got, "stage " + s + " past the last exit: " + e.getKey() + " changed by the fills");
                else if (!java.util.Arrays.equals(plain, got)) fillsChangedSomething = true;
            }
            // Losses of the global batch are the same with and without fills; the fill losses are the reference's.
            assertArrayEquals(without.get(s).losses().means(), with.get(s).losses().means(), 1e-12);
            double[] fillLosses = with.get(s).losses().fill().exitLosses();
            for (int e = 0; e < refLosses.length; e++) assertEquals(refLosses[e], fillLosses[e], 1e-5 * Math.abs(refLosses[e]), "fill loss of exit " + e);
            assertEquals(expectedFills, with.get(s).losses().fill().microBatches());
        }
        assertTrue(fillsChangedSomething, "the fills changed no gradient");
        System.out.printf("bubble fill routes %s: max relative gradient difference from the reference %.3g%n", routes, worst);
    }

    @Test
    void exitsRunInTheForwardGiveTheDeferredGradientsWithFillsToo() {
        var mc = ModelConfig.gpt2(VOCAB, 32, 8, 4, SEQ, List.of(exit(1, ExitKind.MLP, 0.5), exit(7, ExitKind.NORM, 0.7)));
        List<TokenWindows.Batch> data = batches(MICRO + 4);
        List<StageResult> deferred = pipeline(mc, 2, data, true), inline = pipeline(mc, 2, data, false);
        for (int s = 0; s < P; s++) {
            assertEquals(deferred.get(s).losses().stagePeakBytes().length, P);
            for (var e : deferred.get(s).grads().entrySet()) {
                float[] want = e.getValue(), got = inline.get(s).grads().get(e.getKey());
                double tol = 2e-5 * Math.max(1e-3, maxAbs(want));
                for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], tol, "stage " + s + " " + e.getKey() + "[" + i + "]");
            }
        }
    }

    @Test
    void fillsTrainTheEarlyStagesAndExitsOnlyWhenTheExitsAreEarly() {
        // Exits on stages 0 and 1: two warm-up fills (to stage 1 and to stage 0), no room for cool-down ones.
        var mc = ModelConfig.gpt2(VOCAB, 32, 8, 4, SEQ, List.of(exit(1, ExitKind.MLP, 0.5), exit(3, ExitKind.NORM, 0.7)));
        assertFillGradients(mc, 2, 1);
    }

    @Test
    void coolDownFillsComeBackFromTheLastStageWithoutTheFinalHead() {
        // Exits on stages 0 and 3 (Llama): warm-up fills on stage 0; cool-down fills backpropagate stage 3 and stages 2..3 only.
        var mc = ModelConfig.llama(VOCAB, 32, 8, 4, 2, 48, SEQ, List.of(exit(2, ExitKind.MLP, 0.5), exit(7, ExitKind.LAYER, 0.6)));
        assertFillGradients(mc, 4, P - 1);
    }
}
