package dev.exeunt.model.config;

/**
 * One early exit. {@code layer} is 1-based; POST reads the output of that layer, PRE reads its input
 * (pre-exit at layer k+1 reads what post-exit at layer k reads). {@code sharedHead} ties the exit's
 * output head to the input embedding (only for tied models).
 */
public record ExitConfig(int layer, Placement placement, ExitKind kind, boolean sharedHead,
                         WeightSchedule weight, double temperature) {
    public enum Placement { PRE, POST }

    public ExitConfig {
        if (!(temperature > 0)) throw new IllegalArgumentException("exit temperature must be > 0, got " + temperature);
    }

    public static ExitConfig post(int layer, ExitKind kind, double weight) {
        return new ExitConfig(layer, Placement.POST, kind, false, WeightSchedule.constant(weight), 1.0);
    }

    /** Number of backbone layers run before the exit reads its input (0 = the embedding output). */
    public int inputDepth() {
        return placement == Placement.POST ? layer : layer - 1;
    }

    public ExitConfig withWeight(WeightSchedule w) {
        return new ExitConfig(layer, placement, kind, sharedHead, w, temperature);
    }
}
