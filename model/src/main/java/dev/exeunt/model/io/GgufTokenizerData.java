package dev.exeunt.model.io;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * The tokenizer description embedded in a GGUF file ({@code tokenizer.ggml.*} keys), as plain data.
 *
 * @param model        {@code tokenizer.ggml.model}, e.g. {@code llama} (SentencePiece), {@code gpt2} (BPE)
 * @param pre          {@code tokenizer.ggml.pre}: pre-tokenizer name (llama.cpp), if present
 * @param tokens       {@code tokenizer.ggml.tokens}, indexed by token id
 * @param scores       {@code tokenizer.ggml.scores} (same length as tokens), or null
 * @param tokenTypes   {@code tokenizer.ggml.token_type} (same length as tokens; llama.cpp: 1 normal,
 *                     2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), or null
 * @param merges       {@code tokenizer.ggml.merges} ("a b" pairs, BPE), empty when absent
 * @param bosId        {@code tokenizer.ggml.bos_token_id}
 * @param eosId        {@code tokenizer.ggml.eos_token_id}
 * @param unknownId    {@code tokenizer.ggml.unknown_token_id}
 * @param separatorId  {@code tokenizer.ggml.separator_token_id} (llama.cpp spells it {@code seperator}; both are read)
 * @param paddingId    {@code tokenizer.ggml.padding_token_id}
 * @param addBos       {@code tokenizer.ggml.add_bos_token}
 * @param addEos       {@code tokenizer.ggml.add_eos_token}
 * @param chatTemplate {@code tokenizer.chat_template}
 */
