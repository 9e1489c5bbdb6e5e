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
 * POST /v1/completions as OpenAI's clients send it, behind --api-key: 401 without the key (not /health),
 * the same text and tokens as PUT /api for the same request, usage counts, the early-exit extensions,
 * and refusals that name what is not supported.
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
        String[][] cases = {{"{\"prompt\": \"a\", \"stream\": true}", "stream"}, {"{\"prompt\": \"a\", \"n\": 2}", "\"n\""},
                {"{\"prompt\": \"a\", \"suffix\": \"b\"}", "unknown field \"suffix\""}, {"{\"prompt\": [1, 2]}", "list of strings"},
                {"{\"prompt\": \"a\", \"logprobs\": 2}", "logprobs"}};
        for (String[] c : cases) {
            var r = call("POST", "/v1/completions", c[0], "sekrit");
            assertEquals(400, r.status(), c[0]);
            assertTrue(r.body().get("error").asText().contains(c[1]), c[0] + " -> " + r.body());
        }
        assertEquals(405, call("GET", "/v1/completions", null, "sekrit").status());
    }
}
