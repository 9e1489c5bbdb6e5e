package dev.exeunt.model.io;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;

/**
 * Fixed-length training windows over a flat token stream.
 *
 * <p>Window {@code w} starts at token {@code s = w * stride}; its input is {@code tokens[s, s+T)} and
 * its target {@code tokens[s+1, s+T+1)}. There are {@code (n - T - 1) / stride + 1} windows for
 * {@code n >= T + 1} tokens (with the default {@code stride = T}: {@code (n - 1) / T}); trailing
 * tokens that do not fill a window are not used.
 *
 * <p>Everything is deterministic: {@link #split} assigns windows to train/validation without
 * randomness, and {@link Batches} shuffles each epoch with a SplitMix64 generator seeded from
 * {@code (seed, epoch)}, so a run is reproducible across JVMs and can be resumed at any
 * {@code (epoch, step)}.
 *
 * <p>The token stream is a {@link TokenDataset}: memory-mapped Arrow files ({@link TokenDataset#open}),
 * a heap array ({@link #of(int[], int)}) or a segment of native-order int32; it must stay open while
 * windows are read. Windows, splits and batch order depend only on the token count, so every backing
 * gives the same batches.
 */
public final class TokenWindows {
    private final TokenDataset tokens;
    private final long tokenCount;
    private final int seqLen;
    private final long stride;
    private final int windowCount;

    private TokenWindows(TokenDataset tokens, int seqLen, long stride) {
        if (seqLen <= 0) {
            throw new IllegalArgumentException("sequence length must be positive: " + seqLen);
        }
        if (stride <= 0) {
            throw new IllegalArgumentException("stride must be positive: " + stride);
        }
        this.tokens = tokens;
        this.tokenCount = tokens.tokenCount();
        this.seqLen = seqLen;
        this.stride = stride;
        if (tokenCount < seqLen + 1L) {
            throw new IllegalArgumentException("token stream of " + tokenCount + " tokens is shorter than one window:"
                    + " sequence length " + seqLen + " needs at least " + (seqLen + 1L) + " tokens");
        }
        long count = (tokenCount - seqLen - 1) / stride + 1;
        if (count > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(count + " windows: too many, use a larger stride");
        }
        this.windowCount = (int) count;
    }

    /** Non-overlapping windows ({@code stride = seqLen}) over a heap array (not copied). */
    public static TokenWindows of(int[] tokens, int seqLen) {
        return of(TokenDataset.of(tokens), seqLen);
    }

    /** Non-overlapping windows over a segment of native-order int32 tokens. */
    public static TokenWindows of(MemorySegment tokens, int seqLen) {
        return of(TokenDataset.of(tokens), seqLen);
    }

    /** Windows starting every {@code stride} tokens. */
    public static TokenWindows of(MemorySegment tokens, int seqLen, long stride) {
        return of(TokenDataset.of(tokens), seqLen, stride);
    }

    /** Non-overlapping windows over a dataset (which the caller closes after the last read). */
    public static TokenWindows of(TokenDataset tokens, int seqLen) {
        return new TokenWindows(tokens, seqLen, seqLen);
    }

    /** Windows starting every {@code stride} tokens of a dataset. */
    public static TokenWindows of(TokenDataset tokens, int seqLen, long stride) {
        return new TokenWindows(tokens, seqLen, stride);
    }

    /** The token stream the windows read. */
    public TokenDataset dataset() {
        return tokens;
    }

    public int seqLen() {
        return seqLen;
    }

    public long stride() {
        return stride;
    }

    public long tokenCount() {
        return tokenCount;
    }

    public int windowCount() {
        return windowCount;
    }

    /** Token offset of window {@code w}. */
    public long windowStart(int w) {
        Objects.checkIndex(w, windowCount);
        return w * stride;
    }

    /** Copies window {@code w}: {@code seqLen} inputs into {@code input[inOff..]}, targets into {@code target[tgtOff..]}. */
    public void window(int w, int[] input, int inOff, int[] target, int tgtOff) {
        long s = windowStart(w);
        Objects.checkFromIndexSize(inOff, seqLen, input.length);
        Objects.checkFromIndexSize(tgtOff, seqLen, target.length);
        tokens.read(s, input, inOff, seqLen);
        // the target is the input shifted by one: copy the overlap, read only the last token
        System.arraycopy(input, inOff + 1, target, tgtOff, seqLen - 1);
        tokens.read(s + seqLen, target, tgtOff + seqLen - 1, 1);
    }