public record GgufTokenizerData(
        String model,
        Optional<String> pre,
        List<String> tokens,
        float[] scores,
        int[] tokenTypes,
        List<String> merges,
        OptionalInt bosId,
        OptionalInt eosId,
        OptionalInt unknownId,
        OptionalInt separatorId,
        OptionalInt paddingId,
        Optional<Boolean> addBos,
        Optional<Boolean> addEos,
        Optional<String> chatTemplate) {

    public static final String PREFIX = "tokenizer.ggml.";

    public GgufTokenizerData {
        Objects.requireNonNull(model);
        tokens = List.copyOf(tokens);
        merges = List.copyOf(merges);
        scores = scores == null ? null : scores.clone();
        tokenTypes = tokenTypes == null ? null : tokenTypes.clone();
    }

    @Override
    public float[] scores() {
        return scores == null ? null : scores.clone();
    }

    @Override
    public int[] tokenTypes() {
        return tokenTypes == null ? null : tokenTypes.clone();
    }

    public int vocabSize() {
        return tokens.size();
    }

    /** Reads the tokenizer keys of a GGUF metadata map; {@code file} is used in error messages. */
    public static GgufTokenizerData from(Map<String, GgufValue> md, Path file) throws CheckpointFormatException {
        String model = string(md, file, PREFIX + "model").orElseThrow(() ->
                new CheckpointFormatException(file, "no tokenizer: key '" + PREFIX + "model' is missing"));
        GgufValue tv = md.get(PREFIX + "tokens");
        if (tv == null) {
            throw new CheckpointFormatException(file, "key '" + PREFIX + "tokens' is missing");
        }
        List<String> tokens = stringArray(tv, file, PREFIX + "tokens");
        float[] scores = null;
        GgufValue sv = md.get(PREFIX + "scores");
        if (sv != null) {
            if (!sv.isArray() || sv.elementType() != GgufType.FLOAT32 && sv.elementType() != GgufType.FLOAT64) {
                throw new CheckpointFormatException(file, "'" + PREFIX + "scores' must be a float array, is " + sv);
            }
            scores = sv.asFloatArray();
            checkLength(file, "scores", scores.length, tokens.size());
        }
        int[] types = null;
        GgufValue ttv = md.get(PREFIX + "token_type");
        if (ttv != null) {
            try {
                types = ttv.asIntArray();
            } catch (IllegalStateException | ArithmeticException e) {
                throw new CheckpointFormatException(file, "'" + PREFIX + "token_type' must be an integer array, is " + ttv);
            }
            checkLength(file, "token_type", types.length, tokens.size());
        }
        GgufValue mv = md.get(PREFIX + "merges");
        List<String> merges = mv == null ? List.of() : stringArray(mv, file, PREFIX + "merges");
        OptionalInt sep = id(md, file, PREFIX + "separator_token_id", tokens.size());
        if (sep.isEmpty()) {
            sep = id(md, file, PREFIX + "seperator_token_id", tokens.size());
        }
        return new GgufTokenizerData(model, string(md, file, PREFIX + "pre"), tokens, scores, types, merges,
                id(md, file, PREFIX + "bos_token_id", tokens.size()),
                id(md, file, PREFIX + "eos_token_id", tokens.size()),
                id(md, file, PREFIX + "unknown_token_id", tokens.size()),
                sep,
                id(md, file, PREFIX + "padding_token_id", tokens.size()),
                bool(md, file, PREFIX + "add_bos_token"),
                bool(md, file, PREFIX + "add_eos_token"),
                string(md, file, "tokenizer.chat_template"));
    }

    private static void checkLength(Path file, String key, int n, int vocab) throws CheckpointFormatException {
        if (n != vocab) {
            throw new CheckpointFormatException(file, "'" + PREFIX + key + "' has " + n + " entries but there are "
                    + vocab + " tokens");
        }
    }

    private static List<String> stringArray(GgufValue v, Path file, String key) throws CheckpointFormatException {
        if (!v.isArray() || v.elementType() != GgufType.STRING) {
            throw new CheckpointFormatException(file, "'" + key + "' must be an array of strings, is " + v);
        }
        return v.asStringList();
    }

    private static Optional<String> string(Map<String, GgufValue> md, Path file, String key)
            throws CheckpointFormatException {
        GgufValue v = md.get(key);
        if (v == null) {
            return Optional.empty();
        }
        if (v.type() != GgufType.STRING) {
            throw new CheckpointFormatException(file, "'" + key + "' must be a string, is " + v);
        }
        return Optional.of(v.asString());
    }

    private static Optional<Boolean> bool(Map<String, GgufValue> md, Path file, String key)
            throws CheckpointFormatException {
        GgufValue v = md.get(key);
        if (v == null) {
            return Optional.empty();
        }
        if (v.type() != GgufType.BOOL) {
            throw new CheckpointFormatException(file, "'" + key + "' must be a bool, is " + v);
        }
        return Optional.of(v.asBoolean());
    }

    private static OptionalInt id(Map<String, GgufValue> md, Path file, String key, int vocab)
            throws CheckpointFormatException {
        GgufValue v = md.get(key);
        if (v == null) {
            return OptionalInt.empty();
        }
        if (v.isArray() || !v.type().isInteger()) {
            throw new CheckpointFormatException(file, "'" + key + "' must be an integer, is " + v);
        }
        long id = v.asLong();
        if (id < 0 || id >= vocab) {
            throw new CheckpointFormatException(file, "'" + key + "' = " + Long.toUnsignedString(id)
                    + " is not a token id (vocabulary of " + vocab + ")");
        }
        return OptionalInt.of((int) id);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GgufTokenizerData t && model.equals(t.model) && pre.equals(t.pre)
                && tokens.equals(t.tokens) && Arrays.equals(scores, t.scores) && Arrays.equals(tokenTypes, t.tokenTypes)
                && merges.equals(t.merges) && bosId.equals(t.bosId) && eosId.equals(t.eosId)
                && unknownId.equals(t.unknownId) && separatorId.equals(t.separatorId) && paddingId.equals(t.paddingId)
                && addBos.equals(t.addBos) && addEos.equals(t.addEos) && chatTemplate.equals(t.chatTemplate);
    }

    @Override
    public int hashCode() {
        return Objects.hash(model, pre, tokens, Arrays.hashCode(scores), Arrays.hashCode(tokenTypes), merges,
                bosId, eosId, unknownId, separatorId, paddingId, addBos, addEos, chatTemplate);
    }

    @Override
    public String toString() {
        return "GgufTokenizerData[model=" + model + ", pre=" + pre.orElse("-") + ", vocab=" + tokens.size()
                + ", merges=" + merges.size() + ", bos=" + bosId + ", eos=" + eosId + "]";
    }
}
