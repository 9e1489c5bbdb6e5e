package dev.exeunt.model.generate;

import java.util.Locale;

/** How a token that exits early gets its keys and values in the layers it skipped (EARLY-EXIT.md section 3). */
public enum EeMethod {
    /** The next token that goes deeper computes them, batched with its own (one stage or several). */
    RECOMPUTE,
    /** Pipeline-based: the stages after the exit compute them at once while stage 0 starts the next token (pp > 1). */
    PIPELINE;

    /** {@code recompute} or {@code pipeline} ({@code --ee-method}). */
    public static EeMethod parse(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "recompute" -> RECOMPUTE;
            case "pipeline" -> PIPELINE;
            default -> throw new IllegalArgumentException("--ee-method must be recompute or pipeline, got '" + s + "'");
        };
    }
}
