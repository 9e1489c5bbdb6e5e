package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Padding ids, the newline ban, top_p decay, per-exit probabilities, sampling arguments, and beam search, on real models. */
@ExtendWith(LeakCheck.class)
class GenerationControlsTest {
    private static final int V = 13;

    private static List<ExitConfig> allKinds() {
        return List.of(
                new ExitConfig(1, ExitConfig.Placement.PRE, ExitKind.LAYER, false, WeightSchedule.constant(1), 1),
                new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1),
                new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.MLP, false, WeightSchedule.constant(1), 1),
                new ExitConfig(3, ExitConfig.Placement.POST, ExitKind.EMBEDDING, false, WeightSchedule.constant(1), 1));
    }

    private static void set(Tensor t, float[] values) {
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            t.copyFrom(Tensor.of(values, t.shape()));
        }
    }

    /**
     * Makes every head of a GPT-2 model (final and exits with a norm) favour the given rows above all
     * others: the norms output a constant vector b (weight 0, bias 1) and the favoured rows of each head
     * are 50 b, so their logit is 50 d while the others stay near 0.
     */
    private static void favourRows(EarlyExitModel m, int... rows) {
        int d = m.config().dModel();
        float[] zeros = new float[d], ones = new float[d];
        Arrays.fill(ones, 1f);
        for (var e : m.parameters().all().entrySet()) {
            String name = e.getKey();
            if (name.equals("ln_f.weight") || name.matches("exits\\.\\d+\\.norm\\.weight")) set(e.getValue(), zeros);
            if (name.equals("ln_f.bias") || name.matches("exits\\.\\d+\\.norm\\.bias")) set(e.getValue(), ones);
            if (name.equals("wte.weight") || name.endsWith(".head.weight")) {
                float[] w = e.getValue().toFloatArray();
                for (int r : rows) Arrays.fill(w, r * d, (r + 1) * d, 50f);
                set(e.getValue(), w);
            }
        }
    }

    @Test
    void paddingRowsWithTheLargestLogitsAreNeverGenerated() {
        int limit = 10; // ids 10..12 are padding: a tokenizer of 10 tokens on a head of 13 rows
        var cfg = ModelConfig.gpt2(V, 16, 2, 2, 64, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)));
        try (var model = EarlyExitModel.create(cfg, Device.CPU, 5)) {
            favourRows(model, 11, 12);
            var gen = new Generator(model);
            List<int[]> prompts = List.of(new int[] {1, 2, 3}, new int[] {4});
            // the setup bites: unmasked, the padding rows win
            var unmasked = gen.generate(prompts, GenerationConfig.greedy(6), TokenListener.NONE);
            assertTrue(Arrays.stream(unmasked.get(0).tokenIds()).allMatch(t -> t >= limit), Arrays.toString(unmasked.get(0).tokenIds()));
            for (var c : List.of(GenerationConfig.greedy(6), GenerationConfig.greedy(6).withSampling(1.0, 0, 1, 7),
                    GenerationConfig.greedy(6).withThreshold(0.0), GenerationConfig.greedy(6).withSampling(2.0, 3, 0.9, 1).withThreshold(0.3))) {
                for (var g : gen.generate(prompts, c.withVocabLimit(limit), TokenListener.NONE)) {
                    assertEquals(6, g.tokens().size());
                    for (var t : g.tokens()) {
                        assertTrue(t.token() < limit, "padding id " + t.token() + " generated with " + c);
                        assertTrue(t.probability() > 0 && t.probability() <= 1, "probability over the real vocabulary: " + t.probability());
                    }
                }
            }
        }
    }

    @Test
    void newlineIsBannedAfterAColonOnly() {
        String text = "note: a\nb\nc: d\n\nq: r\n";
        var tok = BpeTrainer.train(List.of(text.repeat(10)), 280, List.of("<|endoftext|>"));
        var ban = NewlineBan.of(tok);
        int colon = tok.idOf(":"), newline = tok.encode("\n")[0];
        assertTrue(colon >= 0 && Arrays.stream(ban.newlineIds()).anyMatch(i -> i == newline), "vocabulary has ':' and '\\n'");
        var cfg = ModelConfig.gpt2(tok.vocabSize(), 16, 2, 2, 64, List.of());
        try (var model = EarlyExitModel.create(cfg, Device.CPU, 5)) {
            favourRows(model, ban.newlineIds());
            var gen = new Generator(model);
            int[] afterColon = {tok.encode("a")[0], colon};
            var free = gen.generate(List.of(afterColon), GenerationConfig.greedy(3), TokenListener.NONE).get(0);
            assertTrue(isNewline(tok.tokenBytes(free.tokenIds()[0])), "the newline rows win without the ban");
            for (var c : List.of(GenerationConfig.greedy(3), GenerationConfig.greedy(3).withSampling(1.0, 0, 1, 3))) {
                var banned = gen.generate(List.of(afterColon), c.withNewlineBan(ban), TokenListener.NONE).get(0);
                int first = banned.tokenIds()[0];
                assertFalse(isNewline(tok.tokenBytes(first)), "newline token " + first + " right after ':'");
                assertTrue(banned.tokens().get(0).probability() > 0);
                // after a token that does not end with ':' the newline is allowed again
                if (tok.tokenBytes(first)[tok.tokenBytes(first).length - 1] != ':') assertTrue(isNewline(tok.tokenBytes(banned.tokenIds()[1])));
            }
        }
    }

    private static boolean isNewline(byte[] b) {
        return b.length > 0 && b[0] == '\n';
    }

    @Test
    void topPDecaysPerTokenDownToItsBound() {
        var c = GenerationConfig.greedy(4).withSampling(1.0, 0, 0.9, 1).withTopPDecay(0.5, 0.3);
        assertEquals(0.45, c.decayedTopP(0.9), 1e-12);
        assertEquals(0.3, c.decayedTopP(0.45), 1e-12);
        assertEquals(1.0, c.decayedTopP(1.0), 0.0); // top_p off stays off
        assertEquals(0.9, GenerationConfig.greedy(4).withSampling(1.0, 0, 0.9, 1).decayedTopP(0.9), 0.0);
        assertThrows(IllegalArgumentException.class, () -> c.withTopPDecay(0.5, 0.95)); // bound above top_p
        // a decay to (almost) nothing turns sampling into greedy from the second token on, whatever the seed
        var cfg = ModelConfig.gpt2(V, 16, 2, 2, 64, List.of());
        try (var model = EarlyExitModel.create(cfg, Device.CPU, 9)) {
            var gen = new Generator(model);
            for (long seed = 0; seed < 4; seed++) {
                var sampled = gen.generate(List.of(new int[] {1, 2}), GenerationConfig.greedy(6).withSampling(1.0, 0, 0.999, seed)
                        .withTopPDecay(1e-9, 0), TokenListener.NONE).get(0).tokenIds();
                int[] prompt = {1, 2, sampled[0]};
                var greedyRest = gen.generate(List.of(prompt), GenerationConfig.greedy(5), TokenListener.NONE).get(0).tokenIds();
                assertArrayEquals(greedyRest, Arrays.copyOfRange(sampled, 1, 6), "seed " + seed);
            }
        }
    }

    @Test
    void samplingArgumentsThatBreakTheSoftmaxAreRefused() {
        var e = assertThrows(IllegalArgumentException.class, () -> GenerationConfig.greedy(4).withSampling(1e-320, 0, 1, 0));
        assertTrue(e.getMessage().contains("temperature") && e.getMessage().contains("1.0E-6"), e.getMessage());
        GenerationConfig.greedy(4).withSampling(1e-6, 0, 1, 0);
        var fits = assertThrows(IllegalArgumentException.class, () -> GenerationConfig.checkFits("--max-new-tokens", Integer.MAX_VALUE, 5, 64));
        assertEquals("--max-new-tokens 2147483647 with a prompt of 5 tokens exceeds the model's context of 64 tokens: at most 59", fits.getMessage());
        GenerationConfig.checkFits("--max-new-tokens", 59, 5, 64);
        // the generator itself never overflows: the context ends it
        try (var model = EarlyExitModel.create(ModelConfig.gpt2(V, 16, 1, 2, 16, List.of()), Device.CPU, 1)) {
            var g = new Generator(model).generate(List.of(new int[] {1, 2}), GenerationConfig.greedy(Integer.MAX_VALUE), TokenListener.NONE).get(0);
            assertEquals("context", g.finishReason());
            assertEquals(14, g.tokens().size());
        }
    }

    /** Top probability of every exit and the final head at each position, from one full forward without caches. */
    private static float[][] fullForwardMaxProbs(EarlyExitModel model, int[] seq) {
        int L = model.config().nLayers(), n = model.exits().size();
        float[][] out = new float[seq.length][n + 1];
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            Tensor x = model.embed(Tensor.ofInts(seq, 1, seq.length), 0);
            Tensor[][] byDepth = new Tensor[L + 1][];
            byDepth[0] = new Tensor[] {x, null, null};
            for (int l = 0; l < L; l++) byDepth[l + 1] = model.layers().get(l).forwardSplit(byDepth[l][0], 0, null);
            for (int e = 0; e <= n; e++) {
                Tensor logits;
                if (e == n) {
                    logits = model.finalLogits(byDepth[L][0]);
                } else {
                    Exit ex = model.exits().get(e);
                    int d = ex.config().inputDepth();
                    Tensor hidden = switch (ex.config().kind()) {
                        case MLP -> ex.hidden(new Tensor[] {byDepth[d][1], byDepth[d][2]}, 0, null);
                        case LAYER -> ex.layer().forward(byDepth[d][0], 0, null);
                        default -> byDepth[d][0];
                    };
                    logits = ex.logits(hidden);
                }
                float[] all = logits.toFloatArray();
                for (int p = 0; p < seq.length; p++) out[p][e] = (float) Math.exp(Sampler.logMaxProb(Arrays.copyOfRange(all, p * V, (p + 1) * V)));
            }
        }
        return out;
    }

    @Test
    void exitProbabilitiesMatchAFullForwardAndDoNotChangeTheOutput() {
        for (var cfg : List.of(ModelConfig.gpt2(V, 16, 3, 2, 64, allKinds()), ModelConfig.llama(V, 16, 3, 4, 2, 24, 64, allKinds().subList(1, 4)))) {
            try (var model = EarlyExitModel.create(cfg, Device.CPU, 3)) {
                var gen = new Generator(model);
                List<int[]> prompts = List.of(new int[] {1, 5, 7}, new int[] {2});
                var plain = gen.generate(prompts, GenerationConfig.greedy(8), TokenListener.NONE);
                var recorded = gen.generate(prompts, GenerationConfig.greedy(8).withExitProbs(true), TokenListener.NONE);
                for (int i = 0; i < prompts.size(); i++) {
                    assertArrayEquals(plain.get(i).tokenIds(), recorded.get(i).tokenIds());
                    int[] p = prompts.get(i), gt = recorded.get(i).tokenIds();
                    int[] seq = IntStream.concat(Arrays.stream(p), Arrays.stream(gt)).toArray();
                    float[][] ref = fullForwardMaxProbs(model, seq);
                    for (int k = 0; k < gt.length; k++) {
                        float[] got = recorded.get(i).tokens().get(k).exitMaxProbs();
                        assertEquals(model.exits().size() + 1, got.length);
                        for (int e = 0; e < got.length; e++) assertEquals(ref[p.length - 1 + k][e], got[e], 2e-4, "prompt " + i + " token " + k + " head " + e);
                    }
                    assertTrue(plain.get(i).tokens().get(0).exitMaxProbs() == null, "nothing recorded unless asked");
                }
                // with early exit: heads after the one that produced a token are not reached (NaN)
                var early = gen.generate(prompts, GenerationConfig.greedy(8).withThreshold(0.0).withExitProbs(true), TokenListener.NONE);
                assertArrayEquals(gen.generate(prompts, GenerationConfig.greedy(8).withThreshold(0.0), TokenListener.NONE).get(0).tokenIds(),
                        early.get(0).tokenIds());
                var second = early.get(0).tokens().get(1);
                float[] probs = second.exitMaxProbs();
                assertTrue(second.exitLayer() < cfg.nLayers() && Float.isNaN(probs[probs.length - 1]) && !Float.isNaN(probs[0]), Arrays.toString(probs));
            }
        }
    }

    /** Summed log-probability of {@code gen} after {@code prompt} under the final head (one full forward). */
    private static double logProb(EarlyExitModel model, int[] prompt, int[] gen) {
        int[] seq = IntStream.concat(Arrays.stream(prompt), Arrays.stream(gen)).toArray();
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            Tensor x = model.embed(Tensor.ofInts(seq, 1, seq.length), 0);
            for (var layer : model.layers()) x = layer.forward(x, 0, null);
            float[] all = model.finalLogits(x).toFloatArray();
            double sum = 0;
            for (int k = 0; k < gen.length; k++) {
                float[] row = Arrays.copyOfRange(all, (prompt.length - 1 + k) * V, (prompt.length + k) * V);
                sum += Sampler.logMaxProb(row) + Math.log(Sampler.probability(row, gen[k]) / Math.exp(Sampler.logMaxProb(row)));
            }
            return sum;
        }
    }

    @Test
    void beamSearchOfWidthOneIsGreedyAndWiderBeamsScoreWhatTheyHold() {
        var cfg = ModelConfig.gpt2(V, 16, 2, 2, 64, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)));
        try (var model = EarlyExitModel.create(cfg, Device.CPU, 11)) {
            int[] prompt = {3, 1, 4};
            var greedy = new Generator(model).generate(List.of(prompt), GenerationConfig.greedy(7), TokenListener.NONE).get(0).tokenIds();
            var search = new BeamSearch(model);
            var one = search.search(prompt, 1, 7, -1, 1.0, 0, null);
            assertEquals(1, one.size());
            assertArrayEquals(greedy, one.get(0).tokens());
            var four = search.search(prompt, 4, 7, -1, 1.0, 0, null);
            assertEquals(4, four.size());
            for (int b = 0; b < 4; b++) {
                var beam = four.get(b);
                assertEquals(7, beam.tokens().length);
                assertEquals(logProb(model, prompt, beam.tokens()), beam.logProb(), 1e-3, "beam " + b);
                assertEquals(beam.logProb() / 7, beam.score(), 1e-9);
                if (b > 0) assertTrue(four.get(b - 1).score() >= beam.score());
            }
            assertTrue(four.get(0).logProb() >= logProb(model, prompt, greedy) - 1e-6, "the best of 4 beams is at least as likely as greedy here");
            // a stop token ends beams: finished ones do not carry it
            int stop = greedy[2];
            for (var beam : search.search(prompt, 3, 7, stop, 1.0, 0, null)) {
                assertTrue(Arrays.stream(beam.tokens()).noneMatch(t -> t == stop), Arrays.toString(beam.tokens()));
                assertEquals(beam.stopped(), beam.tokens().length < 7 || beam.stopped());
            }
        }
    }
}
