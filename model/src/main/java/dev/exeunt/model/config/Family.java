package dev.exeunt.model.config;

/**
 * The two decoder families. GPT-2: LayerNorm, learned positions, GELU MLP, biases, fused qkv stored
 * input-major (Conv1D). Llama: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases.
 */
public enum Family {
    GPT2,
    LLAMA;

    public static Family parse(String s) {
        return switch (s.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "gpt2", "gpt-2" -> GPT2;
            case "llama" -> LLAMA;
            default -> throw new IllegalArgumentException("unknown model family '" + s + "' (expected gpt2 or llama)");
        };
    }
}
