package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.model.nn.Packed;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;

/**
 * Pipeline-based early exit (EARLY-EXIT.md section 3, method 2): every token goes through every layer,
 * but once an exit on stage s has chosen it, stage s tells stage 0 at once and stage 0 starts the next
 * token, while the rest of stage s and the stages after it go on computing the chosen token's rows only
 * to fill their caches. The rows travel with a flag saying so, and no exit fires again for them. A later
 * stage starts the next token when it has finished the previous one, since its messages arrive in order.
 *
 * <p>The results are those of KV recomputation: a layer's keys and values for a position come from the
 * same hidden state either way; only when they are computed differs. Stage 0 hands out the tokens; at
 * the end it shares them, so every rank returns the same generations.
 *
 * <p>Messages from stage k to k + 1, one item per decode step: a header of (flag, current token, its position) per
 * sequence ({@link #NOT_RUNNING}, {@link #LIVE}, {@link #FILL}; {@link #DONE} ends generation), then one
 * row per running sequence. From a stage that received live rows, back to stage 0: per running
 * sequence (chosen here, token, exit layer, probability), sent as soon as its last live row is chosen.
 */
final class PipelineDecodeStep {
    static final int NOT_RUNNING = 0, LIVE = 1, FILL = 2, DONE = -1;
    /** Ints per sequence in an item's header: flag, current token, its position. */
    private static final int HEADER = 3;
    private final EarlyExitModel model;
    private final DecodeCall call;
    private final PipelineParallel pp;
    private final int first, end, nLayers, dModel;
    /** Where each stretch of this stage's work is reported (null: nowhere). */
    private final java.util.function.Consumer<StageWork> work;
    private int step;

    PipelineDecodeStep(DecodeCall call, java.util.function.Consumer<StageWork> work) {
        this.call = call;
        this.work = work;
        this.model = call.model;
        this.pp = model.parameters().pipeline();
        this.first = model.stage().firstLayer();
        this.end = model.stage().endLayer();
        this.nLayers = call.nLayers;
        this.dModel = model.config().dModel();
    }

    /** Decodes until every sequence has finished (stage 0 decides; the others follow its items), then shares the outputs. */
    void decode(List<DecodeSequence> seqs) {
        if (pp.stage() == 0) {
            while (true) {
                List<DecodeSequence> running = seqs.stream().filter(s -> s.finish == null).toList();
                if (running.isEmpty()) break;
                lead(seqs, running);
            }
            int[] done = new int[HEADER * seqs.size()];
            java.util.Arrays.fill(done, DONE);
            try (Tensor t = Tensor.ofInts(done, done.length)) {
                pp.send(t, 1);
            }
        } else {
            while (follow(seqs)) {
                // one item per decode step
            }
        }
        checkCachesFilled(seqs);
        shareOutputs(seqs);
    }

    /**
     * The method's promise: every token went through every layer, so on this stage each sequence's
     * caches, its layer exits' included, hold the same positions, however early the tokens exited.
     */
    private void checkCachesFilled(List<DecodeSequence> seqs) {
        for (DecodeSequence s : seqs) {
            List<KvCache> caches = new ArrayList<>();
            for (KvCache k : s.layerCache) if (k != null) caches.add(k);
            // a layer exit's own cache fills only in calls that check it
            for (int e = 0; e < s.exitCache.length; e++) if (s.exitCache[e] != null && call.active[e]) caches.add(s.exitCache[e]);
            for (KvCache k : caches) {
                if (k.length() != caches.get(0).length()) {
                    throw new IllegalStateException("pipeline stage " + pp.stage() + ", sequence " + s.index + ": a cache holds " + k.length()
                            + " positions, another " + caches.get(0).length() + ": an exited token's rows did not fill every layer");
                }
            }
        }
    }

    /** Stage 0's step: embed the current tokens, run the stage, pass the item on, collect the choices, hand them out. */
    private void lead(List<DecodeSequence> seqs, List<DecodeSequence> running) {
        int n = running.size();
        boolean[] live = new boolean[n];
        java.util.Arrays.fill(live, true);
        GeneratedToken[] chosen = new GeneratedToken[n];
        try (var scope = Scope.open()) {
            int[] ids = new int[n], pos = new int[n];
            for (int i = 0; i < n; i++) {
                DecodeSequence s = running.get(i);
                ids[i] = s.tokens[s.length - 1];
                pos[i] = s.length - 1;
            }
            long t0 = System.nanoTime();
            Tensor x = forward(running, model.embedPacked(ids, pos), live, chosen, null);
            record(false, t0);
            int[] header = new int[HEADER * seqs.size()];
            for (int i = 0, r = 0; i < seqs.size(); i++) {
                DecodeSequence s = seqs.get(i);
                if (s.finish != null) continue;
                header[HEADER * i] = live[r++] ? LIVE : FILL;
                header[HEADER * i + 1] = s.tokens[s.length - 1];
                header[HEADER * i + 2] = s.length - 1;
            }
            pp.send(Tensor.ofInts(header, header.length), 1);
            pp.send(x.contiguous(), 1);
        }
        for (int k = 1; k < pp.stages() && anyLive(live); k++) {
            Tensor result = Tensor.empty(DType.F32, Device.CPU, 4 * n);
            pp.recv(result, k);
            float[] r = result.toFloatArray();
            result.close();
            for (int i = 0; i < n; i++) {
                if (r[4 * i] == 0) continue;
                if (!live[i]) throw new IllegalStateException("stage " + k + " chose a token for sequence " + running.get(i).index + " twice");
                live[i] = false;
                chosen[i] = new GeneratedToken((int) r[4 * i + 1], (int) r[4 * i + 2], r[4 * i + 3]);
                call.catchUp(running.get(i), running.get(i).length - running.get(i).prompt.length + 1);
            }
        }
        if (anyLive(live)) throw new IllegalStateException("no pipeline stage chose a token");
        for (int i = 0; i < n; i++) call.hand(running.get(i), chosen[i]);
        // Stage 0 decides what runs next; its tensor-parallel ranks must decide alike.
        StopAgreement.overRanks(running, model.tensorParallel(), PipelineParallel.NONE);
    }

