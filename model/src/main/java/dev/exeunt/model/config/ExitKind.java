package dev.exeunt.model.config;

import java.util.Locale;

/** Exit structures from lightest to heaviest (EARLY-EXIT.md section 1). */
public enum ExitKind {
    /** Output head only. */
    EMBEDDING,
    /** Norm, then the head. */
    NORM,
    /** The layer's MLP split into trunk and exit branch; then norm and head. */
    MLP,
    /** One extra transformer layer with its own KV cache; then norm and head. */
    LAYER;

    /** Parses one kind; combinations such as "mlp+layer" are rejected because the two exclude each other. */
    public static ExitKind parse(String s) {
        String t = s.trim().toLowerCase(Locale.ROOT);
        if (t.contains("mlp") && (t.contains("layer") || t.contains("block"))) {
            throw new IllegalArgumentException("exit kinds 'mlp' and 'layer' are exclusive: an exit has either a split MLP "
                    + "branch or a whole extra layer, not both (got '" + s + "')");
        }
        return switch (t) {
            case "embedding", "head" -> EMBEDDING;
            case "norm" -> NORM;
            case "mlp" -> MLP;
            case "layer", "block" -> LAYER;
            default -> throw new IllegalArgumentException("unknown exit kind '" + s + "' (expected embedding, norm, mlp or layer)");
        };
    }

    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }
}
