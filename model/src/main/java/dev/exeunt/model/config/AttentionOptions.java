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
 * @param slidingWindow keys each query attends to, its own included (Mistral's sliding_window); 0: all before it
 */
public record AttentionOptions(int headDim, boolean qkvBias, boolean outputBias, boolean qkNorm, RopeScaling ropeScaling, int slidingWindow) {
    /** Llama 2's attention: no biases, no q/k norm, plain RoPE, head_dim = d_model / n_heads. */
    public static final AttentionOptions LLAMA = new AttentionOptions(0, false, false, false, RopeScaling.NONE, 0);

    public AttentionOptions(int headDim, boolean qkvBias, boolean outputBias, boolean qkNorm, RopeScaling ropeScaling) {
        this(headDim, qkvBias, outputBias, qkNorm, ropeScaling, 0);
    }

    public AttentionOptions {
        if (headDim < 0) throw new IllegalArgumentException("invalid model config: head_dim must be >= 1, got " + headDim);
        if (slidingWindow < 0) throw new IllegalArgumentException("invalid model config: sliding_window must be >= 1, got " + slidingWindow);
        if (ropeScaling == null) ropeScaling = RopeScaling.NONE;
    }

    public boolean isLlama() {
        return equals(LLAMA);
    }

    public AttentionOptions withHeadDim(int d) {
        return new AttentionOptions(d, qkvBias, outputBias, qkNorm, ropeScaling, slidingWindow);
    }

    public AttentionOptions withBiases(boolean qkv, boolean output) {
        return new AttentionOptions(headDim, qkv, output, qkNorm, ropeScaling, slidingWindow);
    }

    public AttentionOptions withQkNorm(boolean on) {
        return new AttentionOptions(headDim, qkvBias, outputBias, on, ropeScaling, slidingWindow);
    }

    public AttentionOptions withSlidingWindow(int w) {
        return new AttentionOptions(headDim, qkvBias, outputBias, qkNorm, ropeScaling, w);
    }

    public AttentionOptions withRopeScaling(RopeScaling s) {
        return new AttentionOptions(headDim, qkvBias, outputBias, qkNorm, s, slidingWindow);
    }
}
