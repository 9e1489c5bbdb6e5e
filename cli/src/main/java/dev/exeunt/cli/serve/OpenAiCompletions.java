package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.generate.GeneratedToken;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

/**
 * OpenAI's {@code POST /v1/completions} and {@code POST /v1/chat/completions} over the server's EE-LLM
 * request: a request is translated into an EE-LLM body (the same validation and limits), the answer
 * back into OpenAI's {@code text_completion} or {@code chat.completion} object, or, streaming, into
 * server-sent chunks. The early-exit fields are extensions: {@code early_exit_thres}, {@code exit_layers}
 * and {@code speculative} in the request (a threshold alone turns early exit on), {@code exit_layers} per
 * choice in the answer and {@code exit_layer} per streamed chunk.
 */
final class OpenAiCompletions {
    private static final JsonNodeFactory JSON = JsonNodeFactory.instance;
    private static final AtomicLong IDS = new AtomicLong();
    /** Fields both endpoints take, and the ones OpenAI clients send with their defaults that change nothing here. */
    private static final Set<String> COMMON = Set.of("model", "max_tokens", "temperature", "top_p", "seed", "stop", "user", "n", "stream",
            "stream_options", "logprobs", "presence_penalty", "frequency_penalty", "early_exit_thres", "exit_layers", "speculative", "top_k");
    private static final Set<String> COMPLETIONS = Set.of("prompt", "echo", "best_of");
    private static final Set<String> CHAT = Set.of("messages", "max_completion_tokens");

    /** Which of the two endpoints: how its answers and chunks look. */
    enum Endpoint {
        COMPLETIONS("cmpl-exeunt-", "text_completion", "text_completion"), CHAT("chatcmpl-exeunt-", "chat.completion", "chat.completion.chunk");

        final String idPrefix, object, chunkObject;

        Endpoint(String idPrefix, String object, String chunkObject) {
            this.idPrefix = idPrefix;
            this.object = object;
            this.chunkObject = chunkObject;
        }
    }

    private OpenAiCompletions() {}

    /** The EE-LLM body for a {@code /v1/completions} request; what this server cannot do is refused by name. */
    static ObjectNode toApiBody(JsonNode req) {
        checkFields(req, COMPLETIONS, "/v1/completions");
        requireDefault(req, "best_of", 1);
        if (req.hasNonNull("logprobs")) throw ApiException.badRequest("\"logprobs\" is not supported on /v1/completions (PUT /api gives them)");
        ObjectNode body = JSON.objectNode();
        JsonNode prompt = req.get("prompt");
        ArrayNode prompts = body.putArray("prompts");
        if (prompt == null || prompt.isTextual()) prompts.add(prompt == null ? "" : prompt.textValue());
        else if (prompt.isArray() && !prompt.isEmpty() && allText(prompt)) prompt.forEach(p -> prompts.add(p.textValue()));
        else throw ApiException.badRequest("\"prompt\" must be a string or a list of strings (token-id prompts are not supported)");
        body.set("tokens_to_generate", req.has("max_tokens") ? req.get("max_tokens") : JSON.numberNode(16)); // OpenAI's default
        copy(req, "echo", body, "echo_prompts");
        sampling(req, body);
        return body;
    }

