package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.nn.TensorParallelRegions;
import dev.exeunt.model.nn.VocabParallelCrossEntropy;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The tensor-parallel communication ops on 2 and 3 local ranks, against what one rank computes: each
 * forward and each backward, with values that differ per rank so a sum, a copy and a wrong rank's
 * slice give different numbers; and the vocabulary-parallel cross-entropy (mask, token weights,
 * temperature, ignored rows, targets on every shard) and top probability (argmax ties across shards)
 * against the fused one-rank kernels.
 */
@ExtendWith(LeakCheck.class)
class TensorParallelRegionsTest {

    static float[] values(int n, long seed) {
        Random r = new Random(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) r.nextGaussian();
        return v;
    }

    static TensorParallel tp(dev.exeunt.parallel.comm.ProcessGroup pg, boolean sp) {
        return new ProcessGroupTensorParallel(pg, sp);
    }

    @Test
    void copyToRegionSumsTheGradientAndReduceFromRegionSumsTheValue() {
        for (int n : new int[] {2, 3}) {
            LocalWorld.run(n, pg -> {
                var tp = tp(pg, false);
                try (var s = Scope.open()) {
                    Tensor x = Tensor.of(values(6, 1), 2, 3).requiresGrad(true);
                    Tensor y = TensorParallelRegions.copyToRegion(x, tp);
                    assertArrayEquals(x.toFloatArray(), y.toFloatArray(), 0f);
                    // Rank r's upstream gradient is (r+1) * w: the input gradient is the sum over ranks.
                    float[] w = values(6, 2);
                    Ops.sumAll(Ops.mul(y, Tensor.of(scaled(w, pg.rank() + 1), 2, 3))).backward();
                    assertArrayEquals(scaled(w, n * (n + 1) / 2f), x.grad().toFloatArray(), 1e-5f);

                    Tensor z = Tensor.of(values(6, 10 + pg.rank()), 2, 3).requiresGrad(true);
                    Tensor sum = TensorParallelRegions.reduceFromRegion(z, tp);
                    float[] want = new float[6];
                    for (int r = 0; r < n; r++) want = add(want, values(6, 10 + r));
                    assertArrayEquals(want, sum.toFloatArray(), 1e-5f);
                    Ops.sumAll(Ops.mul(sum, Tensor.of(w, 2, 3))).backward();
                    assertArrayEquals(w, z.grad().toFloatArray(), 0f); // identity backward: no second sum
                    x.clearGrad();
                    z.clearGrad();
                }
                return null;
            });
        }
    }

    @Test
    void sequenceGatherAndReduceScatterAreEachOthersBackward() {
        int b = 2, tl = 2, d = 3;
        for (int n : new int[] {2, 3}) {
            LocalWorld.run(n, pg -> {
                var tp = tp(pg, true);
                int r = pg.rank();
                try (var s = Scope.open()) {
                    // Rank r holds positions [r*tl, (r+1)*tl) of a [b, n*tl, d] tensor whose value encodes (batch, position, feature).
                    Tensor mine = Tensor.of(encoded(b, tl, d, r * tl), b, tl, d).requiresGrad(true);
                    Tensor full = TensorParallelRegions.gatherSequence(mine, tp);
                    assertArrayEquals(encoded(b, n * tl, d, 0), full.toFloatArray(), 0f);
                    // Upstream gradient differs per rank; each position's gradient is the sum over ranks.
                    float[] g = values(b * n * tl * d, 5);
                    Ops.sumAll(Ops.mul(full, Tensor.of(scaled(g, r + 1), b, n * tl, d))).backward();
                    float[] want = slicePositions(scaled(g, n * (n + 1) / 2f), b, n * tl, d, r * tl, tl);
                    assertArrayEquals(want, mine.grad().toFloatArray(), 1e-5f);

                    Tensor whole = Tensor.of(scaled(encoded(b, n * tl, d, 0), r + 1), b, n * tl, d).requiresGrad(true);
                    Tensor part = TensorParallelRegions.reduceScatterSequence(whole, tp);
                    assertArrayEquals(slicePositions(scaled(encoded(b, n * tl, d, 0), n * (n + 1) / 2f), b, n * tl, d, r * tl, tl),
                            part.toFloatArray(), 1e-4f);
                    float[] gp = values(b * tl * d, 20 + r);
                    Ops.sumAll(Ops.mul(part, Tensor.of(gp, b, tl, d))).backward();
                    // The backward all-gathers every rank's position gradients into place.
                    float[] wantWhole = new float[b * n * tl * d];
                    for (int q = 0; q < n; q++) placePositions(wantWhole, values(b * tl * d, 20 + q), b, n * tl, d, q * tl, tl);
                    assertArrayEquals(wantWhole, whole.grad().toFloatArray(), 0f);
                    mine.clearGrad();
                    whole.clearGrad();
                    var e = assertThrows(IllegalArgumentException.class,
                            () -> TensorParallelRegions.reduceScatterSequence(Tensor.zeros(b, n * tl + 1, d), tp));
                    assertEquals(true, e.getMessage().contains("do not split"));
                }
                return null;
            });
        }
    }

