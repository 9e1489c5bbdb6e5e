package dev.exeunt.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.testing.GradCheck;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Every differentiable op's backward against central finite differences of its forward. */
@ExtendWith(LeakCheck.class)
class OpsGradientTest {
    private final SplittableRandom rng = new SplittableRandom(7);
    private final List<Tensor> leaves = new ArrayList<>();

    private Tensor leaf(int... shape) {
        Tensor t = Tensor.randn(rng.split(), 1f, shape).requiresGrad(true);
        leaves.add(t);
        return t;
    }

    private Tensor positiveLeaf(int... shape) {
        Tensor t = Tensor.uniform(rng.split(), 0.5f, 2f, shape).requiresGrad(true);
        leaves.add(t);
        return t;
    }

    private void check(String what, Function<List<Tensor>, Tensor> f, Tensor... inputs) {
        try {
            GradCheck.check(what, f, List.of(inputs), 1e-2, 2e-2);
        } finally {
            for (Tensor t : leaves) t.close();
            leaves.clear();
        }
    }

    @Test
    void arithmeticWithBroadcasting() {
        check("add", in -> in.get(0).add(in.get(1)), leaf(3, 5), leaf(5));
        check("sub", in -> in.get(0).sub(in.get(1)), leaf(2, 1, 4), leaf(3, 1));
        check("mul", in -> in.get(0).mul(in.get(1)), leaf(4, 3), leaf(4, 1));
        check("div", in -> in.get(0).div(in.get(1)), leaf(3, 7), positiveLeaf(7));
        check("scale", in -> in.get(0).scale(-2.5f), leaf(17));
    }

    @Test
    void unaryFunctions() {
        check("exp", in -> in.get(0).exp(), leaf(5, 3));
        check("log", in -> in.get(0).log(), positiveLeaf(19));
        check("tanh", in -> in.get(0).tanh(), leaf(33));
        check("relu", in -> in.get(0).relu(), leaf(21));
        check("silu", in -> in.get(0).silu(), leaf(4, 9));
        check("gelu tanh", in -> Ops.geluTanh(in.get(0)), leaf(4, 9));
        check("gelu erf", in -> Ops.geluErf(in.get(0)), leaf(4, 9));
    }

    @Test
    void reductions() {
        check("sum dim", in -> in.get(0).sum(1, false), leaf(3, 4, 5));
        check("mean dim", in -> in.get(0).mean(0, true), leaf(3, 4, 5));
        // Distinct, well-separated values so the finite difference never crosses a tie.
        float[] spaced = new float[60];
        for (int i = 0; i < 60; i++) spaced[i] = ((i * 37) % 60) * 0.1f;
        Tensor m = Tensor.of(spaced, 3, 4, 5).requiresGrad(true);
        leaves.add(m);
        check("max dim", in -> in.get(0).max(2, false), m);
        check("sum all", in -> in.get(0).sum(), leaf(6, 7));
        check("mean all", in -> in.get(0).mean(), leaf(6, 7));
    }

    @Test
    void viewsAndCopies() {
        check("transpose+contiguous", in -> in.get(0).transpose(0, 1).contiguous(), leaf(3, 5));
        check("permute+reshape", in -> in.get(0).permute(2, 0, 1).reshape(-1, 3), leaf(2, 3, 3));
        check("narrow", in -> in.get(0).narrow(1, 1, 2), leaf(3, 5));
        check("expand", in -> in.get(0).expand(4, 3), leaf(1, 3));
        check("splitDim", in -> Ops.splitDim(in.get(0), 1, 2, 3).mul(in.get(0).reshape(2, 2, 3)), leaf(2, 6));
        check("cat", in -> Ops.cat(1, in.get(0), in.get(1)), leaf(2, 3), leaf(2, 4));
    }

    @Test
    void softmaxes() {
        check("softmax", in -> in.get(0).softmax(), leaf(4, 11));
        check("logSoftmax", in -> in.get(0).logSoftmax(), leaf(3, 17));
    }

