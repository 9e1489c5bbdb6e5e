package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.Parameters;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The CPU decode path against the training path's forward: for every generated token, the top
 * probability of every exit head (each exit kind) and of the final head, as the decode path computed
 * them from its caches, equal a full no-cache forward of the sequence so far within float rounding.
 */
@ExtendWith(LeakCheck.class)
class LeanDecodeTest {
    private static final int V = 29;

    private static List<ExitConfig> exits() {
        return List.of(new ExitConfig(1, ExitConfig.Placement.PRE, ExitKind.LAYER, false, WeightSchedule.constant(1), 1),
                new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1),
                new ExitConfig(2, ExitConfig.Placement.POST, ExitKind.MLP, false, WeightSchedule.constant(1), 1),
                new ExitConfig(3, ExitConfig.Placement.POST, ExitKind.EMBEDDING, false, WeightSchedule.constant(1), 1));
    }

    private static final List<int[]> SHORT_PROMPTS = List.of(new int[] {1, 5, 7}, new int[] {2}, new int[] {4, 4, 9, 10, 3, 8});

    /** Prompts long enough for the prompt pass's blocked GEMM (DecodeMath.PROMPT_GEMM_ROWS), packed with a short one. */
    private static List<int[]> longPrompts() {
        int[] a = new int[DecodeMath.PROMPT_GEMM_ROWS + 3], b = new int[2 * DecodeMath.PROMPT_GEMM_ROWS + 7];
        for (int i = 0; i < a.length; i++) a[i] = (7 * i + 3) % V;
        for (int i = 0; i < b.length; i++) b[i] = (11 * i + 1) % V;
        return List.of(a, new int[] {6, 2}, b);
    }

    private static void compare(ModelConfig mc, List<int[]> prompts) {
        try (var model = sharpened(mc)) {
            compare(model, prompts);
        }
    }

    /** A random model whose heads are sharpened (near-uniform random heads would hide a wrong hidden state in tiny probability
     * differences), with biases and norms given values a missing term would change. */
    private static EarlyExitModel sharpened(ModelConfig mc) {
        var model = EarlyExitModel.create(mc, Device.CPU, 17);
        {
            // Sharpen the heads (near-uniform random heads would hide a wrong hidden state in tiny probability
            // differences) and give biases and norms values a missing term would change.
            var rng = new java.util.SplittableRandom(3);
            for (var e : model.parameters().all().entrySet()) {
                Tensor p = e.getValue();
                try (var s = Scope.open(); var g = GradMode.noGrad()) {
                    if (e.getKey().endsWith("head.weight") || e.getKey().contains("embed") || e.getKey().startsWith("wte")) {
                        p.copyFrom(p.scale(30f));
                    } else if (e.getKey().endsWith(".bias") || p.rank() == 1) {
                        float[] v = new float[(int) p.numel()];
                        for (int j = 0; j < v.length; j++) v[j] = (e.getKey().endsWith(".bias") ? 0f : 1f) + (float) (rng.nextDouble() * 0.4 - 0.2);
                        p.copyFrom(Tensor.of(v, p.shape()));
                    }
                }
            }
        }
        return model;
    }

    private static void compare(EarlyExitModel model, List<int[]> prompts) {
        {
            var gen = new Generator(model);
            var cfg = GenerationConfig.greedy(20).withExitProbs(true);
            var out = gen.generate(prompts, cfg, TokenListener.NONE);
            int compared = 0;
            for (int i = 0; i < prompts.size(); i++) {
                int[] seq = Arrays.copyOf(prompts.get(i), prompts.get(i).length + 20);
                int len = prompts.get(i).length;
                for (GeneratedToken t : out.get(i).tokens()) {
                    float[] ref = referenceTopProbs(model, Arrays.copyOf(seq, len));
                    for (int h = 0; h < ref.length; h++) {
                        assertEquals(ref[h], t.exitMaxProbs()[h], 1e-5 + 1e-4 * ref[h], "prompt " + i + ", position " + len + ", head " + h);
                        compared++;
                    }
                    seq[len++] = t.token();
                }
            }
            assertTrue(compared >= prompts.size() * 20 * (model.exits().size() + 1));
        }
    }

    /** Top probability of each exit head and of the final head on the last position, by a plain forward. */
    private static float[] referenceTopProbs(EarlyExitModel model, int[] ids) {
        int L = model.config().nLayers();
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            Tensor[][] byDepth = new Tensor[L + 1][];
            byDepth[0] = new Tensor[] {model.embed(Tensor.ofInts(ids, 1, ids.length), 0), null, null};
            for (int l = 0; l < L; l++) byDepth[l + 1] = model.layers().get(l).forwardSplit(byDepth[l][0], 0, null);
            float[] out = new float[model.exits().size() + 1];
            for (int e = 0; e < model.exits().size(); e++) {
                Exit x = model.exits().get(e);
                int d = x.config().inputDepth();
                Tensor h = switch (x.config().kind()) {
                    case MLP -> x.hidden(new Tensor[] {byDepth[d][1], byDepth[d][2]}, 0, null);
                    case LAYER -> x.layer().forward(byDepth[d][0], 0, null);
                    default -> byDepth[d][0];
                };
                out[e] = top(x.logits(h));
            }
            out[out.length - 1] = top(model.finalLogits(byDepth[L][0]));
            return out;
        }
    }

    private static float top(Tensor logits) {
        float[] all = logits.toFloatArray();
        return (float) Math.exp(Sampler.logMaxProb(Arrays.copyOfRange(all, all.length - V, all.length)));
    }

    @Test
    void gpt2DecodeMatchesTheTrainingForwardAtEveryHead() {
        compare(ModelConfig.gpt2(V, 32, 3, 4, 64, exits()), SHORT_PROMPTS);
    }

    @Test
    void llamaDecodeMatchesTheTrainingForwardAtEveryHead() {
        compare(ModelConfig.llama(V, 32, 3, 4, 2, 48, 64, exits()), SHORT_PROMPTS);
    }

    @Test
    void longPromptsThroughTheBlockedGemmMatchTheTrainingForward() {
        compare(ModelConfig.gpt2(V, 32, 3, 4, 64, exits()), longPrompts());
        compare(ModelConfig.llama(V, 32, 3, 4, 2, 48, 64, exits()), longPrompts());
    }

    @Test
    void quantizedWeightsMatchTheTrainingForwardWithShortAndLongPrompts() {
        ModelConfig mc = ModelConfig.llama(V, 32, 3, 4, 2, 64, 64, exits());
        for (DType type : new DType[] {DType.Q8_0, DType.Q4_0}) {
            try (var f32 = sharpened(mc); var q = quantized(f32, type)) {
                compare(q, SHORT_PROMPTS);
                compare(q, longPrompts());
            }
        }
    }

    /** The model with every matrix but the token embedding stored as type (the training forward then runs linearQuantized). */
    static EarlyExitModel quantized(EarlyExitModel f32, DType type) {
        var weights = f32.parameters().all();
        Parameters.Source source = (name, shape) -> Ops.unowned(() -> {
            Tensor w = weights.get(name);
            if (shape.length == 2 && !name.contains("embed_tokens")) return w.to(type);
            Tensor copy = Tensor.empty(DType.F32, Device.CPU, shape);
            copy.copyFrom(w);
            return copy;
        });
        return EarlyExitModel.create(f32.config(), new Parameters(Device.CPU, source));
    }
}
