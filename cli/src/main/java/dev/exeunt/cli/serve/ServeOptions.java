package dev.exeunt.cli.serve;

import dev.exeunt.model.generate.GenerationConfig;

/**
 * Limits of the server.
 *
 * @param maxPrompts       most prompts in one request
 * @param maxTokens        largest tokens_to_generate
 * @param maxPromptTokens  longest prompt in tokens (BOS included); 0 = the model's context minus one
 * @param queue            requests that may wait for the generation worker; more get 503
 * @param maxBodyBytes     largest request body; more gets 413
 * @param speculative      whether a request that does not say ("speculative") decodes self-speculatively
 * @param draftMax         the drafts awaiting verification of a speculative request that gives no "draft_max"
 * @param apiKey           what every endpoint but /health requires as {@code Authorization: Bearer <key>} (null: none)
 * @param chatTemplate     how /v1/chat/completions renders messages (null: the model's own template, recognised, else plain)
 */
public record ServeOptions(int maxPrompts, int maxTokens, int maxPromptTokens, int queue, int maxBodyBytes, boolean speculative, int draftMax,
                           String apiKey, String chatTemplate) {
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
        if (draftMax < 1) throw new IllegalArgumentException("--draft-max must be >= 1, got " + draftMax);
        if (apiKey != null && apiKey.isBlank()) throw new IllegalArgumentException("--api-key must not be empty");
        if (chatTemplate != null) ChatTemplate.parse(chatTemplate);
    }

    /** Limits only; requests decode speculatively when they ask. */
    public ServeOptions(int maxPrompts, int maxTokens, int maxPromptTokens, int queue, int maxBodyBytes) {
        this(maxPrompts, maxTokens, maxPromptTokens, queue, maxBodyBytes, false, GenerationConfig.DEFAULT_DRAFT_MAX, null, null);
    }

    public static ServeOptions defaults() {
        return new ServeOptions(DEFAULT_MAX_PROMPTS, DEFAULT_MAX_TOKENS, 0, DEFAULT_QUEUE, DEFAULT_MAX_BODY);
    }

    public ServeOptions withQueue(int q) {
        return new ServeOptions(maxPrompts, maxTokens, maxPromptTokens, q, maxBodyBytes, speculative, draftMax, apiKey, chatTemplate);
    }

    /** The server's default for requests that do not say: {@code serve --speculative [--draft-max N]}. */
    public ServeOptions withSpeculative(boolean on, int maxDrafts) {
        return new ServeOptions(maxPrompts, maxTokens, maxPromptTokens, queue, maxBodyBytes, on, maxDrafts, apiKey, chatTemplate);
    }

    /** {@code serve --api-key KEY} (or EXEUNT_API_KEY): every endpoint but /health wants {@code Authorization: Bearer KEY}. */
    public ServeOptions withApiKey(String key) {
        return new ServeOptions(maxPrompts, maxTokens, maxPromptTokens, queue, maxBodyBytes, speculative, draftMax, key, chatTemplate);
    }

    /** {@code serve --chat-template chatml|llama3|llama2|plain}: how /v1/chat/completions renders messages. */
    public ServeOptions withChatTemplate(String name) {
        return new ServeOptions(maxPrompts, maxTokens, maxPromptTokens, queue, maxBodyBytes, speculative, draftMax, apiKey, name);
    }

    /** The options as health reports them: never the key itself. */
    @Override
    public String toString() {
        return "ServeOptions[maxPrompts=" + maxPrompts + ", maxTokens=" + maxTokens + ", maxPromptTokens=" + maxPromptTokens + ", queue=" + queue
                + ", maxBodyBytes=" + maxBodyBytes + ", speculative=" + speculative + ", draftMax=" + draftMax + ", apiKey=" + (apiKey == null ? "none" : "set") + ", chatTemplate=" + chatTemplate + "]";
    }
}
