package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.cpu.CpuQuant;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Self-speculative decoding is lossless: greedy output equals the full model's token for token for any
 * threshold (exits right or wrong), caches after rollbacks equal those of a run that never drafted,
 * and sampling follows the full model's distribution.
 */
@ExtendWith(LeakCheck.class)
class SpeculativeDecodingTest {
    private static final int V = 13;

    private static ExitConfig exit(int layer, ExitConfig.Placement placement, ExitKind kind) {
        return new ExitConfig(layer, placement, kind, false, WeightSchedule.constant(1), 1);
    }

    private static List<ExitConfig> allKinds() {
        return List.of(exit(1, ExitConfig.Placement.PRE, ExitKind.LAYER), exit(1, ExitConfig.Placement.POST, ExitKind.NORM),
                exit(2, ExitConfig.Placement.POST, ExitKind.MLP), exit(3, ExitConfig.Placement.POST, ExitKind.EMBEDDING));
    }

    /** Scales the heads so exit confidences spread over the thresholds (random init gives near-uniform heads). */
    private static void sharpen(EarlyExitModel model, float factor) {
        for (var e : model.parameters().all().entrySet()) {
            if (e.getKey().endsWith("head.weight") || e.getKey().contains("embed") || e.getKey().startsWith("wte")) {
                try (var s = Scope.open(); var g = GradMode.noGrad()) {
                    e.getValue().copyFrom(e.getValue().scale(factor));
                }
            }
        }
    }

    private static final List<int[]> PROMPTS = List.of(new int[] {1, 5, 7}, new int[] {2}, new int[] {4, 4, 9, 10, 3}, new int[] {12, 0});

    /** Greedy: every prompt, alone and packed with the others, at several thresholds and draft limits, gives the full model's tokens. */
    private static long[] greedyMatchesFullModel(ModelConfig mc, long seed, boolean secondExitCopiesTheFinalHead) {
        long drafted = 0, accepted = 0;
        try (var model = EarlyExitModel.create(mc, Device.CPU, seed)) {
            sharpen(model, 60f);
            // An exit reading the final head agrees with the full model often; random heads rarely do.
            if (secondExitCopiesTheFinalHead) model.exits().get(1).head().copyFrom(model.lmHead());
            var gen = new Generator(model);
            var full = GenerationConfig.greedy(24);
            List<int[]> expected = new ArrayList<>();
            for (int[] p : PROMPTS) expected.add(gen.generate(List.of(p), full, TokenListener.NONE).get(0).tokenIds());
            for (double threshold : new double[] {0.0, 0.3, 0.6, 0.9}) {
                for (int draftMax : new int[] {1, 3, 7}) {
                    var spec = full.withThreshold(threshold).withSpeculative(true, draftMax);
                    var packed = gen.generate(PROMPTS, spec, TokenListener.NONE);
                    for (int i = 0; i < PROMPTS.size(); i++) {
                        String what = "prompt " + i + " at threshold " + threshold + ", draft max " + draftMax;
                        assertArrayEquals(expected.get(i), packed.get(i).tokenIds(), what + " (packed)");
                        assertArrayEquals(expected.get(i), gen.generate(List.of(PROMPTS.get(i)), spec, TokenListener.NONE).get(0).tokenIds(), what);
                        var st = gen.lastStats();
                        drafted += Arrays.stream(st.drafted()).sum();
                        accepted += Arrays.stream(st.accepted()).sum();
                    }
                }
            }
        }
        return new long[] {drafted, accepted};
    }

    @Test
    void greedyOutputIsTheFullModelsGpt2() {
        long[] n = greedyMatchesFullModel(ModelConfig.gpt2(V, 16, 3, 2, 64, allKinds()), 3, false);
        assertTrue(n[1] > 0 && n[1] < n[0], n[1] + " of " + n[0] + " drafts accepted: both outcomes must occur");
    }

    @Test
    void greedyOutputIsTheFullModelsLlama() {
        long[] n = greedyMatchesFullModel(ModelConfig.llama(V, 16, 3, 4, 2, 24, 64, allKinds().subList(1, 4)), 5, true);
        assertTrue(n[1] > 0 && n[1] < n[0], n[1] + " of " + n[0] + " drafts accepted: both outcomes must occur");
    }

    /**
     * With d = 32 the exit heads are checked through Q8_0 copies ({@link DraftHeads}): drafts may differ
     * from the F32 heads' but the output is still the full model's.
     */
    @Test
    void greedyOutputIsTheFullModelsWithQuantizedDraftHeads() {
        var gpt2 = ModelConfig.gpt2(V, 32, 3, 2, 64, allKinds());
        var llama = ModelConfig.llama(V, 32, 3, 4, 2, 48, 64, allKinds().subList(1, 4));
        for (var mc : List.of(gpt2, llama)) {
            try (var model = EarlyExitModel.create(mc, Device.CPU, 3)) {
                for (Tensor h : DraftHeads.of(model, true)) assertEquals(DType.Q8_0, h.dtype(), "a d = 32 exit head is checked in Q8_0");
                for (int e = 0; e < model.exits().size(); e++) {
                    assertTrue(DraftHeads.of(model, false)[e] == model.exits().get(e).head(), "thresholded checks read the exit's own head");
                }
            }
            long[] n = greedyMatchesFullModel(mc, 3, mc == llama);
            assertTrue(n[1] > 0 && n[1] < n[0], mc.family() + ": " + n[1] + " of " + n[0] + " drafts accepted: both outcomes must occur");
        }
    }

