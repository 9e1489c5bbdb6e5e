package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A server-sent event stream ({@code text/event-stream}) answering one exchange: {@code data: <json>}
 * events, then {@code data: [DONE]}, as OpenAI's streaming API sends them.
 *
 * <p>The generation thread never writes to the socket: it {@link #offer}s events, which the exchange's
 * own thread writes as they come ({@link #pump}), so a slow client cannot stall the generation. A write
 * that fails (the client went away) marks the stream {@link #broken}, which stops the generation after
 * its next token. The headers go out with the first event, so a request that fails before producing
 * anything still gets a plain JSON error with its status.
 */
final class EventStream {
    private final HttpExchange ex;
    private final ObjectMapper mapper;
    private final BlockingQueue<ObjectNode> events = new LinkedBlockingQueue<>();
    private final AtomicBoolean broken = new AtomicBoolean();
    private OutputStream os;

    EventStream(HttpExchange ex, ObjectMapper mapper) {
        this.ex = ex;
        this.mapper = mapper;
    }

    /** Queues an event (any thread; never blocks). */
    void offer(ObjectNode event) {
        events.add(event);
    }

    /** Whether a write failed: the client is gone. */
    boolean broken() {
        return broken.get();
    }

    boolean started() {
        return os != null;
    }

    /** Writes queued events until {@code until} completes, then the ones left; returns its result. */
    <T> T pump(CompletableFuture<T> until) throws IOException, InterruptedException, java.util.concurrent.ExecutionException {
        while (!until.isDone()) {
            ObjectNode e = events.poll(20, TimeUnit.MILLISECONDS);
            if (e != null) send(e);
        }
        for (ObjectNode e; (e = events.poll()) != null; ) send(e);
        return until.get();
    }

    /** Writes one event now. */
    void send(ObjectNode event) throws IOException {
        write("data: " + mapper.writeValueAsString(event) + "\n\n");
    }

    /** The end of the stream: {@code data: [DONE]}. */
    void done() throws IOException {
        write("data: [DONE]\n\n");
        os.close();
    }

    private void write(String s) throws IOException {
        try {
            if (os == null) {
                ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
                ex.getResponseHeaders().set("Cache-Control", "no-cache");
                ex.sendResponseHeaders(200, 0); // chunked
                os = ex.getResponseBody();
            }
            os.write(s.getBytes(StandardCharsets.UTF_8));
            os.flush();
        } catch (IOException e) {
            broken.set(true);
            throw e;
        }
    }
}
