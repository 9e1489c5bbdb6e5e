package dev.exeunt.model.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Initial values that do not depend on the layout: slices equal the parts of the full tensor bit for
 * bit, values depend on (seed, name, full shape) only, and the distribution is N(0, std).
 */
@ExtendWith(LeakCheck.class)
class ParamInitTest {
    private static final long SEED = 20261201L;

    private static float[] values(Tensor t) {
        return t.toFloatArray();
    }

    private static int[] bits(float[] v) {
        int[] b = new int[v.length];
        for (int i = 0; i < v.length; i++) b[i] = Float.floatToRawIntBits(v[i]);
        return b;
    }

    /** Rows [r0, r0 + nr) and columns [c0, c0 + nc) of a row-major [rows, cols] array. */
    private static float[] block(float[] full, int cols, int r0, int nr, int c0, int nc) {
        float[] out = new float[nr * nc];
        for (int r = 0; r < nr; r++) System.arraycopy(full, (r0 + r) * cols + c0, out, r * nc, nc);
        return out;
    }

    @Test
    void slicesAlongRowsAndColumnsAreThePartsOfTheFullTensorBitForBit() {
        int rows = 300, cols = 257; // 77100 elements: the fill crosses parallel blocks mid-row
        var init = ParamInit.normal(SEED, "h.0.attn.c_attn.weight", new int[] {rows, cols}, 0.02f);
        try (Tensor full = init.full(); Tensor rowShard = init.slice(0, 37, 150); Tensor colShard = init.slice(1, 100, 57)) {
            float[] f = values(full);
            assertArrayEquals(new int[] {150, cols}, rowShard.shape());
            assertArrayEquals(new int[] {rows, 57}, colShard.shape());
            assertArrayEquals(bits(block(f, cols, 37, 150, 0, cols)), bits(values(rowShard)));
            assertArrayEquals(bits(block(f, cols, 0, rows, 100, 57)), bits(values(colShard)));
        }
    }

    /** The shards of a tp split, concatenated, are the full tensor: every element is produced exactly once. */
    @Test
    void shardsOfEveryWidthTileTheFullTensor() {
        int rows = 64, cols = 96;
        var init = ParamInit.normal(SEED, "model.layers.3.mlp.up_proj.weight", new int[] {rows, cols}, 0.02f);
        try (Tensor full = init.full()) {
            float[] f = values(full);
            for (int tp : new int[] {1, 2, 3, 4}) {
                float[] rebuilt = new float[f.length];
                int w = cols / tp;
                for (int s = 0; s < tp; s++) {
                    try (Tensor shard = init.slice(1, s * w, w)) {
                        float[] v = values(shard);
                        for (int r = 0; r < rows; r++) System.arraycopy(v, r * w, rebuilt, r * cols + s * w, w);
                    }
                }
                assertArrayEquals(bits(f), bits(rebuilt), "tp " + tp);
            }
        }
    }

