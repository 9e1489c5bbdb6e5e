package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.Packed;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;

/**
 * One decode step through the tensor ops, for models the CPU decode path does not run (a CUDA device,
 * tensor-parallel shards): the same method as {@link LeanDecodeStep} (exits checked per depth, bands of
 * pending rows joined at each layer), one op per tensor, without speculative decoding.
 */
final class OpDecodeStep {
    private final EarlyExitModel model;
    private final DecodeCall call;
    private final GenerationConfig cfg;
    private final boolean[] active;
    private final int nLayers;

    OpDecodeStep(DecodeCall call) {
        this.call = call;
        this.model = call.model;
        this.cfg = call.cfg;
        this.active = call.active;
        this.nLayers = call.nLayers;
    }

    /**
     * Exits of kind layer keep their own cache: every group of rows passing their depth goes through
     * them. Returns, per such exit, its packed output rows (or null where no exit reads this depth).
     */
    static Tensor[] fillExitLayerCaches(DecodeCall call, List<DecodeSequence> seqs, List<Packed> packs, Tensor x, int depth) {
        EarlyExitModel model = call.model;
        Tensor[] out = new Tensor[model.exits().size()];
        for (int e = 0; e < out.length; e++) {
            Exit exit = model.exits().get(e);
            if (exit.config().kind() != ExitKind.LAYER || exit.config().inputDepth() != depth) continue;
            if (!(call.active[e] || call.cfg.exitProbs())) continue; // never checked in this call: its layer and cache are not needed
            call.exitLayerRows += x.dim(0);
            List<Packed> withExitCache = new ArrayList<>();
            for (int i = 0; i < packs.size(); i++) {
                Packed p = packs.get(i);
                withExitCache.add(new Packed(p.row(), p.count(), p.startPos(), seqs.get(i).exitCache[e]));
            }
            out[e] = exit.layer().forwardPacked(x, withExitCache)[0];
        }
        return out;
    }

    static List<Packed> withCaches(List<Packed> packs, List<DecodeSequence> seqs, int layer) {
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
        final DecodeSequence seq;
        Tensor rows;
        int start;
        Tensor[] mlpInput;
        Tensor[] exitLayerOut;
        /** The top probability of each head this token reached, when asked for (else null). */
        final float[] probs;

        Group(DecodeSequence seq, Tensor rows, int start, float[] probs) {
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
    void run(List<DecodeSequence> running) {
        try (var scope = Scope.open()) {
            int n = running.size();
            int[] ids = new int[n], pos = new int[n];
            for (int i = 0; i < n; i++) {
                DecodeSequence s = running.get(i);
                ids[i] = s.tokens[s.length - 1];
                pos[i] = s.length - 1;
            }
            Tensor emb = model.embedPacked(ids, pos);
            List<Group> alive = new ArrayList<>();
            List<Packed> packs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                alive.add(new Group(running.get(i), emb.narrow(0, i, 1), pos[i], cfg.exitProbs() ? call.unreached() : null));
                packs.add(new Packed(i, 1, pos[i], null));
            }
            attachExitLayerOutputs(alive, packs, fillExitLayerCaches(call, running, packs, emb, 0));
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
                    call.checks[e] += hidden.length;
                    Tensor logits = usable(call, exit.logits(hidden.length == 1 ? hidden[0] : Ops.cat(0, hidden)));
                    Tensor[] top = NN.topProbability(logits);
                    float[] maxProb = top[0].toFloatArray();
                    int[] argmax = top[1].toIntArray();
                    List<Group> still = new ArrayList<>();
                    for (int i = 0; i < alive.size(); i++) {
                        Group g = alive.get(i);
                        if (g.probs != null) g.probs[e] = maxProb[i];
                        if (call.fires(e, g.seq, maxProb[i])) {
                            DecodeSequence s = g.seq;
                            // At the last depth every layer has seen the token: nothing deeper will need its rows.
                            if (d < nLayers) s.setBand(d, s.band[d] == null ? g.rows : Ops.cat(0, s.band[d], g.rows));
                            Tensor row = logits.narrow(0, i, 1);
                            call.emit(s, row::toFloatArray, argmax[i], maxProb[i], exit.config().layer(), g.probs);
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
                List<DecodeSequence> seqs = new ArrayList<>();
                int row = 0;
                for (Group g : alive) {
                    DecodeSequence s = g.seq;
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
                attachExitLayerOutputs(alive, packs, fillExitLayerCaches(call, seqs, packs, split[0], d + 1));
            }
            // 3. Sequences that went through every layer: the final head, batched; all their positions are now full depth.
            if (!alive.isEmpty()) {
                Tensor[] last = alive.stream().map(Group::last).toArray(Tensor[]::new);
                Tensor logits = finalLogits(call, last.length == 1 ? last[0] : Ops.cat(0, last));
                Tensor[] top = NN.topProbability(logits);
                float[] maxProb = top[0].toFloatArray();
                int[] argmax = top[1].toIntArray();
                for (int i = 0; i < alive.size(); i++) {
                    Group g = alive.get(i);
                    Tensor row = logits.narrow(0, i, 1);
                    call.emit(g.seq, row::toFloatArray, argmax[i], maxProb[i], nLayers, g.probs);
                }
            }
        }
    }

    private static void attachExitLayerOutputs(List<Group> groups, List<Packed> packs, Tensor[] outs) {
        for (int i = 0; i < groups.size(); i++) {
            Packed p = packs.get(i);
            Tensor[] mine = new Tensor[outs.length];
            for (int e = 0; e < outs.length; e++) {
                if (outs[e] != null) mine[e] = outs[e].narrow(0, p.row() + p.count() - 1, 1);
            }
            groups.get(i).exitLayerOut = mine;
        }
    }

    static Tensor finalLogits(DecodeCall call, Tensor lastRow) {
        return usable(call, call.model.finalLogits(lastRow));
    }

    /**
     * The logits of ids the tokenizer can decode: a head padded past the tokenizer's vocabulary has
     * rows no text maps to, so they are cut off before the exit decision and sampling see them.
     */
    static Tensor usable(DecodeCall call, Tensor logits) {
        int limit = call.usableVocab;
        return limit < logits.dim(1) ? logits.narrow(1, 0, limit).contiguous() : logits;
    }
}
