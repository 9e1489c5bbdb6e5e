package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.Device;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/** A tiny real checkpoint (2 layers, an exit at layer 1) and an HTTP client for the tests. */
final class ServeFixture {
    static final ObjectMapper JSON = new ObjectMapper();
    static final String TEXT = "the quick brown fox jumps over the lazy dog. a lazy cat sleeps in the warm sun while the dog runs. ";
    static final BpeTokenizer TOK = BpeTrainer.train(List.of(TEXT.repeat(20)), 300, List.of("<|endoftext|>"));
    static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();

    private ServeFixture() {}

    static Path writeModel(Path dir) throws IOException {
        return writeModel(dir, 1024);
    }

    static Path writeModel(Path dir, int context) throws IOException {
        var cfg = ModelConfig.gpt2(TOK.vocabSize(), 32, 2, 2, context, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)));
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 1)) {
            ModelCheckpoint.save(m, TOK, dir);
        }
        return dir;
    }

    record Reply(int status, JsonNode body, HttpResponse<String> raw) {}

    static Reply send(Server s, String method, String path, String body) throws IOException, InterruptedException {
        var b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + path)).timeout(Duration.ofSeconds(20))
                .header("Content-Type", "application/json");
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        HttpResponse<String> r = CLIENT.send(b.build(), HttpResponse.BodyHandlers.ofString());
        JsonNode json = r.body().isEmpty() ? null : JSON.readTree(r.body());
        return new Reply(r.statusCode(), json, r);
    }

    static Reply put(Server s, String body) throws IOException, InterruptedException {
        return send(s, "PUT", "/api", body);
    }

    /** The answer without its timing fields (requst_time, request_time), which differ between identical requests. */
    static JsonNode withoutTimes(JsonNode body) {
        var copy = ((com.fasterxml.jackson.databind.node.ObjectNode) body).deepCopy();
        copy.remove(List.of("requst_time", "request_time"));
        return copy;
    }

    static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) out[i] = array.get(i).intValue();
        return out;
    }
}
