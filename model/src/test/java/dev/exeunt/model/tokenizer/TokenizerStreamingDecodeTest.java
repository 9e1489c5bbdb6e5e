package dev.exeunt.model.tokenizer;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class TokenizerStreamingDecodeTest {

    @Test
    void holdsBackSplitCharacters() throws IOException {
        BpeTokenizer t = HfTokenizerJsonTest.load("gpt2-tiny.json");
        // 😀 = F0 9F 98 80, one byte token each in this tiny vocabulary
        int[] ids = t.encode("a😀b");
        assertEquals(6, ids.length);
        TokenDecoder d = t.newDecoder();
        assertEquals("a", d.append(ids[0]));
        assertEquals("", d.append(ids[1]));
        assertEquals("", d.append(ids[2]));
        assertEquals("", d.append(ids[3]));
        assertEquals(3, d.pendingBytes());
        assertEquals("😀", d.append(ids[4]));
        assertEquals("b", d.append(ids[5]));
        assertEquals("", d.flush());
    }

    @Test
    void invalidBytesAreNotHeldForever() throws IOException {
        BpeTokenizer t = HfTokenizerJsonTest.load("gpt2-tiny.json");
        int ff = t.idOf(String.valueOf(ByteLevel.byteToChar(0xFF)));
        int e2 = t.idOf(String.valueOf(ByteLevel.byteToChar(0xE2)));
        TokenDecoder d = t.newDecoder();
        assertEquals("\uFFFD", d.append(ff)); // never valid: released at once
        assertEquals("", d.append(e2));      // could still become a character
        String rest = d.append(t.encode("x"));
        assertEquals("\uFFFDx", rest);
        int[] all = {ff, e2, t.encode("x")[0]};
        assertEquals(t.decode(all), "\uFFFD" + rest);
        assertEquals("", d.flush());
    }

    @Test
    void sentencePieceStripsFirstSpaceOnly() throws IOException {
        BpeTokenizer t = HfTokenizerJsonTest.load("llama2-tiny.json");
        int[] ids = t.encode("Hello world é", true);
        TokenDecoder d = new TokenDecoder(t, true);
        StringBuilder sb = new StringBuilder();
        for (int id : ids) sb.append(d.append(id));
        sb.append(d.flush());
        assertEquals("Hello world é", sb.toString());
        assertEquals(t.decode(ids, true), sb.toString());
    }

    @Test
    void completePrefix() {
        assertEquals(1, TokenDecoder.completePrefixLength("a\u00e9".getBytes(StandardCharsets.UTF_8).length == 3
                ? new byte[] {'a', (byte) 0xC3} : null));
        assertEquals(0, TokenDecoder.completePrefixLength(new byte[] {(byte) 0xF0, (byte) 0x9F, (byte) 0x98}));
        assertEquals(2, TokenDecoder.completePrefixLength(new byte[] {(byte) 0xE0, (byte) 0x80})); // E0 80 is never valid
    }
}
