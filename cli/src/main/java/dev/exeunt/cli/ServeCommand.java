package dev.exeunt.cli;

import dev.exeunt.cli.serve.ModelPeers;
import dev.exeunt.cli.serve.Server;
import dev.exeunt.cli.serve.ServeOptions;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.NewlineBan;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

final class ServeCommand implements Main.Command {
    public String summary() {
        return "HTTP text generation server with EE-LLM's API (PUT /api) and GET /health";
    }

    public String usage() {
        return """
                usage: exeunt serve --model DIR [--port N (5000; 0 = any free port)] [--host H (127.0.0.1)]
                                    [--max-prompts N (8)] [--max-tokens N (512)] [--max-prompt-tokens N (the model's context - 1)]
                                    [--queue N (16)] [--max-body BYTES (1048576)] [--speculative [--draft-max N (%d)]] [--no-warmup] [--force]
                                    [--api-key KEY (or EXEUNT_API_KEY)] [--chat-template chatml|llama3|llama2|plain] [--tp T] [--pp P [--pipeline-layers L,L,..]] [--engine local|mpi]
                  --force: serve with a tokenizer.json that is not the one the model was trained with.
                  --speculative: requests that do not say decode with lossless self-speculative decoding (exits that
                    pass early_exit_thres draft, the full model verifies: the output is the full model's);
                    --draft-max: the most drafts awaiting verification of a speculative request.
                    A request sets its own with "speculative" and "draft_max".
                  --no-warmup: listen at once; by default the model first decodes a fixed prompt, output discarded,
                    until the JIT has compiled the decode path (at most %d s), so the first requests are not slow.
                  --tp / --pp: serve a model cut over ranks (threads, or mpirun -np T*P processes): world rank 0
                    owns the HTTP server and the queue, the others follow each generation; a rank that fails ends
                    the server with its message. Beam search needs one rank, speculative decoding and
                    print_max_prob one pipeline stage; the warm-up is skipped.
                  --api-key: every endpoint but /health requires Authorization: Bearer KEY (as llama.cpp's server).
                    Without one the server listens on 127.0.0.1 only unless --host says otherwise, and says so.
                  POST /v1/completions and /v1/chat/completions: OpenAI's APIs (prompt or messages, max_tokens,
                    temperature, top_p, seed, stop, echo, "stream": true for server-sent events, stream_options.include_usage),
                    with early_exit_thres, exit_layers and speculative as extensions: exit_layers per choice, exit_layer per
                    streamed chunk.
                  --chat-template: how chat messages become a prompt. By default the model's own template
                    (tokenizer_config.json, or a GGUF's tokenizer.chat_template) recognised by its markers (ChatML,
                    Llama 3, Llama 2), else plain "role: content" lines ending in "assistant:". A turn ends at the
                    template's end-of-turn token (or text).
                  Serves until killed. One generation runs at a time; up to --queue requests wait, more get 503.
                  PUT /api {"prompts": [...], "tokens_to_generate": 64, "temperature": 0, "use_early_exit": true,
                            "early_exit_thres": 0.8, "exit_layers": [..], "logprobs": true, "stop_sequences": [..], ...}
                    -> {"text", "segments", "logprobs", "requst_time", "request_time", "tokens", "exit_layers", "finish_reasons"}
                  Also EE-LLM's print_max_prob (-> "max_probs"), top_p_decay, top_p_bound, prevent_newline_after_colon,
                  and beam_width / length_penalty / stop_token (beam search, one prompt, full model).
                  stop_sequences: a prompt stops at the first token after which its generated text contains one;
                    "text" is cut before it, the token lists keep every generated token, finish reason "stop".
                  use_early_exit must be a JSON boolean; false ignores early_exit_thres (threshold 1 = never exit).
                  "speculative": true (with "use_early_exit": true) adds "acceptance": [{"layer", "drafted", "accepted"}] per exit.
                  GET /health -> model family, layers, exits, vocab, limits, speculative default, queue state.
                  The full API: the javadoc of package dev.exeunt.cli.serve.""".formatted(GenerationConfig.DEFAULT_DRAFT_MAX, (int) GenerateCommand.WARMUP_SECONDS);
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, RankLayout.withFlags(Set.of("force", "speculative", "no-warmup")));
        boolean force = a.getBool("force", false);
        Path dir = Path.of(a.require("model", "a checkpoint directory"));
        int port = a.getInt("port", 5000);
        String host = a.get("host", "127.0.0.1");
        var opts = new ServeOptions(a.getInt("max-prompts", ServeOptions.DEFAULT_MAX_PROMPTS), a.getInt("max-tokens", ServeOptions.DEFAULT_MAX_TOKENS),
                a.getInt("max-prompt-tokens", 0), a.getInt("queue", ServeOptions.DEFAULT_QUEUE), a.getInt("max-body", ServeOptions.DEFAULT_MAX_BODY));
        opts = opts.withSpeculative(a.getBool("speculative", false), a.getInt("draft-max", GenerationConfig.DEFAULT_DRAFT_MAX))
                .withApiKey(a.get("api-key", System.getenv("EXEUNT_API_KEY"))).withChatTemplate(a.get("chat-template", null));
        boolean noWarmUp = a.getBool("no-warmup", false);
        RankLayout layout = RankLayout.parse(a);
        a.checkAllUsed();
        if (port < 0 || port > 65535) throw new Args.UsageException("--port must be in 0..65535, got " + port);
        if (!layout.isOneRank()) {
            return serveOnRanks(dir, host, port, opts, force, layout, out);
        }
        // The first request would otherwise run the decode kernels interpreted: compile them before listening.
        Server server = Server.start(dir, host, port, opts, force, noWarmUp ? 0 : GenerateCommand.WARMUP_SECONDS);
        var done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().name("exeunt-serve-shutdown").unstarted(() -> {
            server.stop();
            done.countDown();
        }));
        announce(server, dir, out, opts, host);
        done.await();
        return 0;
    }

    private static void announce(Server server, Path dir, PrintStream out, ServeOptions opts, String host) {
        var c = server.modelConfig();
        int[] exits = c.exits().stream().mapToInt(e -> e.layer()).distinct().sorted().toArray();
        out.printf("exeunt serve: %s (%s, %d layers, exits at %s, vocab %d, context %d)%n", dir, c.family().name().toLowerCase(), c.nLayers(),
                Arrays.toString(exits), c.vocabSize(), c.maxSeqLen());
        out.printf("exeunt serve: listening on %s  (PUT %s/api, POST %s/v1/completions and /v1/chat/completions (chat template %s), "
                + "GET %s/health; port %d)%n", server.url(), server.url(), server.url(), server.chatTemplate(), server.url(), server.port());
        if (opts.apiKey() != null) {
            out.println("exeunt serve: every endpoint but /health wants Authorization: Bearer <the --api-key>");
        } else {
            boolean loopback = host.equals("127.0.0.1") || host.equals("localhost") || host.equals("::1");
            out.println(loopback ? "exeunt serve: no --api-key: only this machine can reach it (127.0.0.1; --host to change)"
                    : "exeunt serve: warning: no --api-key and --host " + host + ": anyone who reaches this port can generate");
        }
        out.flush();
    }

    /**
     * A model cut over ranks (--tp, --pp; threads or mpirun processes): world rank 0 loads its part, owns the
     * HTTP server and the queue and announces every generation; the other ranks load theirs and follow
     * ({@link ModelPeers}). Ends on SIGTERM or SIGINT (rank 0 stops serving, then ends the others), or when a
     * generation fails (a rank gone, say): the server then stops, with the failure's message, instead of
     * leaving clients to wait on ranks that will not answer.
     */
    private static int serveOnRanks(Path dir, String host, int port, ServeOptions opts, boolean force, RankLayout layout, PrintStream out)
            throws Exception {
        if (opts.speculative() && layout.pp() > 1) throw new Args.UsageException("serve --speculative needs one pipeline stage; drop it or --pp");
        var stopRequested = new CountDownLatch(1);
        var finished = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().name("exeunt-serve-shutdown").unstarted(() -> {
            stopRequested.countDown();
            try {
                finished.await(30, TimeUnit.SECONDS); // let rank 0 stop serving and release the other ranks
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        try {
            ModelParts.run("serve", layout, dir, force, (state, loaded) -> {
                if (state.worldRank() != 0) {
                    try (loaded) {
                        var tok = loaded.tokenizer();
                        ModelPeers.follow(state.world(), new Generator(loaded.model()), tok == null ? null : NewlineBan.of(tok));
                    }
                    return;
                }
                var peers = new ModelPeers(state.world());
                Server server;
                try {
                    server = Server.start(loaded, host, port, opts, peers);
                } catch (RuntimeException | java.io.IOException e) {
                    peers.shutdown();
                    throw e;
                }
                announce(server, dir, out, opts, host);
                while (!stopRequested.await(200, TimeUnit.MILLISECONDS) && server.failure() == null) {
                    // serving
                }
                Throwable failure = server.failure();
                server.stop();
                if (failure != null) throw new IllegalStateException("serving stopped: a generation failed on the ranks: " + Main.describe(failure), failure);
                peers.shutdown();
            });
        } finally {
            finished.countDown();
        }
        return 0;
    }
}
