package dev.exeunt.cli.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.tensor.Device;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The text generation server: EE-LLM's (Megatron's) {@code PUT /api} plus {@code GET /health}, on
 * the JDK's HTTP server. Each HTTP exchange runs on a virtual thread that validates and tokenizes
 * the request, then waits for the single {@link GenerationWorker}.
 */
public final class Server implements AutoCloseable {
    private static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();
    /** A too-large body whose declared length is at most this is read and dropped, so the client sees the 413 cleanly. */
    private static final long DRAIN_LIMIT = 16L << 20;

    private final ModelCheckpoint.Loaded loaded;
    private final ServeOptions options;
    private final ApiRequest.Model apiModel;
    private final GenerationWorker worker;
    private final HttpServer http;
    private final ExecutorService executor;
    private final int tokenizerVocab;
    private final ModelPeers peers;
    /** What /v1/completions answers as "model" when the request names none: the checkpoint's directory name. */
    private volatile String modelName = "exeunt";
    /** How /v1/chat/completions renders messages, and the id of its end of turn when the tokenizer has it as one token (else -1). */
    private volatile ChatTemplate chatTemplate = ChatTemplate.PLAIN;
    private volatile int endOfTurnId = -1;
    private volatile boolean closed;

    private Server(ModelCheckpoint.Loaded loaded, ServeOptions options, String host, int port, ModelPeers peers) throws IOException {
        this.loaded = loaded;
        this.options = options;
        this.peers = peers;
        Tokenizer tok = loaded.tokenizer();
        if (tok == null) throw new IllegalArgumentException("the checkpoint has no tokenizer.json; serve needs one to read text prompts");
        ModelConfig c = loaded.model().config();
        int context = c.maxSeqLen() - 1;
        if (options.maxPromptTokens() > context) {
            throw new IllegalArgumentException("--max-prompt-tokens " + options.maxPromptTokens() + " exceeds the model's context (" + context
                    + " prompt tokens at most)");
        }
        int maxPrompt = options.maxPromptTokens() == 0 ? context : options.maxPromptTokens();
        this.apiModel = new ApiRequest.Model(tok, c.nLayers(), c.exits().stream().mapToInt(ExitConfig::layer).distinct().sorted().toArray(),
                maxPrompt, c.maxSeqLen());
        // A head padded past the tokenizer (vocab_size rounded up for the kernels) has rows no text maps to:
        // found here, at load, and masked in every generation, never a failed decode blamed on a request.
        this.tokenizerVocab = tok.vocabSize();
        int vocabLimit = tok.vocabSize() < c.vocabSize() ? tok.vocabSize() : 0;
        if (vocabLimit > 0) {
            System.err.println("exeunt serve: the model's vocab_size " + c.vocabSize() + " exceeds the tokenizer's " + tok.vocabSize()
                    + " tokens; ids " + vocabLimit + ".." + (c.vocabSize() - 1) + " are padding and are never generated");
        }
        if (options.speculative() && !Generator.canSpeculate(loaded.model())) {
            throw new IllegalArgumentException("serve --speculative needs one pipeline stage; this model has "
                    + loaded.model().parameters().pipeline().stages());
        }
        this.http = HttpServer.create(new InetSocketAddress(host, port), 64);
        this.worker = new GenerationWorker(loaded.model(), tok, vocabLimit, options.queue(), System.err, peers);
        this.executor = Executors.newVirtualThreadPerTaskExecutor();
        http.setExecutor(executor);
        http.createContext("/", this::handle);
        if (options.chatTemplate() != null) useChatTemplate(ChatTemplate.parse(options.chatTemplate()));
    }

    private void useChatTemplate(ChatTemplate t) {
        chatTemplate = t;
        int[] ids = t == ChatTemplate.PLAIN ? new int[0] : loaded.tokenizer().encode(t.endOfTurn, false, true);
        endOfTurnId = ids.length == 1 ? ids[0] : -1;
    }

    /** The chat template /v1/chat/completions uses. */
    public String chatTemplate() {
        return chatTemplate.label();
    }

    /** Loads the checkpoint in {@code modelDir} and starts serving on host:port (port 0: a free one). */
    public static Server start(Path modelDir, String host, int port, ServeOptions options) throws IOException {
        return start(modelDir, host, port, options, false);
    }

    /** As {@link #start(Path, String, int, ServeOptions)}; {@code force} accepts a tokenizer.json the model was not trained with. */
    public static Server start(Path modelDir, String host, int port, ServeOptions options, boolean force) throws IOException {
        return start(modelDir, host, port, options, force, 0);
    }