    /**
     * A Q8_0 draft head holds the F32 head's weights to Q8_0's rounding (half a step, plus the F16 scale's),
     * is made once per model and freed with it (LeakCheck); heads that cannot be blocked stay as they are.
     */
    @Test
    void draftHeadsAreQ8CopiesOfTheExitHeads() {
        var mc = ModelConfig.gpt2(V, 32, 2, 2, 16, List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM)));
        try (var model = EarlyExitModel.create(mc, Device.CPU, 9); var s = Scope.open()) {
            Tensor f32 = model.exits().get(0).head(), q = DraftHeads.of(model, true)[0];
            assertTrue(q == DraftHeads.of(model, true)[0], "one copy per model, not one per call");
            assertArrayEquals(f32.shape(), q.shape());
            float[] w = f32.contiguous().toFloatArray();
            var deq = Tensor.empty(DType.F32, Device.CPU, w.length);
            CpuQuant.dequantizeQ8_0(q.segment(), q.dtype().byteSize(q.offset()), deq.segment(), deq.offset(), w.length);
            float[] back = deq.toFloatArray();
            for (int b = 0; b < w.length / 32; b++) {
                float amax = 0;
                for (int i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(w[32 * b + i]));
                for (int i = 0; i < 32; i++) assertEquals(w[32 * b + i], back[32 * b + i], amax / 127 * 0.6 + 1e-7, "weight " + (32 * b + i));
            }
        }
        try (var model = EarlyExitModel.create(ModelConfig.gpt2(V, 16, 2, 2, 16, List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM))),
                Device.CPU, 9)) {
            assertTrue(DraftHeads.of(model, true)[0] == model.exits().get(0).head(), "16 weights per row do not make a Q8_0 block: the head is used as it is");
        }
    }

    /**
     * Exits that are nearly always wrong (random heads, threshold 0: every token drafts at the first exit):
     * still the full model's tokens, and every accepted token's exit layer says which exit drafted it.
     */
    @Test
    void exitsThatAreWrongOftenStillGiveTheFullModelsTokens() {
        var mc = ModelConfig.gpt2(V, 16, 4, 2, 128, List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM)));
        try (var model = EarlyExitModel.create(mc, Device.CPU, 11)) {
            sharpen(model, 80f);
            var gen = new Generator(model);
            int[] prompt = {3, 1, 4, 1, 5};
            int[] full = gen.generate(List.of(prompt), GenerationConfig.greedy(100), TokenListener.NONE).get(0).tokenIds();
            var out = gen.generate(List.of(prompt), GenerationConfig.greedy(100).withThreshold(0).withSpeculative(true), TokenListener.NONE).get(0);
            assertArrayEquals(full, out.tokenIds());
            var st = gen.lastStats();
            assertTrue(st.drafted()[0] >= 50, st.drafted()[0] + " drafts");
            assertTrue(st.acceptanceRate(0) < 0.9, "acceptance " + st.acceptanceRate(0));
            long early = out.tokens().stream().filter(t -> t.exitLayer() == 1).count();
            assertEquals(st.accepted()[0], early, "accepted drafts are the tokens marked with their exit");
        }
    }

    /** After drafting, rejecting and rolling back, every layer's cache holds exactly what the never-drafting run's holds. */
    @Test
    void rollbackLeavesTheCachesOfARunThatNeverDrafted() {
        var mc = ModelConfig.llama(V, 16, 3, 4, 2, 24, 64, allKinds().subList(1, 3));
        try (var model = EarlyExitModel.create(mc, Device.CPU, 7)) {
            sharpen(model, 60f);
            var gen = new Generator(model);
            int[] prompt = {1, 5, 7};
            List<float[][]> full = caches(gen, prompt, GenerationConfig.greedy(30));
            List<float[][]> spec = caches(gen, prompt, GenerationConfig.greedy(30).withThreshold(0.3).withSpeculative(true, 4));
            long rejected = Arrays.stream(gen.lastStats().drafted()).sum() - Arrays.stream(gen.lastStats().accepted()).sum();
            assertTrue(rejected > 0, "some drafts were rejected");
            for (int l = 0; l < full.size(); l++) {
                float[] fk = full.get(l)[0], sk = spec.get(l)[0];
                assertTrue(sk.length >= fk.length, "layer " + l + " holds " + sk.length + " floats, the full run " + fk.length);
                assertArrayEquals(fk, Arrays.copyOf(sk, fk.length), "keys of layer " + l);
                assertArrayEquals(full.get(l)[1], Arrays.copyOf(spec.get(l)[1], fk.length), "values of layer " + l);
            }
        }
    }

    /** Keys and values of each layer's valid positions at the end of a call. */
    private static List<float[][]> caches(Generator gen, int[] prompt, GenerationConfig cfg) {
        List<float[][]> out = new ArrayList<>();
        gen.inspectSequences(seqs -> {
            for (KvCache k : seqs.get(0).layerCache) {
                try (var s = Scope.open()) {
                    out.add(new float[][] {k.keys().narrow(1, 0, k.length()).contiguous().toFloatArray(),
                            k.values().narrow(1, 0, k.length()).contiguous().toFloatArray()});
                }
            }
        });
        try {
            gen.generate(List.of(prompt), cfg, TokenListener.NONE);
        } finally {
            gen.inspectSequences(null);
        }
        return out;
    }

    /**
     * Sampling: three generated tokens (the second and third drafted and verified by the accept/reject
     * rule) are jointly distributed as the full model's, by a chi-square test over 3000 seeded samples
     * against the exact probabilities from the training-path forward.
     */
    @Test
    void speculativeSamplingFollowsTheFullModelsDistribution() {
        samplingFollowsTheFullModelsDistribution(16);
    }

    /** The same with a Q8_0 draft head: the rule weighs each draft by the distribution it was drawn from, the Q8_0 head's. */
    @Test
    void speculativeSamplingWithAQuantizedDraftHeadFollowsTheFullModelsDistribution() {
        samplingFollowsTheFullModelsDistribution(32);
    }

    private static void samplingFollowsTheFullModelsDistribution(int d) {
        int vocab = 5;
        var mc = ModelConfig.gpt2(vocab, d, 3, 2, 32, List.of(exit(1, ExitConfig.Placement.POST, ExitKind.NORM)));
        try (var model = EarlyExitModel.create(mc, Device.CPU, 13)) {
            sharpen(model, 8f);
            var gen = new Generator(model);
            int[] prompt = {1, 2};
            int n = 3000;
            long[] counts = new long[vocab * vocab * vocab];
            long drafted = 0, accepted = 0;
            for (int seed = 0; seed < n; seed++) {
                var cfg = new GenerationConfig(3, 1.0, 0, 1, seed, 0.0, null, -1).withSpeculative(true, 2);
                int[] t = gen.generate(List.of(prompt), cfg, TokenListener.NONE).get(0).tokenIds();
                counts[(t[0] * vocab + t[1]) * vocab + t[2]]++;
                drafted += Arrays.stream(gen.lastStats().drafted()).sum();
                accepted += Arrays.stream(gen.lastStats().accepted()).sum();
            }
            assertTrue(accepted > 0 && accepted < drafted, accepted + " of " + drafted + " drafts accepted: both branches of the rule run");
            double[] p0 = fullModelProbs(model, prompt);
            double chi2 = 0;
            int cells = 0;
            double pooledExpected = 0, pooledObserved = 0;
            for (int a = 0; a < vocab; a++) {
                double[] p1 = fullModelProbs(model, new int[] {prompt[0], prompt[1], a});
                for (int b = 0; b < vocab; b++) {
                    double[] p2 = fullModelProbs(model, new int[] {prompt[0], prompt[1], a, b});
                    for (int c = 0; c < vocab; c++) {
                        double expected = n * p0[a] * p1[b] * p2[c];
                        long observed = counts[(a * vocab + b) * vocab + c];
                        if (expected < 5) {
                            pooledExpected += expected;
                            pooledObserved += observed;
                            continue;
                        }
                        chi2 += (observed - expected) * (observed - expected) / expected;
                        cells++;
                    }
                }
            }
            if (pooledExpected >= 5) {
                chi2 += (pooledObserved - pooledExpected) * (pooledObserved - pooledExpected) / pooledExpected;
                cells++;
            }
            int df = cells - 1;
            // chi-square critical value at p = 0.001 (Wilson-Hilferty approximation)
            double z = 3.09, critical = df * Math.pow(1 - 2.0 / (9 * df) + z * Math.sqrt(2.0 / (9 * df)), 3);
            assertTrue(df >= 3, df + " degrees of freedom");
            assertTrue(chi2 < critical, "chi-square " + chi2 + " over " + df + " degrees of freedom (critical " + critical + ")");
        }
    }

    /** The full model's next-token distribution after ids (softmax at temperature 1), by a plain forward. */
    private static double[] fullModelProbs(EarlyExitModel model, int[] ids) {
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            Tensor x = model.embed(Tensor.ofInts(ids, 1, ids.length), 0);
            for (var layer : model.layers()) x = layer.forward(x, 0, null);
            float[] all = model.finalLogits(x).toFloatArray();
            int v = model.config().vocabSize();
            float[] last = Arrays.copyOfRange(all, all.length - v, all.length);
            double max = Double.NEGATIVE_INFINITY;
            for (float f : last) max = Math.max(max, f);
            double[] p = new double[v];
            double sum = 0;
            for (int i = 0; i < v; i++) sum += p[i] = Math.exp(last[i] - max);
            for (int i = 0; i < v; i++) p[i] /= sum;
            return p;
        }
    }
}
