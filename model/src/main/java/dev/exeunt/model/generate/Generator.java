package dev.exeunt.model.generate;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * KV-cached generation with early exit and KV recomputation (EARLY-EXIT.md section 3, method 1), for
 * several prompts at once, each exiting on its own, and lossless self-speculative decoding.
 *
 * <p>Every layer has its own cache, filled for a prefix of positions; after a token exits at depth d,
 * layers d.. have not seen it. Its hidden state at depth d waits in that sequence's "band" for depth
 * d. The next token that goes deeper picks the band up at each layer, so every layer's cache is
 * filled for all pending positions in one batched pass with the current token. Sequences are packed
 * into one batch at every layer, so the weights are read once per layer for all of them.
 *
 * <p>Speculative ({@link GenerationConfig#speculative}): a token that exits is only a draft. The pass
 * that fills the deep layers for the drafts' positions computes their full-depth states anyway, so the
 * final head on every row of it gives the full model's choice at each draft: the longest agreeing
 * prefix is kept, the first disagreement replaced by the full model's token, and the caches cut back
 * to it. The output is the full model's, token for token (greedy) or in distribution (sampling).
 *
 * <p>On the CPU the prompt and every decode step go through {@link LeanDecodeStep} (preallocated
 * buffers, kernels whose result for a row does not depend on the rows beside it): one set of kernels,
 * which the prompt's pass also gets the JIT to compile before decoding starts. Elsewhere (CUDA,
 * tensor-parallel shards) the prompt goes through the tensor ops and decoding through {@link OpDecodeStep}.
 */
public final class Generator {
    private final EarlyExitModel model;
    private final int nLayers;
    private final boolean lean;

    /**
     * Timing of the last {@link #generate} call, and the rows the exits' own layers ran ({@code layer}
     * exits; prompt and decode): the work those exits cost, none for an exit that is not checked.
     * Per exit (as in {@code model.exits()}): the decode tokens its head examined, and with speculative
     * decoding the drafts it made and how many of them the full model accepted.
     */
    public record Stats(long promptTokens, double promptSeconds, long generatedTokens, double decodeSeconds, long exitLayerRows,
                        long[] checks, long[] drafted, long[] accepted) {
        public double promptTokensPerSecond() {
            return promptSeconds == 0 ? 0 : promptTokens / promptSeconds;
        }

        public double decodeTokensPerSecond() {
            return decodeSeconds == 0 ? 0 : generatedTokens / decodeSeconds;
        }

        /** Fraction of exit {@code e}'s drafts the full model accepted (NaN when it drafted none). */
        public double acceptanceRate(int e) {
            return drafted[e] == 0 ? Double.NaN : (double) accepted[e] / drafted[e];
        }
    }

    private Stats lastStats = new Stats(0, 0, 0, 0, 0, new long[0], new long[0], new long[0]);
    private ForcedExits forced;
    private EeMethod method = EeMethod.RECOMPUTE;
    private Consumer<StageWork> stageWork;
    private Consumer<List<DecodeSequence>> inspector;

    public Generator(EarlyExitModel model) {
        this.model = model;
        this.nLayers = model.config().nLayers();
        this.lean = LeanDecodeStep.supports(model);
    }

    /** Whether this model can decode speculatively: on one pipeline stage (the CPU decode path, or the tensor ops: CUDA, tensor-parallel shards). */
    public static boolean canSpeculate(EarlyExitModel model) {
        return model.parameters().pipeline().stages() == 1;
    }

    /** How skipped layers get an exited token's keys and values; {@link EeMethod#PIPELINE} needs pipeline stages. */
    public void useMethod(EeMethod m) {
        if (m == EeMethod.PIPELINE && model.parameters().pipeline().stages() == 1) {
            throw new IllegalArgumentException("--ee-method pipeline needs pipeline stages (--pp > 1); one stage recomputes skipped layers");
        }
        this.method = m;
    }

    /** With {@link EeMethod#PIPELINE}: reports each stretch of this stage's work to {@code sink} (null: off), for a benchmark's overlap. */
    public void recordStageWork(Consumer<StageWork> sink) {
        this.stageWork = sink;
    }

    /** Takes exit decisions from {@code pattern} instead of the exits' confidence (a benchmark's forced exit rate); null: off. */
    public void forceExits(ForcedExits pattern) {
        this.forced = pattern;
    }

    public Stats lastStats() {
        return lastStats;
    }

    /**
     * Sees, at the end of each call and before they are freed, each sequence's layer caches (indexed by
     * layer of the whole model; null for another pipeline stage's): what tests compare between methods.
     */
    public void inspectLayerCaches(Consumer<List<dev.exeunt.model.nn.KvCache[]>> body) {
        this.inspector = body == null ? null : seqs -> body.accept(seqs.stream().map(s -> s.layerCache).toList());
    }

    /** Tests: sees the sequences (their caches) at the end of each call, before they are freed. */
    void inspectSequences(Consumer<List<DecodeSequence>> body) {
        this.inspector = body;
    }

    /** Generates for each prompt; the listener sees every token as it is produced. */
    public List<Generation> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        if (prompts.isEmpty()) return List.of();
        int stages = model.parameters().pipeline().stages();
        if (cfg.kvFill() == GenerationConfig.KvFill.PROPAGATE && !lean) {
            throw new IllegalArgumentException("kv fill propagate runs on the CPU decode path (one tensor-parallel rank, one pipeline stage, "
                    + "F32, Q8_0/Q4_0 or Q2_K/Q4_K/Q5_K/Q6_K weights); this model is on " + model.device() + " with tensor parallel size " + model.tensorParallel().size()
                    + (stages > 1 ? " and " + stages + " pipeline stages" : ""));
        }
        if (cfg.speculative() && stages > 1) {
            throw new IllegalArgumentException("speculative decoding is not built under pipeline parallelism (" + stages + " stages): "
                    + "use --ee-method pipeline, or one stage (tensor parallelism speculates)");
        }
        if (stages > 1 && cfg.exitProbs()) {
            throw new IllegalArgumentException("exit probabilities (print_max_prob) are not available under pipeline parallelism");
        }
        var c = model.config();
        Tensor[] checkHeads = DraftHeads.of(model, cfg.speculative());
        DecodeCall call = new DecodeCall(model, cfg, listener, forced, checkHeads);
        List<DecodeSequence> seqs = new ArrayList<>();
        try (var g = GradMode.noGrad(); DecodeBuffers buf = lean ? new DecodeBuffers(c, model.exits().size()) : null) {
            for (int i = 0; i < prompts.size(); i++) {
                int[] p = prompts.get(i);
                if (p.length == 0) throw new IllegalArgumentException("prompt " + i + " is empty (add a BOS token or some text)");
                if (p.length >= c.maxSeqLen()) {
                    throw new IllegalArgumentException("prompt " + i + " has " + p.length + " tokens; the model's context is " + c.maxSeqLen());
                }
                // Checked here, on every rank: under pipeline parallelism only the first stage embeds the ids.
                for (int id : p) {
                    if (id < 0 || id >= c.vocabSize()) {
                        throw new IllegalArgumentException("prompt " + i + ": token id " + id + " is out of range for vocabulary size " + c.vocabSize());
                    }
                }
                int capacity = (int) Math.min(c.maxSeqLen(), (long) p.length + cfg.maxNewTokens() + 1);
                seqs.add(new DecodeSequence(model, i, p, capacity, cfg.seed()));
            }
            LeanDecodeStep leanStep = lean ? new LeanDecodeStep(model, call, buf, checkHeads) : null;
            OpDecodeStep opStep = lean ? null : new OpDecodeStep(call);
            long t0 = System.nanoTime();
            long promptTokens = prompts.stream().mapToLong(p -> p.length).sum();
            if (cfg.maxNewTokens() == 0) seqs.forEach(s -> s.finish = "length");
            else if (lean) leanStep.prefill(seqs);
            else {
                opStep.prefill(seqs);
                StopAgreement.overRanks(seqs, model.tensorParallel(), model.parameters().pipeline());
            }
            long t1 = System.nanoTime();
            if (method == EeMethod.PIPELINE) {
                new PipelineDecodeStep(call, stageWork).decode(seqs);
            } else {
                while (true) {
                    List<DecodeSequence> running = seqs.stream().filter(s -> s.finish == null).toList();
                    if (running.isEmpty()) break;
                    if (lean) {
                        leanStep.run(running);
                    } else {
                        opStep.run(running);
                        StopAgreement.overRanks(running, model.tensorParallel(), model.parameters().pipeline());
                    }
                }
            }
            long t2 = System.nanoTime();
            long generated = seqs.stream().mapToLong(s -> s.out.size()).sum();
            lastStats = new Stats(promptTokens, (t1 - t0) / 1e9, generated, (t2 - t1) / 1e9, call.exitLayerRows, call.checks, call.drafted,
                    call.accepted);
            if (inspector != null) inspector.accept(seqs);
            List<Generation> result = new ArrayList<>();
            for (DecodeSequence s : seqs) result.add(new Generation(s.prompt, List.copyOf(s.out), s.finish));
            return result;
        } finally {
            seqs.forEach(DecodeSequence::close);
        }
    }
}