    /** A later stage's step: one item from the previous stage; false when it says generation is done. */
    private boolean follow(List<DecodeSequence> seqs) {
        int[] header;
        try (Tensor h = Tensor.empty(DType.I32, Device.CPU, HEADER * seqs.size())) {
            pp.recv(h, pp.stage() - 1);
            header = h.toIntArray();
        }
        if (header.length > 0 && header[0] == DONE) {
            if (pp.stage() < pp.stages() - 1) {
                try (Tensor t = Tensor.ofInts(header, header.length)) {
                    pp.send(t, pp.stage() + 1);
                }
            }
            return false;
        }
        List<DecodeSequence> running = new ArrayList<>();
        List<Boolean> liveList = new ArrayList<>();
        for (int i = 0; i < seqs.size(); i++) {
            if (header[HEADER * i] == NOT_RUNNING) continue;
            DecodeSequence s = seqs.get(i);
            // The current token: new here, unless the prompt's pass already handed it to every stage.
            int token = header[HEADER * i + 1], position = header[HEADER * i + 2];
            if (s.length == position) s.append(token);
            if (s.length != position + 1 || s.tokens[position] != token) {
                throw new IllegalStateException("sequence " + s.index + ": stage 0 sent token " + token + " at position " + position
                        + " but this stage holds " + s.length + " tokens");
            }
            running.add(s);
            liveList.add(header[HEADER * i] == LIVE);
        }
        int n = running.size();
        boolean[] live = new boolean[n];
        for (int i = 0; i < n; i++) live[i] = liveList.get(i);
        boolean anyArrivedLive = anyLive(live);
        GeneratedToken[] chosen = new GeneratedToken[n];
        try (var scope = Scope.open()) {
            Tensor x = Tensor.empty(DType.F32, Device.CPU, n, dModel);
            pp.recv(x, pp.stage() - 1);
            boolean[] arrivedLive = live.clone();
            Runnable report = anyArrivedLive ? () -> report(arrivedLive, live, chosen) : null;
            long t0 = System.nanoTime();
            x = forward(running, x, live, chosen, report);
            record(!anyArrivedLive, t0);
            if (pp.stage() < pp.stages() - 1) {
                for (int i = 0, r = 0; i < seqs.size(); i++) {
                    if (header[HEADER * i] == NOT_RUNNING) continue;
                    header[HEADER * i] = live[r++] ? LIVE : FILL;
                }
                pp.send(Tensor.ofInts(header, header.length), pp.stage() + 1);
                pp.send(x.contiguous(), pp.stage() + 1);
            }
        }
        return true;
    }

    private void record(boolean fillOnly, long start) {
        if (work != null) work.accept(new StageWork(pp.stage(), step, fillOnly, start, System.nanoTime()));
        step++;
    }

    /** Tells stage 0 the tokens chosen on this stage (the rows that arrived live and are not any more). */
    private void report(boolean[] arrivedLive, boolean[] live, GeneratedToken[] chosen) {
        float[] r = new float[4 * live.length];
        for (int i = 0; i < live.length; i++) {
            if (!arrivedLive[i] || live[i]) continue;
            r[4 * i] = 1;
            r[4 * i + 1] = chosen[i].token();
            r[4 * i + 2] = chosen[i].exitLayer();
            r[4 * i + 3] = chosen[i].probability();
        }
        pp.send(Tensor.of(r, r.length), 0);
    }

