package dev.exeunt.cli.serve;

import static dev.exeunt.cli.serve.ServeFixture.put;
import static dev.exeunt.cli.serve.ServeFixture.send;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Concurrent clients, a full queue (503, never a crash) and shutdown. */
class ServeConcurrencyTest {
    @TempDir
    static Path dir;

    @BeforeAll
    static void model() throws Exception {
        ServeFixture.writeModel(dir);
    }

    private static List<ServeFixture.Reply> concurrently(Server server, int n, String body) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            List<Future<ServeFixture.Reply>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) fs.add(pool.submit(() -> put(server, body)));
            List<ServeFixture.Reply> out = new ArrayList<>();
            for (var f : fs) out.add(f.get(30, TimeUnit.SECONDS));
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    @Timeout(60)
    void sixConcurrentClientsAllGetTheirOwnAnswer() throws Exception {
        try (Server server = Server.start(dir, "127.0.0.1", 0, ServeOptions.defaults())) {
            String body = "{\"prompts\": [\"the quick brown\", \"the dog\"], \"tokens_to_generate\": 16, \"temperature\": 0}";
            var alone = put(server, body);
            assertEquals(200, alone.status(), alone.raw().body());
            for (var r : concurrently(server, 6, body)) {
                assertEquals(200, r.status(), r.raw().body());
                assertEquals(ServeFixture.withoutTimes(alone.body()), ServeFixture.withoutTimes(r.body())); // one generation at a time: nothing leaks between requests
            }
            assertEquals(200, send(server, "GET", "/health", null).status());
        }
    }

    @Test
    @Timeout(60)
    void aFullQueueAnswers503AndTheServerCarriesOn() throws Exception {
        try (Server server = Server.start(dir, "127.0.0.1", 0, ServeOptions.defaults().withQueue(1))) {
            String body = "{\"prompts\": [\"the quick brown\", \"the dog\", \"a cat\", \"sun\"], \"tokens_to_generate\": 60, \"temperature\": 0}";
            int ok = 0, busy = 0;
            for (var r : concurrently(server, 8, body)) {
                if (r.status() == 200) {
                    ok++;
                    assertEquals(4, r.body().get("text").size());
                } else {
                    assertEquals(503, r.status(), r.raw().body());
                    assertTrue(r.body().get("error").textValue().contains("busy"), r.raw().body());
                    assertTrue(r.raw().headers().firstValue("Retry-After").isPresent());
                    busy++;
                }
            }
            assertTrue(ok >= 1, ok + " ok, " + busy + " busy");
            var after = put(server, "{\"prompts\": [\"the\"], \"tokens_to_generate\": 3, \"temperature\": 0}");
            assertEquals(200, after.status(), after.raw().body());
        }
    }

    @Test
    @Timeout(60)
    void stopAnswersWhatWaitsAndClosesThePort() throws Exception {
        Server server = Server.start(dir, "127.0.0.1", 0, ServeOptions.defaults());
        int port = server.port();
        ExecutorService pool = Executors.newFixedThreadPool(10);
        try {
            String body = "{\"prompts\": [\"the\",\"a\",\"sun\",\"dog\",\"cat\",\"fox\",\"lazy\",\"warm\"], \"tokens_to_generate\": 512, \"temperature\": 0}";
            List<Future<ServeFixture.Reply>> pending = new ArrayList<>();
            for (int i = 0; i < 10; i++) pending.add(pool.submit(() -> put(server, body)));
            Thread.sleep(150);
            long t0 = System.nanoTime();
            server.stop();
            assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(20), "stop took too long");
            for (var f : pending) {
                try {
                    var r = f.get(20, TimeUnit.SECONDS);
                    // finished before the stop, or answered "shutting down"
                    assertTrue(r.status() == 200 || r.status() == 503 && r.body().get("error").textValue().contains("shutting down"), r.raw().body());
                } catch (java.util.concurrent.ExecutionException e) {
                    assertTrue(e.getCause() instanceof IOException, e.toString()); // or its connection closed
                }
            }
            try {
                var r = send(server, "GET", "/health", null);
                throw new AssertionError("port " + port + " still answers after stop: " + r.status());
            } catch (IOException expected) {
                // refused or reset: closed
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
