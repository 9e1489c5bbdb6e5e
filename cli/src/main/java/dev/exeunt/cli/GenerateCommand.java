package dev.exeunt.cli;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.generate.Acceptance;
import dev.exeunt.model.generate.DecodeWarmUp;
import dev.exeunt.model.generate.EeMethod;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.tokenizer.TokenDecoder;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.model.ModelLoader;
import dev.exeunt.tensor.Device;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;

final class GenerateCommand implements Main.Command {
    public String summary() {
        return "generate text with KV cache and early exit; reports tokens/s and which exit produced each token";
    }

    public String usage() {
        return """
                usage: exeunt generate --model DIR|FILE.gguf (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N (64)]
                                       [--temperature T (0 = greedy)] [--top-k K] [--top-p P] [--seed N]
                                       [--threshold X (1 = no early exit)] [--exits 4,8 (active exit layers)]
                                       [--speculative [--draft-max N (%d)]] [--kv-fill recompute|propagate] [--adaptive]
                                       [--show-exits] [--no-warmup] [--device cpu|cuda[:N]] [--force] [--json]
                                       [--tp T] [--pp P [--pipeline-layers L,L,..] [--ee-method recompute|pipeline]] [--engine local|mpi]
                  --show-exits marks each token with the 1-based layer of the exit that produced it: [2]token.
                  --speculative: lossless self-speculative decoding. A token that exits (--threshold) is a draft; the next
                    token through every layer verifies the pending drafts, so the output is the full model's (token for
                    token when greedy, in distribution when sampling). At most --draft-max drafts wait for verification.
                    Prints each exit's drafts and acceptances to stderr (with --threshold 1 nothing is drafted).
                  --kv-fill propagate (CALM): the layers a token skips get its keys and values from the exited hidden
                    state at once (their norm and k/v projections only) instead of recomputing them with the next deep
                    token (recompute, the default). Cheaper when decode is compute-bound; the output is no longer exact.
                  --adaptive: an exit whose exit rate does not pay for its check is not checked for a while.
                  --no-warmup: skip the warm-up: by default the model first generates from the prompt, output discarded,
                    until the JIT has compiled the decode path (at most %s s), so the timings are the compiled path's.
                  --tp T shards the model over T ranks (heads, ffn and vocabulary split; each head's logits gathered),
                    --pp P cuts it into P stages; local ranks are threads of this process, under mpirun processes
                    (mpirun -np T*P ./exeunt generate ... --tp T --pp P). Tokens and exits are one rank's.
                  --ee-method (with --pp): recompute (default) fills a skipped layer's cache with the next token that
                    goes deeper; pipeline (EE-LLM's pipeline-based inference) lets the stages after an exit fill it at
                    once while stage 0 starts the next token. --speculative works with --tp; under --pp it falls back
                    to --ee-method pipeline, saying so. The warm-up needs one rank.
                  --json prints {tokens, exits, text, tokens_per_s, prompt_tokens_per_s, finish_reason, speculative,
                    acceptance: [{layer, drafted, accepted}] per exit}.
                  --force: use a tokenizer.json that is not the one the model was trained with.""".formatted(GenerationConfig.DEFAULT_DRAFT_MAX, (int) WARMUP_SECONDS);
    }

    /**
     * {@code --speculative [--draft-max N]}, {@code --kv-fill recompute|propagate} and {@code --adaptive}
     * applied to {@code cfg}; a draft maximum below 1, or one given without --speculative (where it would
     * do nothing), is a usage error, as is speculating with propagated caches.
     */
    static GenerationConfig speculation(Args a, GenerationConfig cfg) {
        boolean on = a.getBool("speculative", false);
        int draftMax = a.getInt("draft-max", GenerationConfig.DEFAULT_DRAFT_MAX);
        if (a.has("draft-max") && !on) throw new Args.UsageException("--draft-max applies to --speculative decoding; add --speculative");
        if (draftMax < 1) throw new Args.UsageException("--draft-max must be >= 1 (drafts awaiting verification), got " + draftMax);
        GenerationConfig.KvFill kvFill = kvFill(a.get("kv-fill", "recompute"));
        if (on && kvFill == GenerationConfig.KvFill.PROPAGATE) {
            throw new Args.UsageException("--speculative verifies drafts through recomputed caches; it cannot be combined with --kv-fill propagate");
        }
        return cfg.withSpeculative(on, draftMax).withKvFill(kvFill).withAdaptive(a.getBool("adaptive", false));
    }

