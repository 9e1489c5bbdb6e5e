package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.exeunt.model.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * One validated {@code PUT /api} request (Megatron / EE-LLM text generation fields), its prompts
 * already tokenized. Every problem is an {@link ApiException} (400) whose message names the field.
 *
 * @param topP        the filter as the engine takes it: 1 = disabled (the request's 0)
 * @param seed        the sampling seed (random when the request gives none)
 * @param threshold   the early-exit threshold actually used: 1 (never exit) unless use_early_exit is true
 * @param exitLayers  1-based exit layers to use, or null for all
 */
public record ApiRequest(List<String> prompts, List<int[]> promptIds, int tokensToGenerate, boolean logprobs, double temperature,
                         int topK, double topP, long seed, List<String> stopSequences, boolean addBos, boolean echoPrompts,
                         boolean useEarlyExit, double threshold, int[] exitLayers) {

    public static final int MAX_STOP_SEQUENCES = 16;
    public static final int MAX_STOP_LENGTH = 256;
    public static final double MAX_TEMPERATURE = 100.0;

    static final Set<String> FIELDS = Set.of("prompts", "tokens_to_generate", "logprobs", "temperature", "top_k", "top_p",
            "random_seed", "stop_sequences", "add_BOS", "echo_prompts", "use_early_exit", "early_exit_thres", "exit_layers", "no_log");

    /** Megatron options this engine does not implement: named in the error so a client knows why. */
    static final Map<String, String> UNSUPPORTED = Map.of(
            "beam_width", "beam search is not supported",
            "length_penalty", "beam search is not supported",
            "top_p_decay", "top_p decay is not supported",
            "top_p_bound", "top_p decay is not supported",
            "prevent_newline_after_colon", "not supported",
            "stop_token", "not supported; use stop_sequences (or the tokenizer's EOS, which always stops)",
            "min_length", "not supported");

    /** What parsing needs to know about the served model. */
    public record Model(Tokenizer tokenizer, int nLayers, int[] exitLayers, int maxPromptTokens) {}

    public static ApiRequest parse(JsonNode root, Model model, ServeOptions limits) {
        if (root == null || root.isMissingNode()) throw ApiException.badRequest("the request body is empty; send a JSON object with \"prompts\"");
        if (!root.isObject()) throw ApiException.badRequest("the request body must be a JSON object, got " + kind(root));
        for (var it = root.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (UNSUPPORTED.containsKey(f)) throw ApiException.badRequest("field \"" + f + "\": " + UNSUPPORTED.get(f));
            if (!FIELDS.contains(f)) {
                throw ApiException.badRequest("unknown field \"" + f + "\" (known: " + String.join(", ", FIELDS.stream().sorted().toList()) + ")");
            }
        }

        JsonNode p = field(root, "prompts");
        if (p == null) throw ApiException.badRequest("field \"prompts\" is required (a list of strings)");
        if (!p.isArray()) throw ApiException.badRequest("field \"prompts\" must be a list of strings, got " + kind(p));
        if (p.isEmpty()) throw ApiException.badRequest("field \"prompts\" is empty; give 1 to " + limits.maxPrompts() + " prompts");
        if (p.size() > limits.maxPrompts()) {
            throw ApiException.badRequest("field \"prompts\" has " + p.size() + " prompts; this server allows at most " + limits.maxPrompts()
                    + " (--max-prompts)");
        }
        List<String> prompts = new ArrayList<>();
        for (int i = 0; i < p.size(); i++) {
            JsonNode s = p.get(i);
            if (!s.isTextual()) throw ApiException.badRequest("field \"prompts\"[" + i + "] must be a string, got " + kind(s));
            prompts.add(s.textValue());
        }

        int tokens = intField(root, "tokens_to_generate", 64, 0, limits.maxTokens(), " (--max-tokens)");
        boolean logprobs = boolField(root, "logprobs", false);
        double temperature = doubleField(root, "temperature", 1.0, 0, MAX_TEMPERATURE);
        int topK = intField(root, "top_k", 0, 0, Integer.MAX_VALUE, "");
        double topP = doubleField(root, "top_p", 0.0, 0, 1);
        JsonNode seedNode = field(root, "random_seed");
        long seed;
        if (seedNode == null) {
            seed = ThreadLocalRandom.current().nextLong() & Long.MAX_VALUE;
        } else {
            if (!seedNode.isIntegralNumber() || !seedNode.canConvertToLong()) {
                throw ApiException.badRequest("field \"random_seed\" must be an integer, got " + kind(seedNode));
            }
            seed = seedNode.longValue();
            if (seed < 0) throw ApiException.badRequest("field \"random_seed\" must be >= 0, got " + seed);
        }

        List<String> stops = new ArrayList<>();
        JsonNode st = field(root, "stop_sequences");
        if (st != null) {
            if (!st.isArray()) throw ApiException.badRequest("field \"stop_sequences\" must be a list of strings, got " + kind(st));
            if (st.size() > MAX_STOP_SEQUENCES) {
                throw ApiException.badRequest("field \"stop_sequences\" has " + st.size() + " entries; at most " + MAX_STOP_SEQUENCES);
            }
            for (int i = 0; i < st.size(); i++) {
                JsonNode s = st.get(i);
                if (!s.isTextual()) throw ApiException.badRequest("field \"stop_sequences\"[" + i + "] must be a string, got " + kind(s));
                if (s.textValue().isEmpty()) throw ApiException.badRequest("field \"stop_sequences\"[" + i + "] is empty");
                if (s.textValue().length() > MAX_STOP_LENGTH) {
                    throw ApiException.badRequest("field \"stop_sequences\"[" + i + "] is longer than " + MAX_STOP_LENGTH + " characters");
                }
                stops.add(s.textValue());
            }
        }

        Tokenizer tok = model.tokenizer();
        boolean addBos = boolField(root, "add_BOS", tok.bosId().isPresent());
        if (addBos && tok.bosId().isEmpty()) throw ApiException.badRequest("field \"add_BOS\": this model's tokenizer has no BOS token");
        boolean echo = boolField(root, "echo_prompts", false);
        boolean useEe = boolField(root, "use_early_exit", false);
        double thres = doubleField(root, "early_exit_thres", 1.0, 0, Double.MAX_VALUE);
        boolField(root, "no_log", false); // accepted for Megatron clients; prompts are never logged

        int[] exits = null;
        JsonNode el = field(root, "exit_layers");
        if (el != null) {
            if (!el.isArray()) throw ApiException.badRequest("field \"exit_layers\" must be a list of integers, got " + kind(el));
            if (!el.isEmpty()) {
                exits = new int[el.size()];
                for (int i = 0; i < el.size(); i++) {
                    JsonNode x = el.get(i);
                    if (!x.isIntegralNumber() || !x.canConvertToInt()) {
                        throw ApiException.badRequest("field \"exit_layers\"[" + i + "] must be an integer, got " + kind(x));
                    }
                    int layer = x.intValue();
                    if (Arrays.stream(model.exitLayers()).noneMatch(l -> l == layer)) {
                        throw ApiException.badRequest("field \"exit_layers\"[" + i + "] = " + layer + ": the model has no exit at that layer (exits at "
                                + Arrays.toString(model.exitLayers()) + "; the final head is layer " + model.nLayers() + ")");
                    }
                    exits[i] = layer;
                }
            }
        }

        List<int[]> ids = new ArrayList<>();
        for (int i = 0; i < prompts.size(); i++) {
            int[] t = tok.encode(prompts.get(i), addBos);
            if (t.length == 0) {
                throw ApiException.badRequest("field \"prompts\"[" + i + "] is empty" + (tok.bosId().isPresent()
                        ? " (give some text, or add_BOS: true to start from the BOS token)" : ""));
            }
            if (t.length > model.maxPromptTokens()) {
                throw ApiException.badRequest("field \"prompts\"[" + i + "] has " + t.length + " tokens; the limit is " + model.maxPromptTokens()
                        + " (--max-prompt-tokens / the model's context)");
            }
            ids.add(t);
        }
        return new ApiRequest(List.copyOf(prompts), List.copyOf(ids), tokens, logprobs, temperature, topK, topP == 0 ? 1.0 : topP, seed,
                List.copyOf(stops), addBos, echo, useEe, useEe ? thres : 1.0, exits);
    }

    /** The field's node, or null when absent or JSON null (null means "use the default", as Python clients send None). */
    private static JsonNode field(JsonNode root, String name) {
        JsonNode n = root.get(name);
        return n == null || n.isNull() ? null : n;
    }

    private static boolean boolField(JsonNode root, String name, boolean def) {
        JsonNode n = field(root, name);
        if (n == null) return def;
        if (!n.isBoolean()) throw ApiException.badRequest("field \"" + name + "\" must be a JSON boolean (true or false), got " + kind(n));
        return n.booleanValue();
    }

    private static int intField(JsonNode root, String name, int def, int min, int max, String limitNote) {
        JsonNode n = field(root, name);
        if (n == null) return def;
        if (!n.isIntegralNumber()) throw ApiException.badRequest("field \"" + name + "\" must be an integer, got " + kind(n));
        if (!n.canConvertToInt() || n.intValue() < min || n.intValue() > max) {
            throw ApiException.badRequest("field \"" + name + "\" must be in " + min + ".." + (max == Integer.MAX_VALUE ? "" : max) + limitNote
                    + ", got " + n.asText());
        }
        return n.intValue();
    }

    private static double doubleField(JsonNode root, String name, double def, double min, double max) {
        JsonNode n = field(root, name);
        if (n == null) return def;
        if (!n.isNumber()) throw ApiException.badRequest("field \"" + name + "\" must be a number, got " + kind(n));
        double v = n.doubleValue();
        if (!(v >= min && v <= max)) {
            throw ApiException.badRequest("field \"" + name + "\" must be in [" + min + ", " + (max == Double.MAX_VALUE ? "inf)" : max + "]")
                    + ", got " + n.asText());
        }
        return v;
    }

    private static String kind(JsonNode n) {
        return switch (n.getNodeType()) {
            case STRING -> "a string";
            case NUMBER -> "the number " + n.asText();
            case BOOLEAN -> "the boolean " + n.asText();
            case ARRAY -> "a list";
            case OBJECT -> "an object";
            case NULL -> "null";
            default -> n.getNodeType().name().toLowerCase();
        };
    }
}
