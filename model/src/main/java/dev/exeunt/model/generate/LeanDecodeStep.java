package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.model.nn.Norm;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.CpuElementwise;
import dev.exeunt.tensor.cpu.CpuKQuant;
import dev.exeunt.tensor.cpu.CpuQuant;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * One decode step on the CPU path (KV recomputation, EARLY-EXIT.md section 3, method 1): every running
 * sequence's current token, packed into one batch of rows that goes layer by layer through
 * {@link DecodeMath} in {@link DecodeBuffers}, nothing allocated per op.
 *
 * <p>At each depth the exits reading it are checked on each sequence's last row; a sequence that exits
 * leaves its rows in its band for that depth. At each layer a sequence's pending band joins its rows,
 * so every layer's cache is filled for all pending positions in one pass with the current token. With
 * speculative decoding an exit's token is a draft, and the rows reaching the final head (the drafts'
 * positions and the current token) all get the final head: the full model's choice at every draft.
 */
final class LeanDecodeStep {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private final EarlyExitModel model;
    private final ModelConfig c;
    private final DecodeCall call;
    private final DecodeBuffers buf;
    /** Per exit, the head its checks read ({@link DraftHeads}). */
    private final Tensor[] checkHeads;
    private final int d, nLayers, vocab;
    private final List<DecodeSequence> alive = new ArrayList<>();
    private DecodeMath.Span[] spans = new DecodeMath.Span[8];
    private DecodeSequence[] checking = new DecodeSequence[8];

    LeanDecodeStep(EarlyExitModel model, DecodeCall call, DecodeBuffers buf, Tensor[] checkHeads) {
        this.model = model;
        this.checkHeads = checkHeads;
        this.c = model.config();
        this.call = call;
        this.buf = buf;
        this.d = c.dModel();
        this.nLayers = c.nLayers();
        this.vocab = call.usableVocab;
    }

    /** Whether the CPU decode path can run this model (else generation goes through the tensor ops). */
    static boolean supports(EarlyExitModel model) {
        if (model.device().kind() != dev.exeunt.tensor.Device.Kind.CPU || model.tensorParallel().size() != 1) return false;
        if (model.parameters().pipeline().stages() != 1 || model.stage().count() != 1) return false;
        if (model.tokenEmbedding() == null || model.lmHead() == null) return false;
        List<Tensor> weights = new ArrayList<>();
        weights.add(model.tokenEmbedding());
        weights.add(model.lmHead());
        for (var e : model.exits()) weights.add(e.head());
        for (var p : model.parameters().all().values()) if (p.dtype() != dev.exeunt.tensor.DType.F32) weights.add(p);
        for (Tensor w : weights) {
            switch (w.dtype()) {
                case F32, Q8_0, Q4_0, Q2_K, Q4_K, Q5_K, Q6_K -> { }
                default -> { return false; }
            }
        }
        return true;
    }

    /** The prompts through every layer (filling every cache), then each sequence's first token from the final head. */
    void prefill(List<DecodeSequence> seqs) {
        int rows = 0;
        for (DecodeSequence s : seqs) rows += s.length;
        start(seqs, rows, seqs.size());
        buf.prompt = true;
        MemorySegment seg = buf.seg;
        int row = 0;
        for (DecodeSequence s : seqs) {
            s.mode = DecodeSequence.Mode.PREFILL;
            s.probs = call.cfg.exitProbs() ? call.unreached() : null;
            s.gRow = row;
            s.gCount = s.length;
            s.gStart = 0;
            for (int t = 0; t < s.length; t++) embed(s.tokens[t], t, seg, buf.x0 + (long) (row + t) * d);
            row += s.length;
            alive.add(s);
        }
        layers(buf.x0, buf.x1);
    }

    /** One new token for each running sequence (or, speculating, a verification of its drafts). */
    void run(List<DecodeSequence> running) {
        boolean speculative = call.cfg.speculative();
        int maxRows = 0;
        for (DecodeSequence s : running) maxRows += 1 + s.pendingRows();
        start(running, maxRows, speculative ? maxRows : running.size());
        buf.prompt = false;
        MemorySegment seg = buf.seg;
        call.gate.tick(running.size());
        int rows = 0;
        for (DecodeSequence s : running) {
            s.mode = speculative ? call.modeOf(s) : DecodeSequence.Mode.CHECK;
            s.probs = call.cfg.exitProbs() && s.mode == DecodeSequence.Mode.CHECK ? call.unreached() : null;
            s.gRow = rows;
            s.gCount = 0;
            s.gStart = -1;
            if (s.mode != DecodeSequence.Mode.FLUSH) {
                embed(s.tokens[s.length - 1], s.length - 1, seg, buf.x0 + (long) rows * d);
                s.gCount = 1;
                s.gStart = s.length - 1;
                rows++;
            }
            alive.add(s);
        }
        layers(buf.x0, buf.x1);
    }

