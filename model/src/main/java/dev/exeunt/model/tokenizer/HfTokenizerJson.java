package dev.exeunt.model.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads and writes Hugging Face {@code tokenizer.json} files with a BPE model, in the structures used by
 * GPT-2 (ByteLevel pre-tokenizer), Llama-3 (Split regex + ByteLevel) and Llama-2 (SentencePiece BPE:
 * Prepend/Replace "▁" normalizer or Metaspace pre-tokenizer, byte fallback).
 *
 * <p>BOS/EOS/PAD come from the post-processor's template (a leading special token is BOS) and from added
 * tokens with conventional names ({@code <|begin_of_text|>}, {@code <s>}, {@code <|end_of_text|>},
 * {@code </s>}, {@code <|endoftext|>}, {@code <pad>}, ...). Override with
 * {@code tokenizer.toBuilder().bos(id).eos(id).build()}.
 */
public final class HfTokenizerJson {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final String SPACE_MARK = String.valueOf(BpeTokenizer.SPACE_MARK);
    /** The largest real tokenizer.json files (Gemma-3's) are about 33 MB. */
    private static final long MAX_FILE_BYTES = 1L << 30;
    /**
     * Ids may leave holes (GPT-4o's added tokens skip 16 ids) but must stay near the number of entries:
     * one stray id of 2^31-1 must not size every per-id array.
     */
    private static final int ID_SLACK = 1024;

    private HfTokenizerJson() {}

    /** Loads a tokenizer.json file; every problem with its content is a TokenizerFormatException naming the file. */
    public static BpeTokenizer load(Path path) throws IOException {
        if (!Files.isRegularFile(path)) throw new NoSuchFileException(path.toString(), null, "tokenizer file not found");
        long size = Files.size(path);
        if (size > MAX_FILE_BYTES)
            throw new TokenizerFormatException(path + ": " + size + " bytes is larger than any tokenizer.json (limit " + MAX_FILE_BYTES + ")");
        try {
            return parse(Utf8.decodeStrict(Files.readAllBytes(path)));
        } catch (TokenizerFormatException e) {
            throw new TokenizerFormatException(path + ": " + e.getMessage(), e);
        } catch (RuntimeException e) { // any failure on a hostile file is a format error naming it
            throw new TokenizerFormatException(path + ": " + e, e);
        }
    }

