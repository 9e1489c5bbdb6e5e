package dev.exeunt.model.generate;

/**
 * How to generate. temperature 0 is greedy; topK 0 and topP 1 disable those filters. A token exits
 * at the first active exit whose top probability is >= threshold; threshold >= 1 never exits (the
 * output is then the full model's, token for token). exitLayers lists the 1-based layers of the
 * exits to use (null: all exits). Generation of a sequence stops at eosId (when >= 0) or after
 * maxNewTokens.
 */
public record GenerationConfig(int maxNewTokens, double temperature, int topK, double topP, long seed, double threshold,
                               int[] exitLayers, int eosId) {
    public GenerationConfig {
        if (maxNewTokens < 0) throw new IllegalArgumentException("max new tokens must be >= 0, got " + maxNewTokens);
        if (temperature < 0 || !Double.isFinite(temperature)) throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        if (topK < 0) throw new IllegalArgumentException("top_k must be >= 0, got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        if (!(threshold >= 0)) throw new IllegalArgumentException("early-exit threshold must be >= 0, got " + threshold);
    }

    public static GenerationConfig greedy(int maxNewTokens) {
        return new GenerationConfig(maxNewTokens, 0, 0, 1, 0, 1.0, null, -1);
    }

    public GenerationConfig withThreshold(double t) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, t, exitLayers, eosId);
    }

    public GenerationConfig withEos(int eos) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, exitLayers, eos);
    }

    public GenerationConfig withExitLayers(int[] layers) {
        return new GenerationConfig(maxNewTokens, temperature, topK, topP, seed, threshold, layers, eosId);
    }

    public GenerationConfig withSampling(double temp, int k, double p, long s) {
        return new GenerationConfig(maxNewTokens, temp, k, p, s, threshold, exitLayers, eosId);
    }

    public boolean earlyExit() {
        return threshold < 1.0;
    }
}
