package dev.exeunt.cli.serve;

import static dev.exeunt.cli.serve.ServeFixture.put;
import static dev.exeunt.cli.serve.ServeFixture.send;
import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/** Every kind of bad request gets its status and an error that names what is wrong. */
class ServeValidationTest {
    @TempDir
    static Path dir;
    static Server server;

    @BeforeAll
    static void start() throws Exception {
        server = Server.start(ServeFixture.writeModel(dir), "127.0.0.1", 0, ServeOptions.defaults());
    }

    @AfterAll
    static void stop() {
        if (server != null) server.stop();
    }

    /** body -> expected 400 whose error mentions {@code names}. */
    static final String[][] BAD = {
            {"{\"prompts\": [\"a\"], \"use_early_exit\": \"yes\"}", "use_early_exit"},
            {"{\"prompts\": [\"a\"], \"use_early_exit\": 1}", "use_early_exit"},
            {"{\"prompts\": [\"a\"], \"logprobs\": \"true\"}", "logprobs"},
            {"{\"prompts\": [\"a\"], \"echo_prompts\": 0}", "echo_prompts"},
            {"{\"prompts\": [\"a\"], \"add_BOS\": \"false\"}", "add_BOS"},
            {"{\"prompts\": [\"a\"], \"tokens_to_generate\": -1}", "tokens_to_generate"},
            {"{\"prompts\": [\"a\"], \"tokens_to_generate\": 513}", "tokens_to_generate"},
            {"{\"prompts\": [\"a\"], \"tokens_to_generate\": 1.5}", "tokens_to_generate"},
            {"{\"prompts\": [\"a\"], \"tokens_to_generate\": \"8\"}", "tokens_to_generate"},
            {"{\"prompts\": [\"a\"], \"tokens_to_generate\": 99999999999}", "tokens_to_generate"},
            {"{\"prompts\": [\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]}", "prompts"},
            {"{\"prompts\": []}", "prompts"},
            {"{\"prompts\": 7}", "prompts"},
            {"{\"prompts\": [\"a\", 3]}", "prompts"},
            {"{\"prompts\": [\"\"], \"add_BOS\": false}", "prompts"},
            {"{\"prompts\": [\"" + "fox jumps ".repeat(600) + "\"]}", "prompts"},
            {"{\"tokens_to_generate\": 4}", "prompts"},
            {"{\"prompts\": [\"a\"], \"foo\": 1}", "foo"},
            {"{\"prompts\": [\"a\", \"b\"], \"beam_width\": 2}", "beam_width"},
            {"{\"prompts\": [\"a\"], \"beam_width\": 0}", "beam_width"},
            {"{\"prompts\": [\"a\"], \"beam_width\": 17}", "beam_width"},
            {"{\"prompts\": [\"a\"], \"beam_width\": 2, \"use_early_exit\": true}", "use_early_exit"},
            {"{\"prompts\": [\"a\"], \"beam_width\": 2, \"print_max_prob\": true}", "print_max_prob"},
            {"{\"prompts\": [\"a\"], \"length_penalty\": 1.5}", "length_penalty"},
            {"{\"prompts\": [\"a\"], \"stop_token\": 3}", "stop_token"},
            {"{\"prompts\": [\"a\"], \"beam_width\": 2, \"stop_token\": 100000}", "stop_token"},
            {"{\"prompts\": [\"a\"], \"top_p_decay\": 0.5}", "top_p_decay"},
            {"{\"prompts\": [\"a\"], \"top_p\": 0.5, \"top_p_decay\": 1.5}", "top_p_decay"},
            {"{\"prompts\": [\"a\"], \"top_p\": 0.5, \"top_p_bound\": 0.7}", "top_p_bound"},
            {"{\"prompts\": [\"a\"], \"print_max_prob\": \"yes\"}", "print_max_prob"},
            {"{\"prompts\": [\"a\"], \"prevent_newline_after_colon\": 1}", "prevent_newline_after_colon"},
            {"{\"prompts\": [\"a\"], \"max_len\": 8}", "tokens_to_generate"},
            {"{\"prompts\": [\"a\"], \"temperature\": 1e-320}", "1.0E-6"},
            {"{\"prompts\": [\"a\"], \"temperature\": 1e-7}", "temperature"},
            {"{\"prompts\": [\"" + "fox jumps ".repeat(150) + "\"], \"tokens_to_generate\": 500}", "context of 1024"},
            {"{\"prompts\": [\"a\"], \"temperature\": -0.5}", "temperature"},
            {"{\"prompts\": [\"a\"], \"temperature\": 1000}", "temperature"},
            {"{\"prompts\": [\"a\"], \"top_k\": -1}", "top_k"},
            {"{\"prompts\": [\"a\"], \"top_p\": 1.5}", "top_p"},
            {"{\"prompts\": [\"a\"], \"random_seed\": -3}", "random_seed"},
            {"{\"prompts\": [\"a\"], \"random_seed\": \"x\"}", "random_seed"},
            {"{\"prompts\": [\"a\"], \"stop_sequences\": [\"\"]}", "stop_sequences"},
            {"{\"prompts\": [\"a\"], \"stop_sequences\": \"\\n\"}", "stop_sequences"},
            {"{\"prompts\": [\"a\"], \"early_exit_thres\": -1}", "early_exit_thres"},
            {"{\"prompts\": [\"a\"], \"early_exit_thres\": \"0.8\"}", "early_exit_thres"},
            {"{\"prompts\": [\"a\"], \"exit_layers\": [5]}", "exit_layers"},
            {"{\"prompts\": [\"a\"], \"exit_layers\": [2]}", "exit_layers"},
            {"{\"prompts\": [\"a\"], \"exit_layers\": 1}", "exit_layers"},
            {"{\"prompts\": [\"a\"], \"exit_layers\": [\"1\"]}", "exit_layers"},
            {"{\"prompts\": [\"a\"]", "malformed JSON"},
            {"{prompts: [\"a\"]}", "malformed JSON"},
            {"{\"prompts\": [\"a\"]} {}", "malformed JSON"},
            {"{\"prompts\": [\"a\"], \"prompts\": [\"b\"]}", "prompts"},
            {"[\"a\"]", "JSON object"},
            {"", "empty"},
    };