    @Test
    void vocabParallelCrossEntropyMatchesTheFusedKernel() {
        int rows = 7, vocab = 12;
        float[] logits = values(rows * vocab, 30);
        // Targets on every shard, one ignored row; a mask and token weights; temperature 1.7.
        int[] targets = {0, 11, 5, -100, 6, 3, 9};
        float[] mask = {1, 1, 0, 1, 1, 1, 1}, weight = {0.5f, 1, 2, 1, 0.25f, 1.5f, 1};
        float[] upstream = {1.3f};
        float[] wantLoss, wantGrad;
        try (var s = Scope.open()) {
            Tensor l = Tensor.of(logits, rows, vocab).requiresGrad(true);
            Tensor loss = NN.crossEntropy(l, Tensor.ofInts(targets, rows), options(mask, weight, rows));
            wantLoss = loss.toFloatArray();
            Ops.mul(loss, Tensor.of(upstream, 1)).backward();
            wantGrad = l.grad().toFloatArray();
            l.clearGrad();
        }
        for (int n : new int[] {2, 3, 4}) {
            LocalWorld.run(n, pg -> {
                var tp = tp(pg, false);
                int vl = vocab / n, start = pg.rank() * vl;
                try (var s = Scope.open()) {
                    Tensor l = Tensor.of(columns(logits, rows, vocab, start, vl), rows, vl).requiresGrad(true);
                    Tensor loss = VocabParallelCrossEntropy.loss(l, Tensor.ofInts(targets, rows), options(mask, weight, rows), tp);
                    assertEquals(wantLoss[0], loss.item(), 1e-5f, "tp=" + n);
                    Ops.mul(loss, Tensor.of(upstream, 1)).backward();
                    assertArrayEquals(columns(wantGrad, rows, vocab, start, vl), l.grad().toFloatArray(), 1e-6f, "tp=" + n);
                    l.clearGrad();
                }
                return null;
            });
        }
    }

    @Test
    void vocabParallelTopProbabilityFindsTheGlobalMaximumAndTheLowestTiedIndex() {
        int rows = 3, vocab = 8;
        float[] logits = values(rows * vocab, 40);
        logits[vocab + 1] = 5f; // row 1: a tie between index 1 (shard 0) and index 6 (shard 1 or 2)
        logits[vocab + 6] = 5f;
        logits[2 * vocab + 7] = 9f; // row 2: the maximum on the last shard
        float[] wantP;
        int[] wantArg;
        try (var s = Scope.open()) {
            Tensor[] top = NN.topProbability(Tensor.of(logits, rows, vocab));
            wantP = top[0].toFloatArray();
            wantArg = top[1].toIntArray();
        }
        assertEquals(1, wantArg[1]);
        for (int n : new int[] {2, 4}) {
            LocalWorld.run(n, pg -> {
                int vl = vocab / n, start = pg.rank() * vl;
                try (var s = Scope.open()) {
                    Tensor[] top = VocabParallelCrossEntropy.topProbability(Tensor.of(columns(logits, rows, vocab, start, vl), rows, vl), tp(pg, false));
                    assertArrayEquals(wantP, top[0].toFloatArray(), 1e-6f);
                    assertArrayEquals(wantArg, top[1].toIntArray());
                }
                return null;
            });
        }
    }

    static NN.CrossEntropyOptions options(float[] mask, float[] weight, int rows) {
        return NN.CrossEntropyOptions.DEFAULT.withMask(Tensor.of(mask, rows)).withWeight(Tensor.of(weight, rows)).withTemperature(1.7f);
    }

    static float[] columns(float[] m, int rows, int cols, int start, int len) {
        float[] out = new float[rows * len];
        for (int r = 0; r < rows; r++) System.arraycopy(m, r * cols + start, out, r * len, len);
        return out;
    }

    static float[] encoded(int b, int t, int d, int firstPos) {
        float[] v = new float[b * t * d];
        for (int i = 0; i < b; i++) for (int p = 0; p < t; p++) for (int f = 0; f < d; f++) v[(i * t + p) * d + f] = 100 * i + 10 * (firstPos + p) + f;
        return v;
    }

    static float[] slicePositions(float[] v, int b, int t, int d, int from, int len) {
        float[] out = new float[b * len * d];
        for (int i = 0; i < b; i++) System.arraycopy(v, (i * t + from) * d, out, i * len * d, len * d);
        return out;
    }

    /** An id outside the vocabulary fails on every rank with the kernel's message, not as a silent zero row. */
    @Test
    void vocabParallelEmbeddingRefusesAnIdNoRankOwns() {
        LocalWorld.run(2, pg -> {
            try (var s = Scope.open()) {
                Tensor table = Tensor.of(new float[4 * 3], 4, 3); // this rank's 4 of 8 rows
                var tp = tp(pg, false);
                assertArrayEquals(new int[] {1, 2, 3}, dev.exeunt.model.nn.VocabParallelEmbedding.lookup(table, Tensor.ofInts(new int[] {7, 0}, 1, 2), tp).shape());
                var e = assertThrows(IllegalArgumentException.class,
                        () -> dev.exeunt.model.nn.VocabParallelEmbedding.lookup(table, Tensor.ofInts(new int[] {3, 8}, 1, 2), tp));
                assertEquals("token id 8 at position 1 is out of range [0, 8)", e.getMessage());
            }
            return null;
        });
    }

    static void placePositions(float[] whole, float[] part, int b, int t, int d, int from, int len) {
        for (int i = 0; i < b; i++) System.arraycopy(part, i * len * d, whole, (i * t + from) * d, len * d);
    }

    static float[] scaled(float[] v, float k) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) out[i] = v[i] * k;
        return out;
    }

    static float[] add(float[] a, float[] b) {
        float[] out = new float[a.length];
        for (int i = 0; i < a.length; i++) out[i] = a[i] + b[i];
        return out;
    }
}
