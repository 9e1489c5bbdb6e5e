package dev.exeunt.model.generate;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.model.nn.Packed;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Beam search for one prompt through the full model (no early exit: beams compare whole-model
 * log-probabilities), with the semantics of Megatron's beam search: at each step the best 2 x width
 * (beam, token) pairs are ranked; a pair ending in the stop token becomes a finished hypothesis when
 * it ranks within the width, scored sum(log p) / length^lengthPenalty; the others continue, up to
 * width of them. Search ends when no open beam can beat the worst of width finished hypotheses, or
 * after maxNewTokens (open beams then join the hypotheses).
 */
public final class BeamSearch {
    /** One result: the generated ids (without the stop token), their summed log-probability and the length-penalised score. */
    public record Beam(int[] tokens, double logProb, double score, boolean stopped) {}

    private final EarlyExitModel model;
    private final int nLayers;

    public BeamSearch(EarlyExitModel model) {
        this.model = model;
        this.nLayers = model.config().nLayers();
    }

    /**
     * @param vocabLimit ids >= this are never generated (0: all); ban: newline-after-colon ban or null
     * @return up to width beams, best first
     */
    public List<Beam> search(int[] prompt, int width, int maxNewTokens, int stopToken, double lengthPenalty, int vocabLimit, NewlineBan ban) {
        var c = model.config();
        if (width < 1) throw new IllegalArgumentException("beam width must be >= 1, got " + width);
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty");
        if (prompt.length >= c.maxSeqLen()) throw new IllegalArgumentException("the prompt has " + prompt.length + " tokens; the context is " + c.maxSeqLen());
        int capacity = (int) Math.min(c.maxSeqLen(), (long) prompt.length + maxNewTokens + 1);
        KvCache[][] caches = new KvCache[width][], spare = new KvCache[width][];
        try (var g = GradMode.noGrad()) {
            for (int b = 0; b < width; b++) {
                caches[b] = newCaches(capacity);
                spare[b] = newCaches(capacity);
            }
            var finished = new Hypotheses(width, lengthPenalty);
            int[][] beams = {prompt};
            double[] scores = {0};
            double[][] logProbs = {prefill(prompt, caches[0], vocabLimit)};
            boolean done = false;
            int generated = 0;
            while (generated < maxNewTokens) {
                generated++;
                List<Candidate> ranked = rank(beams, scores, logProbs, width, ban);
                List<Candidate> next = new ArrayList<>();
                for (int rankNo = 0; rankNo < ranked.size() && next.size() < width; rankNo++) {
                    Candidate k = ranked.get(rankNo);
                    if (k.token == stopToken) {
                        if (rankNo < width) finished.add(Arrays.copyOfRange(beams[k.beam], prompt.length, beams[k.beam].length), k.score, generated, true);
                    } else {
                        next.add(k);
                    }
                }
                if (finished.isDone(ranked.get(0).score, generated) || next.isEmpty()) {
                    done = true;
                    break;
                }
                int[][] nb = new int[next.size()][];
                double[] ns = new double[next.size()];
                for (int j = 0; j < next.size(); j++) {
                    Candidate k = next.get(j);
                    nb[j] = Arrays.copyOf(beams[k.beam], beams[k.beam].length + 1);
                    nb[j][nb[j].length - 1] = k.token;
                    ns[j] = k.score;
                    for (int l = 0; l < caches[k.beam].length; l++) spare[j][l].copyFrom(caches[k.beam][l]);
                }
                KvCache[][] t = caches;
                caches = spare;
                spare = t;
                beams = nb;
                scores = ns;
                if (generated == maxNewTokens || nb[0].length >= capacity) break;
                logProbs = decode(beams, caches, vocabLimit);
            }
            if (!done) {
                for (int b = 0; b < beams.length; b++) {
                    finished.add(Arrays.copyOfRange(beams[b], prompt.length, beams[b].length), scores[b], beams[b].length - prompt.length, false);
                }
            }
            return finished.best();
        } finally {
            for (KvCache[] set : caches) if (set != null) for (KvCache k : set) k.close();
            for (KvCache[] set : spare) if (set != null) for (KvCache k : set) k.close();
        }
    }

    private KvCache[] newCaches(int capacity) {
        var c = model.config();
        KvCache[] set = new KvCache[nLayers];
        for (int l = 0; l < nLayers; l++) set[l] = new KvCache(model.device(), 1, capacity, c.nKvHeads(), c.headDim());
        return set;
    }

    private record Candidate(int beam, int token, double score) {}

