package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.exeunt.cli.serve.Server;
import dev.exeunt.cli.serve.ServeOptions;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code serve} over a model cut over ranks, as a real server process: tp 2 and pp 2 as threads, pp 2 as
 * two mpirun processes. Each answers EE-LLM's PUT /api with the one-rank server's tokens, exit layers and
 * text (greedy with early exit, sampled, and a stop sequence only rank 0 sees), refuses what needs one
 * rank, and ends cleanly on SIGTERM.
 */
class ServeShardedTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();
    private static final Pattern LISTENING = Pattern.compile("listening on (http://\\S+)");
    static final List<String> BODIES = List.of(
            "{\"prompts\": [\"5,6,7\"], \"tokens_to_generate\": 12, \"temperature\": 0, \"use_early_exit\": true, \"early_exit_thres\": 0.4}",
            "{\"prompts\": [\"a b\", \"c\"], \"tokens_to_generate\": 10, \"temperature\": 0.9, \"random_seed\": 3, \"use_early_exit\": true, \"early_exit_thres\": 0.4}",
            "{\"prompts\": [\"the\"], \"tokens_to_generate\": 20, \"temperature\": 0, \"stop_sequences\": [\"e\"]}");

    @TempDir
    static Path tmp;
    static String dir;
    static List<JsonNode> expected = new ArrayList<>();

    @BeforeAll
    static void oneRank() throws Exception {
        dir = GenerateLayoutCliTest.writeModel(tmp.resolve("model"));
        try (Server one = Server.start(Path.of(dir), "127.0.0.1", 0, ServeOptions.defaults())) {
            for (String b : BODIES) expected.add(put(one.url(), b));
        }
    }

    static JsonNode put(String url, String body) throws Exception {
        var r = CLIENT.send(HttpRequest.newBuilder(URI.create(url + "/api")).timeout(Duration.ofSeconds(60))
                .PUT(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        JsonNode n = JSON.readTree(r.body());
        ((com.fasterxml.jackson.databind.node.ObjectNode) n).put("status", r.statusCode());
        return n;
    }

    /** Starts the server command, waits for its URL, checks every body against one rank's answer, then SIGTERM. */
    static void assertServesLikeOneRank(ProcessBuilder pb) throws Exception {
        Process p = pb.redirectErrorStream(true).start();
        var log = new StringBuffer();
        var in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        try {
            String url = awaitUrl(in, log);
            Thread drain = Thread.ofVirtual().start(() -> in.lines().forEach(l -> log.append(l).append('\n')));
            for (int i = 0; i < BODIES.size(); i++) {
                JsonNode got = put(url, BODIES.get(i)), want = expected.get(i);
                assertEquals(200, got.get("status").asInt(), got + "\n" + log);
                for (String f : List.of("tokens", "exit_layers", "text", "finish_reasons")) {
                    assertEquals(want.get(f), got.get(f), f + " of " + BODIES.get(i) + "\n" + log);
                }
            }
            var beams = put(url, "{\"prompts\": [\"a\"], \"tokens_to_generate\": 4, \"beam_width\": 2}");
            assertEquals(400, beams.get("status").asInt(), beams.toString());
            assertTrue(beams.get("error").asText().contains("beam search runs on one rank"), beams.toString());
            p.destroy(); // SIGTERM: rank 0 stops serving and releases the others
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the server did not end on SIGTERM:\n" + log);
            drain.join(5000);
            assertEquals(List.of(), log.toString().lines().filter(l -> l.contains("Exception") || l.contains("rank ") && l.contains("failed")).toList(),
                    log.toString());
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly(); // before the reader closes: a drain thread may hold it
        }
    }

    static List<String> serve(String... layout) {
        List<String> args = new ArrayList<>(List.of("serve", "--model", dir, "--port", "0"));
        args.addAll(List.of(layout));
        return args;
    }

    @Test
    void threadsServeLikeOneRank() throws Exception {
        for (String[] layout : new String[][] {{"--tp", "2"}, {"--pp", "2"}}) {
            assertServesLikeOneRank(new ProcessBuilder(MpiTrainJob.exeunt(List.of(), serve(layout).toArray(String[]::new))));
        }
    }

    @Test
    void mpiProcessesServeLikeOneRank() throws Exception {
        MpiTrainJob.requireMpirun();
        assertServesLikeOneRank(MpiTrainJob.builder(new MpiTrainJob.App(2, MpiTrainJob.exeunt(List.of(), serve("--pp", "2").toArray(String[]::new)))));
    }

    /**
     * A follower process killed (SIGKILL) under a serving mpirun job: the job ends with a non-zero exit
     * within the limit, and a client is refused or answered with an error, never left waiting.
     */
    @Test
    void aKilledRankEndsTheServerInsteadOfHangingClients() throws Exception {
        MpiTrainJob.requireMpirun();
        Path pids = Files.createDirectories(tmp.resolve("pids"));
        var cmd = MpiTrainJob.writingPid(pids, MpiTrainJob.exeunt(List.of(), serve("--pp", "2").toArray(String[]::new)));
        Process p = MpiTrainJob.builder(new MpiTrainJob.App(2, cmd)).redirectErrorStream(true).start();
        var log = new StringBuffer();
        var in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        try {
            String url = awaitUrl(in, log);
            Thread.ofVirtual().start(() -> in.lines().forEach(l -> log.append(l).append('\n')));
            assertEquals(200, put(url, BODIES.get(0)).get("status").asInt(), log::toString);
            long follower = Long.parseLong(Files.readString(pids.resolve("1.pid")).trim());
            ProcessHandle.of(follower).ifPresent(ProcessHandle::destroyForcibly);
            String u = url;
            var reply = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
                try {
                    return put(u, BODIES.get(0)).get("status").asInt();
                } catch (Exception e) {
                    return -1; // refused or reset: the job is gone
                }
            });
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the job did not end after a rank was killed:\n" + log);
            assertTrue(p.exitValue() != 0, "a killed rank should fail the job:\n" + log);
            int status = reply.get(30, TimeUnit.SECONDS);
            assertTrue(status != 200, "a request after the rank died was answered as if nothing happened:\n" + log);
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
    }

    /** Reads the server's output up to the line that says where it listens; returns that URL. */
    private static String awaitUrl(BufferedReader in, StringBuffer log) throws java.io.IOException {
        for (String line; (line = in.readLine()) != null; ) {
            log.append(line).append('\n');
            var m = LISTENING.matcher(line);
            if (m.find()) return m.group(1);
        }
        throw new AssertionError("the server never said where it listens:\n" + log);
    }
}