    /**
     * As {@link #start(Path, String, int, ServeOptions, boolean)}, first warming the JIT on the model for
     * at most {@code warmUpSeconds} (0: not at all), so the first request runs the compiled decode path.
     */
    public static Server start(Path modelDir, String host, int port, ServeOptions options, boolean force, double warmUpSeconds) throws IOException {
        var loaded = dev.exeunt.model.ModelLoader.load(modelDir, Device.CPU, force);
        try {
            var server = new Server(loaded, options, host, port, null);
            if (modelDir.getFileName() != null) server.modelName = modelDir.getFileName().toString();
            if (options.chatTemplate() == null) {
                String jinja = ChatTemplate.jinjaOf(modelDir);
                if (jinja != null) server.useChatTemplate(ChatTemplate.recognise(jinja));
            }
            if (warmUpSeconds > 0) {
                double secs = server.worker.warmUp(warmUpSeconds, options.speculative(), options.draftMax());
                System.err.printf(java.util.Locale.ROOT, "exeunt serve: warmed up the JIT on the model in %.1f s (--no-warmup skips)%n", secs);
            }
            server.http.start();
            return server;
        } catch (IOException | RuntimeException e) {
            loaded.close();
            throw e;
        }
    }

    /**
     * Serves {@code loaded}, this rank's shard or stage of a model whose other ranks follow in
     * {@link ModelPeers#follow} (world rank 0 only). The server owns {@code loaded} from here on.
     */
    public static Server start(ModelCheckpoint.Loaded loaded, String host, int port, ServeOptions options, ModelPeers peers) throws IOException {
        try {
            var server = new Server(loaded, options, host, port, peers);
            server.http.start();
            return server;
        } catch (IOException | RuntimeException e) {
            loaded.close();
            throw e;
        }
    }

    /** With ranks to follow it: the failure that ended serving (the server then answers 503 and should be stopped), else null. */
    public Throwable failure() {
        return worker.fatal();
    }

    public int port() {
        return http.getAddress().getPort();
    }

    public String url() {
        var a = http.getAddress();
        String host = a.getAddress().getHostAddress();
        if (host.contains(":")) host = "[" + host + "]";
        return "http://" + host + ":" + a.getPort();
    }

    public ModelConfig modelConfig() {
        return loaded.model().config();
    }

    public int maxPromptTokens() {
        return apiModel.maxPromptTokens();
    }

    /**
     * Stops accepting requests (new ones get 503), lets the generation in flight finish and its client
     * receive the result (up to 30 s, then it stops after its next token), answers what waits with 503,
     * closes the port and the model.
     */
    public synchronized void stop() {
        if (closed) return;
        closed = true;
        worker.close();
        http.stop(1);
        executor.shutdownNow();
        if (worker.stopped()) loaded.close(); // never free weights a running generation still reads
    }

    @Override
    public void close() {
        stop();
    }

