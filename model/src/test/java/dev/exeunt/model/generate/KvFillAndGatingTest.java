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
import dev.exeunt.model.nn.KvCache;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** CALM-style state propagation (--kv-fill propagate) and adaptive exit gating (--adaptive). */
@ExtendWith(LeakCheck.class)
class KvFillAndGatingTest {
    private static final int V = 13;

    private static ExitConfig norm(int layer) {
        return new ExitConfig(layer, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1);
    }

    /**
     * Propagation leaves no position waiting: after every token every layer's cache is filled up to it,
     * and the keys a skipped layer holds for an exited position are that layer's k projection of the
     * exited hidden state (checked against the tensor ops on GPT-2's fused c_attn).
     */
    @Test
    void propagatedKeysComeFromTheExitedHiddenState() {
        var mc = ModelConfig.gpt2(V, 16, 3, 2, 64, List.of(norm(1)));
        try (var model = EarlyExitModel.create(mc, Device.CPU, 3)) {
            var gen = new Generator(model);
            int[] prompt = {1, 5, 7};
            var cfg = GenerationConfig.greedy(12).withThreshold(0).withKvFill(GenerationConfig.KvFill.PROPAGATE);
            List<int[]> lengths = new ArrayList<>();
            float[][] keysAtLast = new float[3][];
            List<GeneratedToken> out = new ArrayList<>();
            gen.inspectSequences(seqs -> {
                var s = seqs.get(0);
                for (int l = 0; l < 3; l++) {
                    KvCache k = s.layerCache[l];
                    lengths.add(new int[] {l, k.length(), s.length});
                    try (var sc = Scope.open()) {
                        keysAtLast[l] = k.keys().narrow(1, k.length() - 1, 1).contiguous().toFloatArray();
                    }
                }
            });
            try {
                out.addAll(gen.generate(List.of(prompt), cfg, TokenListener.NONE).get(0).tokens());
            } finally {
                gen.inspectSequences(null);
            }
            assertTrue(out.stream().skip(1).allMatch(t -> t.exitLayer() == 1), "every decoded token exits at layer 1");
            for (int[] l : lengths) assertEquals(l[2] - 1, l[1], "layer " + l[0] + " holds every position before the last token");
            // The last processed position (the 11th generated token's input) exited after layer 1: layers 1 and 2 hold
            // k = c_attn(ln_1(h1)) restricted to the k columns, h1 the hidden state after layer 1.
            int[] seq = new int[prompt.length + out.size() - 1];
            System.arraycopy(prompt, 0, seq, 0, prompt.length);
            for (int i = 0; i < out.size() - 1; i++) seq[prompt.length + i] = out.get(i).token();
            try (var sc = Scope.open(); var g = GradMode.noGrad()) {
                // h1 of the last position does not depend on the (propagated) deeper caches: layer 0 is exact.
                Tensor x = model.embed(Tensor.ofInts(seq, 1, seq.length), 0);
                Tensor h1 = model.layers().get(0).forward(x, 0, null).narrow(1, seq.length - 1, 1).contiguous();
                for (int l = 1; l < 3; l++) {
                    var layer = model.layers().get(l);
                    Tensor n1 = layer.norm1().forward(h1);
                    Tensor k = layer.attn().qkv().forward(n1).narrow(2, 16, 16).contiguous();
                    float[] want = k.toFloatArray();
                    for (int i = 0; i < want.length; i++) assertEquals(want[i], keysAtLast[l][i], 1e-5, "layer " + l + " key " + i);
                }
            }
            assertThrows(IllegalArgumentException.class, () -> cfg.withSpeculative(true));
        }
    }

    /** Threshold 1 exits nowhere: propagation changes nothing. With exits firing, packed prompts give what each gives alone. */
    @Test
    void propagationIsDeterministicAndInertWithoutExits() {
        var mc = ModelConfig.llama(V, 16, 3, 4, 2, 24, 64, List.of(norm(1), norm(2)));
        try (var model = EarlyExitModel.create(mc, Device.CPU, 5)) {
            var gen = new Generator(model);
            List<int[]> prompts = List.of(new int[] {1, 5, 7}, new int[] {2, 2});
            var full = GenerationConfig.greedy(16);
            var prop = full.withKvFill(GenerationConfig.KvFill.PROPAGATE);
            for (int i = 0; i < prompts.size(); i++) {
                assertArrayEquals(gen.generate(List.of(prompts.get(i)), full, TokenListener.NONE).get(0).tokenIds(),
                        gen.generate(List.of(prompts.get(i)), prop, TokenListener.NONE).get(0).tokenIds());
            }
            var packed = gen.generate(prompts, prop.withThreshold(0.08), TokenListener.NONE);
            long early = packed.stream().flatMap(g -> g.tokens().stream()).filter(t -> t.exitLayer() < 3).count();
            assertTrue(early > 0, "exits fire");
            for (int i = 0; i < prompts.size(); i++) {
                assertArrayEquals(gen.generate(List.of(prompts.get(i)), prop.withThreshold(0.08), TokenListener.NONE).get(0).tokenIds(),
                        packed.get(i).tokenIds());
            }
        }
    }

    /**
     * Adaptive gating: an exit that never fires stops being checked after a window (its checks fall far
     * below the tokens), an exit that always fires keeps being checked, and without --adaptive every
     * token is checked.
     */
    @Test
    void anExitThatDoesNotPayIsNoLongerChecked() {
        var mc = ModelConfig.gpt2(V, 16, 4, 2, 1024, List.of(norm(1)));
        try (var model = EarlyExitModel.create(mc, Device.CPU, 9)) {
            var gen = new Generator(model);
            int[] prompt = {1, 2};
            int n = 600;
            var never = GenerationConfig.greedy(n).withThreshold(1 - 1e-9);
            gen.generate(List.of(prompt), never, TokenListener.NONE);
            assertEquals(n - 1, gen.lastStats().checks()[0], "without adaptive every decoded token is checked");
            var full = gen.generate(List.of(prompt), never.withAdaptive(true), TokenListener.NONE).get(0).tokenIds();
            long gated = gen.lastStats().checks()[0];
            assertTrue(gated <= 4L * ExitGate.WINDOW, gated + " checks of " + (n - 1) + " tokens");
            assertArrayEquals(gen.generate(List.of(prompt), GenerationConfig.greedy(n), TokenListener.NONE).get(0).tokenIds(), full);
            gen.generate(List.of(prompt), GenerationConfig.greedy(n).withThreshold(0).withAdaptive(true), TokenListener.NONE);
            assertEquals(n - 1, gen.lastStats().checks()[0], "an exit that always fires pays for its checks");
        }
    }
}
