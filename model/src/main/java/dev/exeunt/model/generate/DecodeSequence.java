package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One sequence in flight: its tokens, its caches, the hidden rows waiting at each depth, and (with
 * speculative decoding) the drafts waiting for verification.
 *
 * <p>{@code tokens[0, committed)} are the prompt and the tokens handed out; {@code tokens[committed,
 * length)} are drafts. Without speculative decoding {@code committed == length} between steps.
 */
final class DecodeSequence implements AutoCloseable {
    /** What a sequence does in one decode step. */
    enum Mode {
        /** Its current token goes as deep as it must: exits are checked. */
        CHECK,
        /** Its current token goes through every layer unchecked (too many drafts pending). */
        DEEP,
        /** No new token: only the pending rows go on, to verify the drafts (before EOS, the length limit or a full context). */
        FLUSH,
        /** The whole prompt goes through every layer; exits only record their probabilities of its last row, when asked. */
        PREFILL
    }

    final int index;
    final int[] prompt;
    final List<GeneratedToken> out = new ArrayList<>();
    /** Per layer of the whole model; null for the layers another pipeline stage holds. */
    final KvCache[] layerCache;
    final KvCache[] exitCache;
    private final int capacity;
    /** Op path: the pending rows per depth as tensors. */
    final Tensor[] band;
    /** CPU decode path: the pending rows per depth (allocated on first use). */
    final Band[] bands;
    final SplittableRandom rng;
    /** Numbers rng has given for sampling choices (pipeline stages catch up on the ones other stages made). */
    int draws;
    int[] tokens;
    int length;
    int committed;
    String finish;

    /** Drafts tokens[committed + j]: the exit that made it, its layer, probability, recorded exit probabilities and (sampling) distribution. */
    int[] draftExit = new int[8];
    int[] draftLayer = new int[8];
    float[] draftProb = new float[8];
    float[][] draftProbs = new float[8][];
    double[][] draftDist = new double[8][];

    /** This step: its mode, its rows [gRow, gRow + gCount) of the packed batch at positions from gStart, its exit probabilities. */
    Mode mode;
    int gRow, gCount, gStart, ckIndex;
    boolean exited;
    float[] probs;

    DecodeSequence(EarlyExitModel model, int index, int[] prompt, int capacity, long seed) {
        this.index = index;
        this.prompt = prompt;
        this.capacity = capacity;
        var c = model.config();
        int layers = c.nLayers();
        // This rank's kv heads: all of them, or its tensor-parallel share.
        int kvHeads = model.layers().isEmpty() ? c.nKvHeads() : model.layers().get(0).attn().heads().kv();
        layerCache = new KvCache[layers];
        for (int l = model.stage().firstLayer(); l < model.stage().endLayer(); l++) {
            layerCache[l] = new KvCache(model.device(), 1, capacity, kvHeads, c.headDim());
        }
        exitCache = new KvCache[model.exits().size()];
        for (int e = 0; e < exitCache.length; e++) {
            if (model.exits().get(e).config().kind() == ExitKind.LAYER) {
                exitCache[e] = new KvCache(model.device(), 1, capacity, kvHeads, c.headDim());
            }
        }
        band = new Tensor[layers + 1];
        bands = new Band[layers + 1];
        rng = new SplittableRandom(seed + index);
        tokens = Arrays.copyOf(prompt, prompt.length + 16);
        length = prompt.length;
        committed = length;
    }

    int capacity() {
        return capacity;
    }

    int drafts() {
        return length - committed;
    }

    void append(int token) {
        if (length == tokens.length) tokens = Arrays.copyOf(tokens, tokens.length * 2);
        tokens[length++] = token;
    }

    /** Records the draft just appended (tokens[length - 1]). */
    void recordDraft(int exit, int layer, float prob, float[] probs, double[] dist) {
        int j = length - 1 - committed;
        if (j >= draftExit.length) {
            int n = 2 * draftExit.length;
            draftExit = Arrays.copyOf(draftExit, n);
            draftLayer = Arrays.copyOf(draftLayer, n);
            draftProb = Arrays.copyOf(draftProb, n);
            draftProbs = Arrays.copyOf(draftProbs, n);
            draftDist = Arrays.copyOf(draftDist, n);
        }
        draftExit[j] = exit;
        draftLayer[j] = layer;
        draftProb[j] = prob;
        draftProbs[j] = probs;
        draftDist[j] = dist;
    }

    /** Forgets every cache position from {@code position} on (a rejected draft and what followed it). */
    void rollBack(int position) {
        for (KvCache k : layerCache) if (k != null && k.length() > position) k.truncate(position);
        for (KvCache k : exitCache) if (k != null && k.length() > position) k.truncate(position);
    }

    /** The pending rows at depth d (CPU decode path), created on first use. */
    Band bandAt(int d, int dModel) {
        if (bands[d] == null) bands[d] = new Band(dModel);
        return bands[d];
    }

    int pendingRows() {
        int n = 0;
        for (Band b : bands) if (b != null) n += b.count;
        return n;
    }

    /** Op path: replaces the band at depth d with rows (copied out of the step's scope). */
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
        for (KvCache k : layerCache) if (k != null) k.close();
        for (KvCache k : exitCache) if (k != null) k.close();
        for (Tensor t : band) if (t != null) t.close();
        for (Band b : bands) if (b != null) b.close();
    }

    /**
     * Hidden rows of consecutive positions [startPos, startPos + count) waiting at one depth for the
     * next token that goes deeper; drained whole by that token's pass. Grows by doubling.
     */
    static final class Band implements AutoCloseable {
        private final int d;
        private Tensor storage;
        private int cap;
        int count;
        int startPos;

        Band(int d) {
            this.d = d;
        }

        void append(MemorySegment src, long srcOff, int rows, int firstPos) {
            if (count > 0 && firstPos != startPos + count) {
                throw new IllegalStateException("pending rows end at position " + (startPos + count) + " but the next starts at " + firstPos);
            }
            if (count == 0) startPos = firstPos;
            if (count + rows > cap) grow(count + rows);
            MemorySegment.copy(src, srcOff * 4, storage.segment(), (storage.offset() + (long) count * d) * 4, (long) rows * d * 4);
            count += rows;
        }

        /** Copies the pending rows to dst and empties the band. */
        void drainTo(MemorySegment dst, long dstOff) {
            if (count > 0) MemorySegment.copy(storage.segment(), storage.offset() * 4, dst, dstOff * 4, (long) count * d * 4);
            count = 0;
        }

        private void grow(int rows) {
            int n = Math.max(rows, Math.max(8, 2 * cap));
            Tensor t = Ops.unowned(() -> Tensor.empty(DType.F32, Device.CPU, n, d));
            if (storage != null) {
                MemorySegment.copy(storage.segment(), storage.offset() * 4, t.segment(), t.offset() * 4, (long) count * d * 4);
                storage.close();
            }
            storage = t;
            cap = n;
        }

        @Override
        public void close() {
            if (storage != null) storage.close();
        }
    }
}
