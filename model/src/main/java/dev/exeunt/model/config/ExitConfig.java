package dev.exeunt.model.config;

/**
 * One early exit. {@code layer} is 1-based; POST reads the output of that layer, PRE reads its input
 * (pre-exit at layer k+1 reads what post-exit at layer k reads). {@code sharedHead} ties the exit's
 * output head to the input embedding (only for tied models). {@code selfDistill} weighs a second
 * training term: the exit's cross-entropy against the final head's own top-1 token, through the exit's
 * parameters only (hard self-distillation; an addition to EARLY-EXIT.md's loss, 0 leaves it as written
 * there). It teaches the exit to agree with the full model, and to be confident where it does, which the
 * data's next token does not: what speculative decoding's drafts need.
 */
public record ExitConfig(int layer, Placement placement, ExitKind kind, boolean sharedHead,
                         WeightSchedule weight, double temperature, double selfDistill) {
    public enum Placement { PRE, POST }

    public ExitConfig {
        if (!(temperature > 0)) throw new IllegalArgumentException("exit temperature must be > 0, got " + temperature);
        if (!(selfDistill >= 0 && selfDistill <= 1e3)) throw new IllegalArgumentException("exit self-distillation weight must be in [0, 1000], got " + selfDistill);
        if (selfDistill > 0 && sharedHead) {
            throw new IllegalArgumentException("the exit at layer " + layer + " shares the token embedding as its head, so self-distillation would "
                    + "train the backbone: give the exit its own head or set self-distillation to 0");
        }
    }

    /** An exit without self-distillation. */
    public ExitConfig(int layer, Placement placement, ExitKind kind, boolean sharedHead, WeightSchedule weight, double temperature) {
        this(layer, placement, kind, sharedHead, weight, temperature, 0);
    }

    public static ExitConfig post(int layer, ExitKind kind, double weight) {
        return new ExitConfig(layer, Placement.POST, kind, false, WeightSchedule.constant(weight), 1.0);
    }

    /** Number of backbone layers run before the exit reads its input (0 = the embedding output). */
    public int inputDepth() {
        return placement == Placement.POST ? layer : layer - 1;
    }

    public ExitConfig withWeight(WeightSchedule w) {
        return new ExitConfig(layer, placement, kind, sharedHead, w, temperature, selfDistill);
    }

    public ExitConfig withSelfDistill(double weight) {
        return new ExitConfig(layer, placement, kind, sharedHead, this.weight, temperature, weight);
    }
}
