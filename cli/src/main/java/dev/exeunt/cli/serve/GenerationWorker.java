package dev.exeunt.cli.serve;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.generate.Acceptance;
import dev.exeunt.model.generate.BeamSearch;
import dev.exeunt.model.generate.DecodeWarmUp;
import dev.exeunt.model.generate.GeneratedToken;
import dev.exeunt.model.generate.Generation;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.NewlineBan;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.TokenDecoder;
import dev.exeunt.model.tokenizer.Tokenizer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

/**
 * The one thread that generates. A {@link Generator} is not thread-safe and the CPU kernels already
 * use every core, so requests wait in a bounded queue and run one at a time (all prompts of one
 * request run as one batch, each exiting on its own). A full queue is a 503 for the caller.
 *
 * <p>A request whose client has gone (its {@code clientGone} probe says so) is skipped when it comes
 * up, or stopped after its next token when it is running: nobody would read the result.
 */
final class GenerationWorker implements AutoCloseable {
    private static final JsonNodeFactory JSON = JsonNodeFactory.instance;
    /** log of the smallest positive float: the floor of reported log-probabilities (JSON has no -Infinity). */
    private static final double MIN_LOGPROB = Math.log(Float.MIN_VALUE);
    /** How long shutdown lets the request in flight run on before stopping it after its next token. */
    static final long DRAIN_MILLIS = 30_000;

    private record Job(ApiRequest request, BooleanSupplier clientGone, TextStream stream, CompletableFuture<ObjectNode> result) {}

    /**
     * Receives each prompt's text as it is generated (on the worker thread; it must not block): the new
     * text since the last call, which may be empty, and the token that produced it. Text that could still
     * turn out to begin a stop sequence is held back until it cannot.
     */
    interface TextStream {
        void text(int prompt, String delta, GeneratedToken token);
    }

    /** A job stopped because its client disconnected or the server could not wait for it. */
    private static final class Abandoned extends RuntimeException {
        Abandoned(String why) {
            super(why, null, false, false);
        }
    }

    private final EarlyExitModel model;
    private final Tokenizer tokenizer;
    private final Generator generator;
    private final BeamSearch beamSearch;
    private final int vocabLimit;
    private final NewlineBan newlineBan;
    private final PrintStream log;
    private final BlockingQueue<Job> queue;
    private final Thread thread;
    private final AtomicLong cancelled = new AtomicLong();
    /** No new work: set first on shutdown. */
    private volatile boolean closing;
    /** Stop the generation in flight after its next token: set when the drain time is over. */
    private volatile boolean abort;
    private volatile boolean busy;
    /** The other ranks of a sharded model (null: this rank holds all of it). */
    private final ModelPeers peers;
    /** With peers: the failure that ended serving (ranks may be out of step after it), else null. */
    private volatile Throwable fatal;

    /** @param vocabLimit ids >= this are padding rows of the head, never generated (0: none) */
    GenerationWorker(EarlyExitModel model, Tokenizer tokenizer, int vocabLimit, int queueCapacity, PrintStream log) {
        this(model, tokenizer, vocabLimit, queueCapacity, log, null);
    }

    /** @param peers the other ranks of a sharded or staged model, told about every generation (null: none) */
    GenerationWorker(EarlyExitModel model, Tokenizer tokenizer, int vocabLimit, int queueCapacity, PrintStream log, ModelPeers peers) {
        this.model = model;
        this.peers = peers;
        this.tokenizer = tokenizer;
        this.generator = new Generator(model);
        this.beamSearch = new BeamSearch(model);
        this.vocabLimit = vocabLimit;
        this.newlineBan = NewlineBan.of(tokenizer);
        this.log = log;
        this.queue = new ArrayBlockingQueue<>(queueCapacity);
        this.thread = Thread.ofPlatform().name("exeunt-generate").daemon(true).unstarted(this::loop);
        thread.start();
    }

