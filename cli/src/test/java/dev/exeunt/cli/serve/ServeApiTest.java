package dev.exeunt.cli.serve;

import static dev.exeunt.cli.serve.ServeFixture.TOK;
import static dev.exeunt.cli.serve.ServeFixture.ints;
import static dev.exeunt.cli.serve.ServeFixture.put;
import static dev.exeunt.cli.serve.ServeFixture.send;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Generation through the real server and the real (tiny) model. */
class ServeApiTest {
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

    @Test
    void greedyForTwoPromptsHasEveryFieldInShape() throws Exception {
        var r = put(server, """
                {"prompts": ["the quick brown", "a lazy cat"], "tokens_to_generate": 12, "temperature": 0, "logprobs": true,
                 "use_early_exit": true, "early_exit_thres": 0.5}""");
        assertEquals(200, r.status(), r.raw().body());
        JsonNode b = r.body();
        for (String f : new String[] {"text", "segments", "logprobs", "tokens", "exit_layers", "finish_reasons"}) {
            assertTrue(b.get(f).isArray() && b.get(f).size() == 2, f + ": " + b);
        }
        for (int i = 0; i < 2; i++) {
            int[] ids = ints(b.get("tokens").get(i));
            assertTrue(ids.length >= 1 && ids.length <= 12, b.toString());
            assertEquals(ids.length, b.get("segments").get(i).size());
            assertEquals(ids.length, b.get("logprobs").get(i).size());
            assertEquals(ids.length, b.get("exit_layers").get(i).size());
            for (JsonNode e : b.get("exit_layers").get(i)) assertTrue(Set.of(1, 2).contains(e.intValue()), b.toString());
            for (JsonNode lp : b.get("logprobs").get(i)) assertTrue(lp.isNumber() && lp.doubleValue() <= 0, b.toString());
            assertEquals(TOK.decode(ids, true), b.get("text").get(i).textValue());
            String finish = b.get("finish_reasons").get(i).textValue();
            assertTrue(finish.equals("length") ? ids.length == 12 : finish.equals("eos"), b.toString());
            StringBuilder joined = new StringBuilder();
            for (JsonNode s : b.get("segments").get(i)) joined.append(s.textValue());
            assertEquals(TOK.decode(ids, false), joined.toString());
        }
    }

    @Test
    void earlyExitFollowsTheFlagsAndThreshold() throws Exception {
        // threshold 0: every token after the first (which the prefill takes from the final head) leaves at the exit of layer 1 ...
        var on = put(server, "{\"prompts\": [\"the dog\"], \"tokens_to_generate\": 8, \"temperature\": 0, \"use_early_exit\": true, \"early_exit_thres\": 0}");
        assertEquals(200, on.status(), on.raw().body());
        JsonNode onExits = on.body().get("exit_layers").get(0);
        assertEquals(8, onExits.size(), on.body().toString());
        assertEquals(2, onExits.get(0).intValue(), on.body().toString());
        for (int i = 1; i < onExits.size(); i++) assertEquals(1, onExits.get(i).intValue(), on.body().toString());
        // ... unless use_early_exit is false: then the threshold is ignored and every token comes from the final head (layer 2)
        var off = put(server, "{\"prompts\": [\"the dog\"], \"tokens_to_generate\": 8, \"temperature\": 0, \"use_early_exit\": false, \"early_exit_thres\": 0}");
        assertEquals(200, off.status(), off.raw().body());
        for (JsonNode e : off.body().get("exit_layers").get(0)) assertEquals(2, e.intValue(), off.body().toString());
        // exit_layers naming the one exit behaves like all exits; no logprobs unless asked
        var named = put(server, "{\"prompts\": [\"the dog\"], \"tokens_to_generate\": 8, \"temperature\": 0, \"use_early_exit\": true, \"early_exit_thres\": 0, \"exit_layers\": [1]}");
        assertEquals(on.body().get("tokens"), named.body().get("tokens"));
        assertTrue(named.body().get("logprobs").isNull()); // the key is there, as in EE-LLM's answer
    }

