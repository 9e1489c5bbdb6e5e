package dev.exeunt.cli.serve;

import static dev.exeunt.cli.serve.ServeFixture.TOK;
import static dev.exeunt.cli.serve.ServeFixture.ints;
import static dev.exeunt.cli.serve.ServeFixture.put;
import static dev.exeunt.cli.serve.ServeFixture.send;
import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Device;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/**
 * "speculative" and "draft_max" through the real server, on a tiny model whose exit is sure of a token
 * the full model never produces: speculative answers are the full model's, every draft rejected.
 */
@Timeout(120)
class ServeSpeculativeTest {
    @TempDir
    static Path dir;
    static Server server;
    static final String PROMPTS = "\"prompts\": [\"the dog\", \"a lazy cat\"], \"tokens_to_generate\": 8, \"temperature\": 0";
    static final String EARLY = ", \"use_early_exit\": true, \"early_exit_thres\": 0.5";

    @BeforeAll
    static void start() throws Exception {
        var cfg = ModelConfig.gpt2(TOK.vocabSize(), 32, 2, 2, 256, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)));
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 1)) {
            TestRows.disagree(m, 100, 101);
            ModelCheckpoint.save(m, TOK, dir.resolve("model"));
        }
        server = Server.start(dir.resolve("model"), "127.0.0.1", 0, ServeOptions.defaults());
    }

    @AfterAll
    static void stop() {
        if (server != null) server.stop();
    }

    static JsonNode ok(Server s, String body) throws Exception {
        var r = put(s, body);
        assertEquals(200, r.status(), body + " -> " + r.raw().body());
        return r.body();
    }

    /** One entry for the exit at layer 1 with drafted >= accepted >= 0; returns (drafted, accepted). */
    static long[] acceptance(JsonNode b) {
        JsonNode acc = b.get("acceptance");
        assertTrue(acc != null && acc.isArray() && acc.size() == 1, b.toString());
        assertEquals(1, acc.get(0).get("layer").intValue(), b.toString());
        long drafted = acc.get(0).get("drafted").longValue(), accepted = acc.get(0).get("accepted").longValue();
        assertTrue(drafted >= accepted && accepted >= 0, b.toString());
        return new long[] {drafted, accepted};
    }

    static void sameTokens(JsonNode expected, JsonNode actual) {
        for (int i = 0; i < 2; i++) assertArrayEquals(ints(expected.get("tokens").get(i)), ints(actual.get("tokens").get(i)), actual.toString());
    }

    @Test
    void aSpeculativeRequestAnswersWithTheFullModelsTokens() throws Exception {
        var full = ok(server, "{" + PROMPTS + "}");
        var thresholded = ok(server, "{" + PROMPTS + EARLY + "}");
        assertFalse(java.util.Arrays.equals(ints(full.get("tokens").get(0)), ints(thresholded.get("tokens").get(0))),
                "the exit is sure and wrong: " + thresholded);
        assertFalse(thresholded.has("acceptance"), "only a speculative answer reports acceptance: " + thresholded);
        for (String draftMax : List.of("", ", \"draft_max\": 1", ", \"draft_max\": 3", ", \"draft_max\": null")) {
            var spec = ok(server, "{" + PROMPTS + EARLY + ", \"speculative\": true" + draftMax + "}");
            sameTokens(full, spec);
            long[] counts = acceptance(spec);
            assertTrue(counts[0] > 0 && counts[1] == 0, draftMax + ": " + spec);
            for (JsonNode seq : spec.get("exit_layers")) for (JsonNode e : seq) assertEquals(2, e.intValue(), spec.toString());
        }
        // sampling: the full model is sure of its token (probability ~1), so speculative sampling must keep to it too
        var sampled = ok(server, "{" + PROMPTS.replace("\"temperature\": 0", "\"temperature\": 1.0, \"random_seed\": 3") + EARLY
                + ", \"speculative\": true}");
        sameTokens(full, sampled);
        assertTrue(acceptance(sampled)[0] > 0, sampled.toString());
                // without use_early_exit nothing exits, so nothing is drafted
        var plain = ok(server, "{" + PROMPTS + ", \"speculative\": true}");
        sameTokens(full, plain);
        assertArrayEquals(new long[] {0, 0}, acceptance(plain));
    }

    @Test
    void badSpeculativeFieldsGet400NamingTheField() {
        String[][] bad = {
                {"\"speculative\": \"yes\"", "speculative"}, {"\"speculative\": 1", "speculative"},
                {"\"speculative\": true, \"draft_max\": 0", "draft_max"}, {"\"speculative\": true, \"draft_max\": -2", "draft_max"},
                {"\"speculative\": true, \"draft_max\": 1.5", "draft_max"}, {"\"speculative\": true, \"draft_max\": \"3\"", "draft_max"},
                {"\"speculative\": true, \"draft_max\": 99999999999", "draft_max"},
                {"\"draft_max\": 3", "draft_max"}, {"\"speculative\": false, \"draft_max\": 3", "draft_max"},
                {"\"speculative\": true, \"beam_width\": 2", "speculative"},
        };
        List<Executable> checks = new ArrayList<>();
        for (String[] c : bad) {
            checks.add(() -> {
                var r = put(server, "{\"prompts\": [\"a\"], " + c[0] + "}");
                assertEquals(400, r.status(), c[0] + " -> " + r.raw().body());
                assertTrue(r.body().get("error").textValue().contains("\"" + c[1] + "\""), c[0] + " -> " + r.raw().body());
            });
        }
        assertAll(checks);
    }

    @Test
    void theServersDefaultAppliesToRequestsThatDoNotSay() throws Exception {
        try (Server spec = Server.start(dir.resolve("model"), "127.0.0.1", 0, ServeOptions.defaults().withSpeculative(true, 2))) {
            var health = send(spec, "GET", "/health", null).body();
            assertTrue(health.get("speculative").booleanValue(), health.toString());
            assertEquals(2, health.get("draft_max").intValue(), health.toString());
            assertFalse(send(server, "GET", "/health", null).body().get("speculative").booleanValue());

            var full = ok(server, "{" + PROMPTS + "}");
            var byDefault = ok(spec, "{" + PROMPTS + EARLY + "}");
            sameTokens(full, byDefault);
            assertTrue(acceptance(byDefault)[0] > 0, byDefault.toString());
            var optedOut = ok(spec, "{" + PROMPTS + EARLY + ", \"speculative\": false}");
            assertFalse(optedOut.has("acceptance"), optedOut.toString());
            assertFalse(java.util.Arrays.equals(ints(full.get("tokens").get(0)), ints(optedOut.get("tokens").get(0))), optedOut.toString());
            // beam search runs the full model: the server's default does not make it a 400
            var beams = ok(spec, "{\"prompts\": [\"the dog\"], \"tokens_to_generate\": 4, \"beam_width\": 2}");
            assertEquals(2, beams.get("tokens").size(), beams.toString());
        }
    }

    /** A server that warmed the JIT on its model (speculatively too) before listening answers as one that did not. */
    @Test
    void aWarmedUpServerAnswersAsAColdOne() throws Exception {
        var opts = ServeOptions.defaults().withSpeculative(true, 3);
        try (Server warm = Server.start(dir.resolve("model"), "127.0.0.1", 0, opts, false, 2)) {
            String sampled = "{" + PROMPTS.replace("\"temperature\": 0", "\"temperature\": 0.8, \"random_seed\": 5") + EARLY;
            String body = sampled + "}";
            var expected = ok(server, sampled + ", \"speculative\": true, \"draft_max\": 3}");
            var actual = ok(warm, body);
            sameTokens(expected, actual);
            assertEquals(expected.get("acceptance"), actual.get("acceptance"));
        }
    }
}
