package dev.exeunt.model.generate;

/**
 * How to generate. temperature 0 is greedy; topK 0 and topP 1 disable those filters. A token exits
 * at the first active exit whose top probability is >= threshold; threshold >= 1 never exits (the
 * output is then the full model's, token for token). exitLayers lists the 1-based layers of the
 * exits to use (null: all exits). Generation of a sequence stops at eosId (when >= 0) or after
 * maxNewTokens.
 *
 * @param topPDecay  after each generated token top_p becomes max(top_p * decay, topPBound) (Megatron's
 *                   top_p_decay); 0 = off. Applies only when top_p filters ({@code topP < 1}).
 * @param topPBound  the floor of the decayed top_p; 0 = none
 * @param vocabLimit ids >= this are never generated (a model vocabulary padded past its tokenizer's
 *                   has rows no text maps to); 0 = every row of the head
 * @param newlineBan bans newline tokens after a token ending with ':' (Megatron's
 *                   prevent_newline_after_colon); null = off
 * @param exitProbs  record, for each token, the top probability of every exit head it reached and of
 *                   the final head ({@link GeneratedToken#exitMaxProbs}); costs an extra head per exit
 * @param speculative lossless self-speculative decoding: a token that exits is a draft, and the next
 *                   token that goes through every layer verifies all pending drafts at once (the final
 *                   head on every row of its band); the output is the full model's
 * @param draftMax   with speculative, at most this many drafts wait for verification (llama.cpp's
 *                   --draft-max); the next token then goes through every layer
 * @param kvFill     how skipped layers get a token's keys and values ({@link KvFill})
 * @param adaptive   an exit whose observed exit rate does not pay for its check is not checked for a
 *                   while ({@link ExitGate})
 */
