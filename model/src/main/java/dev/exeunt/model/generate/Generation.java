package dev.exeunt.model.generate;

import java.util.List;

/** The result for one prompt. finishReason is "eos", "length", "stop" (the listener asked) or "context" (model context full). */
public record Generation(int[] prompt, List<GeneratedToken> tokens, String finishReason) {
    public int[] tokenIds() {
        return tokens.stream().mapToInt(GeneratedToken::token).toArray();
    }

    public int[] exitLayers() {
        return tokens.stream().mapToInt(GeneratedToken::exitLayer).toArray();
    }
}
