package dev.exeunt.model.train;

import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.Backprop;
import java.util.List;

/**
 * How the {@link Trainer} runs the forward and backward of a step's micro-batches, accumulating their
 * gradients (each loss scaled by 1 / the number of micro-batches): one after another on one model
 * ({@link #SEQUENTIAL}), or as a pipeline schedule across stages ({@code parallel}'s 1F1B).
 */
public interface MicroBatchRunner {
    /**
     * What a step's micro-batches gave, the same on every pipeline stage: the means over the micro-batches
     * of {total, final loss, each exit's loss by its index in the config}, the bubble fills' (null when
     * none ran), and each pipeline stage's peak host memory in the step (its process's; null on one stage).
     */
    record Losses(double[] means, FillLosses fill, long[] stagePeakBytes) {}

    /**
     * The pipeline-bubble fills of a step (extra micro-batches that train exits only): how many ran, and
     * each exit's mean loss over the fills that trained it, by its index in the config (NaN for none).
     */
    record FillLosses(int microBatches, double[] exitLosses) {}

    /** How many extra micro-batches (bubble fills) each step draws from the data stream after its global batch. */
    default int fillMicroBatches() {
        return 0;
    }

    /**
     * Runs {@code micro} (this data-parallel rank's rows of each micro-batch, [rows, seqLen] windows) and
     * the {@link #fillMicroBatches()} extra ones {@code fill} at iteration {@code it}. {@code lastFinals}
     * (or null) hears of each gradient made final by the last micro-batch's backward.
     */
    Losses run(EarlyExitModel model, List<TokenWindows.Batch> micro, List<TokenWindows.Batch> fill, int seqLen, int it,
               Backprop.LeafListener lastFinals);

    /** One model holding every layer: the micro-batches in turn. */
    MicroBatchRunner SEQUENTIAL = (model, micro, fill, seqLen, it, lastFinals) -> {
        int m = micro.size();
        double[] sums = new double[2 + model.config().exits().size()];
        for (int i = 0; i < m; i++) {
            TokenWindows.Batch b = micro.get(i);
            try (var s = Scope.open()) {
                Tensor ids = Tensor.ofInts(b.inputs(), b.size(), seqLen);
                Tensor tgt = Tensor.ofInts(b.targets(), b.size(), seqLen);
                var l = model.forwardBackward(ids, tgt, null, it, 1f / m, i == m - 1 ? lastFinals : null);
                add(sums, model.exits(), l, m);
            }
        }
        return new Losses(sums, null, null);
    };

    /** Adds one micro-batch's losses, divided by {@code m}, to {@code sums} ({total, final, exits by index}). */
    static void add(double[] sums, List<Exit> exits, EarlyExitModel.StepLosses l, int m) {
        sums[0] += l.total() / m;
        sums[1] += l.finalLoss() / m;
        for (int k = 0; k < exits.size(); k++) sums[2 + exits.get(k).index()] += l.exitLosses()[k] / m;
    }
}