    private void start(List<DecodeSequence> seqs, int rows, int logitRows) {
        buf.ensure(rows, logitRows);
        if (spans.length < seqs.size()) spans = new DecodeMath.Span[2 * seqs.size()];
        if (checking.length < seqs.size()) checking = new DecodeSequence[2 * seqs.size()];
        alive.clear();
        for (DecodeSequence s : seqs) s.exited = false;
    }

    /** Depth by depth: the exits reading it, then the next layer over what goes on; the final head at the end. */
    private void layers(long cur, long other) {
        for (int depth = 0; ; depth++) {
            exitHiddens(depth, cur);
            for (int e = 0; e < model.exits().size() && !alive.isEmpty(); e++) {
                if (checked(e, depth)) check(e, depth, cur);
            }
            if (depth == nLayers || alive.isEmpty()) break;
            pack(depth, cur, other);
            long t = cur;
            cur = other;
            other = t;
        }
        if (!alive.isEmpty()) finalHead(cur);
    }

    /**
     * Whether exit e runs at this depth: active or recording probabilities; never at the last depth when
     * speculating (the final head is exact there). A layer exit's layer runs whenever it does, to keep its
     * cache whole; its head only while the adaptive gate lets it be checked.
     */
    private boolean runs(int e, int depth) {
        var ec = model.exits().get(e).config();
        if (ec.inputDepth() != depth || !(call.active[e] || call.cfg.exitProbs())) return false;
        return !(call.cfg.speculative() && depth == nLayers);
    }

    private boolean checked(int e, int depth) {
        return runs(e, depth) && (call.cfg.exitProbs() || call.gate.checking(e));
    }

    /** The token's embedding (and learned position) into dst. */
    private void embed(int id, int pos, MemorySegment dst, long off) {
        if (id < 0 || id >= c.vocabSize()) throw new IllegalArgumentException("token id " + id + " is out of range for vocabulary size " + c.vocabSize());
        if (pos >= c.maxSeqLen()) throw new IllegalArgumentException("position " + pos + " exceeds the model's context of " + c.maxSeqLen());
        Tensor te = model.tokenEmbedding();
        long row = te.offset() + (long) id * d;
        switch (te.dtype()) {
            case F32 -> MemorySegment.copy(te.segment(), row * 4, dst, off * 4, (long) d * 4);
            case Q8_0 -> CpuQuant.dequantizeQ8_0(te.segment(), te.dtype().byteSize(row), dst, off, d);
            case Q4_0 -> CpuQuant.dequantizeQ4_0(te.segment(), te.dtype().byteSize(row), dst, off, d);
            case Q2_K, Q4_K, Q5_K, Q6_K -> CpuKQuant.dequantize(te.dtype(), te.segment(), te.dtype().byteSize(row), dst, off, d);
            default -> throw new IllegalStateException("decode: token embedding of type " + te.dtype());
        }
        Tensor pe = model.positionEmbedding();
        if (pe != null) CpuElementwise.addInPlace(dst, off, pe.segment(), pe.offset() + (long) pos * d, d);
    }

