package dev.exeunt.model.generate;

import java.util.SplittableRandom;

/**
 * Exit decisions taken from a seeded pattern instead of the exits' confidence, so a benchmark measures
 * the systems cost of early exit apart from the model's quality: each generated token exits with
 * probability {@code rate}, at one of the checked exits chosen uniformly, the same token for the same
 * (seed, sequence, position) every run. The exits before the chosen one are still checked (their cost is
 * paid), the later ones are not reached.
 */
public record ForcedExits(double rate, long seed) {
    public ForcedExits {
        if (!(rate >= 0 && rate <= 1)) throw new IllegalArgumentException("forced exit rate must be in [0, 1], got " + rate);
    }

    /** Which of the {@code checked} exits (in check order) token {@code position} of {@code sequence} leaves at, or -1. */
    public int choice(int sequence, int position, int checked) {
        if (checked == 0) return -1;
        double u = new SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (sequence + 1)) ^ ((long) position << 20)).nextDouble();
        return u < rate ? Math.min(checked - 1, (int) (u / rate * checked)) : -1;
    }
}