public record GenerationConfig(int maxNewTokens, double temperature, int topK, double topP, long seed, double threshold,
                               int[] exitLayers, int eosId, double topPDecay, double topPBound, int vocabLimit,
                               NewlineBan newlineBan, boolean exitProbs, boolean speculative, int draftMax, KvFill kvFill,
                               boolean adaptive) {
    /**
     * How the layers a token skipped get its keys and values. RECOMPUTE (EARLY-EXIT.md section 3,
     * method 1): the next token that goes deeper runs them for the pending positions, so the caches hold
     * exactly what the full model computes. PROPAGATE (CALM): each skipped layer's keys and values come
     * from the exited hidden state at once, through only that layer's norm and k/v projections; cheaper
     * when decode is compute-bound, but no longer the full model's caches.
     */
    public enum KvFill { RECOMPUTE, PROPAGATE }

    /** Drafts pending verification by default: a band of draft rows plus the verifying token fills the 8-row skinny GEMM. */
    public static final int DEFAULT_DRAFT_MAX = 7;

    /**
     * The smallest non-zero temperature: logits divided by less overflow to infinity, and the
     * softmax becomes NaN (garbage tokens) instead of the greedy choice it tends to.
     */
    public static final double MIN_TEMPERATURE = 1e-6;

    public GenerationConfig {
        if (maxNewTokens < 0) throw new IllegalArgumentException("max new tokens must be >= 0, got " + maxNewTokens);
        if (!Double.isFinite(temperature) || !(temperature == 0 || temperature >= MIN_TEMPERATURE)) {
            throw new IllegalArgumentException("temperature must be 0 (greedy) or >= " + MIN_TEMPERATURE + ", got " + temperature);
        }
        if (topK < 0) throw new IllegalArgumentException("top_k must be >= 0, got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        if (!(threshold >= 0)) throw new IllegalArgumentException("early-exit threshold must be >= 0, got " + threshold);
        if (!(topPDecay >= 0 && topPDecay <= 1)) throw new IllegalArgumentException("top_p_decay must be in [0, 1], got " + topPDecay);
        if (!(topPBound >= 0 && topPBound <= topP)) throw new IllegalArgumentException("top_p_bound must be in [0, top_p], got " + topPBound);
        if (vocabLimit < 0) throw new IllegalArgumentException("vocab limit must be >= 0, got " + vocabLimit);
        if (draftMax < 1) throw new IllegalArgumentException("draft max must be >= 1, got " + draftMax);
        if (kvFill == null) throw new IllegalArgumentException("kv fill must be recompute or propagate");
        if (speculative && kvFill == KvFill.PROPAGATE) {
            throw new IllegalArgumentException("speculative decoding verifies drafts through the recomputed caches; it cannot use kv fill propagate");
        }
    }

    public GenerationConfig(int maxNewTokens, double temperature, int topK, double topP, long seed, double threshold, int[] exitLayers,
                            int eosId) {
        this(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, 0, 0, 0, null, false, false, DEFAULT_DRAFT_MAX, KvFill.RECOMPUTE, false);
    }

    public static GenerationConfig greedy(int maxNewTokens) {
        return new GenerationConfig(maxNewTokens, 0, 0, 1, 0, 1.0, null, -1);
    }

    /**
     * Checks that a prompt of {@code promptTokens} plus {@code maxNewTokens} fits in a context of
     * {@code context} tokens; the message names {@code flag}, the option the user set.
     */
    public static void checkFits(String flag, long maxNewTokens, int promptTokens, int context) {
        if (maxNewTokens < 0) throw new IllegalArgumentException(flag + " must be >= 0, got " + maxNewTokens);
        if (promptTokens + maxNewTokens > context) {
            throw new IllegalArgumentException(flag + " " + maxNewTokens + " with a prompt of " + promptTokens + " tokens exceeds the model's context of "
                    + context + " tokens: at most " + Math.max(0, context - promptTokens));
        }
    }

    public GenerationConfig withThreshold(double t) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, t, exitLayers, eosId, topPDecay, topPBound, vocabLimit, newlineBan, exitProbs, speculative, draftMax, kvFill, adaptive);
    }

    public GenerationConfig withEos(int eos) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eos, topPDecay, topPBound, vocabLimit, newlineBan, exitProbs, speculative, draftMax, kvFill, adaptive);
    }

    public GenerationConfig withExitLayers(int[] layers) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, layers, eosId, topPDecay, topPBound, vocabLimit, newlineBan, exitProbs, speculative, draftMax, kvFill, adaptive);
    }

    public GenerationConfig withSampling(double temp, int k, double p, long s) {
        return new GenerationConfig(maxNewTokens, temp, k, p, s, threshold, exitLayers, eosId, topPDecay, topPBound, vocabLimit, newlineBan, exitProbs, speculative, draftMax, kvFill, adaptive);
    }

    public GenerationConfig withTopPDecay(double decay, double bound) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, decay, bound, vocabLimit, newlineBan, exitProbs, speculative, draftMax, kvFill, adaptive);
    }

    public GenerationConfig withVocabLimit(int limit) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, topPDecay, topPBound, limit, newlineBan, exitProbs, speculative, draftMax, kvFill, adaptive);
    }

    public GenerationConfig withNewlineBan(NewlineBan ban) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, topPDecay, topPBound, vocabLimit, ban, exitProbs, speculative, draftMax, kvFill, adaptive);
    }

    public GenerationConfig withExitProbs(boolean record) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, topPDecay, topPBound, vocabLimit, newlineBan, record, speculative, draftMax, kvFill, adaptive);
    }

    /** Self-speculative decoding on or off, with at most {@code maxDrafts} drafts awaiting verification. */
    public GenerationConfig withSpeculative(boolean on, int maxDrafts) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, topPDecay, topPBound, vocabLimit, newlineBan, exitProbs, on, maxDrafts, kvFill, adaptive);
    }

    public GenerationConfig withSpeculative(boolean on) {
        return withSpeculative(on, draftMax);
    }

    public GenerationConfig withKvFill(KvFill fill) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, topPDecay, topPBound, vocabLimit, newlineBan, exitProbs, speculative, draftMax, fill, adaptive);
    }

    public GenerationConfig withAdaptive(boolean on) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eosId, topPDecay, topPBound, vocabLimit, newlineBan, exitProbs, speculative, draftMax, kvFill, on);
    }

    public boolean earlyExit() {
        return threshold < 1.0;
    }

    /** top_p for the next token after one with top_p {@code current}. */
    double decayedTopP(double current) {
        if (topPDecay == 0 || current >= 1) return current;
        return Math.max(current * topPDecay, topPBound);
    }
}
