package dev.exeunt.cli.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * POST /v1/completions and /v1/chat/completions as OpenAI's clients send them, behind --api-key: 401
 * without the key (not /health), the same text and tokens as PUT /api for the same request, usage
 * counts, the early-exit extensions, server-sent event streams that add up to the whole answer, chat
 * templates, and refusals that name what is not supported.
 */
@Timeout(120)
class ServeOpenAiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    @TempDir
    static Path dir;
    static Server server;

    @BeforeAll
    static void start() throws Exception {
        ServeFixture.writeModel(dir.resolve("model"));
        server = Server.start(dir.resolve("model"), "127.0.0.1", 0, ServeOptions.defaults().withApiKey("sekrit"));
    }

    @AfterAll
    static void stop() {
        if (server != null) server.stop();
    }

    record Reply(int status, JsonNode body, HttpResponse<String> raw) {}

    static Reply call(String method, String path, String body, String key) throws Exception {
        var b = HttpRequest.newBuilder(URI.create(server.url() + path)).timeout(Duration.ofSeconds(60)).header("Content-Type", "application/json");
        if (key != null) b.header("Authorization", "Bearer " + key);
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        var r = CLIENT.send(b.build(), HttpResponse.BodyHandlers.ofString());
        return new Reply(r.statusCode(), r.body().isEmpty() ? null : JSON.readTree(r.body()), r);
    }

    @Test
    void theApiKeyGuardsEveryEndpointButHealth() throws Exception {
        String body = "{\"model\": \"demo\", \"prompt\": \"the dog\", \"max_tokens\": 4, \"temperature\": 0}";
        var none = call("POST", "/v1/completions", body, null);
        assertEquals(401, none.status(), String.valueOf(none.body()));
        assertEquals("Bearer", none.raw().headers().firstValue("WWW-Authenticate").orElse(""));
        assertEquals(401, call("POST", "/v1/completions", body, "wrong").status());
        assertEquals(401, call("PUT", "/api", "{\"prompts\": [\"a\"], \"tokens_to_generate\": 2}", null).status());
        assertEquals(200, call("GET", "/health", null, null).status());
        assertEquals(200, call("POST", "/v1/completions", body, "sekrit").status());
    }

    @Test
    void completionsAnswerAsOpenAiWithTheServersTokens() throws Exception {
        var ee = call("PUT", "/api", "{\"prompts\": [\"the dog\", \"a cat\"], \"tokens_to_generate\": 8, \"temperature\": 0}", "sekrit").body();
        var r = call("POST", "/v1/completions", "{\"model\": \"demo\", \"prompt\": [\"the dog\", \"a cat\"], \"max_tokens\": 8, \"temperature\": 0}",
                "sekrit");
        assertEquals(200, r.status(), String.valueOf(r.body()));
        JsonNode j = r.body();
        assertEquals("text_completion", j.get("object").textValue());
        assertEquals("demo", j.get("model").textValue());
        assertTrue(j.get("id").textValue().startsWith("cmpl-"));
        assertEquals(2, j.get("choices").size());
        int completion = 0;
        for (int i = 0; i < 2; i++) {
            JsonNode c = j.get("choices").get(i);
            assertEquals(ee.get("text").get(i), c.get("text"));
            assertEquals(i, c.get("index").intValue());
            assertEquals("length", c.get("finish_reason").textValue());
            assertEquals(ee.get("exit_layers").get(i), c.get("exit_layers"));
            completion += ee.get("tokens").get(i).size();
        }
        assertEquals(completion, j.get("usage").get("completion_tokens").intValue());
        assertEquals(j.get("usage").get("prompt_tokens").intValue() + completion, j.get("usage").get("total_tokens").intValue());
        // the early-exit extension: a threshold turns early exit on, and the exits show in exit_layers
        var early = call("POST", "/v1/completions", "{\"prompt\": \"the dog\", \"max_tokens\": 8, \"temperature\": 0, \"early_exit_thres\": 0.0}",
                "sekrit").body();
        assertTrue(early.get("choices").get(0).get("exit_layers").toString().contains("1"), early.toString());
        // stop: a string; the text ends before it, finish_reason "stop"
        var stop = call("POST", "/v1/completions", "{\"prompt\": \"the dog\", \"max_tokens\": 30, \"temperature\": 0, \"stop\": \"e\"}", "sekrit").body();
        JsonNode c0 = stop.get("choices").get(0);
        if (c0.get("finish_reason").textValue().equals("stop")) assertTrue(!c0.get("text").textValue().contains("e"), stop.toString());
    }

    @Test
    void whatIsNotSupportedIsRefusedByName() throws Exception {
        String[][] cases = {{"{\"prompt\": \"a\", \"stream_options\": {\"x\": 1}}", "stream_options"}, {"{\"prompt\": \"a\", \"n\": 2}", "\"n\""},
                {"{\"prompt\": \"a\", \"suffix\": \"b\"}", "unknown field \"suffix\""}, {"{\"prompt\": [1, 2]}", "list of strings"},
                {"{\"prompt\": \"a\", \"logprobs\": 2}", "logprobs"}};
        for (String[] c : cases) {
            var r = call("POST", "/v1/completions", c[0], "sekrit");
            assertEquals(400, r.status(), c[0]);
            assertTrue(r.body().get("error").asText().contains(c[1]), c[0] + " -> " + r.body());
        }
        assertEquals(405, call("GET", "/v1/completions", null, "sekrit").status());
        String[][] chat = {{"{\"messages\": []}", "non-empty list"}, {"{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "role must be"},
                {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", "content must be a string"},
                {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"prompt\": \"b\"}", "unknown field \"prompt\""}};
        for (String[] c : chat) {
            var r = call("POST", "/v1/chat/completions", c[0], "sekrit");
            assertEquals(400, r.status(), c[0]);
            assertTrue(r.body().get("error").asText().contains(c[1]), c[0] + " -> " + r.body());
        }
    }

    /** The events of a streamed answer, read as OpenAI's client reads them: "data: " lines up to [DONE]. */
    static java.util.List<JsonNode> stream(String path, String body) throws Exception {
        var req = HttpRequest.newBuilder(URI.create(server.url() + path)).timeout(Duration.ofSeconds(60)).header("Content-Type", "application/json")
                .header("Authorization", "Bearer sekrit").POST(HttpRequest.BodyPublishers.ofString(body)).build();
        var r = CLIENT.send(req, HttpResponse.BodyHandlers.ofLines());
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"), r.headers().toString());
        var events = new java.util.ArrayList<JsonNode>();
        boolean done = false;
        for (String line : (Iterable<String>) r.body()::iterator) {
            if (line.isEmpty()) continue;
            assertTrue(line.startsWith("data: "), line);
            assertTrue(!done, "nothing after [DONE]: " + line);
            String data = line.substring(6);
            if (data.equals("[DONE]")) done = true;
            else events.add(JSON.readTree(data));
        }
        assertTrue(done, "the stream ends with data: [DONE]");
        return events;
    }

    @Test
    void streamedCompletionsAddUpToTheAnswer() throws Exception {
        String req = "\"prompt\": [\"the dog\", \"a cat\"], \"max_tokens\": 12, \"temperature\": 0, \"early_exit_thres\": 0.5";
        JsonNode whole = call("POST", "/v1/completions", "{" + req + "}", "sekrit").body();
        var events = stream("/v1/completions", "{" + req + ", \"stream\": true, \"stream_options\": {\"include_usage\": true}}");
        StringBuilder[] text = {new StringBuilder(), new StringBuilder()};
        var exits = java.util.List.of(new java.util.ArrayList<Integer>(), new java.util.ArrayList<Integer>());
        String[] finish = new String[2];
        for (JsonNode e : events.subList(0, events.size() - 1)) {
            assertEquals("text_completion", e.get("object").textValue());
            JsonNode c = e.get("choices").get(0);
            int i = c.get("index").intValue();
            assertTrue(finish[i] == null, "no text after a choice's finish_reason");
            text[i].append(c.get("text").textValue());
            if (c.has("exit_layer")) exits.get(i).add(c.get("exit_layer").intValue());
            if (!c.get("finish_reason").isNull()) finish[i] = c.get("finish_reason").textValue();
        }
        for (int i = 0; i < 2; i++) {
            JsonNode c = whole.get("choices").get(i);
            assertEquals(c.get("text").textValue(), text[i].toString(), "choice " + i);
            assertEquals(c.get("finish_reason").textValue(), finish[i]);
            assertEquals(JSON.valueToTree(exits.get(i)), c.get("exit_layers"), "one chunk per token, with its exit");
        }
        assertEquals(events.get(0).get("id"), events.get(events.size() - 1).get("id"));
        JsonNode usage = events.get(events.size() - 1);
        assertEquals(0, usage.get("choices").size());
        assertEquals(whole.get("usage"), usage.get("usage"));
        // a stop sequence: streamed text never shows it, even across chunks
        var stopped = stream("/v1/completions", "{\"prompt\": \"the dog\", \"max_tokens\": 30, \"temperature\": 0, \"stop\": [\"e \"], \"stream\": true}");
        JsonNode plain = call("POST", "/v1/completions", "{\"prompt\": \"the dog\", \"max_tokens\": 30, \"temperature\": 0, \"stop\": [\"e \"]}", "sekrit").body();
        var sb = new StringBuilder();
        for (JsonNode e : stopped) sb.append(e.get("choices").get(0).get("text").textValue());
        assertEquals(plain.get("choices").get(0).get("text").textValue(), sb.toString());
    }

    @Test
    void chatCompletionsWithAndWithoutStreaming() throws Exception {
        assertEquals("plain", server.chatTemplate(), "the test model has no template");
        String msgs = "\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"the dog\"}], "
                + "\"max_tokens\": 10, \"temperature\": 0";
        JsonNode j = call("POST", "/v1/chat/completions", "{" + msgs + "}", "sekrit").body();
        assertEquals("chat.completion", j.get("object").textValue());
        assertTrue(j.get("id").textValue().startsWith("chatcmpl-"));
        JsonNode m = j.get("choices").get(0).get("message");
        assertEquals("assistant", m.get("role").textValue());
        // the same as a completion of the plain template's prompt, cut at its end of turn
        JsonNode same = call("POST", "/v1/completions", "{\"prompt\": \"system: be brief\\nuser: the dog\\nassistant:\", \"max_tokens\": 10, "
                + "\"temperature\": 0, \"stop\": [\"\\nuser:\"]}", "sekrit").body();
        assertEquals(same.get("choices").get(0).get("text"), m.get("content"));
        assertEquals(same.get("usage"), j.get("usage"));
        var events = stream("/v1/chat/completions", "{" + msgs + ", \"stream\": true}");
        assertEquals("assistant", events.get(0).get("choices").get(0).get("delta").get("role").textValue());
        var sb = new StringBuilder();
        for (JsonNode e : events) {
            assertEquals("chat.completion.chunk", e.get("object").textValue());
            sb.append(e.get("choices").get(0).get("delta").path("content").asText(""));
        }
        assertEquals(m.get("content").textValue(), sb.toString());
        assertEquals(j.get("choices").get(0).get("finish_reason"), events.get(events.size() - 1).get("choices").get(0).get("finish_reason"));
    }

    @Test
    void templatesAreRecognisedByTheirMarkers() {
        assertEquals(ChatTemplate.CHATML, ChatTemplate.recognise("{% for m in messages %}<|im_start|>{{ m.role }}..."));
        assertEquals(ChatTemplate.LLAMA3, ChatTemplate.recognise("{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>' }}"));
        assertEquals(ChatTemplate.LLAMA2, ChatTemplate.recognise("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"));
        assertEquals(ChatTemplate.PLAIN, ChatTemplate.recognise("{{ messages }}"));
        var msgs = java.util.List.of(new ChatTemplate.Message("system", "S"), new ChatTemplate.Message("user", "U1"),
                new ChatTemplate.Message("assistant", "A1"), new ChatTemplate.Message("user", "U2"));
        assertEquals("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                + "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n", ChatTemplate.CHATML.render(msgs));
        assertEquals("<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n", ChatTemplate.LLAMA3.render(msgs));
        assertEquals("[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]", ChatTemplate.LLAMA2.render(msgs));
    }
}
