package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * KV-cached early-exit generation against a reference that recomputes the whole sequence through
 * every layer at each step: with KV recomputation the caches hold exactly what a full forward
 * computes, so the two must agree token for token and exit for exit.
 */
@ExtendWith(LeakCheck.class)
class GeneratorTest {
    private static final int V = 13;

    private static List<ExitConfig> exits() {
        return List.of(
                new ExitConfig(1, ExitConfig.Placement.PRE, ExitKind.LAYER, false, WeightSchedule.constant(1), 1),
                new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1),
                new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.MLP, false, WeightSchedule.constant(1), 1),
                new ExitConfig(3, ExitConfig.Placement.POST, ExitKind.EMBEDDING, false, WeightSchedule.constant(1), 1));
    }

    /** Reference: full no-cache forward per step; first confident active exit wins, else the final head. */
    static List<int[]> reference(EarlyExitModel model, int[] prompt, GenerationConfig cfg) {
        List<Integer> seq = new ArrayList<>();
        for (int t : prompt) seq.add(t);
        List<Integer> outTok = new ArrayList<>(), outExit = new ArrayList<>();
        int L = model.config().nLayers();
        for (int step = 0; step < cfg.maxNewTokens(); step++) {
            try (var s = Scope.open(); var g = GradMode.noGrad()) {
                int n = seq.size();
                Tensor ids = Tensor.ofInts(seq.stream().mapToInt(Integer::intValue).toArray(), 1, n);
                Tensor x = model.embed(ids, 0);
                Tensor[][] byDepth = new Tensor[L + 1][];
                byDepth[0] = new Tensor[] {x, null, null};
                for (int l = 0; l < L; l++) {
                    byDepth[l + 1] = model.layers().get(l).forwardSplit(byDepth[l][0], 0, null);
                }
                int chosen = -1, exitLayer = L;
                if (step > 0 && cfg.earlyExit()) {
                    for (Exit e : model.exits()) {
                        int d = e.config().inputDepth();
                        Tensor hidden = switch (e.config().kind()) {
                            case MLP -> e.hidden(new Tensor[] {byDepth[d][1], byDepth[d][2]}, 0, null);
                            case LAYER -> e.layer().forward(byDepth[d][0], 0, null);
                            default -> byDepth[d][0];
                        };
                        float[] logits = lastRow(e.logits(hidden));
                        if (Sampler.logMaxProb(logits) >= Math.log(cfg.threshold())) {
                            chosen = Sampler.argmax(logits);
                            exitLayer = e.config().layer();
                            break;
                        }
                    }
                }
                if (chosen < 0) chosen = Sampler.argmax(lastRow(model.finalLogits(byDepth[L][0])));
                seq.add(chosen);
                outTok.add(chosen);
                outExit.add(exitLayer);
            }
        }
        return List.of(outTok.stream().mapToInt(Integer::intValue).toArray(), outExit.stream().mapToInt(Integer::intValue).toArray());
    }

    private static float[] lastRow(Tensor logits) {
        float[] all = logits.toFloatArray();
        return Arrays.copyOfRange(all, all.length - V, all.length);
    }

    private static void compare(ModelConfig cfg, double threshold, boolean expectExits) {
        try (var model = EarlyExitModel.create(cfg, Device.CPU, 3)) {
            sharpenHeads(model);
            var gen = new Generator(model);
            var gc = GenerationConfig.greedy(12).withThreshold(threshold);
            List<int[]> prompts = List.of(new int[] {1, 5, 7}, new int[] {2}, new int[] {4, 4, 9, 10, 3});
            var results = gen.generate(prompts, gc, TokenListener.NONE);
            int early = 0, total = 0;
            for (int i = 0; i < prompts.size(); i++) {
                List<int[]> ref = reference(model, prompts.get(i), gc);
                assertArrayEquals(ref.get(0), results.get(i).tokenIds(), "tokens of prompt " + i);
                assertArrayEquals(ref.get(1), results.get(i).exitLayers(), "exits of prompt " + i);
                for (int e : ref.get(1)) {
                    total++;
                    if (e < cfg.nLayers()) early++;
                }
            }
            if (expectExits) assertTrue(early > 0 && early < total, early + " of " + total + " tokens exited early");
        }
    }

    /** Random init gives near-uniform heads; scale them so exit confidences spread across the threshold. */
    private static void sharpenHeads(EarlyExitModel model) {
        for (var e : model.parameters().all().entrySet()) {
            if (e.getKey().endsWith("head.weight") || e.getKey().contains("embed") || e.getKey().startsWith("wte")) {
                try (var s = Scope.open(); var g = GradMode.noGrad()) {
                    e.getValue().copyFrom(e.getValue().scale(60f));
                }
            }
        }
    }

    @Test
    void thresholdOneReproducesFullModelGreedyGeneration() {
        compare(ModelConfig.gpt2(V, 16, 3, 2, 64, exits()), 1.0, false);
        compare(ModelConfig.llama(V, 16, 3, 4, 2, 24, 64, exits().subList(1, 4)), 1.0, false);
    }

    @Test
    void earlyExitWithKvRecomputationMatchesFullRecomputationGpt2() {
        compare(ModelConfig.gpt2(V, 16, 3, 2, 64, exits()), 0.6, true);
    }

    @Test
    void earlyExitWithKvRecomputationMatchesFullRecomputationLlama() {
        compare(ModelConfig.llama(V, 16, 3, 4, 2, 24, 64, exits().subList(1, 4)), 0.6, true);
    }

    /**
     * A post exit at the last layer that always fires leaves every layer's cache as full as the full model
     * does, and holds nothing more: after 400 tokens the live memory equals the never-exiting run's (the
     * exited rows used to pile up in a band no layer reads, one row and one copy of the pile per token).
     */
    @Test
    void aPostExitAtTheLastLayerHoldsNoPendingRows() {
        var last = new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1);
        try (var model = EarlyExitModel.create(ModelConfig.gpt2(V, 32, 2, 2, 512, List.of(last)), Device.CPU, 3)) {
            var gen = new Generator(model);
            long[] atEnd = new long[2];
            double[] thresholds = {1.0, 0.0};
            for (int k = 0; k < 2; k++) {
                int run = k;
                var out = gen.generate(List.of(new int[] {1, 2}), GenerationConfig.greedy(400).withThreshold(thresholds[k]), (s, t) -> {
                    atEnd[run] = dev.exeunt.tensor.HostMemory.allocatedBytes();
                    return true;
                }).get(0);
                if (k == 1) assertTrue(java.util.Arrays.stream(out.tokens().toArray(GeneratedToken[]::new)).allMatch(t -> t.exitLayer() == 2));
            }
            assertTrue(Math.abs(atEnd[1] - atEnd[0]) < 16 * 1024, "live bytes after 400 tokens: " + atEnd[1] + " exiting vs " + atEnd[0] + " full");
        }
    }

    /** A layer exit that is not checked (early exit off, or not among exit_layers) runs no row of its layer. */
    @Test
    void anInactiveLayerExitCostsNoWork() {
        var layer = new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.LAYER, false, WeightSchedule.constant(1), 1);
        var norm = new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1);
        try (var model = EarlyExitModel.create(ModelConfig.gpt2(V, 16, 3, 2, 64, List.of(layer, norm)), Device.CPU, 3)) {
            var gen = new Generator(model);
            int[] prompt = {1, 2, 3};
            var full = gen.generate(List.of(prompt), GenerationConfig.greedy(10), TokenListener.NONE).get(0);
            assertEquals(0, gen.lastStats().exitLayerRows(), "early exit off");
            gen.generate(List.of(prompt), GenerationConfig.greedy(10).withThreshold(0.0).withExitLayers(new int[] {2}), TokenListener.NONE);
            assertEquals(0, gen.lastStats().exitLayerRows(), "only the layer-2 exit checked");
            gen.generate(List.of(prompt), GenerationConfig.greedy(10).withThreshold(1.0 - 1e-9), TokenListener.NONE);
            assertTrue(gen.lastStats().exitLayerRows() >= prompt.length + 9, "checked: its layer runs for the prompt and every token");
            assertArrayEquals(full.tokenIds(), gen.generate(List.of(prompt), GenerationConfig.greedy(10), TokenListener.NONE).get(0).tokenIds());
        }
    }

    /**
     * Forced exits (the early-exit benchmark's): rate 0 exits nowhere though the exits are checked, rate 1
     * exits every token at one of the checked exits (both used), 0.5 about half, the same tokens exiting
     * every run; excluded exits are never chosen.
     */
    @Test
    void forcedExitsFollowTheirSeededPattern() {
        var mc = ModelConfig.llama(V, 16, 4, 4, 2, 24, 256, exits().subList(1, 3)); // exits after layers 1 and 2
        try (var model = EarlyExitModel.create(mc, Device.CPU, 3)) {
            var gen = new Generator(model);
            var cfg = GenerationConfig.greedy(201).withThreshold(0.5);
            java.util.function.BiFunction<ForcedExits, GenerationConfig, int[]> exitsOf = (pattern, c) -> {
                gen.forceExits(pattern);
                try {
                    var g = gen.generate(List.of(new int[] {1, 2}), c, TokenListener.NONE).get(0);
                    return g.tokens().stream().skip(1).mapToInt(GeneratedToken::exitLayer).toArray(); // the first comes from the prompt
                } finally {
                    gen.forceExits(null);
                }
            };
            assertTrue(java.util.Arrays.stream(exitsOf.apply(new ForcedExits(0, 1), cfg)).allMatch(l -> l == 4));
            int[] all = exitsOf.apply(new ForcedExits(1, 1), cfg);
            assertTrue(java.util.Arrays.stream(all).allMatch(l -> l == 1 || l == 2) && java.util.Arrays.stream(all).distinct().count() == 2);
            int[] half = exitsOf.apply(new ForcedExits(0.5, 1), cfg);
            long early = java.util.Arrays.stream(half).filter(l -> l < 4).count();
            assertTrue(early > 70 && early < 130, early + " of 200 tokens exited at rate 0.5");
            assertArrayEquals(half, exitsOf.apply(new ForcedExits(0.5, 1), cfg));
            assertTrue(java.util.Arrays.stream(exitsOf.apply(new ForcedExits(1, 1), cfg.withExitLayers(new int[] {2}))).allMatch(l -> l == 2));
            assertThrows(IllegalArgumentException.class, () -> new ForcedExits(1.5, 1));
        }
    }

    @Test
    void eosStopsAndListenerStreamsAndBadInputIsRefused() {
        try (var model = EarlyExitModel.create(ModelConfig.gpt2(V, 16, 2, 2, 32, List.of()), Device.CPU, 3)) {
            var gen = new Generator(model);
            List<int[]> streamed = new ArrayList<>();
            var first = gen.generate(List.of(new int[] {1, 2}), GenerationConfig.greedy(5), (s, t) -> {
                streamed.add(new int[] {s, t.token()});
                return true;
            }).get(0);
            assertEquals(5, streamed.size());
            int eos = first.tokenIds()[2];
            var stopped = gen.generate(List.of(new int[] {1, 2}), GenerationConfig.greedy(5).withEos(eos), TokenListener.NONE).get(0);
            assertEquals("eos", stopped.finishReason());
            assertEquals(eos, stopped.tokenIds()[stopped.tokenIds().length - 1]);
            var e = assertThrows(IllegalArgumentException.class,
                    () -> gen.generate(List.of(new int[] {1, 99}), GenerationConfig.greedy(2), TokenListener.NONE));
            assertTrue(e.getMessage().contains("token id 99 is out of range"), e.getMessage());
            var e2 = assertThrows(IllegalArgumentException.class, () -> gen.generate(List.of(new int[] {1}),
                    GenerationConfig.greedy(2).withThreshold(0.5).withExitLayers(new int[] {7}), TokenListener.NONE));
            assertTrue(e2.getMessage().contains("no exit at layer 7"), e2.getMessage());
        }
    }
}
