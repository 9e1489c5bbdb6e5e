package dev.exeunt.model.tokenizer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * A stable identity of a tokenizer's id mapping: SHA-256 over a canonical serialization of what decides
 * which ids a text gets (every id's token string and added/special flags, merges in rank order, and the
 * normalizer, pre-tokenizer and decoder settings). Reformatting a tokenizer.json, reordering its keys or
 * changing BOS/EOS choices keeps the hash; changing one token or merge changes it.
 *
 * <p>Stored in checkpoints (config.json) and datasets (Arrow schema metadata) so that a model, its
 * tokenizer and its data are checked to belong together.
 */
public final class TokenizerHash {
    /** Prefix of every hash string, naming the algorithm. */
    public static final String PREFIX = "sha256:";
    private static final int VERSION = 1;

    private TokenizerHash() {}

    /** {@code "sha256:<64 hex digits>"} for {@code t}. */
    public static String of(Tokenizer t) {
        Canonical c = new Canonical();
        c.string("exeunt-tokenizer").integer(VERSION).string(t.getClass().getSimpleName());
        if (t instanceof BpeTokenizer b) settings(b, c);
        int n = t.vocabSize();
        c.integer(n);
        for (int id = 0; id < n; id++) {
            String s = t.tokenText(id);
            c.string(s == null ? "\u0000unused" : s).integer(t.isSpecial(id) ? 1 : 0);
        }
        if (t instanceof BpeTokenizer b) {
            c.integer(b.addedTokens().size());
            b.addedTokens().stream().sorted(java.util.Comparator.comparingInt(AddedToken::id))
                    .forEach(a -> c.integer(a.id()).string(a.content()).integer(a.special() ? 1 : 0));
            c.integer(b.merges().size());
            for (BpeTokenizer.Merge m : b.merges()) c.string(m.left()).string(m.right());
        }
        return PREFIX + HexFormat.of().formatHex(c.digest.digest());
    }

    /** A short form for messages: {@code sha256:} and the first 12 hex digits. */
    public static String shortForm(String hash) {
        if (hash == null) return "(none)";
        return hash.length() > PREFIX.length() + 12 ? hash.substring(0, PREFIX.length() + 12) + ".." : hash;
    }

    /** True for a well-formed hash string as {@link #of} writes it. */
    public static boolean isWellFormed(String hash) {
        return hash != null && hash.matches("sha256:[0-9a-f]{64}");
    }

    private static void settings(BpeTokenizer b, Canonical c) {
        c.string(b.flavour().name())
                .integer(b.splitRules().size())
                .string(String.valueOf(b.normalization()))
                .integer(b.addPrefixSpace() ? 1 : 0)
                .integer(b.ignoreMerges() ? 1 : 0)
                .string(b.prependScheme().name())
                .integer(b.prependIfPresent() ? 1 : 0)
                .integer(b.splitOnSpaceMark() ? 1 : 0)
                .integer(b.byteFallback() ? 1 : 0)
                .integer(b.fuseUnk() ? 1 : 0)
                .string(String.valueOf(b.unkToken()))
                .integer(b.leadingSpacesToStrip());
        for (BpeTokenizer.SplitRule r : b.splitRules()) c.string(r.regex()).integer(r.keepGaps() ? 1 : 0);
    }

    /** Length-prefixed fields, so that no two different field lists serialize alike. */
    private static final class Canonical {
        final MessageDigest digest;
        private final ByteBuffer four = ByteBuffer.allocate(4);

        Canonical() {
            try {
                digest = MessageDigest.getInstance("SHA-256");
            } catch (NoSuchAlgorithmException e) {
                throw new IllegalStateException("the JDK lacks SHA-256", e);
            }
        }

        Canonical integer(int v) {
            four.clear();
            digest.update(four.putInt(v).array());
            return this;
        }

        Canonical string(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            integer(b.length);
            digest.update(b);
            return this;
        }
    }
}
