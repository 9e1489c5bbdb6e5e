package dev.exeunt.model.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.PriorityQueue;

/**
 * A SentencePiece (unigram-scored BPE) tokenizer as llama.cpp runs GGUF vocabularies of type
 * {@code llama}: pieces with scores and token types, merged greedily by score.
 *
 * <p>Encoding: the text is split on special tokens (user-defined ones always, control ones when
 * {@code parseSpecialTokens}); each text fragment gets a leading space when {@code addSpacePrefix} and
 * it starts the text or follows a special token, spaces become "▁", the fragment is cut into
 * characters, and the adjacent pair whose concatenation is the highest-scoring piece is merged
 * (leftmost first on ties) until no pair forms a piece. Characters outside the vocabulary fall back to
 * {@code <0xNN>} byte tokens (or the unknown token). Decoding turns "▁" into spaces and byte tokens
 * into bytes, and strips the leading space added on encoding.
 */
public final class SpmTokenizer implements Tokenizer {
    /** Token types (llama.cpp / SentencePiece). */
    public static final int NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;

    private static final char SPACE_MARK = '\u2581';

    private final String[] tokens;
    private final float[] scores;
    private final int[] types;
    private final Map<String, Integer> ids;
    private final int[] byteIds = new int[256];
    private final byte[][] pieceBytes;
    private final Map<Character, String[]> specialsByFirst;
    private final Map<String, Integer> specialIds;
    private final int unkId;
    private final OptionalInt bos, eos, pad;
    private final boolean addSpacePrefix;

    /**
     * @param tokens pieces by id
     * @param scores merge priority per piece (higher merges first); null: earlier ids first
     * @param types token types per piece ({@link #NORMAL} ...); null: byte pieces {@code <0xNN>} are
     *              {@link #BYTE}, {@code <unk>} {@link #UNKNOWN}, {@code <s>}/{@code </s>} {@link #CONTROL}, the rest normal
     * @param bos, eos, unk, pad special ids, or -1
     */
    public SpmTokenizer(List<String> tokens, float[] scores, int[] types, int bos, int eos, int unk, int pad,
                        boolean addSpacePrefix) {
        int n = tokens.size();
        if (n == 0) throw new IllegalArgumentException("empty vocabulary");
        if (scores != null && scores.length != n) throw new IllegalArgumentException(scores.length + " scores for " + n + " tokens");
        if (types != null && types.length != n) throw new IllegalArgumentException(types.length + " token types for " + n + " tokens");
        this.tokens = tokens.toArray(String[]::new);
        this.scores = new float[n];
        this.types = new int[n];
        for (int i = 0; i < n; i++) {
            this.scores[i] = scores != null ? scores[i] : -i;
            String t = this.tokens[i];
            this.types[i] = types != null ? types[i]
                    : isByteToken(t) ? BYTE : t.equals("<unk>") ? UNKNOWN : t.equals("<s>") || t.equals("</s>") ? CONTROL : NORMAL;
        }
        ids = new HashMap<>(n * 2);
        for (int i = 0; i < n; i++) ids.putIfAbsent(this.tokens[i], i);
        Arrays.fill(byteIds, -1);
        for (int i = 0; i < n; i++) {
            if (this.types[i] == BYTE && isByteToken(this.tokens[i])) {
                int b = Integer.parseInt(this.tokens[i].substring(3, 5), 16);
                if (byteIds[b] < 0) byteIds[b] = i;
            }
        }
        pieceBytes = new byte[n][];
        for (int i = 0; i < n; i++) {
            String t = this.tokens[i];
            pieceBytes[i] = switch (this.types[i]) {
                case BYTE -> isByteToken(t) ? new byte[] {(byte) Integer.parseInt(t.substring(3, 5), 16)} : t.getBytes(StandardCharsets.UTF_8);
                case CONTROL, USER_DEFINED -> t.getBytes(StandardCharsets.UTF_8);
                default -> t.replace(SPACE_MARK, ' ').getBytes(StandardCharsets.UTF_8);
            };
        }
        specialIds = new HashMap<>();
        Map<Character, List<String>> byFirst = new HashMap<>();
        for (int i = 0; i < n; i++) {
            String t = this.tokens[i];
            if ((this.types[i] == CONTROL || this.types[i] == USER_DEFINED) && !t.isEmpty() && specialIds.putIfAbsent(t, i) == null) {
                byFirst.computeIfAbsent(t.charAt(0), k -> new ArrayList<>()).add(t);
            }
        }
        specialsByFirst = new HashMap<>();
        byFirst.forEach((c, l) -> {
            l.sort(Comparator.comparingInt(String::length).reversed().thenComparing(Comparator.naturalOrder()));
            specialsByFirst.put(c, l.toArray(String[]::new));
        });
        this.unkId = checkId(unk, n);
        this.bos = optional(checkId(bos, n));
        this.eos = optional(checkId(eos, n));
        this.pad = optional(checkId(pad, n));
        this.addSpacePrefix = addSpacePrefix;
    }

    private static int checkId(int id, int n) {
        if (id >= n) throw new IllegalArgumentException("special token id " + id + " is not in the vocabulary (size " + n + ")");
        return id < 0 ? -1 : id;
    }

    private static OptionalInt optional(int id) {
        return id < 0 ? OptionalInt.empty() : OptionalInt.of(id);
    }

    private static boolean isByteToken(String t) {
        if (t.length() != 6 || !t.startsWith("<0x") || t.charAt(5) != '>') return false;
        return Character.digit(t.charAt(3), 16) >= 0 && Character.digit(t.charAt(4), 16) >= 0;
    }

