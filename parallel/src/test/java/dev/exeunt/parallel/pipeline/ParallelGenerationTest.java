package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.generate.EeMethod;
import dev.exeunt.model.generate.Generation;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Generation over tensor-parallel shards and pipeline stages gives one rank's tokens and exit layers: tp 2,
 * pp 2, pp 4 and tp 2 x pp 2 with KV recomputation, and pp 2, pp 4 and tp 2 x pp 2 with the pipeline
 * method (the method changes when the skipped layers' caches fill, not the output), on local ranks, GPT-2 and Llama with every exit
 * kind (exits inside stages, at a stage's last layer and reading a stage's first layer), thresholds
 * 1.0, 0.8 and 0.4, one prompt and a packed batch of three, greedy and sampled.
 *
 * <p>The heads are scaled up so their confidence spreads over (0, 1): at 0.4 some tokens exit at every
 * exit and some go through every layer, which the test checks, so a wrong hand-over between stages (a
 * lost pending row, a token decided on the wrong stage) changes tokens or exit layers.
 */
@ExtendWith(LeakCheck.class)
class ParallelGenerationTest {
    static final int VOCAB = 96, NEW = 12;
    /** Per exit (config order), then the final head. */
    static final float[] SCALE = {10, 13, 17, 21, 25, 40};
    static final double[] THRESHOLDS = {1.0, 0.8, 0.4};
    static final List<List<int[]>> BATCHES = List.of(List.of(new int[] {5, 17, 33}),
            List.of(new int[] {5, 17, 33}, new int[] {2}, new int[] {40, 41, 42, 43, 44}));

    static ExitConfig exit(int layer, ExitConfig.Placement at, ExitKind kind, boolean shared) {
        return new ExitConfig(layer, at, kind, shared, WeightSchedule.constant(1), 1);
    }

    /** 4 layers: at pp 2 the exits sit inside stage 0, at its end, at stage 1's first layer and inside stage 1. */
    static ModelConfig gpt2() {
        return ModelConfig.gpt2(VOCAB, 32, 4, 4, 32, List.of(
                exit(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, false),
                exit(1, ExitConfig.Placement.POST, ExitKind.NORM, false),
                exit(2, ExitConfig.Placement.POST, ExitKind.MLP, false),
                exit(3, ExitConfig.Placement.PRE, ExitKind.NORM, false),
                exit(3, ExitConfig.Placement.POST, ExitKind.LAYER, false)));
    }

    /** Untied, grouped kv heads (4 over 2), every exit kind. */
    static ModelConfig llama() {
        return ModelConfig.llama(VOCAB, 32, 4, 4, 2, 48, 32, List.of(
                exit(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, false),
                exit(1, ExitConfig.Placement.POST, ExitKind.MLP, false),
                exit(2, ExitConfig.Placement.POST, ExitKind.LAYER, false),
                exit(3, ExitConfig.Placement.PRE, ExitKind.NORM, false),
                exit(3, ExitConfig.Placement.POST, ExitKind.NORM, false)));
    }

    /** Every run of one rank or layout: per config, per batch, the generations. */
    static List<List<Generation>> generateAll(EarlyExitModel model, EeMethod method) {
        sharpenHeads(model);
        var gen = new Generator(model);
        gen.useMethod(method);
        List<List<Generation>> out = new ArrayList<>();
        for (GenerationConfig cfg : configs()) {
            for (List<int[]> batch : BATCHES) out.add(gen.generate(batch, cfg, TokenListener.NONE));
        }
        return out;
    }

    static List<GenerationConfig> configs() {
        List<GenerationConfig> cfgs = new ArrayList<>();
        for (double t : THRESHOLDS) cfgs.add(GenerationConfig.greedy(NEW).withThreshold(t));
        cfgs.add(new GenerationConfig(NEW, 0.8, 0, 1, 42, 0.4, null, -1));
        return cfgs;
    }

    /**
     * Exit i's head times SCALE[i] (then the final head): logits spread enough for confident tokens, the
     * early exits less sure than the later ones, so each of them takes some tokens at 0.4.
     */
    static void sharpenHeads(EarlyExitModel model) {
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            for (var e : model.parameters().all().entrySet()) {
                String name = e.getKey();
                var m = java.util.regex.Pattern.compile("exits\\.(\\d+)\\.head\\.weight|lm_head\\.weight").matcher(name);
                if (!m.matches()) continue;
                float scale = SCALE[m.group(1) == null ? SCALE.length - 1 : Integer.parseInt(m.group(1))];
                Tensor t = e.getValue();
                float[] w = t.toFloatArray();
                for (int i = 0; i < w.length; i++) w[i] *= scale;
                t.copyFrom(Tensor.of(w, t.shape()));
            }
        }
    }

    static List<List<List<Generation>>> layout(ModelConfig mc, int tp, int pp, EeMethod method) {
        return LocalWorld.run(tp * pp, pg -> {
            try (var state = ParallelState.create(pg, tp, 1, pp).validate(mc);
                 var model = EarlyExitModel.createStage(mc, Device.CPU, 7, ProcessGroupTensorParallel.of(state, false),
                         ProcessGroupPipelineParallel.of(state), PipelineStage.balanced(mc.nLayers(), pp, state.ppRank()))) {
                return generateAll(model, method);
            }
        });
    }

    void assertLayoutsGiveOneRanksTokens(ModelConfig mc) {
        List<List<Generation>> one;
        try (var model = EarlyExitModel.create(mc, Device.CPU, 7)) {
            one = generateAll(model, EeMethod.RECOMPUTE);
        }
        assertExitsSpread(mc, one);
        // {tp, pp, pipeline method}
        for (int[] layout : new int[][] {{2, 1, 0}, {1, 2, 0}, {1, 4, 0}, {2, 2, 0}, {1, 2, 1}, {1, 4, 1}, {2, 2, 1}}) {
            EeMethod method = layout[2] == 1 ? EeMethod.PIPELINE : EeMethod.RECOMPUTE;
            String name = mc.family() + " tp " + layout[0] + " x pp " + layout[1] + " " + method;
            List<List<List<Generation>>> ranks = layout(mc, layout[0], layout[1], method);
            for (int r = 0; r < ranks.size(); r++) {
                for (int run = 0; run < one.size(); run++) {
                    List<Generation> want = one.get(run), got = ranks.get(r).get(run);
                    assertEquals(want.size(), got.size());
                    for (int i = 0; i < want.size(); i++) {
                        String what = name + " rank " + r + " run " + run + " prompt " + i;
                        assertEquals(List.of(want.get(i).tokens().stream().map(t -> t.token()).toList(), want.get(i).finishReason()),
                                List.of(got.get(i).tokens().stream().map(t -> t.token()).toList(), got.get(i).finishReason()), what + ": tokens");
                        assertEquals(want.get(i).tokens().stream().map(t -> t.exitLayer()).toList(),
                                got.get(i).tokens().stream().map(t -> t.exitLayer()).toList(), what + ": exit layers");
                    }
                }
            }
        }
    }

    /** The comparison can fail: at threshold 0.4 every exit fires for some token and some tokens go through every layer. */
    static void assertExitsSpread(ModelConfig mc, List<List<Generation>> one) {
        int[] layers = mc.exits().stream().mapToInt(ExitConfig::layer).distinct().toArray();
        List<Integer> seen = new ArrayList<>();
        for (int run = 2 * BATCHES.size(); run < 3 * BATCHES.size(); run++) {
            // after the first token, which the prompt's pass gives at full depth
            for (Generation g : one.get(run)) g.tokens().subList(1, g.tokens().size()).forEach(t -> seen.add(t.exitLayer()));
        }
        for (int layer : layers) assertTrue(seen.contains(layer), mc.family() + ": no token exited at layer " + layer + " at 0.4: " + seen);
        assertTrue(seen.contains(mc.nLayers()), mc.family() + ": every decoded token exited early at 0.4: " + seen);
    }

    @Test
    void gpt2LayoutsGenerateOneRanksTokens() {
        assertLayoutsGiveOneRanksTokens(gpt2());
    }

    @Test
    void llamaLayoutsGenerateOneRanksTokens() {
        assertLayoutsGiveOneRanksTokens(llama());
    }

    /**
     * A listener only world rank 0 has (a server's stop sequence) stops a sequence after its 4th token: every
     * rank ends it there too, and the other prompts of the batch run on, as on one rank.
     */
    @Test
    void aStopOnlyRankZeroSeesStopsEveryRank() {
        ModelConfig mc = gpt2();
        var cfg = GenerationConfig.greedy(NEW).withThreshold(0.4);
        List<int[]> batch = BATCHES.get(1);
        int[] seen = {0};
        List<Generation> one;
        try (var model = EarlyExitModel.create(mc, Device.CPU, 7)) {
            sharpenHeads(model);
            one = new Generator(model).generate(batch, cfg, (seq, t) -> !(seq == 1 && ++seen[0] >= 4));
        }
        assertEquals(4, one.get(1).tokens().size());
        assertEquals("stop", one.get(1).finishReason());
        for (int[] layout : new int[][] {{2, 1, 0}, {1, 2, 0}, {2, 2, 1}}) {
            int tp = layout[0], pp = layout[1];
            EeMethod method = layout[2] == 1 ? EeMethod.PIPELINE : EeMethod.RECOMPUTE;
            List<List<Generation>> ranks = LocalWorld.run(tp * pp, pg -> {
                try (var state = ParallelState.create(pg, tp, 1, pp).validate(mc);
                     var model = EarlyExitModel.createStage(mc, Device.CPU, 7, ProcessGroupTensorParallel.of(state, false),
                             ProcessGroupPipelineParallel.of(state), PipelineStage.balanced(mc.nLayers(), pp, state.ppRank()))) {
                    sharpenHeads(model);
                    var gen = new Generator(model);
                    gen.useMethod(method);
                    int[] mine = {0};
                    TokenListener l = state.worldRank() == 0 ? (seq, t) -> !(seq == 1 && ++mine[0] >= 4) : TokenListener.NONE;
                    return gen.generate(batch, cfg, l);
                }
            });
            for (int r = 0; r < ranks.size(); r++) {
                for (int i = 0; i < batch.size(); i++) {
                    String what = "tp " + tp + " pp " + pp + " " + method + " rank " + r + " prompt " + i;
                    assertEquals(one.get(i).finishReason(), ranks.get(r).get(i).finishReason(), what);
                    assertEquals(List.of(one.get(i).tokenIds()).stream().map(java.util.Arrays::toString).toList(),
                            List.of(ranks.get(r).get(i).tokenIds()).stream().map(java.util.Arrays::toString).toList(), what);
                }
            }
        }
    }

    /**
     * Speculative decoding under tensor parallelism (the tensor-op path's drafts, batched verification and
     * rollback): greedy, every rank gives the full model's tokens at 0.8 and 0.4 while the exits draft;
     * sampled, one rank's speculative output (the same draws on the same logits).
     */
    @Test
    void speculativeDecodingUnderTensorParallelismIsLossless() {
        for (ModelConfig mc : List.of(gpt2(), llama())) {
            List<GenerationConfig> cfgs = new ArrayList<>();
            for (double t : new double[] {0.8, 0.4}) cfgs.add(GenerationConfig.greedy(NEW).withThreshold(t).withSpeculative(true, 3));
            cfgs.add(new GenerationConfig(NEW, 0.8, 0, 1, 42, 0.4, null, -1).withSpeculative(true, 3));
            List<List<Generation>> full = new ArrayList<>(), spec = new ArrayList<>();
            try (var model = EarlyExitModel.create(mc, Device.CPU, 7)) {
                sharpenHeads(model);
                var gen = new Generator(model);
                for (GenerationConfig cfg : cfgs) {
                    for (List<int[]> batch : BATCHES) {
                        full.add(gen.generate(batch, cfg.withSpeculative(false).withThreshold(1.0), TokenListener.NONE));
                        spec.add(gen.generate(batch, cfg, TokenListener.NONE));
                    }
                }
            }
            List<long[]> drafted = new ArrayList<>();
            List<List<List<Generation>>> ranks = LocalWorld.run(2, pg -> {
                try (var state = ParallelState.create(pg, 2, 1, 1).validate(mc);
                     var model = EarlyExitModel.create(mc, Device.CPU, 7, ProcessGroupTensorParallel.of(state, false))) {
                    sharpenHeads(model);
                    var gen = new Generator(model);
                    List<List<Generation>> out = new ArrayList<>();
                    long[] d = new long[1];
                    for (GenerationConfig cfg : cfgs) {
                        for (List<int[]> batch : BATCHES) {
                            out.add(gen.generate(batch, cfg, TokenListener.NONE));
                            d[0] += java.util.Arrays.stream(gen.lastStats().drafted()).sum();
                        }
                    }
                    synchronized (drafted) {
                        drafted.add(d);
                    }
                    return out;
                }
            });
            assertTrue(drafted.get(0)[0] > 10, mc.family() + ": the exits drafted only " + drafted.get(0)[0] + " tokens");
            for (int r = 0; r < 2; r++) {
                for (int run = 0; run < full.size(); run++) {
                    boolean greedy = cfgs.get(run / BATCHES.size()).temperature() == 0;
                    List<Generation> want = greedy ? full.get(run) : spec.get(run), got = ranks.get(r).get(run);
                    for (int i = 0; i < want.size(); i++) {
                        assertEquals(java.util.Arrays.toString(want.get(i).tokenIds()), java.util.Arrays.toString(got.get(i).tokenIds()),
                                mc.family() + " tp 2 rank " + r + " run " + run + " prompt " + i + (greedy ? " (the full model's)" : " (one rank's speculative)"));
                    }
                }
            }
        }
    }

    /**
     * The pipeline method fills every stage's caches with the keys and values recomputation gives: after
     * the same generation, each stage's layer caches hold the same values at every position both filled
     * (recomputation may still have the last exited tokens pending), and the pipeline method's cover every
     * position every layer has seen.
     */
    @Test
    void thePipelineMethodFillsTheCachesRecomputationWould() {
        ModelConfig mc = llama();
        var cfg = GenerationConfig.greedy(NEW).withThreshold(0.4);
        List<List<Object>> ranks = LocalWorld.run(2, pg -> {
            try (var state = ParallelState.create(pg, 1, 1, 2).validate(mc);
                 var model = EarlyExitModel.createStage(mc, Device.CPU, 7, TensorParallel.NONE, ProcessGroupPipelineParallel.of(state),
                         PipelineStage.balanced(mc.nLayers(), 2, state.ppRank()))) {
                sharpenHeads(model);
                var gen = new Generator(model);
                List<Object> caches = new ArrayList<>();
                gen.inspectLayerCaches(seqs -> caches.add(snapshot(seqs)));
                for (EeMethod m : EeMethod.values()) {
                    gen.useMethod(m);
                    gen.generate(BATCHES.get(1), cfg, TokenListener.NONE);
                }
                return caches;
            }
        });
        int compared = 0;
        for (int stage = 0; stage < 2; stage++) {
            @SuppressWarnings("unchecked")
            var recompute = (List<List<float[][]>>) ranks.get(stage).get(0);
            @SuppressWarnings("unchecked")
            var pipeline = (List<List<float[][]>>) ranks.get(stage).get(1);
            for (int seq = 0; seq < recompute.size(); seq++) {
                for (int layer = 0; layer < mc.nLayers(); layer++) {
                    float[][] r = recompute.get(seq).get(layer), p = pipeline.get(seq).get(layer);
                    if (r == null) continue; // another stage's layer
                    assertTrue(p[0].length >= r[0].length, "stage " + stage + " seq " + seq + " layer " + layer + ": the pipeline method filled fewer positions");
                    for (int kv = 0; kv < 2; kv++) {
                        for (int j = 0; j < r[kv].length; j++) {
                            assertEquals(r[kv][j], p[kv][j], 1e-5f, "stage " + stage + " seq " + seq + " layer " + layer + (kv == 0 ? " key " : " value ") + j);
                        }
                    }
                    compared += r[0].length;
                }
            }
        }
        assertTrue(compared > 0);
    }

    /** Per sequence, per layer: the filled keys and values (null for another stage's layers). */
    static List<List<float[][]>> snapshot(List<dev.exeunt.model.nn.KvCache[]> seqs) {
        List<List<float[][]>> out = new ArrayList<>();
        try (var scope = Scope.open()) {
            snapshotInto(seqs, out);
        }
        return out;
    }

    private static void snapshotInto(List<dev.exeunt.model.nn.KvCache[]> seqs, List<List<float[][]>> out) {
        for (var layers : seqs) {
            List<float[][]> perLayer = new ArrayList<>();
            for (var k : layers) {
                if (k == null) {
                    perLayer.add(null);
                    continue;
                }
                int n = k.length();
                perLayer.add(new float[][] {k.keys().narrow(1, 0, n).contiguous().toFloatArray(), k.values().narrow(1, 0, n).contiguous().toFloatArray()});
            }
            out.add(perLayer);
        }
    }
}