    @Test
    void echoPromptsPutsThePromptFirst() throws Exception {
        var r = put(server, "{\"prompts\": [\"the lazy\"], \"tokens_to_generate\": 5, \"temperature\": 0, \"echo_prompts\": true}");
        assertEquals(200, r.status(), r.raw().body());
        String text = r.body().get("text").get(0).textValue();
        assertTrue(text.startsWith("the lazy"), text);
        assertEquals("the lazy" + TOK.decode(ints(r.body().get("tokens").get(0)), true), text);
    }

    @Test
    void greedyIsRepeatableAndSeededSamplingToo() throws Exception {
        String greedy = "{\"prompts\": [\"the quick\", \"sun\"], \"tokens_to_generate\": 16, \"temperature\": 0}";
        assertEquals(ServeFixture.withoutTimes(put(server, greedy).body()), ServeFixture.withoutTimes(put(server, greedy).body()));
        String sampled = "{\"prompts\": [\"the quick\"], \"tokens_to_generate\": 16, \"temperature\": 1.0, \"top_k\": 50, \"top_p\": 0.9, \"random_seed\": 1234}";
        var a = put(server, sampled);
        assertEquals(200, a.status(), a.raw().body());
        assertEquals(ServeFixture.withoutTimes(a.body()), ServeFixture.withoutTimes(put(server, sampled).body()));
    }

    @Test
    void stopSequencesEndGenerationAndCutTheText() throws Exception {
        // seeded sampling (greedy output of a random model just repeats one token) is deterministic, so a rerun with stop strings matches it up to the stop
        String settings = "\"tokens_to_generate\": 24, \"temperature\": 1, \"random_seed\": 5, \"add_BOS\": false";
        var full = put(server, "{\"prompts\": [\"the cat\"], " + settings + "}").body();
        String text = full.get("text").get(0).textValue();
        JsonNode segs = full.get("segments").get(0);
        // a stop string taken from the middle of the greedy output
        String stop = null;
        for (int k = 2; k < segs.size() && stop == null; k++) {
            String s = segs.get(k).textValue();
            if (!s.isBlank() && !s.contains("\uFFFD") && text.indexOf(s) > 0) stop = s;
        }
        assertNotNull(stop, "no usable stop string in " + full);
        String body = "{\"prompts\": [\"the cat\"], " + settings + ", \"stop_sequences\": [\"zzzzqq\", "
                + ServeFixture.JSON.writeValueAsString(stop) + "]}";
        var r = put(server, body);
        assertEquals(200, r.status(), r.raw().body());
        assertEquals(text.substring(0, text.indexOf(stop)), r.body().get("text").get(0).textValue());
        assertEquals("stop", r.body().get("finish_reasons").get(0).textValue());
        assertTrue(r.body().get("tokens").get(0).size() < full.get("tokens").get(0).size(), r.body().toString());
        // the tokens kept are the greedy ones up to the one that completed the stop string
        String kept = TOK.decode(ints(r.body().get("tokens").get(0)), true);
        assertTrue(kept.contains(stop) && text.startsWith(kept), kept);
    }

    @Test
    void zeroTokensAndHealth() throws Exception {
        var r = put(server, "{\"prompts\": [\"the\"], \"tokens_to_generate\": 0, \"echo_prompts\": true}");
        assertEquals(200, r.status(), r.raw().body());
        assertEquals("the", r.body().get("text").get(0).textValue());
        assertEquals(0, r.body().get("tokens").get(0).size());

        var h = send(server, "GET", "/health", null);
        assertEquals(200, h.status());
        assertEquals("gpt2", h.body().get("family").textValue());
        assertEquals(2, h.body().get("layers").intValue());
        assertEquals(1, h.body().get("exits").get(0).intValue());
        assertEquals(TOK.vocabSize(), h.body().get("vocab").intValue());
        assertFalse(h.body().get("busy").isNull());
    }
}