    /**
     * Decodes a fixed prompt on the worker's generator until the JIT settles (see {@link DecodeWarmUp}):
     * at full depth, with exits firing and, when the server defaults to it, speculatively. Call it before
     * any request can arrive. Returns the seconds spent.
     */
    double warmUp(double maxSeconds, boolean speculative, int draftMax) {
        int[] prompt = tokenizer.encode("The quick brown fox jumps over the lazy dog. def main():", tokenizer.bosId().isPresent());
        int context = model.config().maxSeqLen();
        if (prompt.length > context / 2) prompt = Arrays.copyOf(prompt, context / 2);
        var full = GenerationConfig.greedy(Math.min(64, context - prompt.length)).withVocabLimit(vocabLimit);
        var modes = new ArrayList<>(List.of(full, full.withThreshold(0.5)));
        if (speculative && Generator.canSpeculate(model)) modes.add(full.withThreshold(0.5).withSpeculative(true, draftMax));
        return DecodeWarmUp.onModel(generator, List.of(prompt), modes, maxSeconds);
    }

    /** Queues a request; the future completes with the response object or an {@link ApiException}. */
    CompletableFuture<ObjectNode> submit(ApiRequest request, BooleanSupplier clientGone) {
        return submit(request, clientGone, null);
    }

    /** As {@link #submit(ApiRequest, BooleanSupplier)}, also streaming the text to {@code stream} as it is generated (null: none). */
    CompletableFuture<ObjectNode> submit(ApiRequest request, BooleanSupplier clientGone, TextStream stream) {
        if (closing) throw shuttingDown();
        if (stream != null && request.beamWidth() > 0) throw ApiException.badRequest("beam search cannot stream: its beams are known only at the end");
        var job = new Job(request, clientGone, stream, new CompletableFuture<>());
        if (!queue.offer(job)) {
            throw new ApiException(503, "the server is busy: " + queue.size() + " requests are already waiting (--queue); retry later");
        }
        if (closing && queue.remove(job)) throw shuttingDown();
        return job.result();
    }

    int waiting() {
        return queue.size();
    }

    boolean busy() {
        return busy;
    }

    /** Requests dropped because their client disconnected (or shutdown could not wait for them). */
    long cancelled() {
        return cancelled.get();
    }

    private static ApiException shuttingDown() {
        return new ApiException(503, "the server is shutting down");
    }

