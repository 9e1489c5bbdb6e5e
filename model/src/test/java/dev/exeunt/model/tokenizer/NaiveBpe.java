package dev.exeunt.model.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;

/** Reference trainer for tests: recounts every pair after each merge. Same tie-break as BpeTrainer. */
final class NaiveBpe {
    private NaiveBpe() {}

    static List<BpeTokenizer.Merge> train(List<String> texts, int merges) {
        Map<String, Integer> counts = new TreeMap<>();
        for (String t : texts) {
            Matcher m = PreTokenizerPatterns.gpt2().matcher(t);
            while (m.find()) counts.merge(m.group(), 1, Integer::sum);
        }
        List<List<Integer>> words = new ArrayList<>();
        List<Integer> freqs = new ArrayList<>();
        for (var e : counts.entrySet()) {
            List<Integer> w = new ArrayList<>();
            for (byte b : e.getKey().getBytes(StandardCharsets.UTF_8)) w.add(b & 0xFF);
            words.add(w);
            freqs.add(e.getValue());
        }
        List<String> tok = new ArrayList<>();
        for (int i = 0; i < 256; i++) tok.add(String.valueOf(ByteLevel.byteToChar(i)));
        List<BpeTokenizer.Merge> out = new ArrayList<>();
        for (int k = 0; k < merges; k++) {
            Map<Long, Long> pc = new HashMap<>();
            for (int w = 0; w < words.size(); w++) {
                List<Integer> s = words.get(w);
                for (int i = 0; i + 1 < s.size(); i++) pc.merge(BpeTokenizer.pairKey(s.get(i), s.get(i + 1)), (long) freqs.get(w), Long::sum);
            }
            long best = -1, bestCount = 0;
            for (var e : pc.entrySet()) {
                long c = e.getValue(), key = e.getKey();
                if (c > bestCount || (c == bestCount && Long.compareUnsigned(key, best) < 0)) { best = key; bestCount = c; }
            }
            if (bestCount < 2) break;
            int a = (int) (best >>> 32), b = (int) best;
            String joined = tok.get(a) + tok.get(b);
            int id = tok.indexOf(joined);
            if (id < 0) { id = tok.size(); tok.add(joined); }
            out.add(new BpeTokenizer.Merge(tok.get(a), tok.get(b)));
            for (List<Integer> s : words) {
                for (int i = 0; i + 1 < s.size(); i++) {
                    if (s.get(i) == a && s.get(i + 1) == b) { s.set(i, id); s.remove(i + 1); }
                }
            }
        }
        return out;
    }
}