    /**
     * This stage's layers and exits over one row per running sequence (at its current position). Exits
     * check only live rows; a row an exit chooses a token for stays, to fill the caches, but is no longer
     * live. {@code allChosen} runs once, as soon as no row is live (after the final head at the last).
     */
    private Tensor forward(List<DecodeSequence> running, Tensor x, boolean[] live, GeneratedToken[] chosen, Runnable allChosen) {
        int n = running.size();
        List<Packed> packs = new ArrayList<>();
        for (int i = 0; i < n; i++) packs.add(new Packed(i, 1, running.get(i).length - 1, null));
        Tensor[] exitOut = OpDecodeStep.fillExitLayerCaches(call, running, packs, x, first);
        Tensor[] split = {x};
        boolean reported = allChosen == null;
        for (int d = first; d <= end; d++) {
            for (int e = 0; e < call.active.length; e++) {
                Exit exit = model.exits().get(e);
                if (call.active[e] && exit.config().inputDepth() == d) check(e, exit, running, split, exitOut, live, chosen);
            }
            if (!reported && !anyLive(live)) {
                allChosen.run();
                reported = true;
            }
            if (d == end) break;
            split = model.layers().get(d - first).forwardPacked(split[0], OpDecodeStep.withCaches(packs, running, d));
            exitOut = OpDecodeStep.fillExitLayerCaches(call, running, packs, split[0], d + 1);
        }
        if (end == nLayers && anyLive(live)) {
            List<Integer> rows = liveRows(live);
            HeadRows h = OpDecodeStep.finalLogits(call, rowsOf(split[0], rows));
            for (int j = 0; j < rows.size(); j++) choose(rows.get(j), h, j, nLayers, running, live, chosen);
        }
        if (!reported) allChosen.run();
        return split[0];
    }

    /** Exit e on the live rows: the ones it is sure of get their token. */
    private void check(int e, Exit exit, List<DecodeSequence> running, Tensor[] split, Tensor[] exitOut, boolean[] live, GeneratedToken[] chosen) {
        List<Integer> rows = liveRows(live);
        if (rows.isEmpty()) return;
        Tensor hidden = switch (exit.config().kind()) {
            case LAYER -> rowsOf(exitOut[e], rows);
            case MLP -> exit.hidden(new Tensor[] {rowsOf(split[1], rows), rowsOf(split[2], rows)}, 0, null);
            default -> rowsOf(split[0], rows);
        };
        call.checks[e] += rows.size();
        HeadRows h = HeadRows.of(call, exit.logits(hidden));
        for (int j = 0; j < rows.size(); j++) {
            if (call.fires(e, running.get(rows.get(j)), h.maxProb[j])) choose(rows.get(j), h, j, exit.config().layer(), running, live, chosen);
        }
    }

    /** Running sequence i's token from row j of a head's logits, chosen at exitLayer. */
    private void choose(int i, HeadRows h, int j, int exitLayer, List<DecodeSequence> running, boolean[] live, GeneratedToken[] chosen) {
        DecodeSequence s = running.get(i);
        call.catchUp(s, s.length - s.prompt.length);
        chosen[i] = call.choose(s, h.row(j), h.argmax[j], h.maxProb[j], exitLayer);
        live[i] = false;
    }

    private static Tensor rowsOf(Tensor x, List<Integer> rows) {
        if (rows.size() == x.dim(0)) return x;
        Tensor[] parts = new Tensor[rows.size()];
        for (int j = 0; j < parts.length; j++) parts[j] = x.narrow(0, rows.get(j), 1);
        return parts.length == 1 ? parts[0] : Ops.cat(0, parts);
    }

    private static List<Integer> liveRows(boolean[] live) {
        List<Integer> rows = new ArrayList<>();
        for (int i = 0; i < live.length; i++) if (live[i]) rows.add(i);
        return rows;
    }

    private static boolean anyLive(boolean[] live) {
        for (boolean b : live) if (b) return true;
        return false;
    }

    private static final List<String> FINISH = List.of("eos", "stop", "length", "context");

    /** Stage 0's outputs (tokens, exit layers, probabilities, finish reasons) to every stage. */
    private void shareOutputs(List<DecodeSequence> seqs) {
        boolean lead = pp.stage() == 0;
        double[] sizes = new double[2 * seqs.size()];
        for (int i = 0; lead && i < seqs.size(); i++) {
            sizes[2 * i] = seqs.get(i).out.size();
            sizes[2 * i + 1] = seqs.get(i).finish == null ? -1 : FINISH.indexOf(seqs.get(i).finish);
        }
        pp.sumOverStages(sizes);
        int total = 0;
        for (int i = 0; i < seqs.size(); i++) total += (int) sizes[2 * i];
        double[] tokens = new double[3 * total];
        for (int i = 0, at = 0; i < seqs.size(); at += (int) sizes[2 * i], i++) {
            if (!lead) continue;
            List<GeneratedToken> out = seqs.get(i).out;
            for (int t = 0; t < out.size(); t++) {
                tokens[3 * (at + t)] = out.get(t).token();
                tokens[3 * (at + t) + 1] = out.get(t).exitLayer();
                tokens[3 * (at + t) + 2] = out.get(t).probability();
            }
        }
        pp.sumOverStages(tokens);
        if (lead) return;
        for (int i = 0, at = 0; i < seqs.size(); at += (int) sizes[2 * i], i++) {
            DecodeSequence s = seqs.get(i);
            s.out.clear();
            for (int t = 0; t < (int) sizes[2 * i]; t++) {
                s.out.add(new GeneratedToken((int) tokens[3 * (at + t)], (int) tokens[3 * (at + t) + 1], (float) tokens[3 * (at + t) + 2]));
            }
            int f = (int) sizes[2 * i + 1];
            s.finish = f < 0 ? null : FINISH.get(f);
        }
    }
}
