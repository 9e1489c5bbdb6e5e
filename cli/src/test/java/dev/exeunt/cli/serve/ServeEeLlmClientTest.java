package dev.exeunt.cli.serve;

import static dev.exeunt.cli.serve.ServeFixture.JSON;
import static dev.exeunt.cli.serve.ServeFixture.TOK;
import static dev.exeunt.cli.serve.ServeFixture.ints;
import static dev.exeunt.cli.serve.ServeFixture.put;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * EE-LLM's own client against a real server: a Python script written like EE-LLM's
 * tools/request_client.py (requests.put with json.dumps of the same fields), then the other fields of
 * EE-LLM's server (beam search, top_p decay, the newline ban) from Java.
 */
class ServeEeLlmClientTest {
    @TempDir
    static Path dir;
    static Server server;

    @BeforeAll
    static void start() throws Exception {
        server = Server.start(ServeFixture.writeModel(dir.resolve("model")), "127.0.0.1", 0, ServeOptions.defaults());
    }

    @AfterAll
    static void stop() {
        if (server != null) server.stop();
    }

    /** The request EE-LLM's tools/request_client.py sends (same fields and values), for each prompt; prints the replies as JSON. */
    static final String CLIENT = """
            import json, sys, time
            import requests

            URL = sys.argv[1] + "/api"
            HEADER = {"Content-Type": "application/json; charset=UTF-8"}

            def request(prompts, tokens_to_generate=100, use_early_exit=True, early_exit_thres=0.8, print_max_prob=False, exit_layers=[]):
                replies = []
                for i in range(len(prompts)):
                    data = {
                        "prompts": [prompts[i]],
                        "tokens_to_generate": tokens_to_generate,
                        "top_k": 1,
                        "logprobs": True,
                        "random_seed": int(time.time_ns()) % 16384,
                        "echo_prompts": False,
                        "early_exit_thres": early_exit_thres,
                        "exit_layers": exit_layers
                    }
                    if use_early_exit:
                        data["use_early_exit"] = True
                    if print_max_prob:
                        data["print_max_prob"] = True
                    response = requests.put(URL, headers=HEADER, data=json.dumps(data))
                    replies.append({"status": response.status_code, "body": response.json()})
                return replies

            print(json.dumps(request(["the quick brown", "a lazy cat"], tokens_to_generate=12, use_early_exit=True,
                                     early_exit_thres=1.0, print_max_prob=True, exit_layers=[])))
            """;

    @Test
    @Timeout(120)
    void eeLlmsPythonClientGetsTheReferenceKeysAndMaxProbs() throws Exception {
        var probe = new ProcessBuilder("python3", "-c", "import requests").redirectErrorStream(true);
        Process check;
        try {
            check = probe.start();
        } catch (java.io.IOException e) {
            check = null;
        }
        boolean ok = check != null && check.waitFor(30, TimeUnit.SECONDS) && check.exitValue() == 0;
        Assumptions.assumeTrue(ok, "python3 with the requests package is not installed: skipping the EE-LLM client test");

        Path script = dir.resolve("request_client.py");
        Files.writeString(script, CLIENT);
        Process p = new ProcessBuilder("python3", script.toString(), server.url()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String stdout = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), stdout);
        JsonNode replies = JSON.readTree(stdout);
        assertEquals(2, replies.size());
        String[] prompts = {"the quick brown", "a lazy cat"};
        for (int i = 0; i < 2; i++) {
            JsonNode r = replies.get(i);
            assertEquals(200, r.get("status").intValue(), r.toString());
            JsonNode b = r.get("body");
            assertEquals(1, b.get("text").size());
            assertTrue(b.get("requst_time").isNumber() && b.get("requst_time").doubleValue() >= 0, b.toString());
            assertEquals(b.get("requst_time"), b.get("request_time"));
            int[] tokens = ints(b.get("tokens").get(0));
            if (!b.get("finish_reasons").get(0).textValue().equals("eos")) assertEquals(12, tokens.length);
            assertEquals(tokens.length, b.get("segments").get(0).size());
            assertEquals(tokens.length, b.get("logprobs").get(0).size());
            // top_k 1 is greedy: the same tokens as temperature 0
            var greedy = put(server, "{\"prompts\": [\"" + prompts[i] + "\"], \"tokens_to_generate\": 12, \"temperature\": 0}");
            assertArrayEquals(ints(greedy.body().get("tokens").get(0)), tokens);
            // max probabilities: per token, the exit at layer 1 and the final head (layer 2)
            assertEquals("[1,2]", b.get("max_prob_layers").toString());
            JsonNode mp = b.get("max_probs").get(0);
            assertEquals(tokens.length, mp.size());
            for (int k = 0; k < tokens.length; k++) {
                JsonNode row = mp.get(k);
                assertEquals(2, row.size());
                for (JsonNode v : row) assertTrue(v.isNumber() && v.doubleValue() > 0 && v.doubleValue() <= 1, row.toString());
                // threshold 1.0: every token comes from the final head, and greedy picks its top: the final max prob is the token's probability
                assertEquals(Math.exp(b.get("logprobs").get(0).get(k).doubleValue()), row.get(1).doubleValue(), 1e-4);
            }
        }
    }

    @Test
    @Timeout(60)
    void beamSearchReturnsEveryBeamWithScores() throws Exception {
        var r = put(server, "{\"prompts\": [\"the quick\"], \"tokens_to_generate\": 6, \"beam_width\": 3, \"length_penalty\": 1.0}");
        assertEquals(200, r.status(), r.raw().body());
        JsonNode b = r.body();
        assertEquals(3, b.get("text").size());
        assertEquals(3, b.get("scores").size());
        for (int i = 1; i < 3; i++) assertTrue(b.get("scores").get(i - 1).doubleValue() >= b.get("scores").get(i).doubleValue(), b.toString());
        assertTrue(b.get("requst_time").isNumber());
        // beam width 1 is greedy decoding of the full model
        var one = put(server, "{\"prompts\": [\"the quick\"], \"tokens_to_generate\": 6, \"beam_width\": 1}");
        var greedy = put(server, "{\"prompts\": [\"the quick\"], \"tokens_to_generate\": 6, \"temperature\": 0}");
        assertEquals(200, one.status(), one.raw().body());
        assertEquals(greedy.body().get("tokens").get(0), one.body().get("tokens").get(0));
        assertEquals(greedy.body().get("text").get(0), one.body().get("text").get(0));
    }

    @Test
    @Timeout(60)
    void topPDecayNewlineBanAndAPlainStringPromptAreAccepted() throws Exception {
        var decayed = put(server, "{\"prompts\": \"the dog\", \"tokens_to_generate\": 8, \"top_p\": 0.9, \"top_p_decay\": 0.5, \"top_p_bound\": 0.2,"
                + " \"random_seed\": 3, \"prevent_newline_after_colon\": true, \"no_log\": true}");
        assertEquals(200, decayed.status(), decayed.raw().body());
        assertEquals(1, decayed.body().get("text").size());
        assertFalse(decayed.body().get("tokens").get(0).isEmpty());
        // a prompt ending with ':' never continues with a newline token when the ban is on
        int colon = TOK.idOf(":");
        if (colon >= 0) {
            var after = put(server, "{\"prompts\": [\"dog:\"], \"tokens_to_generate\": 1, \"temperature\": 0, \"prevent_newline_after_colon\": true}");
            assertEquals(200, after.status(), after.raw().body());
            assertFalse(after.body().get("segments").get(0).get(0).textValue().startsWith("\n"));
        }
    }
}
