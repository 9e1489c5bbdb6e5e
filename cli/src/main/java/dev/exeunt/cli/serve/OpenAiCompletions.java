package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

/**
 * OpenAI's {@code POST /v1/completions} over the server's EE-LLM request: the request is translated into
 * an EE-LLM body (the same validation and limits), the answer back into OpenAI's {@code text_completion}
 * object. The early-exit fields are extensions: {@code early_exit_thres}, {@code exit_layers} and
 * {@code speculative} in the request (a threshold alone turns early exit on), {@code exit_layers} per
 * choice in the answer.
 */
final class OpenAiCompletions {
    private static final JsonNodeFactory JSON = JsonNodeFactory.instance;
    private static final AtomicLong IDS = new AtomicLong();
    /** Fields taken, and the ones OpenAI clients send with their defaults that change nothing here. */
    private static final Set<String> FIELDS = Set.of("model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "echo", "user", "n",
            "best_of", "stream", "logprobs", "presence_penalty", "frequency_penalty", "early_exit_thres", "exit_layers", "speculative", "top_k");

    private OpenAiCompletions() {}

    /** The EE-LLM body for an OpenAI completions request; what this server cannot do is refused by name. */
    static ObjectNode toApiBody(JsonNode req) {
        if (!req.isObject()) throw ApiException.badRequest("the body must be a JSON object");
        for (Iterator<String> it = req.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!FIELDS.contains(f)) throw ApiException.badRequest("unknown field \"" + f + "\" for /v1/completions");
        }
        requireDefault(req, "n", 1);
        requireDefault(req, "best_of", 1);
        requireDefault(req, "presence_penalty", 0);
        requireDefault(req, "frequency_penalty", 0);
        if (req.path("stream").asBoolean(false)) throw ApiException.badRequest("\"stream\": true is not supported yet; ask without it");
        if (req.hasNonNull("logprobs")) throw ApiException.badRequest("\"logprobs\" is not supported on /v1/completions (PUT /api gives them)");
        ObjectNode body = JSON.objectNode();
        JsonNode prompt = req.get("prompt");
        ArrayNode prompts = body.putArray("prompts");
        if (prompt == null || prompt.isTextual()) prompts.add(prompt == null ? "" : prompt.textValue());
        else if (prompt.isArray() && !prompt.isEmpty() && allText(prompt)) prompt.forEach(p -> prompts.add(p.textValue()));
        else throw ApiException.badRequest("\"prompt\" must be a string or a list of strings (token-id prompts are not supported)");
        body.set("tokens_to_generate", req.has("max_tokens") ? req.get("max_tokens") : JSON.numberNode(16)); // OpenAI's default
        copy(req, "temperature", body, "temperature");
        copy(req, "top_p", body, "top_p");
        copy(req, "top_k", body, "top_k");
        copy(req, "seed", body, "random_seed");
        copy(req, "echo", body, "echo_prompts");
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
        return body;
    }

    /** OpenAI's {@code text_completion} answer from the EE-LLM one; {@code promptTokens}: the prompts' token counts. */
    static ObjectNode toResponse(ObjectNode ee, String model, int[] promptTokens) {
        ObjectNode out = JSON.objectNode();
        out.put("id", "cmpl-exeunt-" + IDS.incrementAndGet());
        out.put("object", "text_completion");
        out.put("created", System.currentTimeMillis() / 1000);
        out.put("model", model);
        ArrayNode choices = out.putArray("choices");
        int completion = 0;
        for (int i = 0; i < ee.get("text").size(); i++) {
            ObjectNode c = choices.addObject();
            c.put("text", ee.get("text").get(i).textValue());
            c.put("index", i);
            c.putNull("logprobs");
            String reason = ee.get("finish_reasons").get(i).textValue();
            c.put("finish_reason", reason.equals("length") || reason.equals("context") ? "length" : "stop");
            c.set("exit_layers", ee.get("exit_layers").get(i));
            completion += ee.get("tokens").get(i).size();
        }
        int prompt = 0;
        for (int n : promptTokens) prompt += n;
        ObjectNode usage = out.putObject("usage");
        usage.put("prompt_tokens", prompt).put("completion_tokens", completion).put("total_tokens", prompt + completion);
        for (Map.Entry<String, JsonNode> e : (Iterable<Map.Entry<String, JsonNode>>) ee::fields) {
            if (e.getKey().equals("acceptance")) out.set("acceptance", e.getValue()); // speculative, as on PUT /api
        }
        return out;
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
