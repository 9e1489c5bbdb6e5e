package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Tensor;
import java.util.Arrays;

/**
 * What one {@link Generator#generate} call shares between its prefill and decode steps: the config,
 * which exits are checked, the listener, the counters, and how a token is handed out (emitted,
 * drafted, or accepted or replaced by verification).
 */
final class DecodeCall {
    final EarlyExitModel model;
    final GenerationConfig cfg;
    final TokenListener listener;
    final ForcedExits forced;
    final int nLayers;
    /** Exits whose decision is taken this call; with exitProbs the others still run, to record their probabilities. */
    final boolean[] active;
    /** Each active exit's place among the checked ones, -1 for the others (forced decisions). */
    final int[] checkRank;
    final int checked;
    /** The ids the tokenizer can decode: a head padded past the tokenizer's vocabulary has rows no text maps to. */
    final int usableVocab;
    long exitLayerRows;
    final long[] checks, drafted, accepted;
    final ExitGate gate;
    /** Per exit, the head its checks read ({@link DraftHeads}). */
    final Tensor[] checkHeads;
    private float[] row;

    /** @param checkHeads per exit, the head its checks read (the adaptive gate prices a check by its bytes) */
    DecodeCall(EarlyExitModel model, GenerationConfig cfg, TokenListener listener, ForcedExits forced, Tensor[] checkHeads) {
        this.model = model;
        this.cfg = cfg;
        this.listener = listener;
        this.forced = forced;
        this.nLayers = model.config().nLayers();
        this.active = activeExits(model, cfg);
        // Ranks among the whole model's active exits (a pipeline stage holds some of them), so a forced
        // pattern picks the same exit for a token on every stage.
        int[] globalRank = new int[model.config().exits().size()];
        int n = 0;
        for (int i = 0; i < globalRank.length; i++) globalRank[i] = isActive(model.config().exits().get(i), cfg) ? n++ : -1;
        this.checked = n;
        this.checkRank = new int[active.length];
        for (int e = 0; e < active.length; e++) checkRank[e] = active[e] ? globalRank[model.exits().get(e).index()] : -1;
        int v = model.config().vocabSize();
        this.usableVocab = cfg.vocabLimit() > 0 && cfg.vocabLimit() < v ? cfg.vocabLimit() : v;
        this.checks = new long[active.length];
        this.drafted = new long[active.length];
        this.accepted = new long[active.length];
        this.checkHeads = checkHeads;
        this.gate = new ExitGate(model, checkHeads, cfg.adaptive());
    }

    private static boolean[] activeExits(EarlyExitModel model, GenerationConfig cfg) {
        boolean[] active = new boolean[model.exits().size()];
        if (cfg.exitLayers() != null) {
            for (int layer : cfg.exitLayers()) {
                if (model.exits().stream().noneMatch(x -> x.config().layer() == layer)) {
                    throw new IllegalArgumentException("the model has no exit at layer " + layer + " (exits at "
                            + Arrays.toString(model.config().exits().stream().mapToInt(ExitConfig::layer).toArray()) + ")");
                }
            }
        }
        for (int e = 0; e < active.length; e++) active[e] = isActive(model.exits().get(e).config(), cfg);
        return active;
    }

    private static boolean isActive(ExitConfig exit, GenerationConfig cfg) {
        return cfg.earlyExit() && (cfg.exitLayers() == null || Arrays.stream(cfg.exitLayers()).anyMatch(x -> x == exit.layer()));
    }

    /** Whether exit e fires for s's current token at top probability maxProb. */
    boolean fires(int e, DecodeSequence s, float maxProb) {
        if (!active[e]) return false;
        if (forced != null) return forced.choice(s.index, s.length, checked) == checkRank[e];
        return Math.log(maxProb) >= Math.log(cfg.threshold());
    }

    /** Exit probabilities of a token before any head has seen it: NaN = not reached. */
    float[] unreached() {
        float[] p = new float[model.exits().size() + 1];
        Arrays.fill(p, Float.NaN);
        return p;
    }

    /** A reusable host copy of one row of usable logits. */
    float[] rowBuffer() {
        if (row == null) row = new float[usableVocab];
        return row;
    }

    /** One row of logits, fetched to the host only when the choice needs the whole row (sampling, a ban). */
    interface Row {
        float[] get();
    }