    @Test
    void badRequestsGet400NamingTheField() {
        List<Executable> checks = new ArrayList<>();
        for (String[] c : BAD) {
            checks.add(() -> {
                var r = put(server, c[0]);
                String shown = c[0].length() > 80 ? c[0].substring(0, 80) + "..." : c[0];
                assertEquals(400, r.status(), shown + " -> " + r.raw().body());
                String error = r.body().get("error").textValue();
                assertTrue(error.contains(c[1]), shown + " -> " + error);
                assertTrue(r.raw().headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
            });
        }
        assertAll(checks);
    }

    @Test
    void methodsPathsAndSizes() throws Exception {
        var get = send(server, "GET", "/api", null);
        assertEquals(405, get.status());
        assertTrue(get.body().get("error").textValue().contains("GET"), get.raw().body());
        assertEquals("PUT, POST", get.raw().headers().firstValue("Allow").orElse(""));
        assertEquals(405, send(server, "DELETE", "/api", null).status());
        assertEquals(405, send(server, "PUT", "/health", "{}").status());
        var missing = send(server, "PUT", "/v2/anything", "{}");
        assertEquals(404, missing.status());
        assertTrue(missing.body().get("error").textValue().contains("/v2/anything"));
        assertEquals(405, send(server, "PUT", "/v1/completions", "{}").status()); // OpenAI's endpoint takes POST

        var malformed = put(server, "{\"prompts\": [\"a\"");
        assertEquals(400, malformed.status());
        String why = malformed.body().get("error").textValue();
        assertTrue(why.startsWith("malformed JSON") && why.contains("line 1") && !why.contains("Source"), why);

        String huge = "{\"prompts\": [\"" + "a".repeat(ServeOptions.DEFAULT_MAX_BODY + 10) + "\"]}";
        var big = put(server, huge);
        assertEquals(413, big.status(), big.raw().body());
        assertTrue(big.body().get("error").textValue().contains("limit"));

        // null means "default" (Python clients send None); POST works like PUT; the server still answers after all that
        var ok = send(server, "POST", "/api", "{\"prompts\": [\"a\"], \"tokens_to_generate\": 2, \"temperature\": 0, \"top_k\": null, \"no_log\": true}");
        assertEquals(200, ok.status(), ok.raw().body());
        assertEquals(2, ok.body().get("tokens").get(0).size());
    }
}