    /**
     * The EE-LLM body for a {@code /v1/chat/completions} request: the messages rendered with {@code template};
     * its end of turn is added to the stop sequences unless {@code endOfTurnIsToken} (the worker then stops at that token).
     */
    static ObjectNode toChatBody(JsonNode req, ChatTemplate template, boolean endOfTurnIsToken) {
        checkFields(req, CHAT, "/v1/chat/completions");
        if (req.path("logprobs").asBoolean(false)) throw ApiException.badRequest("\"logprobs\" is not supported on /v1/chat/completions");
        JsonNode messages = req.get("messages");
        if (messages == null || !messages.isArray() || messages.isEmpty()) {
            throw ApiException.badRequest("\"messages\" must be a non-empty list of {\"role\", \"content\"} objects");
        }
        List<ChatTemplate.Message> list = new ArrayList<>();
        for (int i = 0; i < messages.size(); i++) {
            JsonNode m = messages.get(i);
            String role = m.path("role").asText("");
            if (!Set.of("system", "user", "assistant").contains(role)) {
                throw ApiException.badRequest("messages[" + i + "].role must be \"system\", \"user\" or \"assistant\", got " + m.get("role"));
            }
            JsonNode content = m.get("content");
            if (content == null || !content.isTextual()) {
                throw ApiException.badRequest("messages[" + i + "].content must be a string (content parts, images and tools are not supported)");
            }
            list.add(new ChatTemplate.Message(role, content.textValue()));
        }
        ObjectNode body = JSON.objectNode();
        body.putArray("prompts").add(template.render(list));
        JsonNode max = req.hasNonNull("max_completion_tokens") ? req.get("max_completion_tokens") : req.get("max_tokens");
        // OpenAI's chat default is "until the context is full"; a bound keeps a chat from holding the server
        body.set("tokens_to_generate", max != null && !max.isNull() ? max : JSON.numberNode(256));
        sampling(req, body);
        if (!endOfTurnIsToken) {
            ArrayNode stops = body.has("stop_sequences") ? (ArrayNode) body.get("stop_sequences") : body.putArray("stop_sequences");
            stops.add(template.endOfTurn);
        }
        return body;
    }

    /** Sampling, stop and the early-exit extensions, shared by both endpoints. */
    private static void sampling(JsonNode req, ObjectNode body) {
        requireDefault(req, "n", 1);
        requireDefault(req, "presence_penalty", 0);
        requireDefault(req, "frequency_penalty", 0);
        JsonNode so = req.get("stream_options");
        if (so != null && !so.isNull() && !(so.isObject() && so.size() <= 1 && (so.isEmpty() || so.has("include_usage")))) {
            throw ApiException.badRequest("\"stream_options\" takes only {\"include_usage\": true|false}");
        }
        copy(req, "temperature", body, "temperature");
        copy(req, "top_p", body, "top_p");
        copy(req, "top_k", body, "top_k");
        copy(req, "seed", body, "random_seed");
        JsonNode stop = req.get("stop");
        if (stop != null && !stop.isNull()) {
            ArrayNode s = body.putArray("stop_sequences");
            if (stop.isTextual()) s.add(stop.textValue());
            else if (stop.isArray() && allText(stop)) stop.forEach(x -> s.add(x.textValue()));
            else throw ApiException.badRequest("\"stop\" must be a string or a list of strings");
        }
        if (req.has("early_exit_thres")) {
            body.put("use_early_exit", true);
            body.set("early_exit_thres", req.get("early_exit_thres"));
        }
        copy(req, "exit_layers", body, "exit_layers");
        copy(req, "speculative", body, "speculative");
        if (req.has("speculative") && !req.has("early_exit_thres")) body.put("use_early_exit", true);
    }

    /** A new response id: {@code cmpl-exeunt-N} or {@code chatcmpl-exeunt-N}. */
    static String newId(Endpoint e) {
        return e.idPrefix + IDS.incrementAndGet();
    }

    /** OpenAI's whole answer from the EE-LLM one; {@code promptTokens}: the prompts' token counts. */
    static ObjectNode toResponse(Endpoint e, String id, ObjectNode ee, String model, int[] promptTokens) {
        ObjectNode out = head(e.object, id, model);
        ArrayNode choices = out.putArray("choices");
        int completion = 0;
        for (int i = 0; i < ee.get("text").size(); i++) {
            ObjectNode c = choices.addObject();
            String text = ee.get("text").get(i).textValue();
            if (e == Endpoint.CHAT) {
                c.put("index", i);
                c.putObject("message").put("role", "assistant").put("content", text);
            } else {
                c.put("text", text);
                c.put("index", i);
            }
            c.putNull("logprobs");
            c.put("finish_reason", finishReason(ee.get("finish_reasons").get(i).textValue()));
            c.set("exit_layers", ee.get("exit_layers").get(i));
            completion += ee.get("tokens").get(i).size();
        }
        out.set("usage", usage(promptTokens, completion));
        if (ee.has("acceptance")) out.set("acceptance", ee.get("acceptance")); // speculative, as on PUT /api
        return out;
    }