    /** top_p for the k-th generated token (Megatron's top_p_decay applied k times). */
    double topPFor(int k) {
        double p = cfg.topP();
        for (int i = 0; i < k; i++) {
            double next = cfg.decayedTopP(p);
            if (next == p) break;
            p = next;
        }
        return p;
    }

    /** Ids the newline ban forbids after {@code previous}, or null. */
    int[] banned(int previous) {
        return cfg.newlineBan() == null ? null : cfg.newlineBan().bannedAfter(previous);
    }

    /**
     * Hands out s's next token from one row of logits (greedy: the row's top index and probability,
     * already computed; sampling copies the row to the host).
     */
    void emit(DecodeSequence s, Row logits, int greedyToken, float greedyProb, int exitLayer, float[] probs) {
        if (probs != null) probs[probs.length - 1] = exitLayer == nLayers ? greedyProb : Float.NaN;
        GeneratedToken t = choose(s, logits, greedyToken, greedyProb, exitLayer);
        hand(s, probs == null ? t : new GeneratedToken(t.token(), exitLayer, t.probability(), probs));
    }

    /**
     * s's next token from one row of logits, not yet handed out: the greedy choice, or a sample that
     * takes s's generator's next number (s.draws counts them, so a pipeline stage that did not make the
     * earlier choices can catch up first, {@link #catchUp}).
     */
    GeneratedToken choose(DecodeSequence s, Row logits, int greedyToken, float greedyProb, int exitLayer) {
        checkNotNaN(greedyProb);
        float[] row = hostRow(s, s.length, logits);
        int token = greedyToken;
        if (row != null) {
            if (cfg.temperature() != 0) s.draws++;
            token = Sampler.sample(row, cfg, topPFor(s.length - s.prompt.length), s.rng);
        }
        float prob = row == null ? greedyProb : Sampler.probability(row, token);
        return new GeneratedToken(token, exitLayer, prob, null);
    }

    /**
     * Advances s's generator past the numbers the sampling choices of its first {@code made} generated
     * tokens took, wherever they were made (pipeline stages; never with speculative decoding, whose
     * drafts and verifications draw numbers of their own).
     */
    void catchUp(DecodeSequence s, int made) {
        if (cfg.temperature() == 0) return;
        for (; s.draws < made; s.draws++) s.rng.nextDouble();
    }

    /** Hands out a chosen token: appended, then the listener and the stopping rules. */
    void hand(DecodeSequence s, GeneratedToken t) {
        s.append(t.token());
        commit(s, t);
    }

    /**
     * Hands out a token another pipeline stage chose ({@link StageLink#agree}). The choosing stage drew a
     * number from s's generator for it (when sampling): this copy catches up first, so every stage's
     * generator stays where the choosing stage's is.
     */
    void accept(DecodeSequence s, int token, int exitLayer, float prob) {
        catchUp(s, s.length - s.prompt.length + 1);
        hand(s, new GeneratedToken(token, exitLayer, prob, null));
    }

    /**
     * The choice for tokens[idx] needs the whole row, fetched to the host with the newline ban applied,
     * unless it is greedy with nothing banned (null: the greedy token and probability already computed stand).
     */
    private float[] hostRow(DecodeSequence s, int idx, Row logits) {
        int[] banned = banned(s.tokens[idx - 1]);
        if (cfg.temperature() == 0 && banned == null) return null;
        float[] row = logits.get();
        if (banned != null) Sampler.ban(row, banned);
        return row;
    }

    /**
     * Speculative decoding: the exit's choice becomes a draft (appended, not handed out). Sampling keeps
     * the distribution it was drawn from, for the accept/reject rule.
     */
    void draft(DecodeSequence s, int exit, Row logits, int greedyToken, float greedyProb, float[] probs) {
        checkNotNaN(greedyProb);
        float[] row = hostRow(s, s.length, logits);
        int token = greedyToken;
        float prob = greedyProb;
        double[] dist = null;
        if (row != null) {
            if (cfg.temperature() == 0) {
                token = Sampler.argmax(row);
            } else {
                dist = Sampler.distribution(row, cfg, topPFor(s.length - s.prompt.length));
                token = Sampler.draw(dist, 1.0, s.rng);
            }
            prob = Sampler.probability(row, token);
        }
        s.append(token);
        s.recordDraft(exit, model.exits().get(exit).config().layer(), prob, probs, dist);
        drafted[exit]++;
    }