    /** Parses tokenizer.json text. */
    public static BpeTokenizer parse(String json) throws TokenizerFormatException {
        JsonNode root;
        try {
            root = MAPPER.readTree(json);
        } catch (JsonProcessingException e) {
            throw new TokenizerFormatException("malformed JSON: " + e.getOriginalMessage()
                    + (e.getLocation() != null ? " at line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() : ""), e);
        }
        if (root == null || !root.isObject()) throw new TokenizerFormatException("tokenizer.json must hold a JSON object");
        try {
            return fromTree(root);
        } catch (IllegalArgumentException e) {
            throw new TokenizerFormatException(e.getMessage(), e);
        }
    }

    private static BpeTokenizer fromTree(JsonNode root) throws TokenizerFormatException {
        JsonNode model = root.get("model");
        if (model == null || !model.isObject()) throw new TokenizerFormatException("missing \"model\" object");
        String type = text(model, "type");
        if (type == null && model.has("vocab") && model.has("merges")) type = "BPE";
        if (!"BPE".equals(type))
            throw new TokenizerFormatException("unsupported tokenizer model type '" + type + "': only BPE is supported");
        for (String f : new String[] {"continuing_subword_prefix", "end_of_word_suffix"}) {
            String v = text(model, f);
            if (v != null && !v.isEmpty())
                throw new TokenizerFormatException("unsupported BPE option " + f + " = '" + v + "'");
        }

        JsonNode vocabNode = model.get("vocab");
        if (vocabNode == null || !vocabNode.isObject()) throw new TokenizerFormatException("model.vocab must be an object of token -> id");
        Map<String, Integer> vocab = new LinkedHashMap<>();
        var it = vocabNode.fields();
        while (it.hasNext()) {
            var e = it.next();
            if (!e.getValue().isIntegralNumber() || !e.getValue().canConvertToInt() || e.getValue().intValue() < 0)
                throw new TokenizerFormatException("model.vocab['" + e.getKey() + "'] = " + e.getValue() + " is not a non-negative integer id");
            if (e.getKey().isEmpty()) throw new TokenizerFormatException("model.vocab has an empty token (id " + e.getValue() + ")");
            vocab.put(e.getKey(), e.getValue().intValue());
        }

        List<BpeTokenizer.Merge> merges = new ArrayList<>();
        JsonNode mergesNode = model.get("merges");
        if (mergesNode != null && !mergesNode.isNull()) {
            if (!mergesNode.isArray()) throw new TokenizerFormatException("model.merges must be an array");
            int i = 0;
            for (JsonNode m : mergesNode) {
                if (m.isTextual()) {
                    String s = m.asText();
                    int sp = s.indexOf(' ');
                    if (sp <= 0 || sp == s.length() - 1 || s.indexOf(' ', sp + 1) >= 0)
                        throw new TokenizerFormatException("model.merges[" + i + "] = '" + s + "' is not of the form 'a b'");
                    merges.add(new BpeTokenizer.Merge(s.substring(0, sp), s.substring(sp + 1)));
                } else if (m.isArray() && m.size() == 2 && m.get(0).isTextual() && m.get(1).isTextual()) {
                    merges.add(new BpeTokenizer.Merge(m.get(0).asText(), m.get(1).asText()));
                } else {
                    throw new TokenizerFormatException("model.merges[" + i + "] must be \"a b\" or [\"a\", \"b\"]: " + m);
                }
                i++;
            }
        }

        List<AddedToken> added = new ArrayList<>();
        JsonNode addedNode = root.get("added_tokens");
        if (addedNode != null && !addedNode.isNull()) {
            if (!addedNode.isArray()) throw new TokenizerFormatException("added_tokens must be an array");
            int i = 0;
            for (JsonNode a : addedNode) {
                JsonNode id = a.path("id"), content = a.path("content");
                if (!id.isIntegralNumber() || !id.canConvertToInt() || id.intValue() < 0)
                    throw new TokenizerFormatException("added_tokens[" + i + "] has no non-negative integer \"id\": " + a);
                if (!content.isTextual() || content.asText().isEmpty())
                    throw new TokenizerFormatException("added_tokens[" + i + "] has no non-empty \"content\" string: " + a);
                for (String flag : new String[] {"lstrip", "rstrip", "single_word"}) {
                    if (a.path(flag).asBoolean(false))
                        throw new TokenizerFormatException("unsupported added token option " + flag + " = true (added_tokens[" + i + "] '"
                                + content.asText() + "')");
                }
                added.add(new AddedToken(id.intValue(), content.asText(), a.path("special").asBoolean(false)));
                i++;
            }
        }
        checkIdBounds(vocab, added);

        // ---- pipeline: find out the flavour
        List<JsonNode> pre = flatten(root.get("pre_tokenizer"), "pretokenizers");
        List<JsonNode> norms = flatten(root.get("normalizer"), "normalizers");
        List<JsonNode> decs = flatten(root.get("decoder"), "decoders");

        JsonNode byteLevelPre = null, metaspacePre = null;
        List<JsonNode> splits = new ArrayList<>();
        for (JsonNode p : pre) {
            String t = text(p, "type");
            switch (t == null ? "" : t) {
                case "ByteLevel" -> {
                    if (byteLevelPre != null) throw new TokenizerFormatException("unsupported pre_tokenizer: more than one ByteLevel");
                    byteLevelPre = p;
                }
                case "Split" -> {
                    if (byteLevelPre != null) throw new TokenizerFormatException("unsupported pre_tokenizer: Split after ByteLevel");
                    splits.add(p);
                }
                case "Metaspace" -> metaspacePre = p;
                default -> throw new TokenizerFormatException("unsupported pre_tokenizer type '" + t + "'");
            }
        }

        java.text.Normalizer.Form form = null;
        boolean prependNorm = false, replaceSpaceNorm = false;
        for (JsonNode n : norms) {
            String t = text(n, "type");
            switch (t == null ? "" : t) {
                case "Prepend" -> {
                    if (!SPACE_MARK.equals(text(n, "prepend")))
                        throw new TokenizerFormatException("unsupported Prepend normalizer content '" + text(n, "prepend") + "'");
                    prependNorm = true;
                }
                case "Replace" -> {
                    String pat = n.path("pattern").path("String").asText(null);
                    if (!" ".equals(pat) || !SPACE_MARK.equals(text(n, "content")))
                        throw new TokenizerFormatException("unsupported Replace normalizer: " + n);
                    replaceSpaceNorm = true;
                }
                case "NFC" -> form = java.text.Normalizer.Form.NFC;
                case "NFKC" -> form = java.text.Normalizer.Form.NFKC;
                case "NFD" -> form = java.text.Normalizer.Form.NFD;
                case "NFKD" -> form = java.text.Normalizer.Form.NFKD;
                default -> throw new TokenizerFormatException("unsupported normalizer type '" + t + "'");
            }
        }

        BpeTokenizer.Builder b;
        if (byteLevelPre != null) {
            if (metaspacePre != null || prependNorm || replaceSpaceNorm)
                throw new TokenizerFormatException("unsupported mix of ByteLevel and SentencePiece (▁) steps");
            b = BpeTokenizer.builder(BpeTokenizer.Flavour.BYTE_LEVEL);
            boolean useRegex = byteLevelPre.path("use_regex").asBoolean(true);
            if (!splits.isEmpty()) {
                if (useRegex) throw new TokenizerFormatException("unsupported pre_tokenizer: Split followed by ByteLevel with use_regex true");
                List<BpeTokenizer.SplitRule> rules = new ArrayList<>();
                for (JsonNode split : splits) rules.add(splitRule(split));
                b.splitRules(rules);
            } else {
                if (!useRegex) throw new TokenizerFormatException("unsupported ByteLevel pre_tokenizer with use_regex false and no Split");
                b.splitRegex(PreTokenizerPatterns.GPT2);
            }
            b.addPrefixSpace(byteLevelPre.path("add_prefix_space").asBoolean(false));
            b.normalization(form);
            b.unkToken(text(model, "unk_token"));
            b.byteFallback(false);
            b.fuseUnk(model.path("fuse_unk").asBoolean(false));
            for (JsonNode d : decs) {
                String t = text(d, "type");
                if (!"ByteLevel".equals(t)) throw new TokenizerFormatException("unsupported decoder type '" + t + "' for a byte-level tokenizer");
            }
        } else if (metaspacePre != null || replaceSpaceNorm) {
            for (JsonNode split : splits) {
                // Gemma: the normalizer has already turned every " " into "▁", so splitting on " " finds nothing
                boolean noOp = replaceSpaceNorm && " ".equals(split.path("pattern").path("String").asText(null))
                        && !split.path("invert").asBoolean(false);
                if (!noOp) throw new TokenizerFormatException("unsupported pre_tokenizer Split in a SentencePiece tokenizer: " + split);
            }
            b = BpeTokenizer.builder(BpeTokenizer.Flavour.SENTENCEPIECE);
            b.normalization(form);
            if (metaspacePre != null) {
                String rep = text(metaspacePre, "replacement");
                if (rep != null && !SPACE_MARK.equals(rep)) throw new TokenizerFormatException("unsupported Metaspace replacement '" + rep + "'");
                String scheme = text(metaspacePre, "prepend_scheme");
                BpeTokenizer.PrependScheme ps;
                if (scheme == null) {
                    ps = metaspacePre.path("add_prefix_space").asBoolean(true) ? BpeTokenizer.PrependScheme.ALWAYS : BpeTokenizer.PrependScheme.NEVER;
                } else {
                    ps = switch (scheme) {
                        case "always" -> BpeTokenizer.PrependScheme.ALWAYS;
                        case "first" -> BpeTokenizer.PrependScheme.FIRST;
                        case "never" -> BpeTokenizer.PrependScheme.NEVER;
                        default -> throw new TokenizerFormatException("unsupported Metaspace prepend_scheme '" + scheme + "'");
                    };
                }
                b.prepend(prependNorm ? BpeTokenizer.PrependScheme.ALWAYS : ps, prependNorm);
                b.splitOnSpaceMark(metaspacePre.path("split").asBoolean(true));
            } else {
                b.prepend(prependNorm ? BpeTokenizer.PrependScheme.ALWAYS : BpeTokenizer.PrependScheme.NEVER, true);
                b.splitOnSpaceMark(false);
            }
            b.byteFallback(model.path("byte_fallback").asBoolean(false));
            b.fuseUnk(model.path("fuse_unk").asBoolean(false));
            b.unkToken(text(model, "unk_token"));
            int strip = 0;
            for (JsonNode d : decs) {
                String t = text(d, "type");
                switch (t == null ? "" : t) {
                    case "Replace" -> {
                        String pat = d.path("pattern").path("String").asText(null);
                        if (!SPACE_MARK.equals(pat) || !" ".equals(text(d, "content")))
                            throw new TokenizerFormatException("unsupported Replace decoder: " + d);
                    }
                    case "ByteFallback", "Fuse" -> { }
                    case "Strip" -> {
                        String c = text(d, "content");
                        if (c != null && !" ".equals(c)) throw new TokenizerFormatException("unsupported Strip decoder content '" + c + "'");
                        if (d.path("stop").asInt(0) != 0) throw new TokenizerFormatException("unsupported Strip decoder with stop > 0");
                        strip += d.path("start").asInt(0);
                    }
                    case "Metaspace" -> {
                        String scheme = text(d, "prepend_scheme");
                        boolean stripsSpace = scheme == null ? d.path("add_prefix_space").asBoolean(true) : !"never".equals(scheme);
                        if (stripsSpace) strip += 1;
                    }
                    default -> throw new TokenizerFormatException("unsupported decoder type '" + t + "' for a SentencePiece tokenizer");
                }
            }
            b.stripLeading(strip);
        } else {
            throw new TokenizerFormatException("unsupported tokenizer.json structure: neither a ByteLevel pre_tokenizer (GPT-2/Llama-3) "
                    + "nor a SentencePiece \"▁\" normalizer/Metaspace pre_tokenizer (Llama-2)");
        }
        b.ignoreMerges(model.path("ignore_merges").asBoolean(false));
        b.vocab(vocab).merges(merges).addedTokens(added);

        // BOS from a template post-processor ("single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": ...}])
        for (JsonNode p : flatten(root.get("post_processor"), "processors")) {
            if (!"TemplateProcessing".equals(text(p, "type"))) continue;
            JsonNode single = p.path("single");
            if (single.isArray() && !single.isEmpty() && single.get(0).has("SpecialToken")) {
                String name = single.get(0).path("SpecialToken").path("id").asText();
                JsonNode ids = p.path("special_tokens").path(name).path("ids");
                if (ids.isArray() && ids.size() == 1) b.bos(ids.get(0).asInt());
                else if (vocab.containsKey(name)) b.bos(vocab.get(name));
            }
        }
        b.conventionalSpecialIds();
        return b.build();
    }

    /** An Isolated Split, or a Removed Split with invert true (the matches kept, the rest dropped: GPT-4o). */
    private static BpeTokenizer.SplitRule splitRule(JsonNode split) throws TokenizerFormatException {
        String regex = split.path("pattern").path("Regex").asText(null);
        if (regex == null) throw new TokenizerFormatException("unsupported Split pattern (only {\"Regex\": ...}): " + split.path("pattern"));
        String behavior = text(split, "behavior");
        boolean invert = split.path("invert").asBoolean(false);
        if ((behavior == null || "Isolated".equals(behavior)) && !invert) return new BpeTokenizer.SplitRule(regex, true);
        if ("Removed".equals(behavior) && invert) return new BpeTokenizer.SplitRule(regex, false);
        throw new TokenizerFormatException("unsupported Split behavior '" + behavior + "' with invert " + invert
                + " (supported: Isolated, or Removed with invert true)");
    }

    private static void checkIdBounds(Map<String, Integer> vocab, List<AddedToken> added) throws TokenizerFormatException {
        long limit = (long) vocab.size() + added.size() + ID_SLACK;
        for (var e : vocab.entrySet()) {
            if (e.getValue() >= limit)
                throw new TokenizerFormatException("model.vocab['" + e.getKey() + "'] has id " + e.getValue() + ", far beyond the "
                        + vocab.size() + " vocabulary entries and " + added.size() + " added tokens (ids must be < " + limit + ")");
        }
        for (AddedToken a : added) {
            if (a.id() >= limit)
                throw new TokenizerFormatException("added token '" + a.content() + "' has id " + a.id() + ", far beyond the "
                        + vocab.size() + " vocabulary entries and " + added.size() + " added tokens (ids must be < " + limit + ")");
        }
    }

    private static String text(JsonNode n, String field) {
        JsonNode v = n == null ? null : n.get(field);
        return v == null || v.isNull() ? null : v.asText();
    }

    /** A null node gives nothing, a {"type": "Sequence", key: [...]} its members (recursively), else itself. */
    private static List<JsonNode> flatten(JsonNode node, String key) throws TokenizerFormatException {
        List<JsonNode> out = new ArrayList<>();
        if (node == null || node.isNull()) return out;
        if (!node.isObject()) throw new TokenizerFormatException("expected an object, got " + node);
        if ("Sequence".equals(text(node, "type"))) {
            JsonNode items = node.get(key);
            if (items == null || !items.isArray()) throw new TokenizerFormatException("Sequence without \"" + key + "\" array");
            for (JsonNode n : items) out.addAll(flatten(n, key));
        } else {
            out.add(node);
        }
        return out;
    }

    // ------------------------------------------------------------------ saving

    /** Writes {@code tokenizer} as a Hugging Face tokenizer.json. */
    public static void save(BpeTokenizer tokenizer, Path path) throws IOException {
        Path parent = path.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        Files.writeString(path, toJson(tokenizer), StandardCharsets.UTF_8);
    }

    /** The tokenizer.json text for {@code tokenizer}. */
    public static String toJson(BpeTokenizer t) {
        ObjectNode root = MAPPER.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (AddedToken a : t.addedTokens()) {
            ObjectNode o = added.addObject();
            o.put("id", a.id());
            o.put("content", a.content());
            o.put("single_word", false);
            o.put("lstrip", false);
            o.put("rstrip", false);
            o.put("normalized", !a.special());
            o.put("special", a.special());
        }
        ObjectNode model;
        if (t.flavour() == BpeTokenizer.Flavour.BYTE_LEVEL) {
            if (t.normalization() == null) root.putNull("normalizer");
            else root.putObject("normalizer").put("type", t.normalization().name());
            boolean gpt2 = t.splitRules().equals(List.of(new BpeTokenizer.SplitRule(PreTokenizerPatterns.GPT2, true)));
            ObjectNode byteLevel = MAPPER.createObjectNode();
            byteLevel.put("type", "ByteLevel");
            byteLevel.put("add_prefix_space", t.addPrefixSpace());
            byteLevel.put("trim_offsets", true);
            byteLevel.put("use_regex", gpt2);
            if (gpt2) {
                root.set("pre_tokenizer", byteLevel);
            } else {
                ObjectNode seq = root.putObject("pre_tokenizer");
                seq.put("type", "Sequence");
                ArrayNode list = seq.putArray("pretokenizers");
                for (BpeTokenizer.SplitRule r : t.splitRules()) {
                    ObjectNode split = list.addObject();
                    split.put("type", "Split");
                    split.putObject("pattern").put("Regex", r.regex());
                    split.put("behavior", r.keepGaps() ? "Isolated" : "Removed");
                    split.put("invert", !r.keepGaps());
                }
                list.add(byteLevel);
            }
            ObjectNode post = root.putObject("post_processor");
            post.put("type", "ByteLevel");
            post.put("add_prefix_space", true);
            post.put("trim_offsets", false);
            post.put("use_regex", true);
            ObjectNode dec = root.putObject("decoder");
            dec.put("type", "ByteLevel");
            dec.put("add_prefix_space", true);
            dec.put("trim_offsets", true);
            dec.put("use_regex", true);
            model = root.putObject("model");
            model.put("type", "BPE");
            model.putNull("dropout");
            if (t.unkToken() == null) model.putNull("unk_token");
            else model.put("unk_token", t.unkToken());
            model.put("continuing_subword_prefix", "");
            model.put("end_of_word_suffix", "");
            model.put("fuse_unk", t.fuseUnk());
            model.put("byte_fallback", false);
        } else {
            if (t.splitOnSpaceMark() || t.prependScheme() != BpeTokenizer.PrependScheme.ALWAYS || !t.prependIfPresent()) {
                if (t.normalization() == null) root.putNull("normalizer");
                else root.putObject("normalizer").put("type", t.normalization().name());
                ObjectNode ms = root.putObject("pre_tokenizer");
                ms.put("type", "Metaspace");
                ms.put("replacement", SPACE_MARK);
                ms.put("prepend_scheme", t.prependScheme().name().toLowerCase(java.util.Locale.ROOT));
                ms.put("split", t.splitOnSpaceMark());
            } else {
                ObjectNode norm = root.putObject("normalizer");
                norm.put("type", "Sequence");
                ArrayNode ns = norm.putArray("normalizers");
                if (t.normalization() != null) ns.addObject().put("type", t.normalization().name());
                ns.addObject().put("type", "Prepend").put("prepend", SPACE_MARK);
                ObjectNode rep = ns.addObject();
                rep.put("type", "Replace");
                rep.putObject("pattern").put("String", " ");
                rep.put("content", SPACE_MARK);
                root.putNull("pre_tokenizer");
            }
            root.putNull("post_processor");
            ObjectNode dec = root.putObject("decoder");
            dec.put("type", "Sequence");
            ArrayNode ds = dec.putArray("decoders");
            ObjectNode rep = ds.addObject();
            rep.put("type", "Replace");
            rep.putObject("pattern").put("String", SPACE_MARK);
            rep.put("content", " ");
            ds.addObject().put("type", "ByteFallback");
            ds.addObject().put("type", "Fuse");
            if (t.leadingSpacesToStrip() > 0) {
                ObjectNode strip = ds.addObject();
                strip.put("type", "Strip");
                strip.put("content", " ");
                strip.put("start", t.leadingSpacesToStrip());
                strip.put("stop", 0);
            }
            model = root.putObject("model");
            model.put("type", "BPE");
            model.putNull("dropout");
            if (t.unkToken() == null) model.putNull("unk_token");
            else model.put("unk_token", t.unkToken());
            model.putNull("continuing_subword_prefix");
            model.putNull("end_of_word_suffix");
            model.put("fuse_unk", t.fuseUnk());
            model.put("byte_fallback", t.byteFallback());
        }
        model.put("ignore_merges", t.ignoreMerges());
        ObjectNode vocab = model.putObject("vocab");
        t.vocab().forEach(vocab::put);
        ArrayNode merges = model.putArray("merges");
        for (BpeTokenizer.Merge m : t.merges()) {
            if (m.left().indexOf(' ') >= 0 || m.right().indexOf(' ') >= 0) merges.addArray().add(m.left()).add(m.right());
            else merges.add(m.left() + " " + m.right());
        }
        try {
            return MAPPER.writer(SerializationFeature.INDENT_OUTPUT).writeValueAsString(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
