package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Cross-entropy fused with log-softmax over logits {@code [rows, vocab]} (F32) with int32 targets
 * {@code [rows]}.
 *
 * <p>Per row {@code i} with {@code z = logits[i, :] / T}: {@code loss_i = logsumexp(z) - z[target_i]},
 * computed max-subtracted in F32/F64 so logits of magnitude 1e4 and beyond give finite results. Rows
 * whose target equals the ignore index have loss 0, no gradient and do not count in the denominator.
 * With an optional loss mask {@code mask_i} and optional per-row weights {@code w_i} (dynamic token
 * weights: a multiplier with no gradient through it):
 * <pre>
 *   numerator   = sum over non-ignored rows of mask_i * w_i * loss_i
 *   denominator = sum over non-ignored rows of mask_i          (mask_i = 1 when no mask)
 * </pre>
 * and the masked mean is {@code numerator / denominator} ({@link Sums#mean()}). Backward writes
 * <pre>
 *   dlogits[i, :] = g * g_i * mask_i * w_i * (softmax(z) - onehot(target_i)) / T
 * </pre>
 * for a scalar {@code g} (pass {@code upstream / denominator} for the mean) and optional per-row
 * upstream gradients {@code g_i}; {@code dlogits} is <b>overwritten</b> (ignored rows become 0) and may
 * be the logits themselves (in place).
 *
 * <p>Usage: {@code var ce = CpuLoss.crossEntropy(logits, 0, n, v, targets, 0).ignoreIndex(-100).mask(m, 0);
 * var sums = ce.forward(); ce.backward(1f / (float) sums.denominator(), null, 0, dlogits, 0);}
 * Sums are reduced in row order (deterministic). Segments must be accessible from any thread.
 */
public final class CpuLoss {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);
    private static final int GRAIN_ELEMS = 1 << 14;

    /** PyTorch's default ignore index. */
    public static final int DEFAULT_IGNORE_INDEX = -100;

    private CpuLoss() {}

    /** The two halves of the masked mean. */
    public record Sums(double numerator, double denominator) {
        /** numerator / denominator, or 0 when nothing counted. */
        public double mean() {
            return denominator == 0 ? 0 : numerator / denominator;
        }
    }

    /** Starts a cross-entropy over {@code logits [rows, vocab]} and {@code targets [rows]} (int32). */
    public static CrossEntropy crossEntropy(MemorySegment logits, long logitsOff, int rows, int vocab,
                                            MemorySegment targets, long targetsOff) {
        return new CrossEntropy(logits, logitsOff, rows, vocab, targets, targetsOff);
    }

    /** Options and optional outputs of one cross-entropy; not thread-safe, reusable for forward then backward. */
    public static final class CrossEntropy {
        private final MemorySegment logits, targets;
        private final long logitsOff, targetsOff;
        private final int rows, vocab;
        private int ignoreIndex = DEFAULT_IGNORE_INDEX;
        private float temperature = 1f;
        private MemorySegment mask, weights, rowLoss, stats, maxProb, argmax;
        private long maskOff, weightsOff, rowLossOff, statsOff, maxProbOff, argmaxOff;

        private CrossEntropy(MemorySegment logits, long logitsOff, int rows, int vocab, MemorySegment targets, long targetsOff) {
            if (rows < 0 || vocab < 1) throw new IllegalArgumentException("bad shape rows=" + rows + " vocab=" + vocab);
            this.logits = logits;
            this.logitsOff = logitsOff;
            this.rows = rows;
            this.vocab = vocab;
            this.targets = targets;
            this.targetsOff = targetsOff;
        }

        /** Rows whose target equals this are ignored (default -100). */
        public CrossEntropy ignoreIndex(int ignoreIndex) {
            this.ignoreIndex = ignoreIndex;
            return this;
        }

        /** Softmax temperature T > 0: logits are divided by T (default 1). */
        public CrossEntropy temperature(float t) {
            if (!(t > 0) || Float.isInfinite(t)) throw new IllegalArgumentException("temperature must be finite and > 0, got " + t);
            this.temperature = t;
            return this;
        }

        /** Loss mask [rows] (F32): multiplies each row's loss and counts in the denominator. */
        public CrossEntropy mask(MemorySegment mask, long off) {
            this.mask = mask;
            this.maskOff = off;
            return this;
        }

        /** Per-row weights [rows] (F32): multiply each row's loss; not in the denominator, no gradient. */
        public CrossEntropy weights(MemorySegment weights, long off) {
            this.weights = weights;
            this.weightsOff = off;
            return this;
        }

        /** Output [rows] (F32, overwritten by forward): the unweighted per-row loss, 0 for ignored rows. */
        public CrossEntropy rowLoss(MemorySegment out, long off) {
            this.rowLoss = out;
            this.rowLossOff = off;
            return this;
        }

        /**
         * Saved statistics [rows, 2] (F32): forward writes {@code max_j logits[i, j]} and
         * {@code log sum_j exp((logits[i, j] - max) / T)}; backward reads them instead of recomputing.
         */
        public CrossEntropy stats(MemorySegment stats, long off) {
            this.stats = stats;
            this.statsOff = off;
            return this;
        }

        /** Output [rows] (F32, overwritten by forward): max_j softmax(logits[i, :] / T), for every row. */
        public CrossEntropy maxProb(MemorySegment out, long off) {
            this.maxProb = out;
            this.maxProbOff = off;
            return this;
        }

        /** Output [rows] (int32, overwritten by forward): argmax_j logits[i, j] (first on ties), for every row. */
        public CrossEntropy argmax(MemorySegment out, long off) {
            this.argmax = out;
            this.argmaxOff = off;
            return this;
        }

        /** Computes losses and optional outputs; returns the numerator and denominator of the masked mean. */
        public Sums forward() {
            int[] tgt = readTargets();
            double[] num = new double[rows], den = new double[rows];
            float invT = 1f / temperature;
            CpuThreads.parallelFor(rows, grain(vocab), (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    long zb = 4 * (logitsOff + (long) r * vocab);
                    float m = CpuSoftmax.rowMax(logits, zb, vocab);
                    float s = CpuSoftmax.sumExpShifted(logits, zb, vocab, m, invT);
                    double ls = Math.log(s);
                    if (stats != null) {
                        stats.set(F, 4 * (statsOff + 2L * r), m);
                        stats.set(F, 4 * (statsOff + 2L * r + 1), (float) ls);
                    }
                    if (maxProb != null) maxProb.set(F, 4 * (maxProbOff + r), (float) (1.0 / s));
                    if (argmax != null) argmax.set(I32, 4 * (argmaxOff + r), firstIndexOf(logits, zb, vocab, m));
                    int t = tgt[r];
                    double loss = 0;
                    if (t != ignoreIndex) {
                        loss = ((double) m - logits.get(F, zb + 4L * t)) * invT + ls;
                        double mk = mask == null ? 1.0 : mask.get(F, 4 * (maskOff + r));
                        double w = weights == null ? 1.0 : weights.get(F, 4 * (weightsOff + r));
                        num[r] = mk == 0 ? 0 : mk * w * loss;
                        den[r] = mk;
                    }
                    if (rowLoss != null) rowLoss.set(F, 4 * (rowLossOff + r), (float) loss);
                }
            });
            double n = 0, d = 0;
            for (int r = 0; r < rows; r++) {
                n += num[r];
                d += den[r];
            }
            return new Sums(n, d);
        }

        /**
         * Writes {@code dlogits = gradScale * g_i * mask_i * w_i * (softmax(z) - onehot) / T}.
         *
         * @param gradScale the scalar upstream gradient (e.g. {@code 1 / denominator} for the mean)
         * @param rowGrad   per-row upstream gradients [rows] (F32) or null for 1
         * @param dlogits   [rows, vocab] output, overwritten; may be the logits (in place)
         */
        public void backward(float gradScale, MemorySegment rowGrad, long rowGradOff, MemorySegment dlogits, long dlogitsOff) {
            int[] tgt = readTargets();
            float invT = 1f / temperature;
            CpuThreads.parallelFor(rows, grain(vocab), (r0, r1) -> {
                for (int r = r0; r < r1; r++) {
                    long zb = 4 * (logitsOff + (long) r * vocab), db = 4 * (dlogitsOff + (long) r * vocab);
                    int t = tgt[r];
                    float coef = gradScale;
                    if (rowGrad != null) coef *= rowGrad.get(F, 4 * (rowGradOff + r));
                    if (mask != null) coef *= mask.get(F, 4 * (maskOff + r));
                    if (weights != null) coef *= weights.get(F, 4 * (weightsOff + r));
                    if (t == ignoreIndex || coef == 0f) {
                        dlogits.asSlice(db, 4L * vocab).fill((byte) 0);
                        continue;
                    }
                    float m, ls;
                    if (stats != null) {
                        m = stats.get(F, 4 * (statsOff + 2L * r));
                        ls = stats.get(F, 4 * (statsOff + 2L * r + 1));
                    } else {
                        m = CpuSoftmax.rowMax(logits, zb, vocab);
                        ls = (float) Math.log(CpuSoftmax.sumExpShifted(logits, zb, vocab, m, invT));
                    }
                    float k = coef * invT;
                    int j = 0, bound = S.loopBound(vocab);
                    for (; j < bound; j += L) {
                        VectorMath.exp(FloatVector.fromMemorySegment(S, logits, zb + 4L * j, LE).sub(m).mul(invT).sub(ls))
                                .mul(k).intoMemorySegment(dlogits, db + 4L * j, LE);
                    }
                    for (; j < vocab; j++) {
                        dlogits.set(F, db + 4L * j, VectorMath.exp((logits.get(F, zb + 4L * j) - m) * invT - ls) * k);
                    }
                    long tb = db + 4L * t;
                    dlogits.set(F, tb, dlogits.get(F, tb) - k);
                }
            });
        }

        private int[] readTargets() {
            int[] t = new int[rows];
            MemorySegment.copy(targets, I32, 4 * targetsOff, t, 0, rows);
            for (int r = 0; r < rows; r++) {
                if (t[r] != ignoreIndex && (t[r] < 0 || t[r] >= vocab)) {
                    throw new IllegalArgumentException("target " + t[r] + " at row " + r + " is out of range [0, " + vocab
                            + ") and is not the ignore index " + ignoreIndex);
                }
            }
            return t;
        }
    }

    private static int firstIndexOf(MemorySegment x, long xb, int n, float value) {
        int i = 0, bound = S.loopBound(n);
        for (; i < bound; i += L) {
            var eq = FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).compare(VectorOperators.EQ, value);
            if (eq.anyTrue()) return i + eq.firstTrue();
        }
        for (; i < n; i++) if (x.get(F, xb + 4L * i) == value) return i;
        return 0; // all NaN
    }

    private static int grain(int vocab) {
        return Math.max(1, GRAIN_ELEMS / vocab);
    }
}