    /** The best 2 x width (beam, token) continuations by summed log-probability. */
    private static List<Candidate> rank(int[][] beams, double[] scores, double[][] logProbs, int width, NewlineBan ban) {
        List<Candidate> all = new ArrayList<>();
        for (int b = 0; b < beams.length; b++) {
            double[] lp = logProbs[b];
            int[] banned = ban == null ? null : ban.bannedAfter(beams[b][beams[b].length - 1]);
            if (banned != null) for (int id : banned) if (id < lp.length) lp[id] = Double.NEGATIVE_INFINITY;
            for (int v : topIndices(lp, 2 * width)) all.add(new Candidate(b, v, scores[b] + lp[v]));
        }
        all.sort(Comparator.comparingDouble(Candidate::score).reversed());
        return all.subList(0, Math.min(all.size(), 2 * width));
    }

    private static int[] topIndices(double[] v, int k) {
        k = Math.min(k, v.length);
        int[] idx = new int[k];
        int n = 0;
        for (int i = 0; i < v.length; i++) {
            if (n == k && v[i] <= v[idx[k - 1]]) continue;
            int at = n < k ? n++ : k - 1;
            while (at > 0 && v[idx[at - 1]] < v[i]) {
                idx[at] = idx[at - 1];
                at--;
            }
            idx[at] = i;
        }
        return idx;
    }

    /** Runs the prompt through every layer into {@code cache}; returns the next token's log-probabilities. */
    private double[] prefill(int[] prompt, KvCache[] cache, int vocabLimit) {
        try (var scope = Scope.open()) {
            int[] pos = new int[prompt.length];
            for (int i = 0; i < pos.length; i++) pos[i] = i;
            Tensor x = model.embedPacked(prompt, pos);
            for (int d = 0; d < nLayers; d++) x = model.layers().get(d).forwardPacked(x, List.of(new Packed(0, prompt.length, 0, cache[d])))[0];
            return logSoftmax(model.finalLogits(x.narrow(0, prompt.length - 1, 1)).toFloatArray(), vocabLimit);
        }
    }

    /** Feeds each beam's last token (all beams packed into one batch); returns each beam's next log-probabilities. */
    private double[][] decode(int[][] beams, KvCache[][] caches, int vocabLimit) {
        try (var scope = Scope.open()) {
            int n = beams.length;
            int[] ids = new int[n], pos = new int[n];
            for (int b = 0; b < n; b++) {
                ids[b] = beams[b][beams[b].length - 1];
                pos[b] = beams[b].length - 1;
            }
            Tensor x = model.embedPacked(ids, pos);
            for (int d = 0; d < nLayers; d++) {
                List<Packed> packs = new ArrayList<>();
                for (int b = 0; b < n; b++) packs.add(new Packed(b, 1, pos[b], caches[b][d]));
                x = model.layers().get(d).forwardPacked(x, packs)[0];
            }
            float[] all = model.finalLogits(x).toFloatArray();
            int v = all.length / n;
            double[][] out = new double[n][];
            for (int b = 0; b < n; b++) out[b] = logSoftmax(Arrays.copyOfRange(all, b * v, (b + 1) * v), vocabLimit);
            return out;
        }
    }

    private static double[] logSoftmax(float[] logits, int vocabLimit) {
        int n = vocabLimit > 0 ? Math.min(vocabLimit, logits.length) : logits.length;
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            if (Float.isNaN(logits[i])) throw new IllegalStateException("the model produced NaN logits; the weights are corrupt or do not match the config");
            max = Math.max(max, logits[i]);
        }
        double sum = 0;
        for (int i = 0; i < n; i++) sum += Math.exp(logits[i] - max);
        double lse = max + Math.log(sum);
        double[] out = new double[n];
        for (int i = 0; i < n; i++) out[i] = logits[i] - lse;
        return out;
    }

    /** The best width finished hypotheses (Hugging Face's / Megatron's BeamHypotheses). */
    private static final class Hypotheses {
        private final int width;
        private final double lengthPenalty;
        private final List<Beam> beams = new ArrayList<>();

        Hypotheses(int width, double lengthPenalty) {
            this.width = width;
            this.lengthPenalty = lengthPenalty;
        }

        void add(int[] tokens, double logProb, int length, boolean stopped) {
            double score = logProb / Math.pow(length, lengthPenalty);
            if (beams.size() < width || score > worst()) {
                beams.add(new Beam(tokens, logProb, score, stopped));
                beams.sort(Comparator.comparingDouble(Beam::score).reversed());
                if (beams.size() > width) beams.removeLast();
            }
        }

        private double worst() {
            return beams.getLast().score();
        }

        /** True when width hypotheses are finished and the best open beam cannot beat the worst of them. */
        boolean isDone(double bestOpenLogProb, int length) {
            return beams.size() >= width && worst() >= bestOpenLogProb / Math.pow(length, lengthPenalty);
        }

        List<Beam> best() {
            return List.copyOf(beams);
        }
    }
}
