package dev.exeunt.model.config;

/**
 * An exit's loss weight over training: from {@code init} to {@code target} over {@code warmupIters}
 * iterations, linearly or along a half cosine, then constant. init > target gives a cool-down.
 */
public record WeightSchedule(double init, double target, int warmupIters, Shape shape) {
    public enum Shape { LINEAR, COSINE }

    public static WeightSchedule constant(double w) {
        return new WeightSchedule(w, w, 0, Shape.LINEAR);
    }

    public WeightSchedule {
        if (warmupIters < 0) throw new IllegalArgumentException("warm-up iterations must be >= 0, got " + warmupIters);
        if (!(init >= 0) || !(target >= 0)) throw new IllegalArgumentException("exit loss weights must be >= 0, got " + init + " -> " + target);
    }

    /** The weight at 0-based iteration {@code iter}. */
    public double at(long iter) {
        if (warmupIters == 0 || iter >= warmupIters) return target;
        double p = (double) iter / warmupIters;
        double f = shape == Shape.LINEAR ? p : (1 - Math.cos(Math.PI * p)) / 2;
        return init + (target - init) * f;
    }
}
