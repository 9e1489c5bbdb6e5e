package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.generate.GeneratedToken;
import dev.exeunt.model.generate.Generation;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.TokenDecoder;
import dev.exeunt.model.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The one thread that generates. A {@link Generator} is not thread-safe and the CPU kernels already
 * use every core, so requests wait in a bounded queue and run one at a time (all prompts of one
 * request run as one batch, each exiting on its own). A full queue is a 503 for the caller.
 */
final class GenerationWorker implements AutoCloseable {
    private static final JsonNodeFactory JSON = JsonNodeFactory.instance;
    /** log of the smallest positive float: the floor of reported log-probabilities (JSON has no -Infinity). */
    private static final double MIN_LOGPROB = Math.log(Float.MIN_VALUE);

    private record Job(ApiRequest request, CompletableFuture<ObjectNode> result) {}

    private final EarlyExitModel model;
    private final Tokenizer tokenizer;
    private final Generator generator;
    private final BlockingQueue<Job> queue;
    private final Thread thread;
    private volatile boolean stopping;
    private volatile boolean busy;

    GenerationWorker(EarlyExitModel model, Tokenizer tokenizer, int queueCapacity) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.generator = new Generator(model);
        this.queue = new ArrayBlockingQueue<>(queueCapacity);
        this.thread = Thread.ofPlatform().name("exeunt-generate").daemon(true).unstarted(this::loop);
        thread.start();
    }

    /** Queues a request; the future completes with the response object or an {@link ApiException}. */
    CompletableFuture<ObjectNode> submit(ApiRequest request) {
        if (stopping) throw new ApiException(503, "the server is shutting down");
        var job = new Job(request, new CompletableFuture<>());
        if (!queue.offer(job)) {
            throw new ApiException(503, "the server is busy: " + queue.size() + " requests are already waiting (--queue); retry later");
        }
        if (stopping && queue.remove(job)) throw new ApiException(503, "the server is shutting down");
        return job.result();
    }

    int waiting() {
        return queue.size();
    }

    boolean busy() {
        return busy;
    }

    private void loop() {
        while (!stopping) {
            Job job;
            try {
                job = queue.poll(200, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                break;
            }
            if (job == null) continue;
            busy = true;
            try {
                ObjectNode out = run(job.request());
                if (stopping) job.result().completeExceptionally(new ApiException(503, "the server is shutting down"));
                else job.result().complete(out);
            } catch (IllegalArgumentException e) {
                job.result().completeExceptionally(ApiException.badRequest(e.getMessage()));
            } catch (Throwable e) {
                job.result().completeExceptionally(new ApiException(500, "generation failed: " + e));
            } finally {
                busy = false;
            }
        }
        for (Job j; (j = queue.poll()) != null; ) j.result().completeExceptionally(new ApiException(503, "the server is shutting down"));
    }

    /** Per prompt: the streaming decoder (primed with the prompt) and where a stop sequence was found. */
    private static final class TextState {
        final TokenDecoder decoder;
        final StringBuilder text = new StringBuilder();
        int stopAt = -1;

        TextState(TokenDecoder decoder) {
            this.decoder = decoder;
        }
    }

    ObjectNode run(ApiRequest r) {
        int eos = tokenizer.eosId().orElse(-1);
        var cfg = new GenerationConfig(r.tokensToGenerate(), r.temperature(), r.topK(), r.topP(), r.seed(), r.threshold(), r.exitLayers(), eos);
        List<TextState> states = new ArrayList<>();
        for (int[] ids : r.promptIds()) {
            var dec = new TokenDecoder(tokenizer, true);
            dec.append(ids); // primed with the prompt, so the continuation decodes as it would after it
            states.add(new TextState(dec));
        }
        List<String> stops = r.stopSequences();
        List<Generation> gens = generator.generate(r.promptIds(), cfg, (seq, t) -> {
            if (stopping) return false;
            TextState s = states.get(seq);
            int before = s.text.length();
            s.text.append(s.decoder.append(t.token()));
            for (String stop : stops) {
                int at = s.text.indexOf(stop, Math.max(0, before - stop.length() + 1));
                if (at >= 0 && (s.stopAt < 0 || at < s.stopAt)) s.stopAt = at;
            }
            return s.stopAt < 0;
        });

        ObjectNode out = JSON.objectNode();
        ArrayNode text = out.putArray("text"), segments = out.putArray("segments");
        ArrayNode logprobs = r.logprobs() ? out.putArray("logprobs") : null;
        ArrayNode tokens = out.putArray("tokens"), exits = out.putArray("exit_layers"), finish = out.putArray("finish_reasons");
        for (int i = 0; i < gens.size(); i++) {
            Generation g = gens.get(i);
            TextState s = states.get(i);
            String generated = s.text.append(s.decoder.flush()).toString();
            if (s.stopAt >= 0) generated = generated.substring(0, s.stopAt);
            text.add(r.echoPrompts() ? r.prompts().get(i) + generated : generated);
            ArrayNode seg = segments.addArray(), lp = logprobs == null ? null : logprobs.addArray();
            ArrayNode ids = tokens.addArray(), ex = exits.addArray();
            for (GeneratedToken t : g.tokens()) {
                seg.add(new String(tokenizer.tokenBytes(t.token()), StandardCharsets.UTF_8));
                ids.add(t.token());
                ex.add(t.exitLayer());
                if (lp != null) {
                    double l = Math.log(t.probability());
                    lp.add(l >= MIN_LOGPROB ? l : MIN_LOGPROB);
                }
            }
            finish.add(g.finishReason());
        }
        return out;
    }

    /** Stops taking work, ends the generation in flight after its next token, and fails what waits (503). */
    @Override
    public void close() {
        stopping = true;
        try {
            thread.join(TimeUnit.SECONDS.toMillis(30));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Job j; (j = queue.poll()) != null; ) j.result().completeExceptionally(new ApiException(503, "the server is shutting down"));
    }

    boolean stopped() {
        return !thread.isAlive();
    }

    EarlyExitModel model() {
        return model;
    }
}
