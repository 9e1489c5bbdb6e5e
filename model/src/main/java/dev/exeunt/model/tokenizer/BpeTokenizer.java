package dev.exeunt.model.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A BPE tokenizer in one of two flavours:
 *
 * <ul>
 *   <li>{@link Flavour#BYTE_LEVEL} (GPT-2, Llama-3): text is split by a regex, each piece's UTF-8 bytes are
 *       mapped to GPT-2's byte characters and merged by rank; decoding maps the characters back to bytes.
 *   <li>{@link Flavour#SENTENCEPIECE} (Llama-2 tokenizer.json): spaces become "▁", a "▁" is prepended,
 *       characters missing from the vocabulary fall back to {@code <0xNN>} byte tokens, merged by rank;
 *       decoding turns "▁" into spaces, byte tokens into bytes, and strips the leading space.
 * </ul>
 *
 * Added tokens (special or not) are matched literally in the text before BPE, longest match first.
 * Instances are immutable and thread-safe (the merge cache is concurrent).
 */
public final class BpeTokenizer implements Tokenizer {

    public enum Flavour { BYTE_LEVEL, SENTENCEPIECE }

    /** When a SentencePiece tokenizer prepends "▁" to a text segment (segments lie between added tokens). */
    public enum PrependScheme {
        /** never */
        NEVER,
        /** only to the segment that starts the text */
        FIRST,
        /** to every non-empty segment */
        ALWAYS
    }

    /**
     * One pre-tokenizer split (Hugging Face {@code Split} with a regex), applied to each piece of the previous one.
     *
     * @param keepGaps true: text between matches stays as pieces of its own (behavior Isolated); false: it is
     *     dropped (behavior Removed with invert true, as GPT-4o's tokenizer.json writes its pattern)
     */
    public record SplitRule(String regex, boolean keepGaps) {
        public SplitRule {
            java.util.Objects.requireNonNull(regex, "regex");
        }
    }

    /** One merge rule: {@code left + right}, in rank order. */
    public record Merge(String left, String right) {}

    static final char SPACE_MARK = '\u2581';
    private static final int CACHE_LIMIT = 100_000;
    private static final int CACHE_MAX_PIECE = 256;

    private final Flavour flavour;
    private final String[] idToToken;
    private final Map<String, Integer> tokenToId;
    private final List<Merge> merges;
    private final LongLongMap mergeRanks; // (left<<32|right) -> (rank<<32|newId)
    private final List<AddedToken> addedTokens;
    private final Map<String, AddedToken> addedByContent;
    private final Map<Character, String[]> addedByFirstChar; // candidates, longest first
    private final boolean[] special;
    private final boolean[] isAdded;
    private final boolean[] inModelVocab;
    private final byte[][] decodedBytes;
    private final List<SplitRule> splitRules;
    private final Pattern[] splitPatterns;
    private final boolean addPrefixSpace;
    private final java.text.Normalizer.Form normalization;
    private final boolean ignoreMerges;
    private final PrependScheme prependScheme;
    private final boolean prependIfPresent;
    private final boolean splitOnSpaceMark;
    private final boolean byteFallback;
    private final boolean fuseUnk;
    private final String unkToken;
    private final int unkId;
    private final int stripLeading;
    private final int[] byteIds = new int[256]; // byte-level: byte char token; SP: <0xNN> token
    private final OptionalInt bos, eos, pad;
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    private BpeTokenizer(Builder b) {
        this.flavour = b.flavour;
        this.splitRules = List.copyOf(b.splitRules);
        this.addPrefixSpace = b.addPrefixSpace;
        this.normalization = b.normalization;
        this.ignoreMerges = b.ignoreMerges;
        this.prependScheme = b.prependScheme;
        this.prependIfPresent = b.prependIfPresent;
        this.splitOnSpaceMark = b.splitOnSpaceMark;
        this.byteFallback = b.byteFallback;
        this.fuseUnk = b.fuseUnk;
        this.unkToken = b.unkToken;
        this.stripLeading = b.stripLeading;

        int max = -1;
        for (var e : b.vocab.entrySet()) {
            if (e.getValue() == null || e.getValue() < 0)
                throw new IllegalArgumentException("vocabulary entry '" + e.getKey() + "' has invalid id " + e.getValue());
            max = Math.max(max, e.getValue());
        }
        for (AddedToken t : b.addedTokens) max = Math.max(max, t.id());
        if (max < 0) throw new IllegalArgumentException("empty vocabulary");
        idToToken = new String[max + 1];
        tokenToId = new HashMap<>(b.vocab.size() * 2);
        for (var e : b.vocab.entrySet()) {
            int id = e.getValue();
            if (idToToken[id] != null && !idToToken[id].equals(e.getKey()))
                throw new IllegalArgumentException("id " + id + " is given to both '" + idToToken[id] + "' and '" + e.getKey() + "'");
            idToToken[id] = e.getKey();
            tokenToId.put(e.getKey(), id);
        }
        special = new boolean[max + 1];
        isAdded = new boolean[max + 1];
        inModelVocab = new boolean[max + 1];
        for (int id = 0; id <= max; id++) inModelVocab[id] = idToToken[id] != null;
        addedByContent = new LinkedHashMap<>();
        for (AddedToken t : b.addedTokens) {
            String old = idToToken[t.id()];
            if (old != null && !old.equals(t.content()))
                throw new IllegalArgumentException("added token '" + t.content() + "' reuses id " + t.id() + " of '" + old + "'");
            idToToken[t.id()] = t.content();
            tokenToId.putIfAbsent(t.content(), t.id());
            special[t.id()] = t.special();
            isAdded[t.id()] = true;
            addedByContent.put(t.content(), t);
        }
        addedTokens = List.copyOf(b.addedTokens);
        Map<Character, List<String>> byFirst = new HashMap<>();
        for (String c : addedByContent.keySet()) byFirst.computeIfAbsent(c.charAt(0), k -> new ArrayList<>()).add(c);
        addedByFirstChar = new HashMap<>();
        byFirst.forEach((ch, list) -> {
            list.sort(Comparator.comparingInt(String::length).reversed().thenComparing(Comparator.naturalOrder()));
            addedByFirstChar.put(ch, list.toArray(String[]::new));
        });

        merges = List.copyOf(b.merges);
        mergeRanks = new LongLongMap(merges.size() + 16);
        for (int r = 0; r < merges.size(); r++) {
            Merge m = merges.get(r);
            Integer l = tokenToId.get(m.left()), rr = tokenToId.get(m.right()), n = tokenToId.get(m.left() + m.right());
            if (l == null || rr == null || n == null)
                throw new IllegalArgumentException("merge " + r + " ('" + m.left() + "' '" + m.right() + "') uses token '"
                        + (l == null ? m.left() : rr == null ? m.right() : m.left() + m.right()) + "' missing from the vocabulary");
            long key = ((long) l << 32) | (rr & 0xFFFFFFFFL);
            if (!mergeRanks.containsKey(key)) mergeRanks.put(key, ((long) r << 32) | n);
        }

        Arrays.fill(byteIds, -1);
        for (int i = 0; i < 256; i++) {
            String s = flavour == Flavour.BYTE_LEVEL ? String.valueOf(ByteLevel.byteToChar(i)) : String.format("<0x%02X>", i);
            Integer id = tokenToId.get(s);
            if (id != null) byteIds[i] = id;
        }
        Integer u = unkToken == null ? null : tokenToId.get(unkToken);
        unkId = u == null ? -1 : u;
        if (flavour == Flavour.BYTE_LEVEL && unkId < 0) {
            // Without a token for every byte (and no unk to fall back on) some texts cannot be encoded at all:
            // refuse the tokenizer now rather than fail on the first such text.
            List<String> missing = new ArrayList<>();
            for (int i = 0; i < 256; i++) if (byteIds[i] < 0) missing.add(String.format("0x%02x", i));
            if (!missing.isEmpty()) {
                throw new IllegalArgumentException("byte-level vocabulary has no token for " + missing.size() + " byte(s) ("
                        + String.join(", ", missing.subList(0, Math.min(8, missing.size()))) + (missing.size() > 8 ? ", ..." : "")
                        + ") and no unk token, so it cannot encode every text");
            }
        }
        if (flavour == Flavour.BYTE_LEVEL) {
            if (splitRules.isEmpty()) throw new IllegalArgumentException("byte-level tokenizer needs a split regex");
            splitPatterns = splitRules.stream().map(r -> PreTokenizerPatterns.compile(r.regex())).toArray(Pattern[]::new);
        } else {
            splitPatterns = null;
        }

        decodedBytes = new byte[max + 1][];
        for (int id = 0; id <= max; id++) {
            String t = idToToken[id];
            if (t == null) continue;
            decodedBytes[id] = computeBytes(id, t);
        }
        bos = resolve(b.bos);
        eos = resolve(b.eos);
        pad = resolve(b.pad);
    }

    private OptionalInt resolve(Integer id) {
        if (id == null) return OptionalInt.empty();
        if (id < 0 || id >= idToToken.length || idToToken[id] == null)
            throw new IllegalArgumentException("special token id " + id + " is not in the vocabulary (size " + idToToken.length + ")");
        return OptionalInt.of(id);
    }

    private byte[] computeBytes(int id, String t) {
        if (flavour == Flavour.BYTE_LEVEL) {
            if (isAdded[id]) return t.getBytes(StandardCharsets.UTF_8);
            return ByteLevel.decode(t);
        }
        if (t.length() == 6 && t.startsWith("<0x") && t.endsWith(">") && !isAdded[id]) {
            try {
                return new byte[] {(byte) Integer.parseInt(t.substring(3, 5), 16)};
            } catch (NumberFormatException ignored) {
                // an ordinary token that looks similar
            }
        }
        return t.replace(SPACE_MARK, ' ').getBytes(StandardCharsets.UTF_8);
    }

    // ------------------------------------------------------------------ encoding

    @Override
    public int[] encode(String text, boolean addBos, boolean parseSpecialTokens) {
        IntList out = new IntList(Math.max(16, text.length() / 3));
        if (addBos && bos.isPresent()) out.add(bos.getAsInt());
        if (parseSpecialTokens && !addedByFirstChar.isEmpty()) {
            int last = 0;
            for (int i = 0; i < text.length(); ) {
                String[] cands = addedByFirstChar.get(text.charAt(i));
                String hit = null;
                if (cands != null) {
                    for (String c : cands) {
                        if (text.startsWith(c, i)) {
                            hit = c;
                            break;
                        }
                    }
                }
                if (hit == null) {
                    i++;
                    continue;
                }
                if (i > last) encodeSegment(text.substring(last, i), last == 0, out);
                out.add(addedByContent.get(hit).id());
                i += hit.length();
                last = i;
            }
            if (last < text.length()) encodeSegment(text.substring(last), last == 0, out);
        } else if (!text.isEmpty()) {
            encodeSegment(text, true, out);
        }
        return out.toArray();
    }

    private void encodeSegment(String seg, boolean atStart, IntList out) {
        if (normalization != null) seg = java.text.Normalizer.normalize(seg, normalization);
        if (flavour == Flavour.BYTE_LEVEL) {
            if (addPrefixSpace && !seg.startsWith(" ")) seg = " " + seg;
            split(seg, 0, out);
        } else {
            String s = seg.replace(' ', SPACE_MARK);
            boolean prepend = switch (prependScheme) {
                case NEVER -> false;
                case FIRST -> atStart;
                case ALWAYS -> true;
            };
            if (prepend && !s.isEmpty() && (prependIfPresent || s.charAt(0) != SPACE_MARK)) s = SPACE_MARK + s;
            if (splitOnSpaceMark) {
                int start = 0;
                for (int i = 1; i < s.length(); i++) {
                    if (s.charAt(i) == SPACE_MARK) {
                        out.addAll(bpePiece(s.substring(start, i)));
                        start = i;
                    }
                }
                if (start < s.length()) out.addAll(bpePiece(s.substring(start)));
            } else if (!s.isEmpty()) {
                out.addAll(bpePiece(s));
            }
        }
    }

    /** Splits {@code s} by split rule {@code level} and each piece by the later rules, then BPE-encodes the pieces. */
    private void split(String s, int level, IntList out) {
        if (level == splitPatterns.length) {
            out.addAll(bpePiece(s));
            return;
        }
        boolean keepGaps = splitRules.get(level).keepGaps();
        Matcher m = splitPatterns[level].matcher(s);
        int last = 0;
        while (m.find()) {
            if (keepGaps && m.start() > last) split(s.substring(last, m.start()), level + 1, out);
            if (m.end() > m.start()) split(m.group(), level + 1, out);
            last = m.end();
        }
        if (keepGaps && last < s.length()) split(s.substring(last), level + 1, out);
    }

    private int[] bpePiece(String piece) {
        boolean cacheable = piece.length() <= CACHE_MAX_PIECE;
        if (cacheable) {
            int[] hit = cache.get(piece);
            if (hit != null) return hit;
        }
        int[] r = flavour == Flavour.BYTE_LEVEL ? bpeByteLevel(piece) : bpeSentencePiece(piece);
        if (cacheable) {
            if (cache.size() >= CACHE_LIMIT) cache.clear();
            cache.put(piece, r);
        }
        return r;
    }

    private int[] bpeByteLevel(String piece) {
        byte[] bytes = piece.getBytes(StandardCharsets.UTF_8);
        if (ignoreMerges) {
            Integer whole = tokenToId.get(ByteLevel.encode(bytes));
            if (whole != null) return new int[] {whole};
        }
        int[] ids = new int[bytes.length];
        int n = 0;
        for (byte x : bytes) {
            int id = byteIds[x & 0xFF];
            if (id < 0) {
                if (unkId < 0)
                    throw new IllegalArgumentException("byte 0x" + Integer.toHexString(x & 0xFF) + " has no token ('"
                            + ByteLevel.byteToChar(x) + "') and there is no unk token");
                if (fuseUnk && n > 0 && ids[n - 1] == unkId) continue;
                id = unkId;
            }
            ids[n++] = id;
        }
        return applyMerges(ids, n);
    }

    private int[] bpeSentencePiece(String piece) {
        if (ignoreMerges) {
            Integer whole = tokenToId.get(piece);
            if (whole != null) return new int[] {whole};
        }
        IntList ids = new IntList(piece.length() + 4);
        for (int i = 0; i < piece.length(); ) {
            int cp = piece.codePointAt(i);
            int len = Character.charCount(cp);
            Integer id = tokenToId.get(piece.substring(i, i + len));
            if (id != null && !isAdded[id]) {
                ids.add(id);
            } else {
                boolean done = false;
                if (byteFallback) {
                    byte[] bs = piece.substring(i, i + len).getBytes(StandardCharsets.UTF_8);
                    boolean all = true;
                    for (byte x : bs) all &= byteIds[x & 0xFF] >= 0;
                    if (all) {
                        for (byte x : bs) ids.add(byteIds[x & 0xFF]);
                        done = true;
                    }
                }
                if (!done) {
                    if (unkId < 0)
                        throw new IllegalArgumentException("character U+" + Integer.toHexString(cp).toUpperCase()
                                + " has no token, no byte fallback and there is no unk token");
                    if (!(fuseUnk && ids.size > 0 && ids.a[ids.size - 1] == unkId)) ids.add(unkId);
                }
            }
            i += len;
        }
        return applyMerges(ids.a, ids.size);
    }

    /** Applies merges by rank (lowest first, leftmost among equals) to {@code ids[0..n)}. */
    int[] applyMerges(int[] ids, int n) {
        if (n <= 1) return Arrays.copyOf(ids, n);
        int[] sym = Arrays.copyOf(ids, n);
        int[] next = new int[n], prev = new int[n];
        for (int i = 0; i < n; i++) {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }
        boolean[] dead = new boolean[n];
        LongHeap heap = new LongHeap(n);
        for (int i = 0; i + 1 < n; i++) {
            long v = mergeRanks.get(pairKey(sym[i], sym[i + 1]), -1L);
            if (v >= 0) heap.push(((v >>> 32) << 32) | i);
        }
        int alive = n;
        while (!heap.isEmpty()) {
            long top = heap.pop();
            int rank = (int) (top >>> 32);
            int pos = (int) top;
            if (dead[pos] || next[pos] < 0) continue;
            int r = next[pos];
            long v = mergeRanks.get(pairKey(sym[pos], sym[r]), -1L);
            if (v < 0 || (int) (v >>> 32) != rank) continue; // stale entry
            sym[pos] = (int) v;
            dead[r] = true;
            next[pos] = next[r];
            if (next[r] >= 0) prev[next[r]] = pos;
            alive--;
            if (prev[pos] >= 0) {
                long pv = mergeRanks.get(pairKey(sym[prev[pos]], sym[pos]), -1L);
                if (pv >= 0) heap.push(((pv >>> 32) << 32) | prev[pos]);
            }
            if (next[pos] >= 0) {
                long nv = mergeRanks.get(pairKey(sym[pos], sym[next[pos]]), -1L);
                if (nv >= 0) heap.push(((nv >>> 32) << 32) | pos);
            }
        }
        int[] out = new int[alive];
        int k = 0;
        for (int i = 0; i >= 0; i = next[i]) out[k++] = sym[i];
        return out;
    }

    static long pairKey(int a, int b) {
        return ((long) a << 32) | (b & 0xFFFFFFFFL);
    }

    /** Min-heap of longs. */
    static final class LongHeap {
        private long[] h;
        private int size;

        LongHeap(int cap) {
            h = new long[Math.max(4, cap)];
        }

        boolean isEmpty() {
            return size == 0;
        }

        void push(long v) {
            if (size == h.length) h = Arrays.copyOf(h, size * 2);
            int i = size++;
            while (i > 0) {
                int p = (i - 1) >>> 1;
                if (h[p] <= v) break;
                h[i] = h[p];
                i = p;
            }
            h[i] = v;
        }

        long pop() {
            long top = h[0];
            long v = h[--size];
            int i = 0;
            while (true) {
                int c = 2 * i + 1;
                if (c >= size) break;
                if (c + 1 < size && h[c + 1] < h[c]) c++;
                if (h[c] >= v) break;
                h[i] = h[c];
                i = c;
            }
            h[i] = v;
            return top;
        }
    }

    // ------------------------------------------------------------------ decoding

    /**
     * Decodes as Hugging Face does. Byte-level: all bytes together, each ill-formed UTF-8 subpart one U+FFFD.
     * SentencePiece (ByteFallback decoder): a run of {@code <0xNN>} tokens that is not well-formed UTF-8 as a
     * whole becomes one U+FFFD per token; other tokens are text.
     */
    @Override
    public String decode(int[] ids, boolean skipSpecialTokens) {
        int total = 0;
        for (int id : ids) total += checkedBytes(id).length;
        byte[] buf = new byte[total];
        int k = 0;
        for (int id : ids) {
            if (skipSpecialTokens && special[id]) continue;
            byte[] b = decodedBytes[id];
            System.arraycopy(b, 0, buf, k, b.length);
            k += b.length;
        }
        String text = flavour == Flavour.BYTE_LEVEL ? Utf8.decodeLossy(buf, 0, k) : decodeByteFallback(ids, skipSpecialTokens, buf, k);
        int from = 0;
        while (from < stripLeading && from < text.length() && text.charAt(from) == ' ') from++;
        return text.substring(from);
    }

    private String decodeByteFallback(int[] ids, boolean skipSpecialTokens, byte[] buf, int k) {
        StringBuilder sb = new StringBuilder(k);
        int pos = 0, runStart = -1, runTokens = 0;
        for (int id : ids) {
            if (skipSpecialTokens && special[id]) continue;
            int n = decodedBytes[id].length;
            if (isByteToken(id)) {
                if (runStart < 0) runStart = pos;
                runTokens++;
            } else {
                if (runStart >= 0) appendRun(sb, buf, runStart, pos - runStart, runTokens);
                runStart = -1;
                runTokens = 0;
                sb.append(new String(buf, pos, n, StandardCharsets.UTF_8)); // a token's own text is well-formed
            }
            pos += n;
        }
        if (runStart >= 0) appendRun(sb, buf, runStart, pos - runStart, runTokens);
        return sb.toString();
    }

    private static void appendRun(StringBuilder sb, byte[] buf, int from, int len, int tokens) {
        if (Utf8.isValid(buf, from, len)) sb.append(new String(buf, from, len, StandardCharsets.UTF_8));
        else sb.repeat('\uFFFD', tokens);
    }

    /** A SentencePiece {@code <0xNN>} byte-fallback token. */
    private boolean isByteToken(int id) {
        String t = idToToken[id];
        return !isAdded[id] && t.length() == 6 && t.startsWith("<0x") && t.endsWith(">") && decodedBytes[id].length == 1
                && !t.equals("<0x>");
    }

    @Override
    public byte[] tokenBytes(int id) {
        return checkedBytes(id).clone();
    }

    private byte[] checkedBytes(int id) {
        if (id < 0 || id >= idToToken.length)
            throw new IllegalArgumentException("token id " + id + " is out of range for vocabulary size " + idToToken.length);
        byte[] b = decodedBytes[id];
        if (b == null)
            throw new IllegalArgumentException("token id " + id + " is not used by this vocabulary (size " + idToToken.length + ")");
        return b;
    }

    @Override
    public int leadingSpacesToStrip() {
        return stripLeading;
    }

    // ------------------------------------------------------------------ vocabulary

    @Override
    public int vocabSize() {
        return idToToken.length;
    }

    @Override
    public OptionalInt bosId() {
        return bos;
    }

    @Override
    public OptionalInt eosId() {
        return eos;
    }

    @Override
    public OptionalInt padId() {
        return pad;
    }

    @Override
    public String tokenText(int id) {
        if (id < 0 || id >= idToToken.length)
            throw new IllegalArgumentException("token id " + id + " is out of range for vocabulary size " + idToToken.length);
        return idToToken[id];
    }

    @Override
    public int idOf(String token) {
        Integer id = tokenToId.get(token);
        return id == null ? -1 : id;
    }

    @Override
    public boolean isSpecial(int id) {
        return id >= 0 && id < special.length && special[id];
    }

    public Flavour flavour() {
        return flavour;
    }

    /** Merge rules in rank order. */
    public List<Merge> merges() {
        return merges;
    }

    public List<AddedToken> addedTokens() {
        return addedTokens;
    }

    /** The model vocabulary (added tokens that are not part of it excluded), ordered by id. */
    public Map<String, Integer> vocab() {
        Map<String, Integer> m = new LinkedHashMap<>();
        for (int id = 0; id < idToToken.length; id++) {
            String t = idToToken[id];
            if (t == null) continue;
            if (isAdded[id] && !inModelVocab[id]) continue;
            m.put(t, id);
        }
        return Collections.unmodifiableMap(m);
    }


    /** The (first) pre-tokenizer regex (byte-level flavour), else null. */
    public String splitRegex() {
        return splitRules.isEmpty() ? null : splitRules.get(0).regex();
    }

    /** The pre-tokenizer splits in order (byte-level flavour), else empty. */
    public List<SplitRule> splitRules() {
        return splitRules;
    }

    public boolean addPrefixSpace() {
        return addPrefixSpace;
    }

    /** Unicode normalization applied before splitting, or null. */
    public java.text.Normalizer.Form normalization() {
        return normalization;
    }

    public boolean ignoreMerges() {
        return ignoreMerges;
    }

    public boolean byteFallback() {
        return byteFallback;
    }

    public String unkToken() {
        return unkToken;
    }

    /** A builder starting from this tokenizer's settings (e.g. to override BOS/EOS/PAD). */
    public Builder toBuilder() {
        Builder b = new Builder(flavour);
        Map<String, Integer> v = new LinkedHashMap<>();
        for (int id = 0; id < idToToken.length; id++) {
            if (idToToken[id] != null && (!isAdded[id] || inModelVocab[id])) v.put(idToToken[id], id);
        }
        b.vocab = v;
        b.merges = merges;
        b.addedTokens = addedTokens;
        b.splitRules = splitRules;
        b.addPrefixSpace = addPrefixSpace;
        b.normalization = normalization;
        b.ignoreMerges = ignoreMerges;
        b.prependScheme = prependScheme;
        b.prependIfPresent = prependIfPresent;
        b.splitOnSpaceMark = splitOnSpaceMark;
        b.byteFallback = byteFallback;
        b.fuseUnk = fuseUnk;
        b.unkToken = unkToken;
        b.stripLeading = stripLeading;
        b.bos = bos.isPresent() ? bos.getAsInt() : null;
        b.eos = eos.isPresent() ? eos.getAsInt() : null;
        b.pad = pad.isPresent() ? pad.getAsInt() : null;
        return b;
    }

    public PrependScheme prependScheme() {
        return prependScheme;
    }

    public boolean prependIfPresent() {
        return prependIfPresent;
    }

    public boolean splitOnSpaceMark() {
        return splitOnSpaceMark;
    }

    public boolean fuseUnk() {
        return fuseUnk;
    }

    public static Builder builder(Flavour flavour) {
        return new Builder(flavour);
    }

    /** Builder; the defaults are GPT-2's for byte-level and Llama-2's for SentencePiece. */
    public static final class Builder {
        private final Flavour flavour;
        private Map<String, Integer> vocab = Map.of();
        private List<Merge> merges = List.of();
        private List<AddedToken> addedTokens = List.of();
        private List<SplitRule> splitRules = List.of();
        private boolean addPrefixSpace;
        private java.text.Normalizer.Form normalization;
        private boolean ignoreMerges;
        private PrependScheme prependScheme = PrependScheme.ALWAYS;
        private boolean prependIfPresent = true;
        private boolean splitOnSpaceMark;
        private boolean byteFallback;
        private boolean fuseUnk;
        private String unkToken;
        private int stripLeading;
        private Integer bos, eos, pad;

        private Builder(Flavour flavour) {
            this.flavour = flavour;
            if (flavour == Flavour.BYTE_LEVEL) {
                splitRules = List.of(new SplitRule(PreTokenizerPatterns.GPT2, true));
            } else {
                byteFallback = true;
                fuseUnk = true;
                unkToken = "<unk>";
                stripLeading = 1;
            }
        }

        public Builder vocab(Map<String, Integer> vocab) { this.vocab = vocab; return this; }
        public Builder merges(List<Merge> merges) { this.merges = merges; return this; }
        public Builder addedTokens(List<AddedToken> addedTokens) { this.addedTokens = addedTokens; return this; }
        /** Byte-level: the pre-tokenizer regex in Hugging Face syntax. */
        public Builder splitRegex(String regex) { this.splitRules = List.of(new SplitRule(regex, true)); return this; }
        /** Byte-level: pre-tokenizer splits applied one after the other (Hugging Face Sequence of Split). */
        public Builder splitRules(List<SplitRule> rules) { this.splitRules = List.copyOf(rules); return this; }
        /** Byte-level: prepend a space to a segment that does not start with one. */
        public Builder addPrefixSpace(boolean v) { this.addPrefixSpace = v; return this; }
        /** Emit a piece that is itself in the vocabulary as one token without applying merges (Llama-3). */
        /** Unicode normalization applied to text before splitting (null: none). */
        public Builder normalization(java.text.Normalizer.Form form) { this.normalization = form; return this; }
        public Builder ignoreMerges(boolean v) { this.ignoreMerges = v; return this; }
        /** SentencePiece: when to prepend "▁"; {@code ifPresent} false skips segments already starting with "▁" (Metaspace). */
        public Builder prepend(PrependScheme scheme, boolean ifPresent) { this.prependScheme = scheme; this.prependIfPresent = ifPresent; return this; }
        /** SentencePiece: split into words before each "▁" before BPE (Metaspace split=true). */
        public Builder splitOnSpaceMark(boolean v) { this.splitOnSpaceMark = v; return this; }
        public Builder byteFallback(boolean v) { this.byteFallback = v; return this; }
        public Builder fuseUnk(boolean v) { this.fuseUnk = v; return this; }
        public Builder unkToken(String v) { this.unkToken = v; return this; }
        /** Leading spaces the decoder strips from the start of the text. */
        public Builder stripLeading(int n) { this.stripLeading = n; return this; }
        public Builder bos(Integer id) { this.bos = id; return this; }
        public Builder eos(Integer id) { this.eos = id; return this; }
        public Builder pad(Integer id) { this.pad = id; return this; }

        /** Sets BOS/EOS/PAD from added tokens with conventional names, where not set already. */
        public Builder conventionalSpecialIds() {
            Map<String, Integer> byName = new HashMap<>();
            for (AddedToken t : addedTokens) byName.putIfAbsent(t.content(), t.id());
            if (bos == null) bos = first(byName, "<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>");
            if (eos == null) eos = first(byName, "<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>", "<|eot_id|>");
            if (pad == null) pad = first(byName, "<pad>", "<|pad|>", "<|finetune_right_pad_id|>");
            return this;
        }

        private static Integer first(Map<String, Integer> byName, String... names) {
            for (String n : names) if (byName.containsKey(n)) return byName.get(n);
            return null;
        }

        public BpeTokenizer build() {
            return new BpeTokenizer(this);
        }
    }
}