    /**
     * Verifies the draft tokens[idx] against the full model's logits at position idx - 1: greedy keeps
     * it when it is the full model's choice; sampling keeps it with probability min(1, p/q) and else
     * draws from the residual max(0, p - q), so the output follows the full model's distribution
     * (speculative sampling). A rejected draft is replaced, and it and everything after it forgotten.
     *
     * @return whether the draft was kept
     */
    boolean verify(DecodeSequence s, int idx, Row logits, int greedyToken, float greedyProb) {
        checkNotNaN(greedyProb);
        int j = idx - s.committed;
        if (j != 0) throw new IllegalStateException("verifying draft " + idx + " with " + s.committed + " tokens committed");
        int draft = s.tokens[idx];
        float[] row = hostRow(s, idx, logits);
        int token = greedyToken;
        float prob = greedyProb;
        boolean keep;
        if (row == null || cfg.temperature() == 0) {
            if (row != null) token = Sampler.argmax(row);
            keep = token == draft;
        } else {
            double[] p = Sampler.distribution(row, cfg, topPFor(idx - s.prompt.length));
            double[] q = s.draftDist[j];
            keep = s.rng.nextDouble() * q[draft] < p[draft];
            token = keep ? draft : residual(p, q, s);
        }
        if (row != null) prob = Sampler.probability(row, token);
        int exit = s.draftExit[j];
        gate.record(exit, keep);
        if (keep) {
            accepted[exit]++;
            GeneratedToken t = new GeneratedToken(draft, s.draftLayer[j], s.draftProb[j], s.draftProbs[j]);
            shiftDrafts(s);
            commit(s, t);
            return true;
        }
        s.length = idx;
        s.rollBack(idx);
        s.append(token);
        commit(s, new GeneratedToken(token, nLayers, prob, null));
        return false;
    }

    /** Draws from max(0, p - q) normalized (p itself where the two agree everywhere). */
    private static int residual(double[] p, double[] q, DecodeSequence s) {
        double[] r = new double[p.length];
        double total = 0;
        for (int i = 0; i < p.length; i++) {
            r[i] = Math.max(0, p[i] - q[i]);
            total += r[i];
        }
        return total > 0 ? Sampler.draw(r, total, s.rng) : Sampler.draw(p, 1.0, s.rng);
    }

    private static void shiftDrafts(DecodeSequence s) {
        int n = s.drafts() - 1;
        System.arraycopy(s.draftExit, 1, s.draftExit, 0, n);
        System.arraycopy(s.draftLayer, 1, s.draftLayer, 0, n);
        System.arraycopy(s.draftProb, 1, s.draftProb, 0, n);
        System.arraycopy(s.draftProbs, 1, s.draftProbs, 0, n);
        System.arraycopy(s.draftDist, 1, s.draftDist, 0, n);
    }

    /** tokens[committed] is handed out as t: listener, then the stopping rules; a stop drops the drafts after it. */
    private void commit(DecodeSequence s, GeneratedToken t) {
        s.out.add(t);
        s.committed++;
        boolean go = listener.onToken(s.index, t);
        if (cfg.eosId() >= 0 && t.token() == cfg.eosId()) s.finish = "eos";
        else if (!go) s.finish = "stop";
        else if (s.out.size() >= cfg.maxNewTokens()) s.finish = "length";
        else if (s.committed >= s.capacity()) s.finish = "context";
        if (s.finish != null) s.length = s.committed;
    }

    /** What s does this step: verify (flush) before a drafted EOS, the length limit or a full context; go deep after draftMax drafts. */
    DecodeSequence.Mode modeOf(DecodeSequence s) {
        int drafts = s.drafts();
        if (drafts == 0) return DecodeSequence.Mode.CHECK;
        boolean eos = cfg.eosId() >= 0 && s.tokens[s.length - 1] == cfg.eosId();
        if (eos || s.out.size() + drafts >= cfg.maxNewTokens() || s.length >= s.capacity()) return DecodeSequence.Mode.FLUSH;
        return drafts >= cfg.draftMax() ? DecodeSequence.Mode.DEEP : DecodeSequence.Mode.CHECK;
    }

    private static void checkNotNaN(float p) {
        if (Float.isNaN(p)) throw new IllegalStateException("the model produced NaN logits; the weights are corrupt or do not match the config");
    }
}
