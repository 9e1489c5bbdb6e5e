package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.Packed;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.nn.TransformerLayer;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;

/**
 * The prompt and each decode step through the tensor ops, for models the CPU decode path does not run
 * (a CUDA device, tensor-parallel shards, pipeline stages): the same method as {@link LeanDecodeStep}
 * (exits checked per depth, bands of pending rows joined at each layer), one op per tensor, without
 * speculative decoding. A tensor-parallel rank finds each head's top token over the vocabulary with the
 * other ranks ({@link HeadRows}), so every rank takes the same decisions. A pipeline stage runs only its layers and exits, takes the rows that
 * reach it from the previous stage and hands on the ones that go deeper ({@link StageLink}).
 */
final class OpDecodeStep {
    private final EarlyExitModel model;
    private final DecodeCall call;
    private final GenerationConfig cfg;
    private final boolean[] active;
    private final int nLayers;
    /** This pipeline stage's layers [first, end) (the whole model on one stage). */
    private final int first, end;
    /** The other stages (null on one stage). */
    private final StageLink link;

    OpDecodeStep(DecodeCall call) {
        this.call = call;
        this.model = call.model;
        this.cfg = call.cfg;
        this.active = call.active;
        this.nLayers = call.nLayers;
        this.first = model.stage().firstLayer();
        this.end = model.stage().endLayer();
        PipelineParallel pp = model.parameters().pipeline();
        this.link = pp.stages() > 1 ? new StageLink(pp, model.config().dModel()) : null;
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

    /**
     * The prompts through this stage's layers (filling their caches; from the previous stage's rows past
     * the first stage), and on the last stage each sequence's first token from the final head.
     */
    void prefill(List<DecodeSequence> seqs) {
        int[] before = outSizes(seqs);
        try (var scope = Scope.open()) {
            int total = seqs.stream().mapToInt(s -> s.prompt.length).sum();
            List<Packed> packs = new ArrayList<>();
            int row = 0;
            for (DecodeSequence s : seqs) {
                packs.add(new Packed(row, s.prompt.length, 0, null));
                row += s.prompt.length;
            }
            Tensor x;
            if (first == 0) {
                int[] ids = new int[total], pos = new int[total];
                for (int i = 0, r = 0; i < seqs.size(); r += seqs.get(i).prompt.length, i++) {
                    for (int t = 0; t < seqs.get(i).prompt.length; t++) {
                        ids[r + t] = seqs.get(i).prompt[t];
                        pos[r + t] = t;
                    }
                }
                x = model.embedPacked(ids, pos);
            } else {
                x = link.receiveRows(total);
            }
            Tensor[] split = {x};
            float[][] probs = cfg.exitProbs() ? new float[seqs.size()][] : null;
            if (probs != null) for (int i = 0; i < probs.length; i++) probs[i] = call.unreached();
            for (int d = first; d <= end; d++) {
                Tensor[] exitOut = fillExitLayerCaches(call, seqs, packs, x, d);
                if (probs != null) recordPrefillExitProbs(packs, split, exitOut, d, probs);
                if (d == end) break;
                split = layer(d).forwardPacked(x, withCaches(packs, seqs, d));
                x = split[0];
            }
            if (link != null && !link.last()) {
                link.sendRows(x);
            } else {
                for (int i = 0; i < seqs.size(); i++) {
                    Packed p = packs.get(i);
                    HeadRows h = finalLogits(call, x.narrow(0, p.row() + p.count() - 1, 1));
                    call.emit(seqs.get(i), h.row(0), h.argmax[0], h.maxProb[0], nLayers, probs == null ? null : probs[i]);
                }
            }
        }
        if (link != null) link.agree(seqs, before, call);
    }

    /** With exit probabilities asked for: every exit reading depth d, on the last prompt row of each sequence. */
    private void recordPrefillExitProbs(List<Packed> packs, Tensor[] split, Tensor[] exitOut, int d, float[][] probs) {
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
                probs[i][e] = HeadRows.of(call, exit.logits(h)).maxProb[0];
            }
        }
    }

    /**
     * One new token for each running sequence; speculating, a token that exits is a draft and the rows
     * reaching the final head (the drafts' positions and the current token) verify the pending drafts,
     * as on the CPU decode path. A sequence that flushes its drafts brings no new row, only its pending ones.
     */
    void run(List<DecodeSequence> running) {
        int[] before = outSizes(running);
        boolean speculative = cfg.speculative();
        try (var scope = Scope.open()) {
            int n = running.size();
            List<Group> alive = new ArrayList<>();
            List<Packed> packs = new ArrayList<>();
            Tensor x;
            if (first == 0) {
                List<DecodeSequence> embedded = new ArrayList<>();
                for (DecodeSequence s : running) {
                    s.mode = speculative ? call.modeOf(s) : DecodeSequence.Mode.CHECK;
                    if (s.mode != DecodeSequence.Mode.FLUSH) embedded.add(s);
                }
                int[] ids = new int[embedded.size()], pos = new int[embedded.size()];
                for (int i = 0; i < ids.length; i++) {
                    DecodeSequence s = embedded.get(i);
                    ids[i] = s.tokens[s.length - 1];
                    pos[i] = s.length - 1;
                }
                x = ids.length == 0 ? null : model.embedPacked(ids, pos);
                for (DecodeSequence s : running) {
                    int i = embedded.indexOf(s);
                    float[] probs = cfg.exitProbs() && s.mode == DecodeSequence.Mode.CHECK ? call.unreached() : null;
                    alive.add(i < 0 ? new Group(s, null, -1, probs) : new Group(s, x.narrow(0, i, 1), pos[i], probs));
                    if (i >= 0) packs.add(new Packed(i, 1, pos[i], null));
                }
            } else {
                // The rows of the sequences whose token reached this stage: positions [length - count, length).
                int[] counts = new int[n];
                x = link.receive(counts);
                int row = 0;
                for (int i = 0; i < n; i++) {
                    if (counts[i] == 0) continue;
                    DecodeSequence s = running.get(i);
                    s.mode = DecodeSequence.Mode.CHECK;
                    alive.add(new Group(s, x.narrow(0, row, counts[i]), s.length - counts[i], null));
                    packs.add(new Packed(row, counts[i], s.length - counts[i], null));
                    row += counts[i];
                }
            }
            List<Group> moving = alive.stream().filter(g -> g.rows != null).toList();
            if (x != null) attachExitLayerOutputs(moving, packs, fillExitLayerCaches(call, seqsOf(moving), packs, x, first));
            for (int d = first; d <= end && !alive.isEmpty(); d++) {
                // 1. Exits reading depth d, in order, on the current tokens; one that fires leaves its rows in band[d].
                //    Speculating, the final depth is the full model's: no exit is checked there.
                for (int e = 0; e < active.length && !alive.isEmpty(); e++) {
                    Exit exit = model.exits().get(e);
                    if (!(active[e] || cfg.exitProbs()) || exit.config().inputDepth() != d || (speculative && d == nLayers)) continue;
                    List<Group> checked = alive.stream().filter(OpDecodeStep::checks).toList();
                    if (checked.isEmpty()) continue;
                    // One batched head for every checked sequence's current token.
                    Tensor[] hidden = new Tensor[checked.size()];
                    for (int i = 0; i < hidden.length; i++) {
                        Group g = checked.get(i);
                        hidden[i] = switch (exit.config().kind()) {
                            case LAYER -> g.exitLayerOut[e];
                            case MLP -> exit.hidden(g.mlpInput, 0, null);
                            default -> g.last();
                        };
                    }
                    call.checks[e] += hidden.length;
                    HeadRows h = HeadRows.of(call, exit.logits(hidden.length == 1 ? hidden[0] : Ops.cat(0, hidden), call.checkHeads[e]));
                    float[] maxProb = h.maxProb;
                    int[] argmax = h.argmax;
                    List<Group> left = new ArrayList<>();
                    for (int i = 0; i < checked.size(); i++) {
                        Group g = checked.get(i);
                        if (g.probs != null) g.probs[e] = maxProb[i];
                        if (!call.fires(e, g.seq, maxProb[i])) continue;
                        DecodeSequence s = g.seq;
                        // At the last depth every layer has seen the token: nothing deeper will need its rows.
                        if (d < nLayers) s.setBand(d, s.band[d] == null ? g.rows : Ops.cat(0, s.band[d], g.rows));
                        if (speculative) call.draft(s, e, h.row(i), argmax[i], maxProb[i], g.probs);
                        else call.emit(s, h.row(i), argmax[i], maxProb[i], exit.config().layer(), g.probs);
                        left.add(g);
                    }
                    alive = alive.stream().filter(g -> !left.contains(g)).toList();
                }
                if (d == end || alive.isEmpty()) break;
                // 2. Layer d over every sequence's pending band plus its rows, packed into one batch.
                packs = new ArrayList<>();
                List<Tensor> parts = new ArrayList<>();
                int row = 0;
                for (Group g : alive) {
                    joinBand(g, d);
                    if (g.rows == null) continue; // a flush with nothing pending yet at this depth
                    DecodeSequence s = g.seq;
                    if (g.start != s.layerCache[d].length()) {
                        throw new IllegalStateException("KV cache of layer " + d + " holds " + s.layerCache[d].length()
                                + " positions but the pending group starts at " + g.start);
                    }
                    packs.add(new Packed(row, g.rows.dim(0), g.start, s.layerCache[d]));
                    parts.add(g.rows);
                    row += g.rows.dim(0);
                }
                moving = alive.stream().filter(g -> g.rows != null).toList();
                if (moving.isEmpty()) continue;
                Tensor in = parts.size() == 1 ? parts.get(0) : Ops.cat(0, parts.toArray(Tensor[]::new));
                Tensor[] split = layer(d).forwardPacked(in, packs);
                for (int i = 0; i < moving.size(); i++) {
                    Packed p = packs.get(i);
                    Group g = moving.get(i);
                    g.rows = split[0].narrow(0, p.row(), p.count());
                    int last = p.row() + p.count() - 1;
                    g.mlpInput = new Tensor[] {split[1].narrow(0, last, 1), split[2].narrow(0, last, 1)};
                }
                attachExitLayerOutputs(moving, packs, fillExitLayerCaches(call, seqsOf(moving), packs, split[0], d + 1));
            }
            if (end < nLayers) sendOn(running, alive);
            else finalHead(alive.stream().filter(g -> g.rows != null).toList(), speculative);
        }
        if (link != null) link.agree(running, before, call);
    }

    /** Whether the group's last row is a current token whose exits are checked. */
    private static boolean checks(Group g) {
        return g.rows != null && g.seq.mode == DecodeSequence.Mode.CHECK;
    }

    private static List<DecodeSequence> seqsOf(List<Group> groups) {
        return groups.stream().map(g -> g.seq).toList();
    }

    /**
     * Sequences that went through every layer: the final head, batched, on each one's last row, or,
     * speculating, on all its rows (positions start..), which verifies its drafts in order and hands
     * out the full model's next token.
     */
    private void finalHead(List<Group> done, boolean speculative) {
        if (done.isEmpty()) return;
        List<Tensor> rows = new ArrayList<>();
        for (Group g : done) rows.add(speculative ? g.rows : g.last());
        HeadRows h = finalLogits(call, rows.size() == 1 ? rows.get(0) : Ops.cat(0, rows.toArray(Tensor[]::new)));
        float[] maxProb = h.maxProb;
        int[] argmax = h.argmax;
        int at = 0;
        for (Group g : done) {
            DecodeSequence s = g.seq;
            int count = speculative ? g.rows.dim(0) : 1;
            for (int i = 0; i < count && s.finish == null; i++) {
                int idx = speculative ? g.start + i + 1 : s.length;
                if (idx < s.length) {
                    if (!call.verify(s, idx, h.row(at + i), argmax[at + i], maxProb[at + i])) break;
                } else {
                    call.emit(s, h.row(at + i), argmax[at + i], maxProb[at + i], nLayers, g.probs);
                }
            }
            at += count;
        }
    }

    /** A group about to enter layer d takes the rows pending there first (they are the earlier positions). */
    private static void joinBand(Group g, int d) {
        DecodeSequence s = g.seq;
        if (s.band[d] == null) return;
        int pending = s.band[d].dim(0);
        if (g.rows == null) {
            // a copy in the step's scope: the band itself is freed below
            g.rows = Tensor.empty(dev.exeunt.tensor.DType.F32, s.band[d].device(), s.band[d].shape());
            g.rows.copyFrom(s.band[d]);
        } else {
            g.rows = Ops.cat(0, s.band[d], g.rows);
        }
        g.start = s.layerCache[d] == null ? g.start - pending : s.layerCache[d].length();
        s.setBand(d, null);
    }

    /** Past this stage's last layer: each sequence whose token goes on hands the next stage its rows (pending ones first). */
    private void sendOn(List<DecodeSequence> running, List<Group> alive) {
        int[] counts = new int[running.size()];
        List<Tensor> parts = new ArrayList<>();
        for (Group g : alive) {
            joinBand(g, end);
            counts[running.indexOf(g.seq)] = g.rows.dim(0);
            parts.add(g.rows);
        }
        link.send(counts, parts.isEmpty() ? null : parts.size() == 1 ? parts.get(0) : Ops.cat(0, parts.toArray(Tensor[]::new)));
    }

    private TransformerLayer layer(int d) {
        return model.layers().get(d - first);
    }

    private static int[] outSizes(List<DecodeSequence> seqs) {
        int[] n = new int[seqs.size()];
        for (int i = 0; i < n.length; i++) n[i] = seqs.get(i).out.size();
        return n;
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

    /** The final norm and head over the rows. */
    static HeadRows finalLogits(DecodeCall call, Tensor rows) {
        return HeadRows.of(call, call.model.finalLogits(rows));
    }
}
