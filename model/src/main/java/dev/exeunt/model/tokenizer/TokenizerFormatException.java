package dev.exeunt.model.tokenizer;

import java.io.IOException;

/** A tokenizer file that is malformed or uses a structure this engine does not support. */
public class TokenizerFormatException extends IOException {
    public TokenizerFormatException(String message) {
        super(message);
    }

    public TokenizerFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
