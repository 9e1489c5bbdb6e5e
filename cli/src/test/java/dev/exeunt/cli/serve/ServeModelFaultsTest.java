package dev.exeunt.cli.serve;

import static dev.exeunt.cli.serve.ServeFixture.TOK;
import static dev.exeunt.cli.serve.ServeFixture.put;
import static dev.exeunt.cli.serve.ServeFixture.send;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Device;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Models that are not the client's fault: a head padded past the tokenizer, and weights that give NaN. */
class ServeModelFaultsTest {
    private static Path model(Path dir, int paddingRows, Consumer<EarlyExitModel> edit) throws Exception {
        var cfg = ModelConfig.gpt2(TOK.vocabSize() + paddingRows, 32, 2, 2, 256, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)));
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 1)) {
            edit.accept(m);
            ModelCheckpoint.save(m, TOK, dir);
        }
        return dir;
    }

    @Test
    @Timeout(60)
    void aHeadPaddedPastTheTokenizerNeverEmitsPaddingIds(@TempDir Path tmp) throws Exception {
        int v = TOK.vocabSize();
        try (Server server = Server.start(model(tmp, 4, m -> TestRows.favour(m, v, v + 1, v + 2, v + 3)), "127.0.0.1", 0, ServeOptions.defaults())) {
            var health = send(server, "GET", "/health", null).body();
            assertEquals(v + 4, health.get("vocab").intValue());
            assertEquals(v, health.get("tokenizer_vocab").intValue());
            for (String extra : List.of("\"temperature\": 0", "\"temperature\": 1.0, \"random_seed\": 5",
                    "\"temperature\": 0, \"use_early_exit\": true, \"early_exit_thres\": 0.0", "\"beam_width\": 2")) {
                var r = put(server, "{\"prompts\": [\"the dog\"], \"tokens_to_generate\": 8, " + extra + "}");
                assertEquals(200, r.status(), extra + " -> " + r.raw().body());
                for (var t : r.body().get("tokens").get(0)) assertTrue(t.intValue() < v, extra + " -> padding id " + t);
            }
        }
    }

    @Test
    @Timeout(60)
    void weightsThatGiveNanAre500NamingTheCause(@TempDir Path tmp) throws Exception {
        Path dir = model(tmp, 0, m -> {
            float[] nan = new float[m.config().dModel()];
            java.util.Arrays.fill(nan, Float.NaN);
            try (var s = dev.exeunt.tensor.Scope.open(); var g = dev.exeunt.tensor.autograd.GradMode.noGrad()) {
                m.parameters().get("ln_f.bias").copyFrom(dev.exeunt.tensor.Tensor.of(nan, m.config().dModel()));
            }
        });
        try (Server server = Server.start(dir, "127.0.0.1", 0, ServeOptions.defaults())) {
            var r = put(server, "{\"prompts\": [\"the dog\"], \"tokens_to_generate\": 4, \"temperature\": 0}");
            assertEquals(500, r.status(), r.raw().body());
            assertTrue(r.body().get("error").textValue().contains("NaN"), r.raw().body());
            var again = put(server, "{\"prompts\": [\"the\"], \"tokens_to_generate\": 1, \"temperature\": 0}");
            assertEquals(500, again.status(), "the server still answers: " + again.raw().body());
        }
    }
}
