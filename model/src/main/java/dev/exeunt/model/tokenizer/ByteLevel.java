package dev.exeunt.model.tokenizer;

import java.io.ByteArrayOutputStream;

/** GPT-2's reversible mapping between bytes and printable unicode characters ("bytes_to_unicode"). */
public final class ByteLevel {
    private static final char[] BYTE_TO_CHAR = new char[256];
    private static final int[] CHAR_TO_BYTE = new int[324];
    /** The 256 bytes in GPT-2 vocabulary order (printable ones first), as GPT-2's vocab ids 0..255. */
    private static final int[] GPT2_ORDER = new int[256];

    static {
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        int k = 0;
        boolean[] printable = new boolean[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        for (int b = 0; b < 256; b++) if (printable[b]) { BYTE_TO_CHAR[b] = (char) b; GPT2_ORDER[k++] = b; }
        int n = 0;
        for (int b = 0; b < 256; b++) if (!printable[b]) { BYTE_TO_CHAR[b] = (char) (256 + n++); GPT2_ORDER[k++] = b; }
        for (int b = 0; b < 256; b++) CHAR_TO_BYTE[BYTE_TO_CHAR[b]] = b;
    }

    private ByteLevel() {}

    public static char byteToChar(int b) {
        return BYTE_TO_CHAR[b & 0xFF];
    }

    /** The byte a byte-level character stands for, or -1. */
    public static int charToByte(char c) {
        return c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
    }

    /** The byte GPT-2 gives id {@code i} (0..255). */
    public static int gpt2OrderByte(int i) {
        return GPT2_ORDER[i];
    }

    public static String encode(byte[] bytes) {
        char[] cs = new char[bytes.length];
        for (int i = 0; i < bytes.length; i++) cs[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
        return new String(cs);
    }

    /** Maps a byte-level string back to bytes; characters outside the mapping are written as their UTF-8. */
    public static byte[] decode(String s) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            int b = charToByte(c);
            if (b >= 0) {
                out.write(b);
            } else {
                int cp = s.codePointAt(i);
                byte[] u = new String(Character.toChars(cp)).getBytes(java.nio.charset.StandardCharsets.UTF_8);
                out.write(u, 0, u.length);
                if (Character.isSupplementaryCodePoint(cp)) i++;
            }
        }
        return out.toByteArray();
    }
}