    // ------------------------------------------------------------------ HTTP

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            String path = ex.getRequestURI().getPath();
            String method = ex.getRequestMethod();
            try {
                if (!path.startsWith("/health")) authorize(ex);
                switch (path) {
                    case "/api", "/api/" -> {
                        if (!method.equals("PUT") && !method.equals("POST")) throw methodNotAllowed(ex, "PUT, POST");
                        respond(ex, 200, generate(ex));
                    }
                    case "/health", "/health/" -> {
                        if (!method.equals("GET") && !method.equals("HEAD")) throw methodNotAllowed(ex, "GET, HEAD");
                        respond(ex, 200, health());
                    }
                    case "/v1/completions", "/v1/chat/completions" -> {
                        if (!method.equals("POST")) throw methodNotAllowed(ex, "POST");
                        openAi(ex, path.contains("chat") ? OpenAiCompletions.Endpoint.CHAT : OpenAiCompletions.Endpoint.COMPLETIONS);
                    }
                    default -> throw new ApiException(404, "no such path " + path
                            + " (the API is PUT /api, POST /v1/completions and POST /v1/chat/completions; GET /health)");
                }
            } catch (ApiException e) {
                if (e.status() == 503) ex.getResponseHeaders().set("Retry-After", "1");
                respond(ex, e.status(), error(e.getMessage()));
            } catch (RuntimeException e) {
                respond(ex, 500, error("internal error: " + e));
            }
        } catch (IOException e) {
            // the client went away; nothing to answer
        }
    }

    private static ApiException methodNotAllowed(HttpExchange ex, String allowed) {
        ex.getResponseHeaders().set("Allow", allowed);
        return new ApiException(405, "method " + ex.getRequestMethod() + " is not allowed on " + ex.getRequestURI().getPath() + "; use " + allowed);
    }

    /** With an API key: {@code Authorization: Bearer <key>}, compared in constant time, or 401. */
    private void authorize(HttpExchange ex) {
        String key = options.apiKey();
        if (key == null) return;
        String given = ex.getRequestHeaders().getFirst("Authorization");
        byte[] want = ("Bearer " + key).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        if (given == null || !java.security.MessageDigest.isEqual(want, given.trim().getBytes(java.nio.charset.StandardCharsets.UTF_8))) {
            ex.getResponseHeaders().set("WWW-Authenticate", "Bearer");
            throw new ApiException(401, given == null ? "this server wants an API key: Authorization: Bearer <key>" : "wrong API key");
        }
    }

    private ObjectNode generate(HttpExchange ex) throws IOException {
        return run(ex, ApiRequest.parse(readJson(ex), apiModel, options));
    }

    /** OpenAI's POST /v1/completions or /v1/chat/completions, through the same request and limits as PUT /api; "stream": true answers with events. */
    private void openAi(HttpExchange ex, OpenAiCompletions.Endpoint endpoint) throws IOException {
        JsonNode openai = readJson(ex);
        boolean chat = endpoint == OpenAiCompletions.Endpoint.CHAT;
        ChatTemplate template = chatTemplate;
        int endOfTurn = endOfTurnId;
        ObjectNode body = chat ? OpenAiCompletions.toChatBody(openai, template, endOfTurn >= 0) : OpenAiCompletions.toApiBody(openai);
        ApiRequest request = ApiRequest.parse(body, apiModel, options);
        if (chat && endOfTurn >= 0) request = request.endingAt(endOfTurn);
        String model = openai.path("model").isTextual() ? openai.get("model").textValue() : modelName;
        String id = OpenAiCompletions.newId(endpoint);
        int[] promptTokens = request.promptIds().stream().mapToInt(p -> p.length).toArray();
        if (!openai.path("stream").asBoolean(false)) {
            respond(ex, 200, OpenAiCompletions.toResponse(endpoint, id, run(ex, request), model, promptTokens));
            return;
        }
        var events = new EventStream(ex, MAPPER);
        if (chat) events.offer(OpenAiCompletions.roleChunk(id, model, 0));
        if (!chat && request.echoPrompts()) {
            for (int i = 0; i < request.prompts().size(); i++) events.offer(OpenAiCompletions.chunk(endpoint, id, model, i, request.prompts().get(i), null));
        }
        ObjectNode result;
        try {
            result = run(ex, request, events, (i, delta, t) -> events.offer(OpenAiCompletions.chunk(endpoint, id, model, i, delta, t)));
        } catch (ApiException e) {
            if (!events.started()) throw e; // nothing sent yet: a plain JSON error with its status
            var err = MAPPER.createObjectNode();
            err.putObject("error").put("message", e.getMessage()).put("code", e.status());
            events.send(err);
            events.done();
            return;
        }
        for (int i = 0; i < promptTokens.length; i++) events.send(OpenAiCompletions.finalChunk(endpoint, id, model, i, result));
        if (OpenAiCompletions.wantsUsage(openai)) events.send(OpenAiCompletions.usageChunk(endpoint, id, model, result, promptTokens));
        events.done();
    }

    private JsonNode readJson(HttpExchange ex) throws IOException {
        byte[] body = readBody(ex);
        JsonNode root;
        try {
            root = MAPPER.readTree(body);
        } catch (JsonProcessingException e) {
            String msg = e.getOriginalMessage().replaceAll("\\[Source: [^;\\]]*; ", "[");
            var at = e.getLocation();
            throw ApiException.badRequest("malformed JSON: " + msg + (at == null ? "" : " (at line " + at.getLineNr() + ", column " + at.getColumnNr() + ")"));
        }
        return root;
    }

    private ObjectNode run(HttpExchange ex, ApiRequest request) throws IOException {
        return run(ex, request, null, null);
    }

    /**
     * Runs the request on the worker and waits for its answer; with {@code events}, the text streams
     * into them as it is generated (the chunks OpenAI's API sends) while this thread writes them out.
     */
    private ObjectNode run(HttpExchange ex, ApiRequest request, EventStream events, GenerationWorker.TextStream stream) throws IOException {
        if (peers != null) refuseOnRanks(request);
        var probe = new ClientProbe(ex.getLocalAddress(), ex.getRemoteAddress());
        CompletableFuture<ObjectNode> future;
        if (events == null) {
            future = worker.submit(request, probe);
        } else {
            future = worker.submit(request, () -> events.broken() || probe.getAsBoolean(), stream);
        }
        try {
            return events == null ? future.get() : events.pump(future);
        } catch (InterruptedException e) {
            future.cancel(false);
            Thread.currentThread().interrupt();
            throw new ApiException(503, "the server is shutting down");
        } catch (CancellationException e) {
            throw new ApiException(503, "the request was cancelled");
        } catch (ExecutionException e) {
            if (e.getCause() instanceof ApiException a) throw a;
            // the worker turns every failure into an ApiException; anything else is a bug here
            throw new ApiException(500, "generation failed: " + e.getCause());
        }
    }

    /** What only one rank's model can do. */
    private void refuseOnRanks(ApiRequest r) {
        var m = loaded.model();
        String layout = "this server's model is cut over ranks (tp " + m.tensorParallel().size() + ", pp " + m.parameters().pipeline().stages() + ")";
        if (r.beamWidth() > 0) throw ApiException.badRequest("beam search runs on one rank; " + layout);
        if (r.speculative() && !Generator.canSpeculate(m)) throw ApiException.badRequest("speculative decoding needs one pipeline stage; " + layout);
        if (r.printMaxProb() && m.parameters().pipeline().stages() > 1) {
            throw ApiException.badRequest("print_max_prob is not available under pipeline parallelism; " + layout);
        }
    }

    private byte[] readBody(HttpExchange ex) throws IOException {
        int limit = options.maxBodyBytes();
        String declared = ex.getRequestHeaders().getFirst("Content-Length");
        long length = -1;
        if (declared != null) {
            try {
                length = Long.parseLong(declared.trim());
            } catch (NumberFormatException e) {
                throw ApiException.badRequest("bad Content-Length header");
            }
        }
        InputStream in = ex.getRequestBody();
        if (length > limit) {
            if (length <= DRAIN_LIMIT) in.transferTo(OutputStream.nullOutputStream());
            throw tooLarge(length);
        }
        var buf = new ByteArrayOutputStream();
        byte[] chunk = new byte[8192];
        for (int n; (n = in.read(chunk)) > 0; ) {
            buf.write(chunk, 0, n);
            if (buf.size() > limit) {
                long total = buf.size();
                while (total <= DRAIN_LIMIT && (n = in.read(chunk)) > 0) total += n;
                throw tooLarge(total);
            }
        }
        return buf.toByteArray();
    }

    private ApiException tooLarge(long length) {
        return new ApiException(413, "the request body (" + length + " bytes or more) exceeds the limit of " + options.maxBodyBytes() + " bytes");
    }

    private ObjectNode health() {
        ModelConfig c = loaded.model().config();
        ObjectNode o = MAPPER.createObjectNode();
        o.put("status", closed ? "stopping" : "ok");
        o.put("family", c.family().name().toLowerCase());
        o.put("layers", c.nLayers());
        var exits = o.putArray("exits");
        for (int l : apiModel.exitLayers()) exits.add(l);
        o.put("final_layer", c.nLayers());
        o.put("vocab", c.vocabSize());
        o.put("tokenizer_vocab", tokenizerVocab);
        o.put("context", c.maxSeqLen());
        var limits = o.putObject("limits");
        limits.put("max_prompts", options.maxPrompts());
        limits.put("max_tokens", options.maxTokens());
        limits.put("max_prompt_tokens", apiModel.maxPromptTokens());
        limits.put("queue", options.queue());
        limits.put("max_body_bytes", options.maxBodyBytes());
        o.put("speculative", options.speculative()); // the default of requests that do not say
        o.put("draft_max", options.draftMax());
        o.put("waiting", worker.waiting());
        o.put("busy", worker.busy());
        o.put("cancelled", worker.cancelled());
        return o;
    }

    private static ObjectNode error(String message) {
        return MAPPER.createObjectNode().put("error", message);
    }

    private static void respond(HttpExchange ex, int status, ObjectNode body) throws IOException {
        byte[] bytes = MAPPER.writeValueAsBytes(body);
        ex.getResponseHeaders().set("Content-Type", "application/json; charset=utf-8");
        if (ex.getRequestMethod().equals("HEAD")) {
            ex.sendResponseHeaders(status, -1);
            return;
        }
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(bytes);
        }
    }
}
