package dev.exeunt.model.gguf;

import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.GgufFile;
import dev.exeunt.model.io.GgufTokenizerData;
import dev.exeunt.model.io.GgufType;
import dev.exeunt.model.io.GgufValue;
import dev.exeunt.model.tokenizer.AddedToken;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.PreTokenizerPatterns;
import dev.exeunt.model.tokenizer.SpmTokenizer;
import dev.exeunt.model.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Tokenizers from GGUF metadata ({@code tokenizer.ggml.*}):
 *
 * <ul>
 *   <li>{@code gpt2}: byte-level BPE ({@link BpeTokenizer}) from tokens and merges; control tokens
 *       (type 3) and user-defined tokens (type 4) are added tokens matched literally. The split regex
 *       follows {@code tokenizer.ggml.pre}: {@code llama-bpe} / {@code llama3} / {@code smaug-bpe}
 *       take Llama-3's (and, as llama.cpp does for them, emit a word that is itself a token without
 *       merging); anything else GPT-2's.
 *   <li>{@code llama}: SentencePiece ({@link SpmTokenizer}) from tokens, scores and token types,
 *       merged by best score with byte fallback, as llama.cpp does; {@code tokenizer.ggml.add_space_prefix}
 *       (default true) controls the leading "▁".
 * </ul>
 */
public final class GgufTokenizers {
    private static final Set<String> LLAMA3_PRE = Set.of("llama-bpe", "llama3", "llama-v3", "smaug-bpe");

    private GgufTokenizers() {}

    /** The tokenizer of an open GGUF file. */
    public static Tokenizer load(GgufFile gguf) throws IOException {
        return create(gguf.tokenizer(), gguf.metadata(), gguf.path());
    }

    /** The tokenizer described by {@code tok}; {@code metadata} supplies the keys GgufTokenizerData lacks. */
    public static Tokenizer create(GgufTokenizerData tok, Map<String, GgufValue> metadata, Path file) throws CheckpointFormatException {
        try {
            return switch (tok.model()) {
                case "gpt2" -> byteLevel(tok);
                case "llama" -> sentencePiece(tok, metadata);
                default -> throw new CheckpointFormatException(file, "unsupported tokenizer model '" + tok.model()
                        + "' (tokenizer.ggml.model); supported: gpt2 (byte-level BPE), llama (SentencePiece)");
            };
        } catch (IllegalArgumentException e) {
            throw new CheckpointFormatException(file, "invalid " + tok.model() + " tokenizer: " + e.getMessage(), e);
        }
    }

    static Tokenizer create(GgufTokenizerData tok, Path file) throws CheckpointFormatException {
        return create(tok, Map.of(), file);
    }

    private static BpeTokenizer byteLevel(GgufTokenizerData tok) {
        List<String> tokens = tok.tokens();
        int[] types = tok.tokenTypes();
        Map<String, Integer> vocab = new HashMap<>(tokens.size() * 2);
        List<AddedToken> added = new ArrayList<>();
        for (int i = 0; i < tokens.size(); i++) {
            int type = types == null ? SpmTokenizer.NORMAL : types[i];
            String t = tokens.get(i);
            if ((type == SpmTokenizer.CONTROL || type == SpmTokenizer.USER_DEFINED) && !t.isEmpty()) {
                added.add(new AddedToken(i, t, type == SpmTokenizer.CONTROL));
            } else {
                vocab.putIfAbsent(t, i);
            }
        }
        List<BpeTokenizer.Merge> merges = new ArrayList<>(tok.merges().size());
        for (int r = 0; r < tok.merges().size(); r++) {
            String m = tok.merges().get(r);
            int sp = m.indexOf(' ', 1);
            if (sp < 0) throw new IllegalArgumentException("merge " + r + " '" + m + "' is not two tokens separated by a space");
            merges.add(new BpeTokenizer.Merge(m.substring(0, sp), m.substring(sp + 1)));
        }
        boolean llama3 = tok.pre().map(LLAMA3_PRE::contains).orElse(false);
        return BpeTokenizer.builder(BpeTokenizer.Flavour.BYTE_LEVEL)
                .vocab(vocab)
                .merges(merges)
                .addedTokens(added)
                .splitRegex(llama3 ? PreTokenizerPatterns.LLAMA3 : PreTokenizerPatterns.GPT2)
                .ignoreMerges(llama3)
                .bos(tok.bosId().isPresent() ? tok.bosId().getAsInt() : null)
                .eos(tok.eosId().isPresent() ? tok.eosId().getAsInt() : null)
                .pad(tok.paddingId().isPresent() ? tok.paddingId().getAsInt() : null)
                .build();
    }

    private static SpmTokenizer sentencePiece(GgufTokenizerData tok, Map<String, GgufValue> md) {
        GgufValue sp = md.get(GgufTokenizerData.PREFIX + "add_space_prefix");
        boolean addSpacePrefix = sp == null || sp.type() != GgufType.BOOL || sp.asBoolean();
        int unk = tok.unknownId().isPresent() ? tok.unknownId().getAsInt() : tok.tokens().indexOf("<unk>");
        return new SpmTokenizer(tok.tokens(), tok.scores(), tok.tokenTypes(),
                tok.bosId().orElse(-1), tok.eosId().orElse(-1), unk, tok.paddingId().orElse(-1), addSpacePrefix);
    }
}
