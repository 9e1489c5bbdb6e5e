package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.train.BatchEvaluator;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;

/**
 * Validation across pipeline stages, giving every stage the one-rank {@link EarlyExitModel.EvalSums}: a
 * forward-only pass of the batch through the stages (the first embeds, each runs its layers under no-grad
 * and sends its output on, {@link EarlyExitModel#evaluateStage}), each stage's exits' losses where they
 * live, the final head's loss and top-1 tokens on the last stage ({@link EarlyExitModel#evaluateFinal}),
 * those tokens broadcast so each stage counts its exits' agreement with them, and the per-head sums
 * added over the stages (each has one contributor, so the sums are the stage's exact values).
 */
public final class PipelineEvaluator implements BatchEvaluator {
    /** The tag of evaluation activations, apart from the 1F1B schedule's (2i, 2i+1) and the checkpoint streams' ({@code 1 << 30}). */
    static final int TAG = 1 << 29;
    private final ProcessGroup pp;
    private final PipelineParallel stages;

    public PipelineEvaluator(ProcessGroupPipelineParallel pipeline) {
        this.pp = pipeline.group();
        this.stages = pipeline;
    }

    @Override
    public EarlyExitModel.EvalSums evaluate(EarlyExitModel model, Tensor ids, Tensor targets) {
        int stage = pp.rank(), count = pp.size(), nExits = model.config().exits().size();
        if (model.stage().index() != stage || model.stage().count() != count) {
            throw new IllegalArgumentException("the model is " + model.stage() + " but this rank is pipeline stage " + stage + " of " + count);
        }
        int n = (int) targets.numel();
        try (var g = GradMode.noGrad(); var s = Scope.open()) {
            Tensor input = ids;
            if (stage > 0) {
                input = Tensor.empty(DType.F32, model.device(), activationShape(model, ids.dim(0), ids.dim(1)));
                pp.recv(input, stage - 1, TAG);
            }
            EarlyExitModel.StageEval mine = model.evaluateStage(input, targets);
            if (stage < count - 1) pp.send(Ops.contiguous(mine.output()), stage + 1, TAG);
            double finalLossSum = 0;
            Tensor finalTop;
            if (stage == count - 1) {
                EarlyExitModel.FinalEval f = model.evaluateFinal(mine.output(), targets);
                finalLossSum = f.lossSum();
                finalTop = Tensor.ofInts(f.top(), n).to(model.device());
            } else {
                finalTop = Tensor.empty(DType.I32, model.device(), n);
            }
            pp.broadcast(finalTop, count - 1);
            long[] agree = EarlyExitModel.agreement(mine.exitTop(), finalTop.toIntArray());
            // [exit loss sums, exit agreements, final loss sum]: counts below 2^53 add exactly as doubles.
            double[] sums = new double[2 * nExits + 1];
            for (int i = 0; i < nExits; i++) {
                sums[i] = mine.exitLossSum()[i];
                sums[nExits + i] = agree[i];
            }
            sums[2 * nExits] = finalLossSum;
            stages.sumOverStages(sums);
            double[] exitLossSum = new double[nExits];
            long[] exitAgree = new long[nExits];
            for (int i = 0; i < nExits; i++) {
                exitLossSum[i] = sums[i];
                exitAgree[i] = (long) sums[nExits + i];
            }
            return new EarlyExitModel.EvalSums(exitLossSum, exitAgree, sums[2 * nExits], n);
        }
    }

    /** A stage's output for rows x seqLen tokens: [rows, positions, d_model], positions split over tp under sequence parallelism. */
    private static int[] activationShape(EarlyExitModel model, int rows, int seqLen) {
        var tp = model.tensorParallel();
        return new int[] {rows, tp.sequenceParallel() ? seqLen / tp.size() : seqLen, model.config().dModel()};
    }
}
