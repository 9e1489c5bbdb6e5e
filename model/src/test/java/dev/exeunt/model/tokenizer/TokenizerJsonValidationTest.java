package dev.exeunt.model.tokenizer;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every bad tokenizer.json is a TokenizerFormatException naming the file and the problem, never another crash. */
class TokenizerJsonValidationTest {

    static String gpt2() throws IOException {
        return Files.readString(HfTokenizerJsonTest.resource("gpt2-tiny.json"));
    }

    static TokenizerFormatException refused(Path dir, String json) throws IOException {
        Path f = dir.resolve("tokenizer.json");
        Files.writeString(f, json);
        var e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.load(f));
        assertTrue(e.getMessage().startsWith(f.toString()), e.getMessage());
        return e;
    }

    @Test
    void hugeVocabularyIdIsRefusedWithoutAllocating(@TempDir Path dir) throws IOException {
        String json = gpt2().replace("\"Hello\": 261", "\"Hello\": 2147483647");
        assertNotEquals(gpt2(), json);
        var e = refused(dir, json);
        assertTrue(e.getMessage().contains("'Hello'") && e.getMessage().contains("2147483647"), e.getMessage());
    }

    @Test
    void hugeAddedTokenIdIsRefused(@TempDir Path dir) throws IOException {
        String json = gpt2().replaceFirst("\"id\": 273", "\"id\": 2147483647");
        assertNotEquals(gpt2(), json);
        var e = refused(dir, json);
        assertTrue(e.getMessage().contains("<|endoftext|>") && e.getMessage().contains("2147483647"), e.getMessage());
    }

    @Test
    void badIdsAndContentAreNamed(@TempDir Path dir) throws IOException {
        assertTrue(refused(dir, gpt2().replace("\"Hello\": 261", "\"Hello\": -5")).getMessage().contains("'Hello'"));
        assertTrue(refused(dir, gpt2().replace("\"Hello\": 261", "\"Hello\": 26.5")).getMessage().contains("not a non-negative integer"));
        assertTrue(refused(dir, gpt2().replace("\"Hello\": 261", "\"Hello\": \"261\"")).getMessage().contains("'Hello'"));
        assertTrue(refused(dir, gpt2().replaceFirst("\"id\": 273", "\"id\": \"x\"")).getMessage().contains("added_tokens[0]"));
        assertTrue(refused(dir, gpt2().replace("\"content\": \"<|endoftext|>\"", "\"content\": \"\"")).getMessage().contains("non-empty"));
        assertTrue(refused(dir, gpt2().replace("\"Hello\": 261", "\"Hello\": 260")).getMessage().contains("id 260"));
        assertTrue(refused(dir, gpt2().replaceFirst("\"lstrip\": false", "\"lstrip\": true")).getMessage().contains("unsupported added token option lstrip"));
        assertTrue(refused(dir, "[1, 2]").getMessage().contains("JSON object"));
        assertTrue(refused(dir, gpt2().substring(0, 500)).getMessage().contains("malformed JSON"));
    }

    @Test
    void invalidUtf8IsNamedWithItsByteOffset(@TempDir Path dir) throws IOException {
        byte[] good = gpt2().getBytes(StandardCharsets.UTF_8);
        int at = gpt2().indexOf("Hello") + 2;
        byte[] bad = good.clone();
        bad[at] = (byte) 0xFF;
        Path f = dir.resolve("tokenizer.json");
        Files.write(f, bad);
        var e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.load(f));
        assertTrue(e.getMessage().startsWith(f.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("invalid UTF-8 at byte offset " + at), e.getMessage());
        // a truncated multi-byte character at the very end, too
        byte[] cut = "{\"model\": \"é".getBytes(StandardCharsets.UTF_8);
        Files.write(f, java.util.Arrays.copyOf(cut, cut.length - 1));
        e = assertThrows(TokenizerFormatException.class, () -> HfTokenizerJson.load(f));
        assertTrue(e.getMessage().contains("invalid UTF-8 at byte offset " + (cut.length - 2)), e.getMessage());
    }

    /**
     * Random corruptions of real-structure files: byte flips, truncation, deleted and duplicated ranges,
     * numbers made huge or negative. Each must load or be a TokenizerFormatException naming the file.
     */
    @Test
    void corruptedFilesNeverCrash(@TempDir Path dir) throws IOException {
        List<String> unexpected = new ArrayList<>();
        int loaded = 0, refused = 0, tries = 0;
        for (String name : List.of("gpt2-tiny.json", "llama3-tiny.json", "llama2-tiny.json", "llama2-metaspace-tiny.json")) {
            byte[] good = Files.readAllBytes(HfTokenizerJsonTest.resource(name));
            SplittableRandom r = new SplittableRandom(name.hashCode());
            for (int i = 0; i < 150; i++, tries++) {
                byte[] bad = mutate(good, r);
                Path f = dir.resolve("t" + tries + ".json");
                Files.write(f, bad);
                try {
                    HfTokenizerJson.load(f);
                    loaded++;
                } catch (TokenizerFormatException e) {
                    refused++;
                    if (!e.getMessage().startsWith(f.toString())) unexpected.add(f + ": message lacks the file: " + e.getMessage());
                } catch (Throwable t) {
                    unexpected.add(f + " (" + name + " mutation " + i + "): " + t);
                }
                Files.delete(f);
            }
        }
        System.out.printf("corrupted tokenizer.json: %d tried, %d loaded, %d refused, %d other%n", tries, loaded, refused, unexpected.size());
        assertTrue(unexpected.isEmpty(), String.join("\n", unexpected.subList(0, Math.min(10, unexpected.size()))));
        assertTrue(refused > tries / 4, "most corruptions should be refused: " + refused + " of " + tries);
    }

    static byte[] mutate(byte[] good, SplittableRandom r) {
        String s = new String(good, StandardCharsets.UTF_8);
        switch (r.nextInt(6)) {
            case 0 -> { // flip bytes
                byte[] b = good.clone();
                for (int k = 1 + r.nextInt(4); k > 0; k--) b[r.nextInt(b.length)] = (byte) r.nextInt(256);
                return b;
            }
            case 1 -> {
                return java.util.Arrays.copyOf(good, r.nextInt(good.length));
            }
            case 2 -> { // delete a range
                int a = r.nextInt(s.length()), len = r.nextInt(Math.min(200, s.length() - a) + 1);
                return (s.substring(0, a) + s.substring(a + len)).getBytes(StandardCharsets.UTF_8);
            }
            case 3 -> { // duplicate a range
                int a = r.nextInt(s.length()), len = r.nextInt(Math.min(200, s.length() - a) + 1);
                return (s.substring(0, a + len) + s.substring(a)).getBytes(StandardCharsets.UTF_8);
            }
            default -> { // rewrite one number
                var m = java.util.regex.Pattern.compile("\\d+").matcher(s);
                List<int[]> spans = new ArrayList<>();
                while (m.find()) spans.add(new int[] {m.start(), m.end()});
                int[] sp = spans.get(r.nextInt(spans.size()));
                String[] values = {"2147483647", "-1", "99999999999", "1e9", "0", "273", "3.5", "null", "\"7\""};
                return (s.substring(0, sp[0]) + values[r.nextInt(values.length)] + s.substring(sp[1])).getBytes(StandardCharsets.UTF_8);
            }
        }
    }
}
