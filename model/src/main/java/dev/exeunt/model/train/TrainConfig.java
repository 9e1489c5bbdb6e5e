package dev.exeunt.model.train;

/**
 * Optimisation settings. The global batch is {@code batchSize * gradAccum} windows of {@code seqLen}
 * tokens; the learning rate warms up linearly for {@code warmupIters} then decays along a cosine to
 * {@code minLr} at {@code iters}.
 */
public record TrainConfig(int seqLen, int batchSize, int gradAccum, int iters, double lr, double minLr, int warmupIters,
                          double weightDecay, double beta1, double beta2, double gradClip, long seed, int evalEvery,
                          int evalBatches, int saveEvery, int logEvery, double valFraction) {
    public TrainConfig {
        if (seqLen < 1 || batchSize < 1 || gradAccum < 1 || iters < 1) {
            throw new IllegalArgumentException("seq_len, batch_size, grad_accum and iters must be >= 1");
        }
        if (!(lr > 0) || minLr < 0 || minLr > lr) throw new IllegalArgumentException("need 0 <= min_lr <= lr and lr > 0");
        if (warmupIters < 0) throw new IllegalArgumentException("warmup_iters must be >= 0");
    }

    public static TrainConfig defaults() {
        return new TrainConfig(128, 8, 1, 200, 3e-3, 3e-4, 20, 0.1, 0.9, 0.95, 1.0, 1234, 50, 8, 100, 0, 0.05);
    }

    /** Learning rate at 0-based iteration {@code it}: linear warm-up, then cosine decay to minLr. */
    public double lrAt(long it) {
        if (it < warmupIters) return lr * (it + 1) / warmupIters;
        if (iters <= warmupIters) return lr;
        double p = Math.min(1.0, (double) (it - warmupIters) / Math.max(1, iters - warmupIters));
        return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * p));
    }

    /** The same settings with {@code batchSize} windows per micro-batch and {@code gradAccum} micro-batches per step. */
    public TrainConfig withBatches(int batchSize, int gradAccum) {
        return new TrainConfig(seqLen, batchSize, gradAccum, iters, lr, minLr, warmupIters, weightDecay, beta1, beta2, gradClip,
                seed, evalEvery, evalBatches, saveEvery, logEvery, valFraction);
    }

    /** The same settings on windows of {@code n} tokens. */
    public TrainConfig withSeqLen(int n) {
        return new TrainConfig(n, batchSize, gradAccum, iters, lr, minLr, warmupIters, weightDecay, beta1, beta2, gradClip,
                seed, evalEvery, evalBatches, saveEvery, logEvery, valFraction);
    }

    /** The same settings for {@code n} iterations (a warm-up longer than them shortened to a tenth). */
    public TrainConfig withIters(int n) {
        if (warmupIters >= n) {
            return new TrainConfig(seqLen, batchSize, gradAccum, n, lr, minLr, n / 10, weightDecay, beta1, beta2, gradClip,
                    seed, evalEvery, evalBatches, saveEvery, logEvery, valFraction);
        }
        return new TrainConfig(seqLen, batchSize, gradAccum, n, lr, minLr, warmupIters, weightDecay, beta1, beta2, gradClip,
                seed, evalEvery, evalBatches, saveEvery, logEvery, valFraction);
    }
}
