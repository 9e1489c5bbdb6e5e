package dev.exeunt.model.tokenizer;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * UTF-8 decoding as tokenizers need it: strict for tokenizer files (a bad byte is named by its offset, not
 * "Input length = 1"), and lossy for decoded token bytes exactly as Hugging Face (Rust's
 * {@code String::from_utf8_lossy}) does it.
 */
final class Utf8 {
    private Utf8() {}

    /**
     * Decodes {@code b[off, off+len)}, each maximal ill-formed subpart becoming one U+FFFD (the Unicode and
     * WHATWG practice Rust follows; java.lang.String's decoder can replace "ED B6 87" with one U+FFFD, Rust with three).
     */
    static String decodeLossy(byte[] b, int off, int len) {
        StringBuilder sb = new StringBuilder(len);
        int need = 0, seen = 0, cp = 0, lower = 0x80, upper = 0xBF;
        int end = off + len;
        for (int i = off; i < end; i++) {
            int x = b[i] & 0xFF;
            if (need == 0) {
                if (x < 0x80) {
                    sb.append((char) x);
                } else if (x >= 0xC2 && x <= 0xDF) {
                    need = 1;
                    cp = x & 0x1F;
                } else if (x >= 0xE0 && x <= 0xEF) {
                    if (x == 0xE0) lower = 0xA0;
                    if (x == 0xED) upper = 0x9F;
                    need = 2;
                    cp = x & 0x0F;
                } else if (x >= 0xF0 && x <= 0xF4) {
                    if (x == 0xF0) lower = 0x90;
                    if (x == 0xF4) upper = 0x8F;
                    need = 3;
                    cp = x & 0x07;
                } else {
                    sb.append('\uFFFD');
                }
                continue;
            }
            if (x < lower || x > upper) {
                sb.append('\uFFFD');
                need = seen = cp = 0;
                lower = 0x80;
                upper = 0xBF;
                i--; // this byte starts afresh
                continue;
            }
            lower = 0x80;
            upper = 0xBF;
            cp = (cp << 6) | (x & 0x3F);
            if (++seen == need) {
                sb.appendCodePoint(cp);
                need = seen = cp = 0;
            }
        }
        if (need != 0) sb.append('\uFFFD');
        return sb.toString();
    }

    /** True when {@code b[off, off+len)} is well-formed UTF-8. */
    static boolean isValid(byte[] b, int off, int len) {
        try {
            StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b, off, len));
            return true;
        } catch (java.nio.charset.CharacterCodingException e) {
            return false;
        }
    }

    static String decodeStrict(byte[] bytes) throws TokenizerFormatException {
        CharsetDecoder dec = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes);
        CharBuffer out = CharBuffer.allocate(bytes.length);
        CoderResult r = dec.decode(in, out, true);
        if (r.isError()) {
            int at = in.position();
            StringBuilder hex = new StringBuilder();
            for (int i = at; i < Math.min(bytes.length, at + r.length()); i++) hex.append(String.format(" %02X", bytes[i] & 0xFF));
            throw new TokenizerFormatException("invalid UTF-8 at byte offset " + at + " (bytes" + hex + ")");
        }
        dec.flush(out);
        out.flip();
        String s = out.toString();
        return !s.isEmpty() && s.charAt(0) == '\uFEFF' ? s.substring(1) : s;
    }
}