    /**
     * GPT-2's fused c_attn [d, 3d] sharded the way tensor parallelism regroups it (each rank owns its
     * heads of q, k and v): three column slices filled into narrowed views of one shard tensor.
     */
    @Test
    void aRegroupedFusedQkvShardIsFilledThroughViewsOfItsThreeParts() {
        int d = 12, tp = 2, w = d / tp;
        var init = ParamInit.normal(SEED, "h.0.attn.c_attn.weight", new int[] {d, 3 * d}, 0.02f);
        try (Tensor full = init.full()) {
            float[] f = values(full);
            for (int rank = 0; rank < tp; rank++) {
                try (Tensor shard = Tensor.zeros(d, 3 * w)) {
                    for (int part = 0; part < 3; part++) { // q, k, v
                        try (Tensor view = shard.narrow(1, part * w, w)) {
                            init.fill(view, 1, part * d + rank * w);
                        }
                    }
                    float[] v = values(shard);
                    for (int r = 0; r < d; r++) {
                        for (int part = 0; part < 3; part++) {
                            for (int c = 0; c < w; c++) {
                                assertEquals(Float.floatToRawIntBits(f[r * 3 * d + part * d + rank * w + c]),
                                        Float.floatToRawIntBits(v[r * 3 * w + part * w + c]), "rank " + rank + " row " + r);
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void middleDimensionSlicesOfARank3TensorAndNonContiguousDestinationsMatchToo() {
        var init = ParamInit.normal(SEED, "x", new int[] {4, 6, 5}, 1f);
        try (Tensor full = init.full(); Tensor mid = init.slice(1, 2, 3); Tensor target = Tensor.zeros(5, 8)) {
            float[] f = values(full), m = values(mid);
            for (int a = 0; a < 4; a++) {
                for (int b = 0; b < 3; b++) {
                    for (int c = 0; c < 5; c++) {
                        assertEquals(Float.floatToRawIntBits(f[(a * 6 + b + 2) * 5 + c]), Float.floatToRawIntBits(m[(a * 3 + b) * 5 + c]));
                    }
                }
            }
            // A transposed [8, 5] view: not contiguous, so filled through a staged copy.
            var matrix = ParamInit.normal(SEED, "y", new int[] {8, 5}, 1f);
            Tensor view = target.transpose(0, 1);
            assertFalse(view.isContiguous());
            matrix.fill(view, 0, 0);
            try (Tensor expected = matrix.full(); Tensor back = view.contiguous()) {
                assertArrayEquals(bits(values(expected)), bits(values(back)));
            }
            view.close();
        }
    }

    @Test
    void valuesDoNotDependOnTheOrderParametersAreCreatedIn() {
        String[] names = {"wte.weight", "h.0.mlp.c_fc.weight", "h.1.attn.c_proj.weight", "exits.0.head.weight"};
        int[][] shapes = {{50, 16}, {16, 64}, {16, 16}, {50, 16}};
        try (var forward = new Parameters(Device.CPU, SEED); var backward = new Parameters(Device.CPU, SEED)) {
            for (int i = 0; i < names.length; i++) forward.normal(names[i], 0.02f, shapes[i]);
            backward.normal("not.in.the.other", 0.02f, 7, 7); // an extra parameter first shifts nothing
            for (int i = names.length - 1; i >= 0; i--) backward.normal(names[i], 0.02f, shapes[i]);
            for (String n : names) {
                assertArrayEquals(bits(values(forward.get(n))), bits(values(backward.get(n))), n);
            }
            try (Tensor direct = ParamInit.normal(SEED, names[1], shapes[1], 0.02f).full()) {
                assertArrayEquals(bits(values(direct)), bits(values(forward.get(names[1]))), "Parameters.normal is ParamInit.full");
            }
        }
    }

    @Test
    void differentNamesShapesOrSeedsGiveUnrelatedValues() {
        try (Tensor base = ParamInit.normal(SEED, "h.0.attn.c_attn.weight", new int[] {32, 96}, 1f).full();
                Tensor otherName = ParamInit.normal(SEED, "h.1.attn.c_attn.weight", new int[] {32, 96}, 1f).full();
                Tensor otherShape = ParamInit.normal(SEED, "h.0.attn.c_attn.weight", new int[] {96, 32}, 1f).full();
                Tensor otherSeed = ParamInit.normal(SEED + 1, "h.0.attn.c_attn.weight", new int[] {32, 96}, 1f).full()) {
            float[] b = values(base);
            for (Tensor t : List.of(otherName, otherShape, otherSeed)) {
                float[] o = values(t);
                int equal = 0;
                for (int i = 0; i < b.length; i++) if (b[i] == o[i]) equal++;
                assertTrue(equal < 3, equal + " equal elements");
                // Unrelated streams: correlation within 5 standard errors (1 / sqrt(n)) of zero.
                assertTrue(Math.abs(correlation(b, o)) < 5 / Math.sqrt(b.length), "correlation " + correlation(b, o));
            }
        }
        // Names that String.hashCode confuses ("Aa" and "BB" collide) still get different seeds.
        assertEquals("Aa".hashCode(), "BB".hashCode());
        assertTrue(ParamInit.seed(SEED, "Aa", new int[] {4}) != ParamInit.seed(SEED, "BB", new int[] {4}));
        assertTrue(ParamInit.seed(SEED, "w", new int[] {2, 3}) != ParamInit.seed(SEED, "w", new int[] {3, 2}));
        assertTrue(ParamInit.seed(SEED, "w", new int[] {6}) != ParamInit.seed(SEED, "w", new int[] {6, 1}));
    }

    /**
     * Mean, standard deviation, tail mass and CDF of 2^22 draws against N(0, std), each within bounds
     * derived from the sample size: 5 standard errors for the moments and the tail fraction, and the
     * Kolmogorov-Smirnov critical value at alpha = 0.001 (1.95 / sqrt(n)) for the CDF at 161 points.
     */
    @Test
    void valuesAreNormalWithTheRequestedStd() {
        int n = 1 << 22;
        float std = 0.02f;
        try (Tensor t = ParamInit.normal(SEED, "wte.weight", new int[] {1 << 11, 1 << 11}, std).full()) {
            float[] v = values(t);
            double sum = 0, sq = 0, lag = 0;
            long beyond3 = 0;
            for (int i = 0; i < n; i++) {
                sum += v[i];
                sq += (double) v[i] * v[i];
                if (i > 0) lag += (double) v[i] * v[i - 1];
                if (Math.abs(v[i]) > 3 * std) beyond3++;
            }
            double mean = sum / n, sd = Math.sqrt(sq / n - mean * mean);
            assertTrue(Math.abs(mean) < 5 * std / Math.sqrt(n), "mean " + mean);
            assertTrue(Math.abs(sd - std) < 5 * std / Math.sqrt(2.0 * n), "std " + sd + " vs " + std);
            double lagCorr = lag / (n - 1) / (sd * sd);
            assertTrue(Math.abs(lagCorr) < 5 / Math.sqrt(n), "lag-1 correlation " + lagCorr);
            double p3 = 2 * lowerTail(-3); // 0.0026998
            assertTrue(Math.abs(beyond3 - p3 * n) < 5 * Math.sqrt(n * p3 * (1 - p3)), beyond3 + " beyond 3 sigma, expected " + p3 * n);
            float[] sorted = v.clone();
            Arrays.sort(sorted);
            double worst = 0;
            for (int k = -80; k <= 80; k++) {
                double z = k / 20.0; // -4 .. 4 sigma
                double empirical = (double) countBelow(sorted, (float) (z * std)) / n;
                double cdf = z <= 0 ? lowerTail(z) : 1 - lowerTail(-z);
                worst = Math.max(worst, Math.abs(empirical - cdf));
            }
            assertTrue(worst < 1.95 / Math.sqrt(n), "KS distance " + worst + " over the grid");
        }
    }

    @Test
    void aShardRegisteredInParametersHoldsItsSliceOfTheFullParameter() {
        int[] full = {40, 24};
        try (var one = new Parameters(Device.CPU, SEED); var rank1 = new Parameters(Device.CPU, SEED)) {
            Tensor w = one.normal("h.2.mlp.c_proj.weight", 0.01f, full);
            Tensor shard = rank1.normalShard("h.2.mlp.c_proj.weight", 0.01f, full, 0, 20, 20);
            assertArrayEquals(new int[] {20, 24}, shard.shape());
            assertTrue(shard.requiresGrad());
            float[] f = values(w);
            assertArrayEquals(bits(Arrays.copyOfRange(f, 20 * 24, 40 * 24)), bits(values(shard)));
        }
        try (var zeroed = new Parameters(Device.CPU, SEED, false)) { // a model about to be loaded checks its shards too
            var e = assertThrows(IllegalArgumentException.class, () -> zeroed.normalShard("w", 0.02f, new int[] {4, 6}, 1, 4, 3));
            assertTrue(e.getMessage().contains("[4, 7) along dim 1") && e.getMessage().contains("w [4, 6]"), e.getMessage());
        }
    }

    /** The whole model: parameters are those ParamInit gives their names, and EE-Tuning's exits match a fresh model's. */
    @Test
    void modelInitialisationIsTheNamedStreamsAndTuningExitsMatchAFreshModel() {
        var exits = List.of(ExitConfig.post(1, ExitKind.MLP, 1.0), ExitConfig.post(2, ExitKind.NORM, 1.0));
        var cfg = ModelConfig.llama(19, 16, 3, 4, 2, 24, 8, exits);
        try (var model = EarlyExitModel.create(cfg, Device.CPU, SEED);
                var tuning = EarlyExitModel.allocatePrefixWithRandomExits(cfg, Device.CPU, 2, SEED)) {
            Map<String, Tensor> all = model.parameters().all();
            for (var e : all.entrySet()) {
                float[] v = values(e.getValue());
                boolean constant = v.length > 1 && Arrays.stream(bits(v)).distinct().count() == 1;
                if (constant) continue; // norms (1) and biases (0) stay constants
                int[] shape = e.getValue().shape();
                double sq = 0;
                for (float x : v) sq += (double) x * x;
                double rms = Math.sqrt(sq / v.length);
                assertTrue(rms > 0.003 && rms < 0.05, e.getKey() + " rms " + rms);
                // Recompute from the name and shape alone: the same unit stream, scaled by the tensor's std.
                try (Tensor unit = ParamInit.normal(SEED, e.getKey(), shape, 1f).full()) {
                    float[] u = values(unit);
                    double scale = v[0] / u[0];
                    for (int i = 0; i < v.length; i++) assertEquals(u[i] * scale, v[i], 1e-6 * Math.abs(v[i]) + 1e-9, e.getKey() + "[" + i + "]");
                }
            }
            for (var e : tuning.parameters().all().entrySet()) {
                float[] v = values(e.getValue());
                if (e.getKey().startsWith("exits.")) {
                    assertArrayEquals(bits(values(all.get(e.getKey()))), bits(v), e.getKey() + " differs from the fresh model's");
                } else if (e.getKey().endsWith("proj.weight") || e.getKey().endsWith("embed_tokens.weight")) {
                    for (float x : v) assertEquals(0f, x, e.getKey() + " (backbone, to be loaded) must start at zero");
                }
            }
        }
    }

    @Test
    void badSlicesAreRefusedNamingTheParameterAndTheNumbers() {
        var init = ParamInit.normal(SEED, "lm_head.weight", new int[] {10, 4}, 0.02f);
        var outside = assertThrows(IllegalArgumentException.class, () -> init.slice(0, 8, 3));
        assertTrue(outside.getMessage().contains("[8, 11)") && outside.getMessage().contains("lm_head.weight"), outside.getMessage());
        try (Tensor wrongWidth = Tensor.zeros(5, 3); Tensor ints = Tensor.empty(DType.I32, 5, 4)) {
            var e = assertThrows(IllegalArgumentException.class, () -> init.fill(wrongWidth, 0, 0));
            assertTrue(e.getMessage().contains("keep dim 1 whole (4)"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> init.fill(ints, 0, 0));
        }
        var dim = assertThrows(IllegalArgumentException.class, () -> init.slice(2, 0, 1));
        assertTrue(dim.getMessage().contains("dim 2"), dim.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ParamInit.normal(SEED, "w", new int[] {2}, Float.NaN));
        assertThrows(IllegalArgumentException.class, () -> ParamInit.normal(SEED, "w", new int[] {-2}, 1f));
    }

    private static double correlation(float[] a, float[] b) {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.length; i++) {
            ab += (double) a[i] * b[i];
            aa += (double) a[i] * a[i];
            bb += (double) b[i] * b[i];
        }
        return ab / Math.sqrt(aa * bb);
    }

    private static int countBelow(float[] sorted, float x) {
        int lo = 0, hi = sorted.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] <= x) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    private static double pdf(double x) {
        return Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
    }

    /** P(X <= x), x <= 0, by composite Simpson over [x - 12, x]. */
    private static double lowerTail(double x) {
        int n = 20_000;
        double a = x - 12, h = 12.0 / n, sum = pdf(a) + pdf(x);
        for (int i = 1; i < n; i++) sum += pdf(a + i * h) * (i % 2 == 1 ? 4 : 2);
        return sum * h / 3;
    }
}