    private void loop() {
        while (!closing) {
            Job job;
            try {
                job = queue.poll(200, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                break;
            }
            if (job == null) continue;
            busy = true;
            try {
                if (job.clientGone().getAsBoolean()) throw new Abandoned("the client disconnected before its request started");
                job.result().complete(run(job.request(), job.clientGone(), job.stream()));
            } catch (Abandoned e) {
                cancelled.incrementAndGet();
                job.result().completeExceptionally(abort ? shuttingDown() : new ApiException(499, e.getMessage()));
            } catch (Throwable e) {
                // the request was validated before it was queued: what fails now is the server's (or the model's) fault
                job.result().completeExceptionally(new ApiException(500, "generation failed: " + e.getMessage()));
                if (peers != null) {
                    // another rank may be stuck mid-collective or gone: no later request could be served
                    fatal = e;
                    closing = true;
                }
            } finally {
                busy = false;
            }
        }
        for (Job j; (j = queue.poll()) != null; ) j.result().completeExceptionally(shuttingDown());
    }

    /** Per prompt: the streaming decoder (primed with the prompt), where a stop sequence was found, and how much text was streamed. */
    private static final class TextState {
        final TokenDecoder decoder;
        final StringBuilder text = new StringBuilder();
        int stopAt = -1;
        int streamed;

        TextState(TokenDecoder decoder) {
            this.decoder = decoder;
        }
    }

    private TokenDecoder primedDecoder(int[] prompt) {
        var dec = new TokenDecoder(tokenizer, true);
        dec.append(prompt); // the continuation decodes as it would after its prompt (a SentencePiece leading space survives)
        return dec;
    }

    ObjectNode run(ApiRequest r, BooleanSupplier clientGone) {
        return run(r, clientGone, null);
    }

    private ObjectNode run(ApiRequest r, BooleanSupplier clientGone, TextStream stream) {
        long t0 = System.nanoTime();
        ObjectNode out = r.beamWidth() > 0 ? beams(r) : sample(r, clientGone, stream);
        double seconds = (System.nanoTime() - t0) / 1e9;
        out.put("requst_time", seconds); // sic: the key EE-LLM's server answers with
        out.put("request_time", seconds);
        return out;
    }

    private GenerationConfig config(ApiRequest r) {
        return new GenerationConfig(r.tokensToGenerate(), r.temperature(), r.topK(), r.topP(), r.seed(), r.threshold(), r.exitLayers(),
                r.stopToken() >= 0 ? r.stopToken() : tokenizer.eosId().orElse(-1), r.topPDecay(), r.topPBound(), vocabLimit, r.preventNewlineAfterColon() ? newlineBan : null,
                r.printMaxProb(), r.speculative(), r.draftMax(), GenerationConfig.KvFill.RECOMPUTE, false);
    }

    private ObjectNode sample(ApiRequest r, BooleanSupplier clientGone, TextStream stream) {
        List<TextState> states = new ArrayList<>();
        for (int[] ids : r.promptIds()) states.add(new TextState(primedDecoder(ids)));
        List<String> stops = r.stopSequences();
        // a streamed piece never ends inside what could still become a stop sequence
        int holdBack = stops.stream().mapToInt(String::length).max().orElse(1) - 1;
        boolean[] gone = {false};
        GenerationConfig cfg = config(r);
        if (peers != null) peers.announce(r.promptIds(), cfg);
        List<Generation> gens = generator.generate(r.promptIds(), cfg, (seq, t) -> {
            if (gone[0] || abort || clientGone.getAsBoolean()) {
                gone[0] = true;
                return false;
            }
            TextState s = states.get(seq);
            int before = s.text.length();
            s.text.append(s.decoder.append(t.token()));
            for (String stop : stops) {
                int at = s.text.indexOf(stop, Math.max(0, before - stop.length() + 1));
                if (at >= 0 && (s.stopAt < 0 || at < s.stopAt)) s.stopAt = at;
            }
            if (stream != null) {
                int safe = Math.max(s.streamed, s.stopAt >= 0 ? s.stopAt : s.text.length() - holdBack);
                stream.text(seq, s.text.substring(s.streamed, safe), t);
                s.streamed = safe;
            }
            return s.stopAt < 0;
        });
        if (gone[0]) throw new Abandoned(abort ? "the server is shutting down" : "the client disconnected during generation");

        ObjectNode out = JSON.objectNode();
        ArrayNode text = out.putArray("text"), segments = out.putArray("segments");
        ArrayNode logprobs = r.logprobs() ? out.putArray("logprobs") : null;
        if (logprobs == null) out.putNull("logprobs"); // EE-LLM's key is always there
        ArrayNode tokens = out.putArray("tokens"), exits = out.putArray("exit_layers"), finish = out.putArray("finish_reasons");
        ArrayNode maxProbs = null;
        if (r.printMaxProb()) {
            ArrayNode layers = out.putArray("max_prob_layers");
            model.exits().forEach(e -> layers.add(e.config().layer()));
            layers.add(model.config().nLayers());
            maxProbs = out.putArray("max_probs");
        }
        for (int i = 0; i < gens.size(); i++) {
            Generation g = gens.get(i);
            TextState s = states.get(i);
            String generated = s.text.append(s.decoder.flush()).toString();
            if (s.stopAt >= 0) generated = generated.substring(0, s.stopAt);
            if (stream != null && generated.length() > s.streamed) stream.text(i, generated.substring(s.streamed), null);
            text.add(r.echoPrompts() ? r.prompts().get(i) + generated : generated);
            ArrayNode seg = segments.addArray(), lp = logprobs == null ? null : logprobs.addArray();
            ArrayNode ids = tokens.addArray(), ex = exits.addArray(), mp = maxProbs == null ? null : maxProbs.addArray();
            for (GeneratedToken t : g.tokens()) {
                String piece = new String(tokenizer.tokenBytes(t.token()), StandardCharsets.UTF_8);
                seg.add(piece);
                ids.add(t.token());
                ex.add(t.exitLayer());
                if (lp != null) {
                    double l = Math.log(t.probability());
                    lp.add(l >= MIN_LOGPROB ? l : MIN_LOGPROB);
                }
                if (mp != null) {
                    ArrayNode row = mp.addArray();
                    for (float p : t.exitMaxProbs()) {
                        if (Float.isNaN(p)) row.addNull();
                        else row.add(p);
                    }
                    logMaxProbs(i, ids.size() - 1, piece, t.exitMaxProbs());
                }
            }
            finish.add(g.finishReason());
        }
        if (r.speculative()) {
            ArrayNode acceptance = out.putArray("acceptance");
            for (Acceptance x : Acceptance.of(model, generator.lastStats())) {
                acceptance.addObject().put("layer", x.layer()).put("drafted", x.drafted()).put("accepted", x.accepted());
            }
        }
        return out;
    }

    /** print_max_prob: as EE-LLM, the top probability at each exit of each token goes to the server log. */
    private void logMaxProbs(int prompt, int index, String piece, float[] probs) {
        var sb = new StringBuilder(String.format(Locale.ROOT, "max_prob prompt %d token %d %s:", prompt, index, JSON.textNode(piece).toString()));
        for (int e = 0; e < probs.length; e++) {
            int layer = e < model.exits().size() ? model.exits().get(e).config().layer() : model.config().nLayers();
            sb.append(String.format(Locale.ROOT, " layer %d %s", layer, Float.isNaN(probs[e]) ? "-" : String.format(Locale.ROOT, "%.4f", probs[e])));
        }
        log.println(sb);
    }

    private ObjectNode beams(ApiRequest r) {
        int[] prompt = r.promptIds().get(0);
        int stop = r.stopToken() >= 0 ? r.stopToken() : tokenizer.eosId().orElse(-1);
        List<BeamSearch.Beam> found = beamSearch.search(prompt, r.beamWidth(), r.tokensToGenerate(), stop, r.lengthPenalty(), vocabLimit,
                r.preventNewlineAfterColon() ? newlineBan : null);
        ObjectNode out = JSON.objectNode();
        ArrayNode text = out.putArray("text"), segments = out.putArray("segments"), scores = out.putArray("scores");
        ArrayNode tokens = out.putArray("tokens"), finish = out.putArray("finish_reasons");
        out.putNull("logprobs");
        for (BeamSearch.Beam b : found) {
            var dec = primedDecoder(prompt);
            String generated = dec.append(b.tokens()) + dec.flush();
            text.add(r.echoPrompts() ? r.prompts().get(0) + generated : generated);
            ArrayNode seg = segments.addArray(), ids = tokens.addArray();
            for (int t : b.tokens()) {
                seg.add(new String(tokenizer.tokenBytes(t), StandardCharsets.UTF_8));
                ids.add(t);
            }
            scores.add(b.score());
            finish.add(b.stopped() ? (stop == tokenizer.eosId().orElse(-2) ? "eos" : "stop") : "length");
        }
        return out;
    }

    /**
     * Stops taking work, lets the generation in flight finish (its client gets the result) for up to
     * {@link #DRAIN_MILLIS}, then stops it after its next token; what waits gets 503.
     */
    @Override
    public void close() {
        closing = true;
        try {
            thread.join(DRAIN_MILLIS);
            if (thread.isAlive()) {
                abort = true;
                thread.join(TimeUnit.SECONDS.toMillis(10));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Job j; (j = queue.poll()) != null; ) j.result().completeExceptionally(shuttingDown());
    }

    /** With peers: the failure that ended serving, else null. */
    Throwable fatal() {
        return fatal;
    }

    boolean stopped() {
        return !thread.isAlive();
    }

    EarlyExitModel model() {
        return model;
    }
}
