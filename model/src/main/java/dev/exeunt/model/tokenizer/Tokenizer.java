package dev.exeunt.model.tokenizer;

import java.util.OptionalInt;

/**
 * A text tokenizer: maps text to token ids and back.
 *
 * <p>Implementations are immutable and thread-safe.
 */
public interface Tokenizer {

    /** Encodes {@code text} without adding any special token; special tokens written in the text are recognised. */
    default int[] encode(String text) {
        return encode(text, false, true);
    }

    /** Encodes {@code text}, prepending the BOS token when {@code addBos} is true and this tokenizer has one. */
    default int[] encode(String text, boolean addBos) {
        return encode(text, addBos, true);
    }

    /**
     * Encodes {@code text}.
     *
     * @param addBos prepend the BOS token (if this tokenizer has one)
     * @param parseSpecialTokens when true, added/special tokens written literally in the text (e.g.
     *     {@code <|endoftext|>}) become their single id; when false they are encoded as ordinary text
     */
    int[] encode(String text, boolean addBos, boolean parseSpecialTokens);

    /** Decodes ids to text, special tokens included as their text. */
    default String decode(int[] ids) {
        return decode(ids, false);
    }

    /**
     * Decodes ids to text. Byte sequences that are not valid UTF-8 become U+FFFD.
     *
     * @throws IllegalArgumentException for an id outside {@code [0, vocabSize())} or an unused id
     */
    String decode(int[] ids, boolean skipSpecialTokens);

    /** A new streaming decoder over this tokenizer (for token-by-token generation output). */
    default TokenDecoder newDecoder() {
        return new TokenDecoder(this, false);
    }

    /**
     * The bytes a single token contributes to decoded output (before any whole-text post step such as
     * stripping a leading space, see {@link #leadingSpacesToStrip()}).
     *
     * @throws IllegalArgumentException for an id outside the vocabulary
     */
    byte[] tokenBytes(int id);

    /** Number of leading spaces the decoder strips from the very start of decoded text (SentencePiece: 1). */
    default int leadingSpacesToStrip() {
        return 0;
    }

    /** One more than the largest id in use. */
    int vocabSize();

    OptionalInt bosId();

    OptionalInt eosId();

    OptionalInt padId();

    /** The vocabulary string of {@code id} (as stored in tokenizer.json, e.g. {@code "Ġhello"}), or null for an unused id. */
    String tokenText(int id);

    /** The id of a vocabulary string (or added token content), or -1 when absent. */
    int idOf(String token);

    /** True when {@code id} is a special (control) token such as BOS/EOS. */
    boolean isSpecial(int id);
}
