package dev.exeunt.cli.serve;

/**
 * Limits of the server.
 *
 * @param maxPrompts       most prompts in one request
 * @param maxTokens        largest tokens_to_generate
 * @param maxPromptTokens  longest prompt in tokens (BOS included); 0 = the model's context minus one
 * @param queue            requests that may wait for the generation worker; more get 503
 * @param maxBodyBytes     largest request body; more gets 413
 */
public record ServeOptions(int maxPrompts, int maxTokens, int maxPromptTokens, int queue, int maxBodyBytes) {
    public static final int DEFAULT_MAX_PROMPTS = 8;
    public static final int DEFAULT_MAX_TOKENS = 512;
    public static final int DEFAULT_QUEUE = 16;
    public static final int DEFAULT_MAX_BODY = 1 << 20;

    public ServeOptions {
        if (maxPrompts < 1) throw new IllegalArgumentException("--max-prompts must be >= 1, got " + maxPrompts);
        if (maxTokens < 0) throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        if (maxPromptTokens < 0) throw new IllegalArgumentException("--max-prompt-tokens must be >= 1 (or 0 for the model's context), got " + maxPromptTokens);
        if (queue < 1) throw new IllegalArgumentException("--queue must be >= 1, got " + queue);
        if (maxBodyBytes < 1024) throw new IllegalArgumentException("--max-body must be >= 1024 bytes, got " + maxBodyBytes);
    }

    public static ServeOptions defaults() {
        return new ServeOptions(DEFAULT_MAX_PROMPTS, DEFAULT_MAX_TOKENS, 0, DEFAULT_QUEUE, DEFAULT_MAX_BODY);
    }

    public ServeOptions withQueue(int q) {
        return new ServeOptions(maxPrompts, maxTokens, maxPromptTokens, q, maxBodyBytes);
    }
}
