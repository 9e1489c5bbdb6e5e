package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.exeunt.model.generate.GenerationConfig;
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
 * @param topPDecay   top_p_decay (0 = off); topPBound: top_p_bound (0 = none)
 * @param seed        the sampling seed (random when the request gives none)
 * @param threshold   the early-exit threshold actually used: 1 (never exit) unless use_early_exit is true
 * @param exitLayers  1-based exit layers to use, or null for all
 * @param beamWidth   0: sample; >= 1: beam search with that many beams (one prompt, full model)
 * @param stopToken   the id that ends a beam (stop_token), or -1 for the tokenizer's EOS; for sampling only set by
 *                    {@link #endingAt} (a chat template's end-of-turn token), in place of EOS
 * @param speculative lossless self-speculative decoding (speculative; the server's --speculative when absent):
 *                    the exits draft, the full model verifies, the output is the full model's
 * @param draftMax    with speculative, the most drafts awaiting verification (draft_max)
 */
public record ApiRequest(List<String> prompts, List<int[]> promptIds, int tokensToGenerate, boolean logprobs, double temperature,
                         int topK, double topP, double topPDecay, double topPBound, long seed, List<String> stopSequences, boolean addBos,
                         boolean echoPrompts, boolean useEarlyExit, double threshold, int[] exitLayers, boolean printMaxProb,
                         boolean preventNewlineAfterColon, int beamWidth, double lengthPenalty, int stopToken, boolean speculative,
                         int draftMax) {

    public static final int MAX_STOP_SEQUENCES = 16;
    public static final int MAX_STOP_LENGTH = 256;
    public static final double MAX_TEMPERATURE = 100.0;
    /** Each beam holds a KV cache of the whole context for every layer (twice, to reorder). */
    public static final int MAX_BEAM_WIDTH = 16;

    /**
     * Every field of EE-LLM's server (megatron/early_exit_text_generation_server.py), plus Megatron's
     * stop_token, and this engine's speculative and draft_max (llama.cpp's name).
     */
    static final Set<String> FIELDS = Set.of("prompts", "tokens_to_generate", "logprobs", "temperature", "top_k", "top_p", "top_p_decay",
            "top_p_bound", "random_seed", "stop_sequences", "add_BOS", "echo_prompts", "use_early_exit", "early_exit_thres", "exit_layers",
            "no_log", "print_max_prob", "prevent_newline_after_colon", "beam_width", "length_penalty", "stop_token", "speculative", "draft_max");

    /** Options this engine does not implement, or that Megatron retired: named in the error so a client knows why. */
    static final Map<String, String> UNSUPPORTED = Map.of(
            "max_len", "max_len is no longer used; replace it with tokens_to_generate (as Megatron says)",
            "sentences", "sentences is no longer used; replace it with prompts (as Megatron says)",
            "min_length", "not supported");

    /** What parsing needs to know about the served model; context: the model's positions (prompt + generated). */
    public record Model(Tokenizer tokenizer, int nLayers, int[] exitLayers, int maxPromptTokens, int context) {}

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
        if (p.isTextual()) p = JsonNodeFactory.instance.arrayNode().add(p); // EE-LLM takes one prompt as a plain string
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
        if (temperature > 0 && temperature < GenerationConfig.MIN_TEMPERATURE) {
            throw ApiException.badRequest("field \"temperature\" must be 0 (greedy) or >= " + GenerationConfig.MIN_TEMPERATURE + ", got " + temperature
                    + " (smaller temperatures overflow the softmax)");
        }
        int topK = intField(root, "top_k", 0, 0, Integer.MAX_VALUE, "");
        double topP = doubleField(root, "top_p", 0.0, 0, 1);
        double topPDecay = doubleField(root, "top_p_decay", 0.0, 0, 1);
        double topPBound = doubleField(root, "top_p_bound", 0.0, 0, 1);
        if ((topPDecay > 0 || field(root, "top_p_bound") != null) && topP == 0) {
            throw ApiException.badRequest("fields \"top_p_decay\" and \"top_p_bound\" need \"top_p\" > 0 (they shrink top_p per generated token)");
        }
        if (field(root, "top_p_bound") != null && !(topPBound > 0 && topPBound <= topP)) {
            throw ApiException.badRequest("field \"top_p_bound\" must be in (0, top_p = " + topP + "], got " + topPBound);
        }
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
        boolean printMaxProb = boolField(root, "print_max_prob", false);
        boolean noNewlineAfterColon = boolField(root, "prevent_newline_after_colon", false);
        int beamWidth = intField(root, "beam_width", 0, 1, MAX_BEAM_WIDTH, " (each beam holds its own KV cache)");
        double lengthPenalty = doubleField(root, "length_penalty", 1.0, -Double.MAX_VALUE, Double.MAX_VALUE);
        int stopToken = intField(root, "stop_token", -1, 0, tok.vocabSize() - 1, " (the tokenizer's ids)");
        boolean speculative = boolField(root, "speculative", limits.speculative() && beamWidth == 0);
        int draftMax = intField(root, "draft_max", limits.draftMax(), 1, Integer.MAX_VALUE, " (drafts awaiting verification)");
        if (field(root, "draft_max") != null && !speculative) {
            throw ApiException.badRequest("field \"draft_max\" applies to speculative decoding; add \"speculative\": true");
        }
        if (beamWidth > 0) {
            if (prompts.size() > 1) throw ApiException.badRequest("field \"beam_width\": beam search takes one prompt (batch size must be 1), got " + prompts.size());
            if (useEe) {
                throw ApiException.badRequest("field \"beam_width\": beam search runs the full model (beams compare whole-model log-probabilities), "
                        + "so it cannot be combined with use_early_exit: true");
            }
            if (speculative) {
                throw ApiException.badRequest("field \"speculative\": beam search runs the full model (no exit drafts), "
                        + "so it cannot be combined with beam_width");
            }
            if (printMaxProb) throw ApiException.badRequest("field \"print_max_prob\" reports exit probabilities of early-exit generation, not of beam search");
            if (!stops.isEmpty()) throw ApiException.badRequest("field \"stop_sequences\" is not applied to beam search; use stop_token");
        } else {
            if (field(root, "stop_token") != null) {
                throw ApiException.badRequest("field \"stop_token\" applies to beam search (beam_width); sampling stops at the tokenizer's EOS or stop_sequences");
            }
            if (field(root, "length_penalty") != null) throw ApiException.badRequest("field \"length_penalty\" applies to beam search (beam_width)");
        }

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
            try {
                GenerationConfig.checkFits("field \"tokens_to_generate\" =", tokens, t.length, model.context());
            } catch (IllegalArgumentException e) {
                throw ApiException.badRequest(e.getMessage() + " (prompt " + i + ")");
            }
            ids.add(t);
        }
        return new ApiRequest(List.copyOf(prompts), List.copyOf(ids), tokens, logprobs, temperature, topK, topP == 0 ? 1.0 : topP, topPDecay,
                topPBound, seed, List.copyOf(stops), addBos, echo, useEe, useEe ? thres : 1.0, exits, printMaxProb, noNewlineAfterColon, beamWidth,
                lengthPenalty, stopToken, speculative, draftMax);
    }

    /** The same request ending each sampled prompt at token {@code id} (a chat template's end of turn) instead of EOS. */
    ApiRequest endingAt(int id) {
        return new ApiRequest(prompts, promptIds, tokensToGenerate, logprobs, temperature, topK, topP, topPDecay, topPBound, seed, stopSequences,
                addBos, echoPrompts, useEarlyExit, threshold, exitLayers, printMaxProb, preventNewlineAfterColon, beamWidth, lengthPenalty, id,
                speculative, draftMax);
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