    @Test
    void matmulAllLayouts() {
        check("matmul 2d", in -> in.get(0).matmul(in.get(1)), leaf(5, 7), leaf(7, 3));
        check("matmul rank-3 @ 2d", in -> in.get(0).matmul(in.get(1)), leaf(2, 3, 4), leaf(4, 5));
        check("matmul batched", in -> in.get(0).matmul(in.get(1)), leaf(2, 3, 4), leaf(2, 4, 6));
        check("matmul transposed views", in -> in.get(0).transpose(0, 1).matmul(in.get(1).transpose(0, 1)),
                leaf(4, 5), leaf(3, 4));
        check("linear", in -> Ops.linear(in.get(0), in.get(1), in.get(2)), leaf(2, 3, 4), leaf(5, 4), leaf(5));
    }

    @Test
    void norms() {
        check("layerNorm", in -> NN.layerNorm(in.get(0), in.get(1), in.get(2), 1e-5f), leaf(4, 9), leaf(9), leaf(9));
        check("rmsNorm", in -> NN.rmsNorm(in.get(0), in.get(1), 1e-5f), leaf(5, 8), leaf(8));
    }

    @Test
    void ropeAndEmbedding() {
        check("rope", in -> NN.rope(in.get(0), 3, 10000f), leaf(2, 3, 2, 8));
        Tensor ids = Tensor.ofInts(new int[] {3, 0, 3, 5, 1, 3}, 2, 3);
        try {
            check("embedding", in -> NN.embedding(in.get(0), ids), leaf(6, 4));
        } finally {
            ids.close();
        }
    }

    @Test
    void attentionCausalGqa() {
        check("attention", in -> NN.attention(in.get(0), in.get(1), in.get(2), 0, 0.5f),
                leaf(2, 5, 4, 8), leaf(2, 5, 2, 8), leaf(2, 5, 2, 8));
        // q, k, v as strided views of one fused projection, as GPT-2 reads them.
        check("attention fused qkv", in -> {
            Tensor f = in.get(0);
            Tensor q = Ops.splitDim(f.narrow(2, 0, 8), 2, 2, 4);
            Tensor k = Ops.splitDim(f.narrow(2, 8, 8), 2, 2, 4);
            Tensor v = Ops.splitDim(f.narrow(2, 16, 8), 2, 2, 4);
            return NN.attention(q, k, v, 0, 0.5f);
        }, leaf(1, 6, 24));
    }

    @Test
    void crossEntropyWithIgnoreMaskWeightAndTemperature() {
        Tensor targets = Tensor.ofInts(new int[] {1, 4, -100, 0, 2, 3}, 6);
        Tensor mask = Tensor.of(new float[] {1, 1, 1, 0, 1, 1}, 6);
        Tensor weight = Tensor.of(new float[] {0.5f, 1, 1, 1, 2, 0.25f}, 6);
        try {
            check("crossEntropy", in -> NN.crossEntropy(in.get(0), targets), leaf(6, 5));
            var opts = NN.CrossEntropyOptions.DEFAULT.withMask(mask).withWeight(weight).withTemperature(1.7f);
            check("crossEntropy options", in -> NN.crossEntropy(in.get(0), targets, opts), leaf(6, 5));
        } finally {
            targets.close();
            mask.close();
            weight.close();
        }
    }

    @Test
    void crossEntropyValueMatchesReference() {
        float[] logits = {1, 2, 3, 0.5f, -1, 4};
        try (var s = Scope.open()) {
            Tensor l = Tensor.of(logits, 2, 3);
            Tensor t = Tensor.ofInts(new int[] {2, 0}, 2);
            double ref = 0;
            for (int r = 0; r < 2; r++) {
                double m = 0;
                for (int c = 0; c < 3; c++) m += Math.exp(logits[r * 3 + c]);
                ref += Math.log(m) - logits[r * 3 + (r == 0 ? 2 : 0)];
            }
            assertEquals(ref / 2, NN.crossEntropy(l, t).item(), 1e-5);
        }
    }
}
