package dev.exeunt.model.tokenizer;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Compares our tokenizer for a tokenizer.json with Hugging Face's own (the Rust {@code tokenizers}
 * library through DJL): ids, token strings and decoded text (with and without special tokens).
 */
final class HfReference {
    private HfReference() {}

    /** Outcome of one comparison: how many strings, how many disagreed, and the first few disagreements. */
    record Result(String name, int compared, long tokens, int mismatches, List<String> examples) {
        String summary() {
            return name + ": " + compared + " strings (" + tokens + " tokens), " + mismatches + " mismatches"
                    + (examples.isEmpty() ? "" : "\n  " + String.join("\n  ", examples));
        }
    }

    static Result compare(String name, Path tokenizerJson, BpeTokenizer ours, List<String> texts) throws IOException {
        Map<String, String> options = Map.of("addSpecialTokens", "false", "truncation", "false", "padding", "false",
                "modelMaxLength", String.valueOf(Integer.MAX_VALUE));
        int mismatches = 0;
        long tokens = 0;
        List<String> examples = new ArrayList<>();
        try (HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(tokenizerJson, options)) {
            for (int[] ids : randomIdSequences(ours, texts.size() / 4)) {
                long[] l = Arrays.stream(ids).asLongStream().toArray();
                for (boolean skip : new boolean[] {false, true}) {
                    String hd = hf.decode(l, skip), od = ours.decode(ids, skip);
                    if (!hd.equals(od)) {
                        mismatches++;
                        if (examples.size() < 8) examples.add("decode(" + Arrays.toString(ids) + ", skipSpecial=" + skip + ") hf " + quote(hd) + " ours " + quote(od));
                    }
                }
            }
            for (String text : texts) {
                tokens += hf.encode(text, false, false).getIds().length;
                String problem = compareOne(hf, ours, text);
                if (problem != null) {
                    mismatches++;
                    if (examples.size() < 8) examples.add(quote(text) + ": " + problem);
                }
            }
        }
        // a comparison that saw no tokens would prove nothing
        if (tokens < texts.size()) throw new AssertionError(name + ": Hugging Face gave only " + tokens + " tokens for " + texts.size() + " strings");
        return new Result(name, texts.size() + texts.size() / 4, tokens, mismatches, examples);
    }

    private static String compareOne(HuggingFaceTokenizer hf, BpeTokenizer ours, String text) {
        Encoding e = hf.encode(text, false, false);
        long[] hfIds = e.getIds();
        int[] mine;
        try {
            mine = ours.encode(text, false, true);
        } catch (RuntimeException ex) {
            return "ours threw " + ex;
        }
        long[] mineL = Arrays.stream(mine).asLongStream().toArray();
        if (!Arrays.equals(hfIds, mineL)) return "ids hf " + Arrays.toString(hfIds) + " ours " + Arrays.toString(mine);
        String[] hfTokens = e.getTokens();
        for (int i = 0; i < mine.length; i++) {
            if (!hfTokens[i].equals(ours.tokenText(mine[i])))
                return "token " + i + " hf " + quote(hfTokens[i]) + " ours " + quote(ours.tokenText(mine[i]));
        }
        for (boolean skip : new boolean[] {false, true}) {
            String hd = hf.decode(hfIds, skip), od = ours.decode(mine, skip);
            if (!hd.equals(od)) return "decode(skipSpecial=" + skip + ") hf " + quote(hd) + " ours " + quote(od);
        }
        return null;
    }

    /**
     * Random id sequences for decode: any used id, with a bias to byte tokens (partial UTF-8, byte fallback
     * pieces) and added/special tokens.
     */
    static List<int[]> randomIdSequences(BpeTokenizer t, int n) {
        java.util.SplittableRandom r = new java.util.SplittableRandom(n);
        List<Integer> used = new ArrayList<>(), bytes = new ArrayList<>();
        for (int id = 0; id < t.vocabSize(); id++) {
            String s = t.tokenText(id);
            if (s == null) continue;
            used.add(id);
            if (t.tokenBytes(id).length == 1 && (s.length() == 1 || s.startsWith("<0x"))) bytes.add(id);
        }
        List<Integer> added = t.addedTokens().stream().map(AddedToken::id).toList();
        List<int[]> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[1 + r.nextInt(12)];
            for (int k = 0; k < ids.length; k++) {
                int pick = r.nextInt(10);
                List<Integer> from = pick < 3 && !bytes.isEmpty() ? bytes : pick == 3 && !added.isEmpty() ? added : used;
                ids[k] = from.get(r.nextInt(from.size()));
            }
            out.add(ids);
        }
        return out;
    }

    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        s.codePoints().limit(120).forEach(cp -> {
            if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0xfeff) sb.append(String.format("\\u%04x", cp));
            else sb.appendCodePoint(cp);
        });
        return sb.append('"').toString();
    }
}
