package dev.exeunt.model.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.PriorityQueue;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Trains a byte-level BPE tokenizer (GPT-2 flavour).
 *
 * <p>Starts from the 256 byte tokens (id = byte value), pre-tokenizes with the split regex (GPT-2's by
 * default), counts distinct words, then repeatedly merges the most frequent adjacent pair. Pair counts are
 * kept incrementally together with the list of words holding each pair, and the best pair comes from a
 * priority queue with lazy deletion, so each merge only touches the words that contain it. Ties go to the
 * pair with the smaller (left id, right id). Special tokens get the ids after the learned tokens and are
 * never merged with text (they are cut out of the training text).
 *
 * <p>Usage: {@code BpeTrainer.train(texts, 8192, List.of("<|endoftext|>"))}, or for options and
 * incremental input: {@code new BpeTrainer(8192, specials).minFrequency(2).progress(cb)}, {@link #addText}
 * repeatedly, then {@link #train()}. Not thread-safe.
 */
public final class BpeTrainer {

    /** Progress callback: called after each merge with the number done and the number wanted. */
    @FunctionalInterface
    public interface Progress {
        void onMerge(int done, int wanted);
    }

    private final int vocabSize;
    private final List<String> specialTokens;
    private int minFrequency = 2;
    private String splitRegex = PreTokenizerPatterns.GPT2;
    private Pattern split = PreTokenizerPatterns.gpt2();
    private Progress progress;
    private final Pattern specialPattern;
    private final HashMap<String, int[]> wordCounts = new HashMap<>();

    public BpeTrainer(int vocabSize, List<String> specialTokens) {
        this.specialTokens = List.copyOf(specialTokens);
        if (new java.util.HashSet<>(this.specialTokens).size() != this.specialTokens.size())
            throw new IllegalArgumentException("duplicate special tokens: " + specialTokens);
        if (vocabSize < 256 + this.specialTokens.size())
            throw new IllegalArgumentException("vocabSize " + vocabSize + " is smaller than 256 byte tokens + "
                    + this.specialTokens.size() + " special tokens");
        this.vocabSize = vocabSize;
        if (this.specialTokens.isEmpty()) {
            specialPattern = null;
        } else {
            List<String> sorted = new ArrayList<>(this.specialTokens);
            sorted.sort((a, b) -> b.length() != a.length() ? b.length() - a.length() : a.compareTo(b));
            StringBuilder sb = new StringBuilder();
            for (String s : sorted) {
                if (s.isEmpty()) throw new IllegalArgumentException("empty special token");
                if (!sb.isEmpty()) sb.append('|');
                sb.append(Pattern.quote(s));
            }
            specialPattern = Pattern.compile(sb.toString());
        }
    }

    /** Trains on {@code texts} with default options (min pair frequency 2, GPT-2 split regex). */
    public static BpeTokenizer train(Iterable<String> texts, int vocabSize, List<String> specialTokens) {
        BpeTrainer t = new BpeTrainer(vocabSize, specialTokens);
        for (String s : texts) t.addText(s);
        return t.train();
    }

    /** Trains on {@code texts} with default options (min pair frequency 2, GPT-2 split regex). */
    public static BpeTokenizer train(Stream<String> texts, int vocabSize, List<String> specialTokens) {
        BpeTrainer t = new BpeTrainer(vocabSize, specialTokens);
        texts.forEachOrdered(t::addText);
        return t.train();
    }

    /** Pairs seen fewer times than this are not merged (training may then stop below vocabSize). Default 2. */
    public BpeTrainer minFrequency(int n) {
        this.minFrequency = Math.max(1, n);
        return this;
    }

    /** The pre-tokenizer regex (Hugging Face syntax); default GPT-2's. Set before adding text. */
    public BpeTrainer splitRegex(String regex) {
        if (!wordCounts.isEmpty()) throw new IllegalStateException("set the split regex before adding text");
        this.splitRegex = Objects.requireNonNull(regex);
        this.split = PreTokenizerPatterns.compile(regex);
        return this;
    }

    public BpeTrainer progress(Progress progress) {
        this.progress = progress;
        return this;
    }

    /** Number of distinct pre-tokenized words counted so far. */
    public int distinctWords() {
        return wordCounts.size();
    }

    /** Counts the words of one text. */
    public BpeTrainer addText(String text) {
        if (specialPattern == null) {
            countWords(text, 0, text.length());
        } else {
            Matcher m = specialPattern.matcher(text);
            int last = 0;
            while (m.find()) {
                countWords(text, last, m.start());
                last = m.end();
            }
            countWords(text, last, text.length());
        }
        return this;
    }

    private void countWords(String text, int from, int to) {
        if (from >= to) return;
        Matcher m = split.matcher(text).region(from, to);
        int last = from;
        while (m.find()) {
            if (m.start() > last) count(text.substring(last, m.start()));
            if (m.end() > m.start()) count(text.substring(m.start(), m.end()));
            last = m.end();
        }
        if (last < to) count(text.substring(last, to));
    }

    private void count(String word) {
        int[] c = wordCounts.get(word);
        if (c == null) wordCounts.put(word, new int[] {1});
        else c[0]++;
    }

    // ------------------------------------------------------------------ training

    private static final class PairStat {
        long count;
        int[] words = new int[4];
        int n;

        void addWord(int w) {
            if (n > 0 && words[n - 1] == w) return;
            if (n == words.length) words = Arrays.copyOf(words, n * 2);
            words[n++] = w;
        }
    }

    private record Candidate(long count, int a, int b) {}

    /** Runs the merges and returns the tokenizer. */
    public BpeTokenizer train() {
        // distinct words, in a deterministic order
        List<Map.Entry<String, int[]>> entries = new ArrayList<>(wordCounts.entrySet());
        entries.sort(Map.Entry.comparingByKey());
        int nw = entries.size();
        int[][] syms = new int[nw][];
        int[] lens = new int[nw];
        long[] freq = new long[nw];
        for (int w = 0; w < nw; w++) {
            byte[] b = entries.get(w).getKey().getBytes(StandardCharsets.UTF_8);
            int[] s = new int[b.length];
            for (int i = 0; i < b.length; i++) s[i] = b[i] & 0xFF;
            syms[w] = s;
            lens[w] = s.length;
            freq[w] = entries.get(w).getValue()[0];
        }
        entries = null;

        HashMap<Long, PairStat> stats = new HashMap<>(1 << 16);
        for (int w = 0; w < nw; w++) {
            int[] s = syms[w];
            for (int i = 0; i + 1 < lens[w]; i++) {
                PairStat st = stats.computeIfAbsent(BpeTokenizer.pairKey(s[i], s[i + 1]), k -> new PairStat());
                st.count += freq[w];
                st.addWord(w);
            }
        }
        PriorityQueue<Candidate> heap = new PriorityQueue<>((x, y) -> x.count != y.count ? Long.compare(y.count, x.count)
                : x.a != y.a ? Integer.compare(x.a, y.a) : Integer.compare(x.b, y.b));
        for (var e : stats.entrySet()) {
            long k = e.getKey();
            heap.add(new Candidate(e.getValue().count, (int) (k >>> 32), (int) k));
        }

        List<byte[]> tokenBytes = new ArrayList<>();
        Map<String, Integer> tokenIds = new HashMap<>();
        for (int i = 0; i < 256; i++) {
            tokenBytes.add(new byte[] {(byte) i});
            tokenIds.put(ByteLevel.encode(new byte[] {(byte) i}), i);
        }
        int wantedTokens = vocabSize - specialTokens.size();
        int wantedMerges = wantedTokens - 256;
        List<BpeTokenizer.Merge> merges = new ArrayList<>();
        int[] stamp = new int[nw];
        int round = 0;
        java.util.HashSet<Long> touched = new java.util.HashSet<>();

        while (tokenBytes.size() < wantedTokens) {
            Candidate c = heap.poll();
            if (c == null) break;
            long key = BpeTokenizer.pairKey(c.a, c.b);
            PairStat st = stats.get(key);
            if (st == null || st.count <= 0) continue;
            if (st.count != c.count) {
                heap.add(new Candidate(st.count, c.a, c.b)); // stale: counts of old pairs only fall
                continue;
            }
            if (st.count < minFrequency) break;

            byte[] la = tokenBytes.get(c.a), lb = tokenBytes.get(c.b);
            byte[] nb = Arrays.copyOf(la, la.length + lb.length);
            System.arraycopy(lb, 0, nb, la.length, lb.length);
            String left = ByteLevel.encode(la), right = ByteLevel.encode(lb), joined = left + right;
            Integer existing = tokenIds.get(joined);
            int newId;
            if (existing != null) {
                newId = existing;
            } else {
                newId = tokenBytes.size();
                tokenBytes.add(nb);
                tokenIds.put(joined, newId);
            }
            merges.add(new BpeTokenizer.Merge(left, right));
            stats.remove(key);

            round++;
            touched.clear();
            int[] ws = st.words;
            for (int wi = 0; wi < st.n; wi++) {
                int w = ws[wi];
                if (stamp[w] == round) continue;
                stamp[w] = round;
                int[] s = syms[w];
                int len = lens[w];
                long f = freq[w];
                int out = 0;
                for (int i = 0; i < len; i++) {
                    if (i + 1 < len && s[i] == c.a && s[i + 1] == c.b) {
                        if (out > 0) {
                            int p = s[out - 1];
                            add(stats, BpeTokenizer.pairKey(p, c.a), -f, w, null);
                            add(stats, BpeTokenizer.pairKey(p, newId), f, w, touched);
                        }
                        if (i + 2 < len) {
                            int nx = s[i + 2];
                            add(stats, BpeTokenizer.pairKey(c.b, nx), -f, w, null);
                            add(stats, BpeTokenizer.pairKey(newId, nx), f, w, touched);
                        }
                        s[out++] = newId;
                        i++;
                    } else {
                        s[out++] = s[i];
                    }
                }
                lens[w] = out;
            }
            stats.remove(key); // it may have been touched again by a == b cases
            for (long k : touched) {
                PairStat t = stats.get(k);
                if (t != null && t.count > 0) heap.add(new Candidate(t.count, (int) (k >>> 32), (int) k));
            }
            if (progress != null) progress.onMerge(merges.size(), wantedMerges);
        }

        Map<String, Integer> vocab = new LinkedHashMap<>();
        for (int id = 0; id < tokenBytes.size(); id++) vocab.put(ByteLevel.encode(tokenBytes.get(id)), id);
        List<AddedToken> added = new ArrayList<>();
        for (String sp : specialTokens) {
            int id = vocab.size();
            if (vocab.containsKey(sp)) throw new IllegalStateException("special token '" + sp + "' collides with a learned token");
            vocab.put(sp, id);
            added.add(new AddedToken(id, sp, true));
        }
        return BpeTokenizer.builder(BpeTokenizer.Flavour.BYTE_LEVEL)
                .splitRegex(splitRegex)
                .vocab(vocab)
                .merges(merges)
                .addedTokens(added)
                .conventionalSpecialIds()
                .build();
    }

    private static void add(HashMap<Long, PairStat> stats, long key, long delta, int w, java.util.Set<Long> touched) {
        PairStat st = stats.get(key);
        if (st == null) {
            if (delta <= 0) return; // cannot happen for a pair that exists
            st = new PairStat();
            stats.put(key, st);
        }
        st.count += delta;
        if (delta > 0) {
            st.addWord(w);
            touched.add(key);
        }
    }
}
