package dev.exeunt.model.tokenizer;

import java.io.IOException;

/**
 * A model, its tokenizer and a dataset that were not made with the same tokenizer (their
 * {@link TokenizerHash}es differ). Commands accept {@code --force} to use them together anyway.
 */
public class TokenizerMismatchException extends IOException {
    public TokenizerMismatchException(String message) {
        super(message);
    }

    /**
     * Refuses unless the hashes agree, either is unknown (older files, Hugging Face models) or {@code force}.
     *
     * @param message what differs, with two {@code %s} for the short forms of {@code hash} and {@code otherHash},
     *     e.g. "dataset d.arrow was tokenized with tokenizer %s but the model ckpt uses %s"
     * @return true when they differ but {@code force} lets them through (the caller may warn)
     */
    public static boolean check(String message, String hash, String otherHash, boolean force) throws TokenizerMismatchException {
        if (hash == null || otherHash == null || hash.equals(otherHash)) return false;
        if (force) return true;
        throw new TokenizerMismatchException(String.format(message, TokenizerHash.shortForm(hash), TokenizerHash.shortForm(otherHash))
                + "; pass --force to use them together");
    }
}
