package dev.exeunt.cli.serve;

import static dev.exeunt.cli.serve.ServeFixture.put;
import static dev.exeunt.cli.serve.ServeFixture.send;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.condition.EnabledOnOs;
import org.junit.jupiter.api.condition.OS;
import org.junit.jupiter.api.io.TempDir;

/** Clients that leave (their generation is cancelled) and shutdown (the request in flight gets its result). */
class ServeLifecycleTest {
    static final int LONG = 4000;
    @TempDir
    static Path dir;

    @BeforeAll
    static void model() throws Exception {
        ServeFixture.writeModel(dir, 4096);
    }

    private static ServeOptions options() {
        return new ServeOptions(8, LONG, 0, 16, ServeOptions.DEFAULT_MAX_BODY);
    }

    private static String longRequest() {
        return "{\"prompts\": [\"the\", \"a\", \"dog\", \"sun\"], \"tokens_to_generate\": " + LONG + ", \"temperature\": 0}";
    }

    /** Sends a request on a raw socket and returns the socket, unread. */
    private static Socket open(Server s, String body) throws Exception {
        var socket = new Socket("127.0.0.1", s.port());
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        OutputStream out = socket.getOutputStream();
        out.write(("PUT /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " + b.length + "\r\n\r\n")
                .getBytes(StandardCharsets.US_ASCII));
        out.write(b);
        out.flush();
        return socket;
    }

    private static long health(Server s, String field) throws Exception {
        var h = send(s, "GET", "/health", null);
        return h.body().get(field).asLong();
    }

    private static void awaitBusy(Server s) throws Exception {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!send(s, "GET", "/health", null).body().get("busy").booleanValue()) {
            assertTrue(System.nanoTime() < until, "the worker never started");
            Thread.sleep(10);
        }
    }

    @Test
    @Timeout(120)
    @EnabledOnOs(OS.LINUX) // the probe reads the kernel's TCP table; elsewhere abandoned requests run to the end
    void abandonedRequestsAreCancelledAndTheNextOneIsFast() throws Exception {
        try (Server server = Server.start(dir, "127.0.0.1", 0, options())) {
            put(server, "{\"prompts\": [\"the\"], \"tokens_to_generate\": 1, \"temperature\": 0}"); // warm up
            long t0 = System.nanoTime();
            var baseline = put(server, "{\"prompts\": [\"the\"], \"tokens_to_generate\": 1, \"temperature\": 0}");
            double alone = (System.nanoTime() - t0) / 1e9;
            assertEquals(200, baseline.status());
            // 5 clients open long requests (4 prompts x 4000 tokens each): one runs, 4 wait; then all close their sockets unread
            List<Socket> sockets = new ArrayList<>();
            for (int i = 0; i < 5; i++) sockets.add(open(server, longRequest()));
            awaitBusy(server);
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (health(server, "waiting") < 4) {
                assertTrue(System.nanoTime() < until, "the 4 other requests never queued");
                Thread.sleep(5);
            }
            for (Socket s : sockets) s.close();
            long t1 = System.nanoTime();
            var quick = put(server, "{\"prompts\": [\"the\"], \"tokens_to_generate\": 1, \"temperature\": 0}");
            double seconds = (System.nanoTime() - t1) / 1e9;
            assertEquals(200, quick.status(), quick.raw().body());
            assertEquals(5, health(server, "cancelled"), "every abandoned request was cancelled");
            assertTrue(seconds < 3 + 10 * alone, "the 1-token request took " + seconds + " s (alone: " + alone + " s)");
            System.out.printf("abandoned x5 then 1 token: %.3f s (alone %.3f s)%n", seconds, alone);
        }
    }

    @Test
    @Timeout(120)
    void aClientThatStaysIsNeverCancelled() throws Exception {
        try (Server server = Server.start(dir, "127.0.0.1", 0, options())) {
            var r = put(server, "{\"prompts\": [\"the\", \"dog\"], \"tokens_to_generate\": 300, \"temperature\": 0}");
            assertEquals(200, r.status(), r.raw().body());
            assertEquals(0, health(server, "cancelled"));
        }
    }

    @Test
    @Timeout(120)
    void shutdownLetsTheRequestInFlightFinishAndItsClientGetsTheResult() throws Exception {
        Server server = Server.start(dir, "127.0.0.1", 0, options());
        String body = "{\"prompts\": [\"the\", \"a\"], \"tokens_to_generate\": 1500, \"temperature\": 0}";
        var inFlight = CompletableFuture.supplyAsync(() -> {
            try {
                return ServeFixture.put(server, body);
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        awaitBusy(server);
        server.stop();
        var r = inFlight.get(60, TimeUnit.SECONDS);
        assertEquals(200, r.status(), r.raw().body());
        for (int i = 0; i < 2; i++) {
            String why = r.body().get("finish_reasons").get(i).textValue();
            int n = r.body().get("tokens").get(i).size();
            assertTrue(why.equals("length") && n == 1500 || why.equals("eos"), why + " after " + n + " tokens");
        }
    }
}
