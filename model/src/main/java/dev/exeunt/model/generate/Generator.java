package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.model.nn.Packed;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * KV-cached generation with early exit and KV recomputation (EARLY-EXIT.md section 3, method 1), for
 * several prompts at once, each exiting on its own.
 *
 * <p>Every layer has its own cache, filled for a prefix of positions; after a token exits at depth d,
 * layers d.. have not seen it. Its hidden state at depth d waits in that sequence's "band" for depth
 * d. The next token that goes deeper picks the band up at each layer, so every layer's cache is
 * filled for all pending positions in one batched pass with the current token. Sequences are packed
 * into one [rows, D] batch at every layer, so the weights are read once per layer for all of them.
 */
public final class Generator {
    private final EarlyExitModel model;
    private final int nLayers;

    /**
     * Timing of the last {@link #generate} call, and the rows the exits' own layers ran ({@code layer}
     * exits; prompt and decode): the work those exits cost, none for an exit that is not checked.
     * With speculative decoding, per exit (as in {@code model.exits()}): the drafts it made and how
     * many of them the full model accepted.
     */
    public record Stats(long promptTokens, double promptSeconds, long generatedTokens, double decodeSeconds, long exitLayerRows,
                        long[] drafted, long[] accepted) {
        /** Fraction of exit {@code e}'s drafts the full model accepted (NaN when it drafted none). */
        public double acceptanceRate(int e) {
            return drafted[e] == 0 ? Double.NaN : (double) accepted[e] / drafted[e];
        }

        public double promptTokensPerSecond() {
            return promptSeconds == 0 ? 0 : promptTokens / promptSeconds;
        }

        public double decodeTokensPerSecond() {
            return decodeSeconds == 0 ? 0 : generatedTokens / decodeSeconds;
        }
    }

    private Stats lastStats = new Stats(0, 0, 0, 0, 0, new long[0], new long[0]);
    private long exitLayerRows;
    private ForcedExits forced;

    public Generator(EarlyExitModel model) {
        this.model = model;
        this.nLayers = model.config().nLayers();
    }

    /** Takes exit decisions from {@code pattern} instead of the exits' confidence (a benchmark's forced exit rate); null: off. */
    public void forceExits(ForcedExits pattern) {
        this.forced = pattern;
    }

    public Stats lastStats() {
        return lastStats;
    }

    /** One sequence in flight: its tokens, caches and the pending hidden rows per depth. */
    private final class Sequence implements AutoCloseable {
        final int index;
        final int[] prompt;
        final List<GeneratedToken> out = new ArrayList<>();
        final KvCache[] layerCache;
        final KvCache[] exitCache;
        /** band[d]: hidden rows at depth d for positions [layerCache[d].length(), ...), or null. */
        final Tensor[] band;
        final SplittableRandom rng;
        int[] tokens;
        int length;
        String finish;
        /** top_p for the next token (decays with Megatron's top_p_decay). */
        double topP;

        Sequence(int index, int[] prompt, int capacity, long seed) {
            this.index = index;
            this.prompt = prompt;
            var c = model.config();
            layerCache = new KvCache[nLayers];
            for (int l = 0; l < nLayers; l++) layerCache[l] = new KvCache(model.device(), 1, capacity, c.nKvHeads(), c.headDim());
            exitCache = new KvCache[model.exits().size()];
            for (int e = 0; e < exitCache.length; e++) {
                if (model.exits().get(e).config().kind() == ExitKind.LAYER) {
                    exitCache[e] = new KvCache(model.device(), 1, capacity, c.nKvHeads(), c.headDim());
                }
            }
            band = new Tensor[nLayers + 1];
            rng = new SplittableRandom(seed + index);
            tokens = Arrays.copyOf(prompt, prompt.length + 16);
            length = prompt.length;
        }

        int lastToken() {
            return tokens[length - 1];
        }

        void append(int token) {
            if (length == tokens.length) tokens = Arrays.copyOf(tokens, tokens.length * 2);
            tokens[length++] = token;
        }

        /** Replaces the band at depth d with rows (copied out of the step's scope). */
        void setBand(int d, Tensor rows) {
            if (band[d] != null) band[d].close();
            band[d] = rows == null ? null : Ops.unowned(() -> {
                Tensor t = Tensor.empty(DType.F32, rows.device(), rows.shape());
                t.copyFrom(rows);
                return t;
            });
        }