    /** A streamed piece of choice {@code index}: its new text and the exit of the token that produced it (null: none). */
    static ObjectNode chunk(Endpoint e, String id, String model, int index, String delta, GeneratedToken token) {
        ObjectNode out = head(e.chunkObject, id, model);
        ObjectNode c = out.putArray("choices").addObject();
        if (e == Endpoint.CHAT) {
            c.put("index", index);
            c.putObject("delta").put("content", delta);
        } else {
            c.put("text", delta);
            c.put("index", index);
        }
        c.putNull("logprobs");
        c.putNull("finish_reason");
        if (token != null) c.put("exit_layer", token.exitLayer());
        return out;
    }

    /** A chat stream's first chunk of a choice: the role. */
    static ObjectNode roleChunk(String id, String model, int index) {
        ObjectNode out = head(Endpoint.CHAT.chunkObject, id, model);
        ObjectNode c = out.putArray("choices").addObject();
        c.put("index", index);
        c.putObject("delta").put("role", "assistant").put("content", "");
        c.putNull("logprobs");
        c.putNull("finish_reason");
        return out;
    }

    /** The last chunk of choice {@code index}: no text, its finish reason (and, speculative, the acceptance). */
    static ObjectNode finalChunk(Endpoint e, String id, String model, int index, ObjectNode ee) {
        ObjectNode out = chunk(e, id, model, index, "", null);
        ObjectNode c = (ObjectNode) out.get("choices").get(0);
        if (e == Endpoint.CHAT) ((ObjectNode) c.get("delta")).removeAll();
        c.put("finish_reason", finishReason(ee.get("finish_reasons").get(index).textValue()));
        if (ee.has("acceptance")) out.set("acceptance", ee.get("acceptance"));
        return out;
    }

    /** stream_options.include_usage: one more chunk, with no choices and the usage. */
    static ObjectNode usageChunk(Endpoint e, String id, String model, ObjectNode ee, int[] promptTokens) {
        ObjectNode out = head(e.chunkObject, id, model);
        out.putArray("choices");
        int completion = 0;
        for (JsonNode t : ee.get("tokens")) completion += t.size();
        out.set("usage", usage(promptTokens, completion));
        return out;
    }

    static boolean wantsUsage(JsonNode req) {
        return req.path("stream_options").path("include_usage").asBoolean(false);
    }

    private static ObjectNode head(String object, String id, String model) {
        ObjectNode out = JSON.objectNode();
        out.put("id", id);
        out.put("object", object);
        out.put("created", System.currentTimeMillis() / 1000);
        out.put("model", model);
        return out;
    }

    private static ObjectNode usage(int[] promptTokens, int completion) {
        int prompt = 0;
        for (int n : promptTokens) prompt += n;
        return JSON.objectNode().put("prompt_tokens", prompt).put("completion_tokens", completion).put("total_tokens", prompt + completion);
    }

    private static String finishReason(String ee) {
        return ee.equals("length") || ee.equals("context") ? "length" : "stop";
    }

    private static void checkFields(JsonNode req, Set<String> own, String path) {
        if (!req.isObject()) throw ApiException.badRequest("the body must be a JSON object");
        for (Iterator<String> it = req.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!COMMON.contains(f) && !own.contains(f)) throw ApiException.badRequest("unknown field \"" + f + "\" for " + path);
        }
    }

    private static void requireDefault(JsonNode req, String field, int value) {
        JsonNode v = req.get(field);
        if (v != null && !v.isNull() && !(v.isNumber() && v.doubleValue() == value)) {
            throw ApiException.badRequest("\"" + field + "\" other than " + value + " is not supported");
        }
    }

    private static boolean allText(JsonNode array) {
        for (JsonNode x : array) if (!x.isTextual()) return false;
        return true;
    }

    private static void copy(JsonNode from, String key, ObjectNode to, String as) {
        JsonNode v = from.get(key);
        if (v != null && !v.isNull()) to.set(as, v);
    }
}
