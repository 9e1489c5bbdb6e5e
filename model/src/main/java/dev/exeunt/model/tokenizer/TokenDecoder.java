package dev.exeunt.model.tokenizer;

import java.io.ByteArrayOutputStream;

/**
 * Streaming decoder: feed ids one at a time, get back the text that is complete so far.
 *
 * <p>Bytes of a UTF-8 character split over several tokens are held back until the character is complete,
 * so concatenating every {@link #append} result and the final {@link #flush()} gives exactly
 * {@link Tokenizer#decode(int[], boolean)} of the same ids (one exception: a SentencePiece run of byte-fallback
 * tokens that is not valid UTF-8 as a whole decodes to one U+FFFD per token there, to U+FFFD per ill-formed
 * part here). Not thread-safe.
 */
public final class TokenDecoder {
    private final Tokenizer tokenizer;
    private final boolean skipSpecialTokens;
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();
    private int toStrip;

    public TokenDecoder(Tokenizer tokenizer, boolean skipSpecialTokens) {
        this.tokenizer = tokenizer;
        this.skipSpecialTokens = skipSpecialTokens;
        this.toStrip = tokenizer.leadingSpacesToStrip();
    }

    /** Adds one token; returns the newly completed text (possibly empty). */
    public String append(int id) {
        if (skipSpecialTokens && tokenizer.isSpecial(id)) {
            tokenizer.tokenBytes(id); // still validate the id
            return "";
        }
        byte[] b = tokenizer.tokenBytes(id);
        int from = 0;
        while (toStrip > 0 && from < b.length) {
            if (b[from] == ' ') {
                from++;
                toStrip--;
            } else {
                toStrip = 0;
            }
        }
        pending.write(b, from, b.length - from);
        return drainComplete();
    }

    /** Adds several tokens; returns the newly completed text. */
    public String append(int... ids) {
        StringBuilder sb = new StringBuilder();
        for (int id : ids) sb.append(append(id));
        return sb.toString();
    }

    /** Returns any held-back bytes (an incomplete character becomes U+FFFD) and resets the decoder. */
    public String flush() {
        byte[] buf = pending.toByteArray();
        String s = Utf8.decodeLossy(buf, 0, buf.length);
        pending.reset();
        toStrip = tokenizer.leadingSpacesToStrip();
        return s;
    }

    /** Number of bytes held back waiting for the rest of a character. */
    public int pendingBytes() {
        return pending.size();
    }

    private String drainComplete() {
        byte[] buf = pending.toByteArray();
        int end = completePrefixLength(buf);
        if (end == 0) return "";
        String s = Utf8.decodeLossy(buf, 0, end);
        pending.reset();
        pending.write(buf, end, buf.length - end);
        return s;
    }

    /**
     * Length of the longest prefix that does not end inside a (possibly valid) incomplete UTF-8 sequence.
     * Only a trailing sequence that could still become a valid character is held back; invalid bytes are
     * released (and become U+FFFD exactly as in a full decode).
     */
    static int completePrefixLength(byte[] buf) {
        int n = buf.length;
        // look back at most 3 bytes for a lead byte whose sequence is not finished
        for (int back = 1; back <= Math.min(3, n); back++) {
            int b = buf[n - back] & 0xFF;
            if ((b & 0xC0) == 0x80) continue; // continuation byte, keep looking
            int need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
            if (need > back && validPrefix(buf, n - back, back)) return n - back;
            return n;
        }
        return n;
    }

    private static boolean validPrefix(byte[] buf, int start, int len) {
        int lead = buf[start] & 0xFF;
        if (len >= 2) {
            int b1 = buf[start + 1] & 0xFF;
            if (lead == 0xE0 && b1 < 0xA0) return false;
            if (lead == 0xED && b1 > 0x9F) return false;
            if (lead == 0xF0 && b1 < 0x90) return false;
            if (lead == 0xF4 && b1 > 0x8F) return false;
        }
        return true;
    }
}