        @Override
        public void close() {
            for (KvCache k : layerCache) k.close();
            for (KvCache k : exitCache) if (k != null) k.close();
            for (Tensor t : band) if (t != null) t.close();
        }
    }

    /** Generates for each prompt; the listener sees every token as it is produced. */
    public List<Generation> generate(List<int[]> prompts, GenerationConfig cfg, TokenListener listener) {
        if (prompts.isEmpty()) return List.of();
        var c = model.config();
        boolean[] active = activeExits(cfg);
        exitLayerRows = 0;
        List<Sequence> seqs = new ArrayList<>();
        try (var g = GradMode.noGrad()) {
            for (int i = 0; i < prompts.size(); i++) {
                int[] p = prompts.get(i);
                if (p.length == 0) throw new IllegalArgumentException("prompt " + i + " is empty (add a BOS token or some text)");
                if (p.length >= c.maxSeqLen()) {
                    throw new IllegalArgumentException("prompt " + i + " has " + p.length + " tokens; the model's context is " + c.maxSeqLen());
                }
                int capacity = (int) Math.min(c.maxSeqLen(), (long) p.length + cfg.maxNewTokens() + 1);
                Sequence s = new Sequence(i, p, capacity, cfg.seed());
                s.topP = cfg.topP();
                seqs.add(s);
            }
            long t0 = System.nanoTime();
            long promptTokens = prompts.stream().mapToLong(p -> p.length).sum();
            if (cfg.maxNewTokens() > 0) prefill(seqs, cfg, active, listener);
            else seqs.forEach(s -> s.finish = "length");
            long t1 = System.nanoTime();
            long generated = seqs.stream().filter(s -> !s.out.isEmpty()).count();
            while (true) {
                List<Sequence> running = seqs.stream().filter(s -> s.finish == null).toList();
                if (running.isEmpty()) break;
                decodeStep(running, cfg, active, listener);
                generated += running.size();
            }
            long t2 = System.nanoTime();
            lastStats = new Stats(promptTokens, (t1 - t0) / 1e9, generated, (t2 - t1) / 1e9, exitLayerRows,
                    new long[model.exits().size()], new long[model.exits().size()]);
            List<Generation> result = new ArrayList<>();
            for (Sequence s : seqs) result.add(new Generation(s.prompt, List.copyOf(s.out), s.finish));
            return result;
        } finally {
            seqs.forEach(Sequence::close);
        }
    }

    private boolean[] activeExits(GenerationConfig cfg) {
        boolean[] active = new boolean[model.exits().size()];
        if (!cfg.earlyExit()) return active;
        for (int e = 0; e < active.length; e++) {
            int layer = model.exits().get(e).config().layer();
            active[e] = cfg.exitLayers() == null || Arrays.stream(cfg.exitLayers()).anyMatch(x -> x == layer);
        }
        if (cfg.exitLayers() != null) {
            for (int layer : cfg.exitLayers()) {
                if (model.exits().stream().noneMatch(x -> x.config().layer() == layer)) {
                    throw new IllegalArgumentException("the model has no exit at layer " + layer + " (exits at "
                            + Arrays.toString(model.config().exits().stream().mapToInt(ExitConfig::layer).toArray()) + ")");
                }
            }
        }
        return active;
    }

    /** Runs every prompt through all layers (one packed batch), filling all caches, and emits the first token. */
    private void prefill(List<Sequence> seqs, GenerationConfig cfg, boolean[] active, TokenListener listener) {
        try (var scope = Scope.open()) {
            int total = seqs.stream().mapToInt(s -> s.prompt.length).sum();
            int[] ids = new int[total], pos = new int[total];
            List<Packed> packs = new ArrayList<>();
            int row = 0;
            for (Sequence s : seqs) {
                for (int t = 0; t < s.prompt.length; t++) {
                    ids[row + t] = s.prompt[t];
                    pos[row + t] = t;
                }
                packs.add(new Packed(row, s.prompt.length, 0, null));
                row += s.prompt.length;
            }
            Tensor x = model.embedPacked(ids, pos);
            Tensor[] split = {x};
            float[][] probs = cfg.exitProbs() ? new float[seqs.size()][] : null;
            if (probs != null) for (int i = 0; i < probs.length; i++) probs[i] = unreached();
            for (int d = 0; d <= nLayers; d++) {
                Tensor[] exitOut = fillExitLayerCaches(seqs, packs, x, d, active, cfg);
                if (probs != null) recordPrefillExitProbs(packs, split, exitOut, d, probs, cfg);
                if (d == nLayers) break;
                split = model.layers().get(d).forwardPacked(x, withCaches(packs, seqs, d));
                x = split[0];
            }
            for (int i = 0; i < seqs.size(); i++) {
                Packed p = packs.get(i);
                emit(seqs.get(i), finalLogits(x.narrow(0, p.row() + p.count() - 1, 1), cfg), nLayers, probs == null ? null : probs[i], cfg, listener);
            }
        }
    }

