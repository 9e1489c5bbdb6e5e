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
     * Runs {@code micro} (this data-parallel rank's rows of each micro-batch, [rows, seqLen] windows) at
     * iteration {@code it}. Returns the means over the micro-batches of {total, final loss, each exit's
     * loss by its index in the config}, the same on every pipeline stage. {@code lastFinals} (or null)
     * hears of each gradient made final by the last micro-batch's backward.
     */
    double[] run(EarlyExitModel model, List<TokenWindows.Batch> micro, int seqLen, int it, Backprop.LeafListener lastFinals);

    /** One model holding every layer: the micro-batches in turn. */
    MicroBatchRunner SEQUENTIAL = (model, micro, seqLen, it, lastFinals) -> {
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
        return sums;
    };

    /** Adds one micro-batch's losses, divided by {@code m}, to {@code sums} ({total, final, exits by index}). */
    static void add(double[] sums, List<Exit> exits, EarlyExitModel.StepLosses l, int m) {
        sums[0] += l.total() / m;
        sums[1] += l.finalLoss() / m;
        for (int k = 0; k < exits.size(); k++) sums[2 + exits.get(k).index()] += l.exitLosses()[k] / m;
    }
}
