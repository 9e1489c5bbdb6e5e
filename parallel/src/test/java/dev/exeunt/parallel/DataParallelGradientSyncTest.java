package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.parallel.comm.CommException;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The bucketed gradient mean and the scalar mean of {@link DataParallelGradientSync}, on the local engine. */
@ExtendWith(LeakCheck.class)
class DataParallelGradientSyncTest {
    /** Sizes that make 16-element buckets cut gradients in the middle, hold several whole ones, and end short. */
    static final int[][] SHAPES = {{3, 7}, {1}, {40}, {2, 2, 2}, {17}};

    static float value(int rank, int param, int i) {
        return (float) Math.sin(1.7 * rank + 0.3 * param + 0.11 * i) * (param + 1);
    }

    /** Parameters (requiring grad) whose gradients hold rank-specific values; a parameter without gradient is included too. */
    static Map<String, Tensor> params(int rank, int count) {
        Map<String, Tensor> m = new LinkedHashMap<>();
        for (int p = 0; p < count; p++) {
            int[] shape = SHAPES[p];
            int n = 1;
            for (int d : shape) n *= d;
            float[] g = new float[n];
            for (int i = 0; i < n; i++) g[i] = value(rank, p, i);
            Tensor t = Tensor.zeros(shape).requiresGrad(true);
            try (Tensor grad = Tensor.of(g, shape)) {
                t.accumulateGrad(grad);
            }
            m.put("p" + p, t);
        }
        m.put("frozen_or_unused", Tensor.zeros(4).requiresGrad(true));
        return m;
    }

    @Test
    void everyGradientBecomesTheMeanOverRanksAcrossBucketBoundaries() {
        for (int ranks : new int[] {2, 3, 4}) {
            List<Map<String, float[]>> results = LocalWorld.run(ranks, pg -> {
                Map<String, Tensor> ps = params(pg.rank(), SHAPES.length);
                try (var sync = new DataParallelGradientSync(pg, 64)) {
                    sync.reduceGradients(ps);
                    sync.reduceGradients(ps); // the buckets are reused; a mean of equal gradients leaves them as they are
                    Map<String, float[]> out = new LinkedHashMap<>();
                    ps.forEach((k, v) -> {
                        if (v.grad() != null) out.put(k, v.grad().toFloatArray());
                    });
                    return out;
                } finally {
                    ps.values().forEach(Tensor::close);
                }
            });
            for (int p = 0; p < SHAPES.length; p++) {
                float[] got = results.get(0).get("p" + p);
                for (int i = 0; i < got.length; i++) {
                    double mean = 0;
                    for (int r = 0; r < ranks; r++) mean += value(r, p, i);
                    mean /= ranks;
                    assertEquals(mean, got[i], 2e-6 * (p + 1), "ranks=" + ranks + " p" + p + "[" + i + "]");
                }
                for (var r : results) assertArrayEquals(got, r.get("p" + p), 0f, "every rank holds the same bits");
            }
            assertEquals(SHAPES.length, results.get(0).size());
        }
    }

    @Test
    void scalarsAreAveragedInDoubleIdenticallyOnEveryRank() {
        List<double[]> results = LocalWorld.run(3, pg -> {
            double[] v = {1e-12 * (pg.rank() + 1), 5.5 + pg.rank(), pg.rank() == 2 ? Double.NaN : 1};
            try (var sync = new DataParallelGradientSync(pg)) {
                sync.averageScalars(v);
            }
            return v;
        });
        for (double[] v : results) {
            assertEquals((1e-12 + 2e-12 + 3e-12) / 3, v[0], 0.0);
            assertEquals(6.5, v[1], 0.0);
            assertTrue(Double.isNaN(v[2]), "a NaN on one rank reaches every rank, so all stop together");
        }
    }

    @Test
    void ranksWithDifferentGradientsFailOnEveryRankInsteadOfMixingParameters() {
        var e = assertThrows(CommException.class, () -> LocalWorld.runEach(2, pg -> {
            Map<String, Tensor> ps = params(pg.rank(), pg.rank() == 0 ? SHAPES.length : SHAPES.length - 1);
            try (var sync = new DataParallelGradientSync(pg, 64)) {
                sync.reduceGradients(ps);
            } finally {
                ps.values().forEach(Tensor::close);
            }
        }));
        assertTrue(e.getMessage().contains("data-parallel ranks hold different gradients: rank 0 has 5 tensors of 87 elements, "
                + "rank 1 has 4 tensors of 70 elements"), e.getMessage());
    }
}