    /** The value of --kv-fill. */
    static GenerationConfig.KvFill kvFill(String fill) {
        return switch (fill.trim()) {
            case "recompute" -> GenerationConfig.KvFill.RECOMPUTE;
            case "propagate" -> GenerationConfig.KvFill.PROPAGATE;
            default -> throw new Args.UsageException("--kv-fill must be recompute or propagate, got " + fill);
        };
    }

    /** Most seconds of decode warm-up before generating (llama.cpp warms up too; --no-warmup skips it). */
    static final double WARMUP_SECONDS = 8;

    public int run(String[] argv, PrintStream out) throws Exception {
        return run(argv, out, System.err);
    }

    /** What to generate, as the options gave it. */
    private record Request(Path dir, String prompt, int[] promptIds, GenerationConfig cfg, boolean json, boolean show, boolean force) {}

    /** {@code err} gets the speculative acceptance lines (stdout holds only the text). */
    @Override
    public int run(String[] argv, PrintStream out, PrintStream err) throws Exception {
        var a = new Args(argv, RankLayout.withFlags(Set.of("json", "show-exits", "force", "speculative", "no-warmup", "adaptive")));
        boolean warmUp = !a.getBool("no-warmup", false);
        boolean json = a.getBool("json", false), show = a.getBool("show-exits", false), force = a.getBool("force", false);
        Path dir = Path.of(a.require("model", "a checkpoint directory"));
        String prompt = a.get("prompt", null);
        int[] promptIds = a.getInts("prompt-ids", null);
        if ((prompt == null) == (promptIds == null)) throw new Args.UsageException("give exactly one of --prompt and --prompt-ids");
        int maxNew = a.getInt("max-new-tokens", 64);
        double temperature = a.getDouble("temperature", 0);
        if (!(temperature == 0 || temperature >= GenerationConfig.MIN_TEMPERATURE) || !Double.isFinite(temperature)) {
            throw new Args.UsageException("--temperature must be 0 (greedy) or >= " + GenerationConfig.MIN_TEMPERATURE + " (smaller ones overflow the softmax), got "
                    + temperature);
        }
        if (maxNew < 0) throw new Args.UsageException("--max-new-tokens must be >= 0, got " + maxNew);
        var cfg = new GenerationConfig(maxNew, temperature, a.getInt("top-k", 0), a.getDouble("top-p", 1), a.getLong("seed", 0),
                a.getDouble("threshold", 1.0), a.getInts("exits", null), -1);
        cfg = speculation(a, cfg);
        Device device = Device.parse(a.get("device", "cpu"));
        RankLayout layout = RankLayout.parse(a);
        EeMethod method;
        try {
            method = EeMethod.parse(a.get("ee-method", "recompute"));
        } catch (IllegalArgumentException e) {
            throw new Args.UsageException(e.getMessage());
        }
        a.checkAllUsed();
        final var request = new Request(dir, prompt, promptIds, cfg, json, show, force);
        if (layout.isOneRank()) {
            if (method == EeMethod.PIPELINE) throw new Args.UsageException("--ee-method pipeline needs pipeline stages (--pp > 1)");
            try (var loaded = ModelLoader.load(dir, device, force)) {
                generateOn(loaded, request, method, warmUp, true, out, err);
            }
            return 0;
        }
        if (device.kind() != Device.Kind.CPU) throw new Args.UsageException("--tp and --pp generate on the CPU (--device cpu)");
        if (cfg.speculative() && layout.pp() > 1) {
            // EE-LLM's pipeline method is what pp offers instead: thresholded, so no longer the full model's output.
            err.println("exeunt: --speculative is not built under --pp; generating with --ee-method pipeline instead (thresholded early "
                    + "exit: tokens may differ from the full model's)");
            var thresholded = new Request(dir, prompt, promptIds, cfg.withSpeculative(false, cfg.draftMax()), json, show, force);
            return generateOnRanks(layout, thresholded, EeMethod.PIPELINE, out, err);
        }
        return generateOnRanks(layout, request, method, out, err);
    }