    /** Window indices of a train/validation split (each ascending). */
    public record Split(int[] train, int[] validation) {
        public Split {
            train = train.clone();
            validation = validation.clone();
        }

        @Override
        public int[] train() {
            return train.clone();
        }

        @Override
        public int[] validation() {
            return validation.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Split s && Arrays.equals(train, s.train) && Arrays.equals(validation, s.validation);
        }

        @Override
        public int hashCode() {
            return 31 * Arrays.hashCode(train) + Arrays.hashCode(validation);
        }

        @Override
        public String toString() {
            return "Split[train=" + train.length + " windows, validation=" + validation.length + " windows]";
        }
    }

    /** All windows, in order. */
    public int[] all() {
        int[] a = new int[windowCount];
        Arrays.setAll(a, i -> i);
        return a;
    }

    /**
     * The last {@code round(windowCount * fraction)} windows (at least one when {@code fraction > 0})
     * are validation, the rest train. With {@code stride >= seqLen} no validation target token is also
     * a training target.
     */
    public Split split(double validationFraction) {
        if (!(validationFraction >= 0 && validationFraction < 1)) {
            throw new IllegalArgumentException("validation fraction must be in [0, 1): " + validationFraction);
        }
        int nVal = (int) Math.round(windowCount * validationFraction);
        if (validationFraction > 0 && nVal == 0) {
            nVal = 1;
        }
        int nTrain = windowCount - nVal;
        if (nTrain <= 0) {
            throw new IllegalArgumentException("only " + windowCount + " windows: nothing left for training with"
                    + " validation fraction " + validationFraction);
        }
        int[] train = new int[nTrain];
        int[] val = new int[nVal];
        Arrays.setAll(train, i -> i);
        Arrays.setAll(val, i -> nTrain + i);
        return new Split(train, val);
    }

    /** Every {@code k}-th window (indices {@code k-1, 2k-1, ...}) is validation, the rest train. */
    public Split splitEvery(int k) {
        if (k < 2) {
            throw new IllegalArgumentException("k must be at least 2: " + k);
        }
        int nVal = windowCount / k;
        if (windowCount - nVal <= 0) {
            throw new IllegalArgumentException("only " + windowCount + " windows: nothing left for training");
        }
        int[] train = new int[windowCount - nVal];
        int[] val = new int[nVal];
        int t = 0;
        int v = 0;
        for (int w = 0; w < windowCount; w++) {
            if (w % k == k - 1) {
                val[v++] = w;
            } else {
                train[t++] = w;
            }
        }
        return new Split(train, val);
    }

    /** One batch: {@code windows.length} windows, inputs and targets row-major {@code [B][T]}. */
    public record Batch(int epoch, int step, int[] windows, int[] inputs, int[] targets) {
        public int size() {
            return windows.length;
        }
    }

    /**
     * Batches over a set of windows (e.g. {@link Split#train()}).
     *
     * @param windowIndices windows to draw from (copied)
     * @param batchSize     windows per batch
     * @param seed          shuffle seed (ignored when {@code shuffle} is false)
     * @param shuffle       permute the windows anew each epoch
     * @param dropLast      drop the last partial batch of an epoch (all batches then have exactly
     *                      {@code batchSize} windows); otherwise the last batch may be smaller
     */
    public Batches batches(int[] windowIndices, int batchSize, long seed, boolean shuffle, boolean dropLast) {
        return new Batches(windowIndices, batchSize, seed, shuffle, dropLast);
    }

    /**
     * An endless, resumable sequence of batches: {@link #next()} moves through epoch 0, then epoch 1
     * (reshuffled), and so on.
     */
    public final class Batches {
        private final int[] windows;
        private final int batchSize;
        private final long seed;
        private final boolean shuffle;
        private final int perEpoch;
        private int epoch;
        private int step;
        private int orderEpoch = -1;
        private int[] order;

