package dev.exeunt.model.tokenizer;

import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/** Pre-tokenizer split patterns, and translation of Hugging Face (Oniguruma / Rust regex) patterns to java.util.regex. */
public final class PreTokenizerPatterns {
    /** GPT-2's pattern (used by the ByteLevel pre-tokenizer with use_regex true). */
    public static final String GPT2 =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    /** Llama-3's Split pre-tokenizer pattern (tiktoken cl100k style). */
    public static final String LLAMA3 =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    private static final Pattern GPT2_COMPILED = compile(GPT2);

    private PreTokenizerPatterns() {}

    public static Pattern gpt2() {
        return GPT2_COMPILED;
    }

    /**
     * Compiles a Hugging Face regex for java.util.regex. Differences handled: {@code \s}/{@code \S} mean
     * Unicode White_Space there (UNICODE_CHARACTER_CLASS here, which leaves {@code \p{L}}, {@code \p{N}}
     * and the ASCII-only {@code (?i:...)} as they are); Java also knows possessive quantifiers and
     * {@code \p{N}{1,3}}.
     */
    public static Pattern compile(String hfRegex) {
        try {
            return Pattern.compile(hfRegex, Pattern.UNICODE_CHARACTER_CLASS);
        } catch (PatternSyntaxException e) {
            throw new IllegalArgumentException("Pre-tokenizer regex cannot be used with java.util.regex: " + hfRegex, e);
        }
    }
}