    /** Exit probabilities of a token before any head has seen it: NaN = not reached. */
    private float[] unreached() {
        float[] p = new float[model.exits().size() + 1];
        Arrays.fill(p, Float.NaN);
        return p;
    }

    /** With exit probabilities asked for: every exit reading depth d, on the last prompt row of each sequence. */
    private void recordPrefillExitProbs(List<Packed> packs, Tensor[] split, Tensor[] exitOut, int d, float[][] probs, GenerationConfig cfg) {
        for (int e = 0; e < model.exits().size(); e++) {
            Exit exit = model.exits().get(e);
            if (exit.config().inputDepth() != d) continue;
            for (int i = 0; i < packs.size(); i++) {
                int last = packs.get(i).row() + packs.get(i).count() - 1;
                Tensor h = switch (exit.config().kind()) {
                    case LAYER -> exitOut[e].narrow(0, last, 1);
                    case MLP -> exit.hidden(new Tensor[] {split[1].narrow(0, last, 1), split[2].narrow(0, last, 1)}, 0, null);
                    default -> split[0].narrow(0, last, 1);
                };
                probs[i][e] = NN.topProbability(usable(exit.logits(h), cfg))[0].item();
            }
        }
    }

    /**
     * Exits of kind layer keep their own cache: every group of rows passing their depth goes through
     * them. Returns, per such exit, its packed output rows (or null where no exit reads this depth).
     */
    private Tensor[] fillExitLayerCaches(List<Sequence> seqs, List<Packed> packs, Tensor x, int depth, boolean[] active, GenerationConfig cfg) {
        Tensor[] out = new Tensor[model.exits().size()];
        for (int e = 0; e < out.length; e++) {
            Exit exit = model.exits().get(e);
            if (exit.config().kind() != ExitKind.LAYER || exit.config().inputDepth() != depth) continue;
            if (!(active[e] || cfg.exitProbs())) continue; // never checked in this call: its layer and cache are not needed
            exitLayerRows += x.dim(0);
            List<Packed> withExitCache = new ArrayList<>();
            for (int i = 0; i < packs.size(); i++) {
                Packed p = packs.get(i);
                withExitCache.add(new Packed(p.row(), p.count(), p.startPos(), seqs.get(i).exitCache[e]));
            }
            out[e] = exit.layer().forwardPacked(x, withExitCache)[0];
        }
        return out;
    }

    private static List<Packed> withCaches(List<Packed> packs, List<Sequence> seqs, int layer) {
        List<Packed> out = new ArrayList<>();
        for (int i = 0; i < packs.size(); i++) {
            Packed p = packs.get(i);
            out.add(new Packed(p.row(), p.count(), p.startPos(), seqs.get(i).layerCache[layer]));
        }
        return out;
    }

    /**
     * A running sequence's state within one decode step: its group of hidden rows at the current depth
     * (positions [start, current], the current token last), and for exits at this depth the last rows
     * they read (mlp: h and norm2(h) of the layer just run; layer: the exit layer's output).
     */
    private static final class Group {
        final Sequence seq;
        Tensor rows;
        int start;
        Tensor[] mlpInput;
        Tensor[] exitLayerOut;
        /** The top probability of each head this token reached, when asked for (else null). */
        final float[] probs;

        Group(Sequence seq, Tensor rows, int start, float[] probs) {
            this.seq = seq;
            this.rows = rows;
            this.start = start;
            this.probs = probs;
        }

        Tensor last() {
            return rows.narrow(0, rows.dim(0) - 1, 1);
        }
    }