        private Batches(int[] windowIndices, int batchSize, long seed, boolean shuffle, boolean dropLast) {
            if (batchSize <= 0) {
                throw new IllegalArgumentException("batch size must be positive: " + batchSize);
            }
            this.windows = windowIndices.clone();
            for (int w : windows) {
                Objects.checkIndex(w, windowCount);
            }
            this.batchSize = batchSize;
            this.seed = seed;
            this.shuffle = shuffle;
            this.perEpoch = dropLast ? windows.length / batchSize : (windows.length + batchSize - 1) / batchSize;
            if (perEpoch == 0) {
                throw new IllegalArgumentException(windows.length + " windows are fewer than one batch of " + batchSize);
            }
        }

        public int batchesPerEpoch() {
            return perEpoch;
        }

        public int batchSize() {
            return batchSize;
        }

        /** Epoch of the batch the next {@link #next()} returns. */
        public int epoch() {
            return epoch;
        }

        /** Step within the epoch of the batch the next {@link #next()} returns. */
        public int step() {
            return step;
        }

        /** Positions the sequence so that {@link #next()} returns batch {@code step} of {@code epoch}. */
        public void seek(int epoch, int step) {
            if (epoch < 0) {
                throw new IllegalArgumentException("epoch " + epoch);
            }
            Objects.checkIndex(step, perEpoch);
            this.epoch = epoch;
            this.step = step;
        }

        /** The window order of an epoch. */
        public int[] order(int e) {
            return orderOf(e).clone();
        }

        /**
         * The cached order of epoch {@code e} (not copied: a batch must not cost a copy of the whole epoch).
         * Synchronized so that rank threads may call {@link #get(int, int, int, int)} on one instance.
         */
        private synchronized int[] orderOf(int e) {
            if (orderEpoch != e) {
                int[] o = windows.clone();
                if (shuffle) {
                    long state = seed ^ (0x9E3779B97F4A7C15L * (e + 1L));
                    for (int i = o.length - 1; i > 0; i--) {
                        state += 0x9E3779B97F4A7C15L;
                        int j = (int) Long.remainderUnsigned(mix(state), i + 1L);
                        int tmp = o[i];
                        o[i] = o[j];
                        o[j] = tmp;
                    }
                }
                order = o;
                orderEpoch = e;
            }
            return order;
        }

        /** Batch {@code step} of epoch {@code e} (does not move the cursor). */
        public Batch get(int e, int s) {
            return get(e, s, 0, 1);
        }

        /**
         * Data-parallel rank {@code rank}'s part of batch {@code s} of epoch {@code e}: rows
         * {@code [rank*b/ranks, (rank+1)*b/ranks)} of the global batch of {@code b} windows, so that the
         * ranks together see exactly the one-rank batch, in its order, whatever {@code ranks} is. Only
         * that part's windows are read.
         */
        public Batch get(int e, int s, int rank, int ranks) {
            Objects.checkIndex(s, perEpoch);
            if (ranks <= 0) throw new IllegalArgumentException("ranks must be positive: " + ranks);
            Objects.checkIndex(rank, ranks);
            int[] order = orderOf(e);
            int start = s * batchSize;
            int global = Math.min(batchSize, windows.length - start);
            int from = start + (int) ((long) rank * global / ranks);
            int b = start + (int) ((long) (rank + 1) * global / ranks) - from;
            int[] ws = Arrays.copyOfRange(order, from, from + b);
            int[] in = new int[b * seqLen];
            int[] tg = new int[b * seqLen];
            for (int i = 0; i < b; i++) {
                window(ws[i], in, i * seqLen, tg, i * seqLen);
            }
            return new Batch(e, s, ws, in, tg);
        }

        /** The next batch; rolls over into the next epoch after the last batch of one. */
        public Batch next() {
            return next(0, 1);
        }

        /** Rank {@code rank} of {@code ranks}' part of the next batch (see {@link #get(int, int, int, int)}). */
        public Batch next(int rank, int ranks) {
            Batch b = get(epoch, step, rank, ranks);
            if (++step == perEpoch) {
                step = 0;
                epoch++;
            }
            return b;
        }
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
