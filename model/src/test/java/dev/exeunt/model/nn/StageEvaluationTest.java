package dev.exeunt.model.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The stage pieces of evaluation, chained by hand on one thread (each stage's output the next one's
 * input, the final head's top-1 tokens handed to every stage), give the whole model's
 * {@link EarlyExitModel#evaluate} sums: each exit's loss and agreement from the stage holding it, the
 * final loss from the last. A stage asked to evaluate alone is refused.
 */
@ExtendWith(LeakCheck.class)
class StageEvaluationTest {
    @Test
    void chainedStagesGiveTheWholeModelsEvaluation() {
        long agreements = 0;
        for (ModelConfig mc : List.of(PipelineStageTest.gpt2(), PipelineStageTest.llama())) {
            for (int pp : new int[] {2, 4}) agreements += assertStagesMatch(mc, pp);
        }
        assertTrue(agreements > 0, "some exit agrees with the final head somewhere, so agreement is compared on more than zeros");
    }

    /** Returns the exits' agreements counted. */
    long assertStagesMatch(ModelConfig mc, int pp) {
        int b = PipelineStageTest.B, t = PipelineStageTest.T, n = mc.exits().size();
        Random r = new Random(pp);
        int[] ids = new int[b * t], tgt = new int[b * t];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(PipelineStageTest.V);
            tgt[i] = r.nextInt(PipelineStageTest.V);
        }
        String name = mc.family() + " pp=" + pp;
        List<EarlyExitModel> stages = new ArrayList<>();
        try (var whole = EarlyExitModel.create(mc, Device.CPU, 5); var s = Scope.open()) {
            for (int st = 0; st < pp; st++) {
                stages.add(EarlyExitModel.createStage(mc, Device.CPU, 5, TensorParallel.NONE, PipelineStage.balanced(mc.nLayers(), pp, st)));
            }
            Tensor idsT = Tensor.ofInts(ids, b, t), tgtT = Tensor.ofInts(tgt, b, t);
            EarlyExitModel.EvalSums want = whole.evaluate(idsT, tgtT);
            Tensor x = idsT;
            List<EarlyExitModel.StageEval> evals = new ArrayList<>();
            for (var stage : stages) {
                var e = stage.evaluateStage(x, tgtT);
                evals.add(e);
                x = e.output();
            }
            EarlyExitModel.FinalEval fin = stages.getLast().evaluateFinal(x, tgtT);
            double[] loss = new double[n];
            long[] agree = new long[n];
            int held = 0;
            for (int st = 0; st < pp; st++) {
                var e = evals.get(st);
                long[] a = EarlyExitModel.agreement(e.exitTop(), fin.top());
                for (int i = 0; i < n; i++) {
                    boolean owns = stages.get(st).stage().owns(mc.exits().get(i));
                    if (!owns) {
                        assertNull(e.exitTop()[i], name + " stage " + st + " exit " + i);
                        assertEquals(0, e.exitLossSum()[i]);
                        continue;
                    }
                    held++;
                    loss[i] += e.exitLossSum()[i];
                    agree[i] += a[i];
                }
            }
            assertEquals(n, held, name + ": each exit on one stage");
            assertEquals(want.tokens(), (long) b * t);
            assertEquals(want.finalLossSum(), fin.lossSum(), 1e-6 * Math.abs(want.finalLossSum()), name + " final");
            for (int i = 0; i < n; i++) assertEquals(want.exitLossSum()[i], loss[i], 1e-6 * Math.abs(want.exitLossSum()[i]), name + " exit " + i);
            assertArrayEquals(want.exitAgree(), agree, name + " agreement");
            var refused = assertThrows(IllegalStateException.class, () -> stages.getFirst().evaluate(idsT, tgtT));
            assertTrue(refused.getMessage().contains("evaluateStage"), refused.getMessage());
            return java.util.Arrays.stream(agree).sum();
        } finally {
            stages.forEach(EarlyExitModel::close);
        }
    }
}