    /**
     * What the exits at this depth read besides the trunk: an mlp exit's h + branch(norm2(h)) for each
     * checked sequence's last row (from the layer just run), and a layer exit's own layer over every
     * row passing this depth (filling its cache).
     */
    private void exitHiddens(int depth, long cur) {
        MemorySegment seg = buf.seg;
        int k = 0;
        for (DecodeSequence s : alive) if (checks(s)) s.ckIndex = k++;
        // mlp exits first: they read h and norm2(h) of the layer just run, which a layer exit's layer overwrites.
        for (int e = 0; e < model.exits().size(); e++) {
            Exit exit = model.exits().get(e);
            if (!checked(e, depth) || exit.config().kind() != ExitKind.MLP || k == 0) continue;
            for (DecodeSequence s : alive) {
                if (!checks(s)) continue;
                long last = s.gRow + s.gCount - 1;
                MemorySegment.copy(seg, (buf.n2 + last * d) * 4, seg, (buf.ck + (long) s.ckIndex * d) * 4, (long) d * 4);
                MemorySegment.copy(seg, (buf.h + last * d) * 4, seg, (buf.ckn + (long) s.ckIndex * d) * 4, (long) d * 4);
            }
            DecodeMath.mlp(c, exit.branch(), buf, k, seg, buf.ck, seg, buf.exitOut[e]);
            CpuElementwise.addInPlace(seg, buf.exitOut[e], seg, buf.ckn, (long) k * d);
        }
        for (int e = 0; e < model.exits().size(); e++) {
            Exit exit = model.exits().get(e);
            if (!runs(e, depth) || exit.config().kind() != ExitKind.LAYER) continue;
            int ns = 0, rows = 0;
            for (DecodeSequence s : alive) {
                if (s.gCount == 0) continue;
                spans[ns++] = new DecodeMath.Span(s.gRow, s.gCount, s.gStart, s.exitCache[e]);
                rows = Math.max(rows, s.gRow + s.gCount);
            }
            if (ns == 0) continue;
            call.exitLayerRows += rows;
            DecodeMath.layer(c, exit.layer(), buf, seg, cur, spans, ns, rows, seg, buf.exitOut[e]);
        }
    }

    /** Whether s's last row is checked at this depth: a decode token in CHECK mode, or a prompt's last row to record probabilities. */
    private static boolean checks(DecodeSequence s) {
        return s.gCount > 0 && (s.mode == DecodeSequence.Mode.CHECK || s.mode == DecodeSequence.Mode.PREFILL && s.probs != null);
    }

    /** Exit e's head on every checked sequence's last row, batched; a sequence whose exit fires leaves. */
    private void check(int e, int depth, long cur) {
        Exit exit = model.exits().get(e);
        MemorySegment seg = buf.seg;
        int k = 0;
        for (DecodeSequence s : alive) {
            if (!checks(s)) continue;
            long last = s.gRow + s.gCount - 1;
            long src = switch (exit.config().kind()) {
                case MLP -> buf.exitOut[e] + (long) s.ckIndex * d;
                case LAYER -> buf.exitOut[e] + last * d;
                default -> cur + last * d;
            };
            MemorySegment.copy(seg, src * 4, seg, (buf.ck + (long) k * d) * 4, (long) d * 4);
            checking[k++] = s;
        }
        if (k == 0) return;
        call.checks[e] += k;
        head(exit.norm(), checkHeads[e], k);
        for (int i = 0; i < k; i++) {
            DecodeSequence s = checking[i];
            long row = buf.logits + (long) i * vocab;
            int argmax = argmax(row);
            float maxProb = maxProb(row, argmax);
            if (s.probs != null) s.probs[e] = maxProb;
            boolean fires = s.mode != DecodeSequence.Mode.PREFILL && call.fires(e, s, maxProb);
            if (!fires || !call.cfg.speculative()) call.gate.record(e, fires);
            if (!fires) continue;
            s.exited = true;
            if (depth < nLayers) {
                if (call.cfg.kvFill() == GenerationConfig.KvFill.PROPAGATE) propagate(s, depth, cur + (long) (s.gRow + s.gCount - 1) * d);
                else s.bandAt(depth, d).append(seg, cur + (long) s.gRow * d, s.gCount, s.gStart);
            }
            if (call.cfg.speculative()) call.draft(s, e, () -> host(row), argmax, maxProb, s.probs);
            else call.emit(s, () -> host(row), argmax, maxProb, exit.config().layer(), s.probs);
        }
        alive.removeIf(s -> s.exited);
    }

    /**
     * CALM: the layers after `depth` (and the layer exits reading them) get the exited row's keys and
     * values at once, from that row; nothing waits for a deeper token.
     */
    private void propagate(DecodeSequence s, int depth, long row) {
        int pos = s.gStart + s.gCount - 1;
        if (s.gCount != 1) throw new IllegalStateException("kv fill propagate leaves no pending rows, but " + s.gCount + " were pending");
        for (int l = depth; l < nLayers; l++) DecodeMath.keysValues(c, model.layers().get(l), buf, buf.seg, row, pos, s.layerCache[l]);
        for (int e = 0; e < model.exits().size(); e++) {
            Exit x = model.exits().get(e);
            if (x.config().kind() == ExitKind.LAYER && x.config().inputDepth() > depth && s.exitCache[e].length() == pos) {
                DecodeMath.keysValues(c, x.layer(), buf, buf.seg, row, pos, s.exitCache[e]);
            }
        }
    }

