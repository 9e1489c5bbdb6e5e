package dev.exeunt.model.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/** Picks the next token from one row of logits: greedy, or temperature with top-k and top-p filters. */
final class Sampler {
    private Sampler() {}

    /** log of the largest softmax probability of the row (the exit confidence), in double precision. */
    static double logMaxProb(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) max = Math.max(max, v);
        double sum = 0;
        for (float v : logits) sum += Math.exp(v - max);
        return -Math.log(sum);
    }

    static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    /** Softmax probability of token {@code id} at temperature 1. */
    static float probability(float[] logits, int id) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) max = Math.max(max, v);
        double sum = 0;
        for (float v : logits) sum += Math.exp(v - max);
        return (float) (Math.exp(logits[id] - max) / sum);
    }

    /** Sets the banned ids' logits to -infinity, so neither argmax nor sampling can pick them. */
    static void ban(float[] logits, int[] ids) {
        for (int id : ids) if (id < logits.length) logits[id] = Float.NEGATIVE_INFINITY;
    }

    /** Samples at cfg's temperature and top-k with {@code topP} (the sequence's current, possibly decayed, top_p). */
    static int sample(float[] logits, GenerationConfig cfg, double topP, SplittableRandom rng) {
        if (cfg.temperature() == 0) {
            checkNaN(logits);
            return argmax(logits);
        }
        Filtered f = filter(logits, cfg, topP);
        double r = rng.nextDouble() * f.total;
        for (int i = 0; i < f.keep; i++) {
            r -= f.p[i];
            if (r <= 0) return f.order[i];
        }
        return f.order[f.keep - 1];
    }

    /**
     * The distribution {@link #sample} draws from, over all ids (zero for those the filters drop):
     * what speculative sampling's accept/reject rule compares. Greedy: all mass on the argmax.
     */
    static double[] distribution(float[] logits, GenerationConfig cfg, double topP) {
        double[] out = new double[logits.length];
        if (cfg.temperature() == 0) {
            checkNaN(logits);
            out[argmax(logits)] = 1;
            return out;
        }
        Filtered f = filter(logits, cfg, topP);
        for (int i = 0; i < f.keep; i++) out[f.order[i]] = f.p[i] / f.total;
        return out;
    }

    /** Draws an id from a distribution summing to {@code total} (> 0). */
    static int draw(double[] dist, double total, SplittableRandom rng) {
        double r = rng.nextDouble() * total;
        int last = 0;
        for (int i = 0; i < dist.length; i++) {
            if (dist[i] <= 0) continue;
            last = i;
            r -= dist[i];
            if (r <= 0) return i;
        }
        return last;
    }

    /** The ids sampling keeps, most likely first, with unnormalized weights summing to total. */
    private record Filtered(Integer[] order, double[] p, int keep, double total) {}

    private static Filtered filter(float[] logits, GenerationConfig cfg, double topP) {
        checkNaN(logits);
        int n = logits.length;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> Float.compare(logits[b], logits[a]));
        int keep = cfg.topK() > 0 ? Math.min(cfg.topK(), n) : n;
        double max = logits[order[0]] / cfg.temperature();
        double[] p = new double[keep];
        double total = 0;
        for (int i = 0; i < keep; i++) {
            p[i] = Math.exp(logits[order[i]] / cfg.temperature() - max);
            total += p[i];
        }
        if (topP < 1) {
            double acc = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++) {
                acc += p[i] / total;
                if (acc >= topP) {
                    cut = i + 1;
                    break;
                }
            }
            keep = cut;
            total = 0;
            for (int i = 0; i < keep; i++) total += p[i];
        }
        return new Filtered(order, p, keep, total);
    }

    private static void checkNaN(float[] logits) {
        for (float v : logits) {
            if (Float.isNaN(v)) throw new IllegalStateException("the model produced NaN logits; the weights are corrupt or do not match the config");
        }
    }
}