    public boolean addSpacePrefix() {
        return addSpacePrefix;
    }

    public float score(int id) {
        return scores[id];
    }

    public int tokenType(int id) {
        return types[id];
    }

    // ------------------------------------------------------------------ encoding

    @Override
    public int[] encode(String text, boolean addBos, boolean parseSpecialTokens) {
        IntList out = new IntList(Math.max(16, text.length() / 3));
        if (addBos && bos.isPresent()) out.add(bos.getAsInt());
        boolean prevSpecial = true;
        int segStart = 0;
        for (int i = 0; i < text.length(); ) {
            String match = matchSpecial(text, i, parseSpecialTokens);
            if (match == null) {
                i++;
                continue;
            }
            if (i > segStart) encodeFragment(text.substring(segStart, i), prevSpecial, out);
            out.add(specialIds.get(match));
            prevSpecial = true;
            i += match.length();
            segStart = i;
        }
        if (segStart < text.length()) encodeFragment(text.substring(segStart), prevSpecial, out);
        return out.toArray();
    }

    private String matchSpecial(String text, int at, boolean parseSpecial) {
        String[] cands = specialsByFirst.get(text.charAt(at));
        if (cands == null) return null;
        for (String c : cands) {
            if (!parseSpecial && types[specialIds.get(c)] == CONTROL) continue;
            if (text.startsWith(c, at)) return c;
        }
        return null;
    }

    private record Bigram(int left, int right, float score, int size) {}

    private static final Comparator<Bigram> ORDER = (a, b) -> a.score != b.score ? Float.compare(b.score, a.score)
            : Integer.compare(a.left, b.left);

    /** llama.cpp's llm_tokenizer_spm: best-score bigram merging over characters, then byte fallback. */
    private void encodeFragment(String raw, boolean prefix, IntList out) {
        String text = ((addSpacePrefix && prefix) ? " " + raw : raw).replace(' ', SPACE_MARK);
        int n = text.codePointCount(0, text.length());
        if (n == 0) return;
        int[] start = new int[n], len = new int[n], prev = new int[n], next = new int[n];
        for (int i = 0, off = 0; i < n; i++) {
            int cp = text.codePointAt(off);
            start[i] = off;
            len[i] = Character.charCount(cp);
            off += len[i];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        PriorityQueue<Bigram> queue = new PriorityQueue<>(ORDER);
        for (int i = 1; i < n; i++) tryBigram(text, start, len, i - 1, i, queue);
        while (!queue.isEmpty()) {
            Bigram b = queue.poll();
            if (len[b.left] == 0 || len[b.right] == 0 || len[b.left] + len[b.right] != b.size) continue;
            len[b.left] += len[b.right];
            len[b.right] = 0;
            next[b.left] = next[b.right];
            if (next[b.right] >= 0) prev[next[b.right]] = b.left;
            if (prev[b.left] >= 0) tryBigram(text, start, len, prev[b.left], b.left, queue);
            if (next[b.left] >= 0) tryBigram(text, start, len, b.left, next[b.left], queue);
        }
        for (int i = 0; i >= 0; i = next[i]) {
            String piece = text.substring(start[i], start[i] + len[i]);
            Integer id = ids.get(piece);
            if (id != null) {
                out.add(id);
                continue;
            }
            for (byte x : piece.getBytes(StandardCharsets.UTF_8)) {
                int bid = byteIds[x & 0xFF];
                if (bid >= 0) out.add(bid);
                else if (unkId >= 0) out.add(unkId);
                else throw new IllegalArgumentException("cannot encode '" + piece + "': no byte token <0x"
                        + String.format("%02X", x & 0xFF) + "> and no unknown token");
            }
        }
    }

    private void tryBigram(String text, int[] start, int[] len, int left, int right, PriorityQueue<Bigram> queue) {
        int size = len[left] + len[right];
        Integer id = ids.get(text.substring(start[left], start[left] + size));
        if (id == null) return;
        int t = types[id];
        if (t == CONTROL || t == BYTE || t == UNKNOWN) return;
        queue.add(new Bigram(left, right, scores[id], size));
    }

    // ------------------------------------------------------------------ decoding

    @Override
    public String decode(int[] ids, boolean skipSpecialTokens) {
        int total = 0;
        for (int id : ids) total += checked(id).length;
        byte[] buf = new byte[total];
        int k = 0;
        for (int id : ids) {
            if (skipSpecialTokens && isSpecial(id)) continue;
            byte[] b = pieceBytes[id];
            System.arraycopy(b, 0, buf, k, b.length);
            k += b.length;
        }
        int from = addSpacePrefix && k > 0 && buf[0] == ' ' ? 1 : 0;
        return new String(buf, from, k - from, StandardCharsets.UTF_8);
    }

    private byte[] checked(int id) {
        if (id < 0 || id >= tokens.length) {
            throw new IllegalArgumentException("token id " + id + " is out of range for vocabulary size " + tokens.length);
        }
        return pieceBytes[id];
    }

    @Override
    public byte[] tokenBytes(int id) {
        return checked(id).clone();
    }

    @Override
    public int leadingSpacesToStrip() {
        return addSpacePrefix ? 1 : 0;
    }

    // ------------------------------------------------------------------ vocabulary

    @Override
    public int vocabSize() {
        return tokens.length;
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
        return id < 0 || id >= tokens.length ? null : tokens[id];
    }

    @Override
    public int idOf(String token) {
        Integer id = ids.get(token);
        return id == null ? -1 : id;
    }

    @Override
    public boolean isSpecial(int id) {
        checked(id);
        return types[id] == CONTROL;
    }
}
