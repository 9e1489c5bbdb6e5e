package dev.exeunt.model.train;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;

/** Validation loss, perplexity and top-1 agreement per exit over fixed windows (deterministic, no shuffling). */
public final class Evaluator {
    private Evaluator() {}

    public static EvalReport evaluate(EarlyExitModel model, TokenWindows windows, int[] windowIndices, int batchSize,
                                      int maxBatches) {
        return evaluate(model, windows, windowIndices, batchSize, maxBatches, BatchEvaluator.WHOLE_MODEL);
    }

    /**
     * As above, each batch through {@code evaluator} (a pipeline stage's evaluates with the other stages and
     * every stage returns the whole model's report). Every data-parallel replica evaluates every batch.
     */
    public static EvalReport evaluate(EarlyExitModel model, TokenWindows windows, int[] windowIndices, int batchSize,
                                      int maxBatches, BatchEvaluator evaluator) {
        return evaluate(model, windows, windowIndices, batchSize, maxBatches, evaluator, null);
    }

    /** The number of batches {@link #evaluate} runs over these windows. */
    public static int batchCount(TokenWindows windows, int[] windowIndices, int batchSize, int maxBatches) {
        int all = windows.batches(windowIndices, batchSize, 0, false, false).batchesPerEpoch();
        return Math.min(maxBatches <= 0 ? Integer.MAX_VALUE : maxBatches, all);
    }

    /** As above; {@code progress} (null: none) is told the number of batches done after each one. */
    public static EvalReport evaluate(EarlyExitModel model, TokenWindows windows, int[] windowIndices, int batchSize,
                                      int maxBatches, BatchEvaluator evaluator, java.util.function.IntConsumer progress) {
        int n = model.config().exits().size();
        double[] lossSum = new double[n];
        long[] agree = new long[n];
        double finalSum = 0;
        long tokens = 0;
        var batches = windows.batches(windowIndices, batchSize, 0, false, false);
        int count = Math.min(maxBatches <= 0 ? Integer.MAX_VALUE : maxBatches, batches.batchesPerEpoch());
        for (int b = 0; b < count; b++) {
            TokenWindows.Batch batch = batches.next();
            try (var s = Scope.open()) {
                int rows = batch.size(), t = windows.seqLen();
                var sums = evaluator.evaluate(model, Tensor.ofInts(batch.inputs(), rows, t), Tensor.ofInts(batch.targets(), rows, t));
                for (int i = 0; i < n; i++) {
                    lossSum[i] += sums.exitLossSum()[i];
                    agree[i] += sums.exitAgree()[i];
                }
                finalSum += sums.finalLossSum();
                tokens += sums.tokens();
            }
            if (progress != null) progress.accept(b + 1);
        }
        double[] loss = new double[n], agreement = new double[n];
        for (int i = 0; i < n; i++) {
            loss[i] = lossSum[i] / tokens;
            agreement[i] = (double) agree[i] / tokens;
        }
        int[] layers = model.config().exits().stream().mapToInt(ExitConfig::layer).toArray();
        return new EvalReport(layers, finalSum / tokens, loss, agreement, tokens);
    }
}
