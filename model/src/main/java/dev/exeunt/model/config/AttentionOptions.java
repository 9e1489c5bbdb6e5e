package dev.exeunt.model.config;

import dev.exeunt.tensor.RopeScaling;

/**
 * Where a Llama-family model's attention departs from Llama 2's, as the families set it:
 *
 * @param headDim     size of each head; 0 means d_model / n_heads (Qwen3, Gemma set it apart)
 * @param qkvBias     biases on the q, k and v projections (Qwen2 / Qwen2.5; Llama's attention_bias)
 * @param outputBias  a bias on the output projection (Llama's attention_bias sets it with qkvBias)
 * @param qkNorm      an RMSNorm over each head of q and of k before RoPE (Qwen3's q_norm / k_norm)
 * @param ropeScaling the frequencies' scaling (Llama 3.x's llama3, or linear)
 */
public record AttentionOptions(int headDim, boolean qkvBias, boolean outputBias, boolean qkNorm, RopeScaling ropeScaling) {
    /** Llama 2's attention: no biases, no q/k norm, plain RoPE, head_dim = d_model / n_heads. */
    public static final AttentionOptions LLAMA = new AttentionOptions(0, false, false, false, RopeScaling.NONE);

    public AttentionOptions {
        if (headDim < 0) throw new IllegalArgumentException("invalid model config: head_dim must be >= 1, got " + headDim);
        if (ropeScaling == null) ropeScaling = RopeScaling.NONE;
    }

    public boolean isLlama() {
        return equals(LLAMA);
    }

    public AttentionOptions withHeadDim(int d) {
        return new AttentionOptions(d, qkvBias, outputBias, qkNorm, ropeScaling);
    }

    public AttentionOptions withBiases(boolean qkv, boolean output) {
        return new AttentionOptions(headDim, qkv, output, qkNorm, ropeScaling);
    }

    public AttentionOptions withQkNorm(boolean on) {
        return new AttentionOptions(headDim, qkvBias, outputBias, on, ropeScaling);
    }

    public AttentionOptions withRopeScaling(RopeScaling s) {
        return new AttentionOptions(headDim, qkvBias, outputBias, qkNorm, s);
    }
}