    /** One new token for each running sequence. */
    private void decodeStep(List<Sequence> running, GenerationConfig cfg, boolean[] active, TokenListener listener) {
        try (var scope = Scope.open()) {
            int n = running.size();
            int[] ids = new int[n], pos = new int[n];
            for (int i = 0; i < n; i++) {
                Sequence s = running.get(i);
                ids[i] = s.tokens[s.length - 1];
                pos[i] = s.length - 1;
            }
            Tensor emb = model.embedPacked(ids, pos);
            List<Group> alive = new ArrayList<>();
            List<Packed> packs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                alive.add(new Group(running.get(i), emb.narrow(0, i, 1), pos[i], cfg.exitProbs() ? unreached() : null));
                packs.add(new Packed(i, 1, pos[i], null));
            }
            attachExitLayerOutputs(alive, packs, fillExitLayerCaches(running, packs, emb, 0, active, cfg));
            int[] checkRank = new int[active.length]; // each active exit's place among the checked ones (forced decisions)
            int checked = 0;
            for (int e = 0; e < active.length; e++) checkRank[e] = active[e] ? checked++ : -1;
            for (int d = 0; d <= nLayers && !alive.isEmpty(); d++) {
                // 1. Exits reading depth d, in order; a sequence that exits leaves its group in band[d].
                //    Inactive exits run only to record their probabilities, when asked for.
                for (int e = 0; e < active.length && !alive.isEmpty(); e++) {
                    Exit exit = model.exits().get(e);
                    if (!(active[e] || cfg.exitProbs()) || exit.config().inputDepth() != d) continue;
                    // One batched head for every alive sequence's current token.
                    Tensor[] hidden = new Tensor[alive.size()];
                    for (int i = 0; i < hidden.length; i++) {
                        Group g = alive.get(i);
                        hidden[i] = switch (exit.config().kind()) {
                            case LAYER -> g.exitLayerOut[e];
                            case MLP -> exit.hidden(g.mlpInput, 0, null);
                            default -> g.last();
                        };
                    }
                    Tensor logits = usable(exit.logits(hidden.length == 1 ? hidden[0] : Ops.cat(0, hidden)), cfg);
                    Tensor[] top = NN.topProbability(logits);
                    float[] maxProb = top[0].toFloatArray();
                    int[] argmax = top[1].toIntArray();
                    List<Group> still = new ArrayList<>();
                    for (int i = 0; i < alive.size(); i++) {
                        Group g = alive.get(i);
                        if (g.probs != null) g.probs[e] = maxProb[i];
                        boolean fires = forced != null ? active[e] && forced.choice(g.seq.index, g.seq.length, checked) == checkRank[e]
                                : active[e] && Math.log(maxProb[i]) >= Math.log(cfg.threshold());
                        if (fires) {
                            Sequence s = g.seq;
                            // At the last depth every layer has seen the token: nothing deeper will need its rows.
                            if (d < nLayers) s.setBand(d, s.band[d] == null ? g.rows : Ops.cat(0, s.band[d], g.rows));
                            emit(s, logits.narrow(0, i, 1), argmax[i], maxProb[i], exit.config().layer(), g.probs, cfg, listener);
                        } else {
                            still.add(g);
                        }
                    }
                    alive = still;
                }
                if (d == nLayers || alive.isEmpty()) break;
                // 2. Layer d over every sequence's pending band plus its group, packed into one batch.
                packs = new ArrayList<>();
                List<Tensor> parts = new ArrayList<>();
                List<Sequence> seqs = new ArrayList<>();
                int row = 0;
                for (Group g : alive) {
                    Sequence s = g.seq;
                    if (s.band[d] != null) {
                        g.rows = Ops.cat(0, s.band[d], g.rows);
                        g.start = s.layerCache[d].length();
                        s.setBand(d, null);
                    }
                    if (g.start != s.layerCache[d].length()) {
                        throw new IllegalStateException("KV cache of layer " + d + " holds " + s.layerCache[d].length()
                                + " positions but the pending group starts at " + g.start);
                    }
                    packs.add(new Packed(row, g.rows.dim(0), g.start, s.layerCache[d]));
                    parts.add(g.rows);
                    seqs.add(s);
                    row += g.rows.dim(0);
                }
                Tensor x = parts.size() == 1 ? parts.get(0) : Ops.cat(0, parts.toArray(Tensor[]::new));
                Tensor[] split = model.layers().get(d).forwardPacked(x, packs);
                for (int i = 0; i < alive.size(); i++) {
                    Packed p = packs.get(i);
                    Group g = alive.get(i);
                    g.rows = split[0].narrow(0, p.row(), p.count());
                    int last = p.row() + p.count() - 1;
                    g.mlpInput = new Tensor[] {split[1].narrow(0, last, 1), split[2].narrow(0, last, 1)};
                }
                attachExitLayerOutputs(alive, packs, fillExitLayerCaches(seqs, packs, split[0], d + 1, active, cfg));
            }
            // 3. Sequences that went through every layer: the final head, batched; all their positions are now full depth.
            if (!alive.isEmpty()) {
                Tensor[] last = alive.stream().map(Group::last).toArray(Tensor[]::new);
                Tensor logits = finalLogits(last.length == 1 ? last[0] : Ops.cat(0, last), cfg);
                Tensor[] top = NN.topProbability(logits);
                float[] maxProb = top[0].toFloatArray();
                int[] argmax = top[1].toIntArray();
                for (int i = 0; i < alive.size(); i++) {
                    Group g = alive.get(i);
                    emit(g.seq, logits.narrow(0, i, 1), argmax[i], maxProb[i], nLayers, g.probs, cfg, listener);
                }
            }
        }
    }

    private void attachExitLayerOutputs(List<Group> groups, List<Packed> packs, Tensor[] outs) {
        for (int i = 0; i < groups.size(); i++) {
            Packed p = packs.get(i);
            Tensor[] mine = new Tensor[outs.length];
            for (int e = 0; e < outs.length; e++) {
                if (outs[e] != null) mine[e] = outs[e].narrow(0, p.row() + p.count() - 1, 1);
            }
            groups.get(i).exitLayerOut = mine;
        }
    }

    private Tensor finalLogits(Tensor lastRow, GenerationConfig cfg) {
        return usable(model.finalLogits(lastRow), cfg);
    }

    /**
     * The logits of ids the tokenizer can decode: a head padded past the tokenizer's vocabulary has
     * rows no text maps to, so they are cut off before the exit decision and sampling see them.
     */
    private static Tensor usable(Tensor logits, GenerationConfig cfg) {
        int limit = cfg.vocabLimit();
        return limit > 0 && limit < logits.dim(1) ? logits.narrow(1, 0, limit).contiguous() : logits;
    }

    private void emit(Sequence s, Tensor logitsRow, int exitLayer, float[] probs, GenerationConfig cfg, TokenListener listener) {
        Tensor[] top = NN.topProbability(logitsRow);
        emit(s, logitsRow, top[1].toIntArray()[0], top[0].item(), exitLayer, probs, cfg, listener);
    }

    /**
     * Records the next token from one row of logits. Greedy decoding uses the row's top index and
     * probability (computed by the backend, batched); sampling copies the row to the host.
     */
    private void emit(Sequence s, Tensor logitsRow, int greedyToken, float greedyProb, int exitLayer, float[] probs, GenerationConfig cfg,
                      TokenListener listener) {
        if (Float.isNaN(greedyProb)) {
            throw new IllegalStateException("the model produced NaN logits; the weights are corrupt or do not match the config");
        }
        int[] banned = cfg.newlineBan() == null ? null : cfg.newlineBan().bannedAfter(s.lastToken());
        int token;
        float prob;
        if (cfg.temperature() == 0 && banned == null) {
            token = greedyToken;
            prob = greedyProb;
        } else {
            float[] logits = logitsRow.toFloatArray();
            if (banned != null) Sampler.ban(logits, banned);
            token = Sampler.sample(logits, cfg, s.topP, s.rng);
            prob = Sampler.probability(logits, token);
        }
        s.topP = cfg.decayedTopP(s.topP);
        if (probs != null) probs[probs.length - 1] = exitLayer == nLayers ? greedyProb : Float.NaN;
        var t = new GeneratedToken(token, exitLayer, prob, probs);
        s.out.add(t);
        s.append(token);
        boolean go = listener.onToken(s.index, t);
        if (cfg.eosId() >= 0 && token == cfg.eosId()) s.finish = "eos";
        else if (!go) s.finish = "stop";
        else if (s.out.size() >= cfg.maxNewTokens()) s.finish = "length";
        else if (s.length >= s.layerCache[0].capacity()) s.finish = "context";
    }
}
