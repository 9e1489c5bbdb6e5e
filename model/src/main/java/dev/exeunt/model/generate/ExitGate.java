package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.WeightBytes;
import dev.exeunt.tensor.Tensor;

/**
 * Adaptive exit gating ({@link GenerationConfig#adaptive}): decode is bound by the weight bytes each
 * token reads, so a check pays when its exit rate times the bytes a firing token skips (the layers
 * after the exit and the final head) exceeds the bytes the check reads (its head and structure). After
 * every {@link #WINDOW} checks of an exit, one that did not pay is not checked for the next
 * {@link #PAUSE} tokens, then probed again. With speculative decoding a hit is an accepted draft.
 */
final class ExitGate {
    static final int WINDOW = 32;
    static final int PAUSE = 256;
    private final boolean on;
    private final double[] cost, saving;
    private final int[] checks, hits;
    private final long[] pausedUntil;
    private long tokens;

    /** @param checkHeads per exit, the head its checks read (speculating on the CPU: a Q8_0 copy, {@link DraftHeads}) */
    ExitGate(EarlyExitModel model, Tensor[] checkHeads, boolean on) {
        this.on = on;
        int n = model.exits().size(), layers = model.config().nLayers();
        cost = new double[n];
        saving = new double[n];
        checks = new int[n];
        hits = new int[n];
        pausedUntil = new long[n];
        // Bytes of layers [d, L) plus the final head; a pipeline stage knows only its own layers' sizes.
        int first = model.stage().firstLayer();
        double[] after = new double[layers + 1];
        after[layers] = WeightBytes.of(model.lmHead()) + WeightBytes.of(model.finalNorm());
        for (int l = layers - 1; l >= 0; l--) {
            boolean here = l >= first && l < model.stage().endLayer();
            after[l] = after[l + 1] + (here ? WeightBytes.of(model.layers().get(l - first)) : 0);
        }
        for (int e = 0; e < n; e++) {
            Exit x = model.exits().get(e);
            cost[e] = WeightBytes.of(checkHeads[e]) + WeightBytes.of(x.norm()) + (x.config().kind() == ExitKind.MLP ? WeightBytes.of(x.branch()) : 0);
            saving[e] = after[x.config().inputDepth()];
        }
    }

    /** Whether exit e is checked now. */
    boolean checking(int e) {
        return !on || tokens >= pausedUntil[e];
    }

    /** Counts tokens decoded (the clock of the pauses). */
    void tick(int n) {
        tokens += n;
    }

    /** One check of exit e: a hit when it fired (speculating: when its draft was accepted). */
    void record(int e, boolean hit) {
        if (!on) return;
        checks[e]++;
        if (hit) hits[e]++;
        if (checks[e] < WINDOW) return;
        if (hits[e] * saving[e] < checks[e] * cost[e]) pausedUntil[e] = tokens + PAUSE;
        checks[e] = 0;
        hits[e] = 0;
    }
}