    /**
     * Layer `depth` over every alive sequence's pending band plus its rows, packed into {@code out}.
     */
    private void pack(int depth, long cur, long out) {
        MemorySegment seg = buf.seg;
        int ns = 0, r = 0;
        for (DecodeSequence s : alive) {
            DecodeSequence.Band b = s.bands[depth];
            int pending = b == null ? 0 : b.count;
            if (pending + s.gCount == 0) continue;
            int start = pending > 0 ? b.startPos : s.gStart;
            if (pending > 0 && s.gCount > 0 && b.startPos + pending != s.gStart) {
                throw new IllegalStateException("layer " + depth + ": pending rows end at " + (b.startPos + pending) + " but the token is at " + s.gStart);
            }
            KvCache cache = s.layerCache[depth];
            if (start != cache.length()) {
                throw new IllegalStateException("KV cache of layer " + depth + " holds " + cache.length() + " positions but the pending rows start at " + start);
            }
            if (s.gCount > 0) {
                MemorySegment.copy(seg, (cur + (long) s.gRow * d) * 4, seg, (out + (long) (r + pending) * d) * 4, (long) s.gCount * d * 4);
            }
            if (pending > 0) b.drainTo(seg, out + (long) r * d);
            s.gRow = r;
            s.gCount += pending;
            s.gStart = start;
            spans[ns++] = new DecodeMath.Span(r, s.gCount, start, cache);
            r += s.gCount;
        }
        if (ns > 0) DecodeMath.layer(c, model.layers().get(depth), buf, seg, out, spans, ns, r, seg, out);
    }

    /**
     * The final head: on each sequence's last row, or, speculating, on all its rows (positions
     * gStart..), which verifies its drafts in order and hands out the full model's next token.
     */
    private void finalHead(long cur) {
        MemorySegment seg = buf.seg;
        int k = 0;
        for (DecodeSequence s : alive) {
            if (s.gCount == 0) continue;
            int from = verifies(s) ? 0 : s.gCount - 1;
            int n = s.gCount - from;
            MemorySegment.copy(seg, (cur + (long) (s.gRow + from) * d) * 4, seg, (buf.ck + (long) k * d) * 4, (long) n * d * 4);
            s.ckIndex = k;
            k += n;
        }
        if (k == 0) return;
        head(model.finalNorm(), model.lmHead(), k);
        for (DecodeSequence s : alive) {
            if (s.gCount == 0) continue;
            if (!verifies(s)) {
                long row = buf.logits + (long) s.ckIndex * vocab;
                int argmax = argmax(row);
                call.emit(s, () -> host(row), argmax, maxProb(row, argmax), nLayers, s.probs);
                continue;
            }
            for (int i = 0; i < s.gCount && s.finish == null; i++) {
                int idx = s.gStart + i + 1;
                long row = buf.logits + (long) (s.ckIndex + i) * vocab;
                int argmax = argmax(row);
                float p = maxProb(row, argmax);
                if (idx < s.committed) throw new IllegalStateException("row at position " + (idx - 1) + " reached the final head again");
                if (idx < s.length) {
                    if (!call.verify(s, idx, () -> host(row), argmax, p)) break;
                } else {
                    call.emit(s, () -> host(row), argmax, p, nLayers, s.probs);
                }
            }
        }
    }

    /** Speculating, a decode step's rows at the final head are the drafts' positions and the current token: all get the head. */
    private boolean verifies(DecodeSequence s) {
        return call.cfg.speculative() && s.mode != DecodeSequence.Mode.PREFILL;
    }

    /** norm (if any) and the first {@code vocab} rows of head over the k rows in buf.ck, into buf.logits. */
    private void head(Norm norm, Tensor head, int k) {
        MemorySegment seg = buf.seg;
        long in = buf.ck;
        if (norm != null) {
            DecodeMath.norm(norm, k, d, seg, buf.ck, seg, buf.ckn);
            in = buf.ckn;
        }
        DecodeMath.linear(buf, head, false, d, 0, vocab, k, seg, in, d, seg, buf.logits, vocab);
    }

    private int argmax(long row) {
        return DecodeVectors.argmax(buf.seg, row, vocab);
    }

    /** Softmax probability of the row's top entry (NaN logits give NaN). */
    private float maxProb(long row, int argmax) {
        return DecodeVectors.topProbability(buf.seg, row, vocab, buf.seg.getAtIndex(F, row + argmax));
    }

    private float[] host(long row) {
        float[] out = call.rowBuffer();
        MemorySegment.copy(buf.seg, F, row * 4, out, 0, vocab);
        return out;
    }
}