    /** Every rank of the layout generates on its part of the checkpoint; world rank 0 prints. */
    private static int generateOnRanks(RankLayout layout, Request r, EeMethod method, PrintStream out, PrintStream err) throws Exception {
        // The JIT warm-up stops when compiling settles, which differs between ranks: under a layout it would desynchronise them.
        ModelParts.run("generate", layout, r.dir(), r.force(), (state, part) -> {
            try (part) {
                generateOn(part, r, method, false, state.worldRank() == 0, out, err);
            }
        });
        return 0;
    }

    /** Generates on one rank's model (the whole model, or its shard or stage); the rank that {@code prints} writes the output. */
    private static void generateOn(ModelCheckpoint.Loaded loaded, Request r, EeMethod method, boolean warmUp, boolean prints, PrintStream out,
                                   PrintStream err) {
        var tok = loaded.tokenizer();
        var model = loaded.model();
        if (r.prompt() != null && tok == null) throw new IllegalArgumentException(r.dir() + " has no tokenizer.json; use --prompt-ids");
        int[] ids = r.prompt() != null ? tok.encode(r.prompt(), tok.bosId().isPresent()) : r.promptIds();
        GenerationConfig.checkFits("--max-new-tokens", r.cfg().maxNewTokens(), ids.length, model.config().maxSeqLen());
        var cfg = r.cfg();
        if (tok != null && tok.eosId().isPresent()) cfg = cfg.withEos(tok.eosId().getAsInt());
        if (tok != null && tok.vocabSize() < model.config().vocabSize()) cfg = cfg.withVocabLimit(tok.vocabSize()); // padding rows
        var gen = new Generator(model);
        gen.useMethod(method);
        if (warmUp) {
            double secs = DecodeWarmUp.onModel(gen, List.of(ids), List.of(cfg), WARMUP_SECONDS);
            err.printf(Locale.ROOT, "exeunt: warmed up the JIT on the model in %.1f s (--no-warmup skips)%n", secs);
        }
        boolean text = prints && !r.json();
        TokenDecoder dec = tok == null ? null : primed(tok, ids);
        if (text && r.prompt() != null) out.print(r.prompt());
        var result = gen.generate(List.of(ids), cfg, (s, t) -> {
            if (text) {
                String piece = dec == null ? " " + t.token() : dec.append(t.token());
                out.print(r.show() ? "[" + t.exitLayer() + "]" + piece : piece);
                out.flush();
            }
            return true;
        }).get(0);
        if (!prints) return;
        var st = gen.lastStats();
        // A pipeline stage holds only its own exits; nothing is drafted there (speculative decoding needs one stage).
        var acceptance = model.exits().size() == model.config().exits().size() ? Acceptance.of(model, st)
                : model.config().exits().stream().map(e -> new Acceptance(e.layer(), 0, 0)).toList();
        if (r.json()) {
            String whole = "";
            if (tok != null) {
                var d = primed(tok, ids);
                whole = d.append(result.tokenIds()) + d.flush();
            }
            out.printf(Locale.ROOT, "{\"tokens\":%s,\"exits\":%s,\"text\":%s,\"tokens_per_s\":%.2f,\"prompt_tokens_per_s\":%.2f,\"finish_reason\":%s,"
                            + "\"speculative\":%b,\"acceptance\":%s}%n",
                    Json.ints(result.tokenIds()), Json.ints(result.exitLayers()), Json.quote(whole), st.decodeTokensPerSecond(),
                    st.promptTokensPerSecond(), Json.quote(result.finishReason()), cfg.speculative(), Acceptance.toJson(acceptance));
        } else {
            if (dec != null) out.print(dec.flush());
            out.printf(Locale.ROOT, "%n%n[%d tokens, %.1f tokens/s decode, prompt %.1f tokens/s, finish: %s]%n",
                    result.tokens().size(), st.decodeTokensPerSecond(), st.promptTokensPerSecond(), result.finishReason());
            out.flush();
            if (cfg.speculative()) for (var x : acceptance) err.println(x.line());
        }
    }

    /**
     * A decoder that has seen the prompt, so the generated text decodes as the continuation it is:
     * SentencePiece strips the leading space only at the very start of a text, not of the first
     * generated token ("France is" + " Paris", not "France isParis").
     */
    private static TokenDecoder primed(Tokenizer tok, int[] prompt) {
        var dec = new TokenDecoder(tok, true);
        dec.append(prompt); // its text is dropped; bytes of a character the prompt leaves unfinished stay pending
        return dec;
    }
}
