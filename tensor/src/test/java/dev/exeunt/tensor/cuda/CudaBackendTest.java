package dev.exeunt.tensor.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.ffm.cuda.CudaRuntime;
import dev.exeunt.ffm.nvrtc.Nvrtc;
import dev.exeunt.tensor.Backend;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.cpu.CpuBackend;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Cross-backend suite: every Backend method runs on the CPU backend and on CUDA device 0 over the same fresh random
 * inputs, through Ops / NN (so the autograd backward runs on the device too) or the Backend directly, and the results
 * are compared with tolerances by dtype. Skipped as a whole where there is no GPU (and NVRTC).
 */
class CudaBackendTest {
    static final Device GPU = Device.cuda(0);
    static final float TOL = 2e-4f;
    SplittableRandom rng;
    long liveBefore;

    @BeforeAll
    static void needGpu() {
        assumeTrue(CudaRuntime.isAvailable() && CudaRuntime.hasDevice(),
                () -> "no CUDA device: " + CudaRuntime.noDeviceReason());
        assumeTrue(Nvrtc.isAvailable(), () -> "no NVRTC: " + Nvrtc.unavailableReason());
    }

    @BeforeEach
    void seed() {
        rng = new SplittableRandom(1234);
        liveBefore = CudaBackend.of(GPU).allocatedBytes();
    }

    @AfterEach
    void noDeviceLeak() {
        CudaBackend b = CudaBackend.of(GPU);
        b.synchronize();
        assertEquals(liveBefore, b.allocatedBytes(), "device memory leaked by the test");
    }

    // ---------------------------------------------------------------- helpers

    Tensor randn(int... shape) {
        return Tensor.randn(rng, 1f, shape);
    }

    Tensor positive(int... shape) {
        return Tensor.uniform(rng, 0.2f, 3f, shape);
    }

    static void assertClose(String what, Tensor want, Tensor got, float tol) {
        assertArrayEquals(want.shape(), got.shape(), what + " shape");
        float[] w = want.toFloatArray(), g = got.toFloatArray();
        for (int i = 0; i < w.length; i++) {
            float err = Math.abs(w[i] - g[i]), lim = tol * Math.max(1f, Math.abs(w[i]));
            if (!(err <= lim) && !(Float.isNaN(w[i]) && Float.isNaN(g[i])) && w[i] != g[i]) {
                throw new AssertionError(what + ": element " + i + " cpu " + w[i] + " cuda " + g[i] + " (tolerance " + lim + ")");
            }
        }
    }

    /**
     * Runs {@code fn} on CPU leaves and on GPU copies of them (F32 leaves require grad), backpropagates the same random
     * seed on both and compares the outputs and every leaf's gradient.
     */
    void compare(String name, float tol, Function<Tensor[], Tensor> fn, Tensor... inputs) {
        List<Tensor> leaves = new ArrayList<>();
        try (Scope s = Scope.open()) {
            Tensor[] cpu = new Tensor[inputs.length], gpu = new Tensor[inputs.length];
            for (int i = 0; i < inputs.length; i++) {
                cpu[i] = inputs[i].detach();
                try (var ng = GradMode.noGrad()) {
                    gpu[i] = inputs[i].detach().to(GPU);
                }
                if (inputs[i].dtype() == DType.F32) {
                    cpu[i].requiresGrad(true);
                    gpu[i].requiresGrad(true);
                    leaves.add(cpu[i]);
                    leaves.add(gpu[i]);
                }
            }
            Tensor yc = fn.apply(cpu), yg = fn.apply(gpu);
            assertEquals(GPU, yg.device(), name + " ran on the GPU");
            assertClose(name + " forward", yc, yg, tol);
            if (yc.requiresGrad()) {
                Tensor seed = Tensor.randn(rng, 1f, yc.shape());
                yc.backward(seed);
                yg.backward(seed.to(GPU));
                for (int i = 0; i < inputs.length; i++) {
                    if (cpu[i].grad() != null) assertClose(name + " grad of input " + i, cpu[i].grad(), gpu[i].grad(), tol * 5);
                }
            }
        } finally {
            for (Tensor t : leaves) t.clearGrad();
        }
    }

    // ---------------------------------------------------------------- data movement

    @Test
    void transferRoundTripAndFill() {
        try (Scope s = Scope.open()) {
            Tensor x = randn(3, 70);
            assertArrayEquals(x.toFloatArray(), x.to(GPU).toFloatArray());
            Tensor ids = Tensor.ofInts(new int[] {3, -1, 7, 1 << 30}, 4);
            assertArrayEquals(ids.toIntArray(), ids.to(GPU).toIntArray());
            Tensor f = Tensor.full(2.5f, GPU, 5, 3);
            for (float v : f.toFloatArray()) assertEquals(2.5f, v);
            Tensor z = Tensor.zeros(GPU, 1000);
            for (float v : z.toFloatArray()) assertEquals(0f, v);
            Tensor iz = Tensor.empty(DType.I32, GPU, 6);
            iz.backend().fill(iz, 9f);
            assertArrayEquals(new int[] {9, 9, 9, 9, 9, 9}, iz.toIntArray());
        }
    }

    @Test
    void stridedCopiesOfEveryElementSize() {
        try (Scope s = Scope.open()) {
            Tensor x = randn(4, 5, 6);
            compare("permute+contiguous", 0f, in -> in[0].permute(2, 0, 1).contiguous(), x);
            compare("narrow+transpose", 0f, in -> in[0].narrow(1, 1, 3).transpose(0, 2).contiguous(), x);
            for (DType t : new DType[] {DType.BF16, DType.F16}) {
                Tensor h = x.to(t), hg = h.to(GPU);
                Tensor c = h.permute(1, 2, 0).contiguous(), g = hg.permute(1, 2, 0).contiguous();
                assertArrayEquals(c.toFloatArray(), g.toFloatArray(), 0f, t + " strided copy");
            }
            Tensor ids = Tensor.ofInts(new int[] {1, 2, 3, 4, 5, 6}, 2, 3);
            assertArrayEquals(ids.transpose(0, 1).contiguous().toIntArray(), ids.to(GPU).transpose(0, 1).contiguous().toIntArray());
        }
    }

    @Test
    void conversions() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.randn(rng, 3f, 4, 64);
            for (DType t : new DType[] {DType.BF16, DType.F16, DType.Q8_0, DType.Q4_0, DType.I32, DType.I8}) {
                Tensor src = t == DType.I8 ? Tensor.uniform(rng, -100f, 100f, 4, 64) : x;
                Tensor cpu = src.to(t).to(DType.F32);
                Tensor gpu = src.to(GPU).to(t).to(DType.F32);
                assertClose("F32 -> " + t + " -> F32", cpu, gpu, 0f);
            }
        }
    }

    // ---------------------------------------------------------------- linear algebra

    @Test
    void matmulsForwardAndBackward() {
        try (Scope s = Scope.open()) {
            compare("matmul", TOL, in -> in[0].matmul(in[1]), randn(7, 33), randn(33, 9));
            compare("matmul rank3 x weights", TOL, in -> in[0].matmul(in[1]), randn(2, 5, 16), randn(16, 3));
            compare("matmul batched", TOL, in -> in[0].matmul(in[1]), randn(3, 4, 8), randn(3, 8, 5));
            compare("matmul transposed views", TOL, in -> in[0].transpose(0, 1).matmul(in[1].transpose(0, 1)),
                    randn(12, 6), randn(10, 12));
            compare("linear", TOL, in -> Ops.linear(in[0], in[1], in[2]), randn(4, 20), randn(11, 20), randn(11));
            compare("matmul decode row", TOL, in -> in[0].matmul(in[1]), randn(1, 40), randn(40, 17));
        }
    }

    @Test
    void gemmAlphaBetaAndBf16() {
        try (Scope s = Scope.open()) {
            int m = 5, n = 7, k = 9, batch = 2;
            Tensor a = randn(batch, m, k), b = randn(batch, n, k), c = randn(batch, m, n);
            Tensor cc = Ops.contiguous(c), cg = c.to(GPU);
            Tensor ag = a.to(GPU), bg = b.to(GPU);
            CpuBackend.INSTANCE.gemm(false, true, m, n, k, 0.5f, a, 0, k, (long) m * k, b, 0, k, (long) n * k, 0.25f, cc, 0, n,
                    (long) m * n, batch);
            cg.backend().gemm(false, true, m, n, k, 0.5f, ag, 0, k, (long) m * k, bg, 0, k, (long) n * k, 0.25f, cg, 0, n,
                    (long) m * n, batch);
            assertClose("gemm alpha/beta batched", cc, cg, TOL);
            // BF16 inputs with F32 accumulation: compare with the CPU GEMM of the rounded values
            Tensor a16 = a.to(DType.BF16), b16 = b.to(DType.BF16);
            Tensor want = Tensor.zeros(batch, m, n), got = Tensor.zeros(GPU, batch, m, n);
            CpuBackend.INSTANCE.gemm(false, true, m, n, k, 1f, a16.to(DType.F32), 0, k, (long) m * k, b16.to(DType.F32), 0, k,
                    (long) n * k, 0f, want, 0, n, (long) m * n, batch);
            got.backend().gemm(false, true, m, n, k, 1f, a16.to(GPU), 0, k, (long) m * k, b16.to(GPU), 0, k, (long) n * k, 0f,
                    got, 0, n, (long) m * n, batch);
            assertClose("gemm bf16", want, got, 1e-3f);
        }
    }

    @Test
    void linearQuantizedWeights() {
        try (Scope s = Scope.open()) {
            Tensor w = randn(24, 64);
            for (DType t : new DType[] {DType.F32, DType.Q8_0, DType.Q4_0, DType.BF16, DType.F16}) {
                for (int tokens : new int[] {1, 3}) {
                    Tensor x = randn(tokens, 64);
                    Tensor wq = w.to(t);
                    // CPU reference: dequantized weights, F32 GEMM (the CPU backend has no BF16/F16 path)
                    Tensor want = Tensor.empty(DType.F32, tokens, 24);
                    CpuBackend.INSTANCE.linearQuantized(wq.to(DType.F32), x, want);
                    if (t == DType.Q8_0 || t == DType.Q4_0) {
                        Tensor direct = Tensor.empty(DType.F32, tokens, 24);
                        CpuBackend.INSTANCE.linearQuantized(wq, x, direct);
                        assertClose("cpu " + t + " self-check", want, direct, 1e-3f);
                    }
                    Tensor got = Tensor.empty(DType.F32, GPU, tokens, 24);
                    got.backend().linearQuantized(wq.to(GPU), x.to(GPU), got);
                    assertClose("linearQuantized " + t + " x" + tokens, want, got, 1e-3f);
                }
            }
        }
    }

    // ---------------------------------------------------------------- elementwise and reductions

    @Test
    void binaryOpsWithBroadcast() {
        try (Scope s = Scope.open()) {
            compare("add", TOL, in -> in[0].add(in[1]), randn(2, 3, 4), randn(3, 1));
            compare("sub", TOL, in -> in[0].sub(in[1]), randn(4), randn(2, 3, 4));
            compare("mul", TOL, in -> in[0].mul(in[1]), randn(2, 3, 4), randn(2, 1, 4));
            compare("div", TOL, in -> in[0].div(in[1]), randn(5, 6), positive(6));
            compare("eq", 0f, in -> Ops.eq(in[0], in[1]), Tensor.of(new float[] {1, 2, 3, 4}, 2, 2), Tensor.of(new float[] {1, 5}, 2));
            compare("mul transposed", TOL, in -> in[0].transpose(0, 1).mul(in[1]), randn(6, 5), randn(5, 6));
        }
    }

    @Test
    void unaryOpsAndBackward() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.randn(rng, 3f, 9, 31);
            compare("exp", TOL, in -> in[0].exp(), x);
            compare("log", TOL, in -> in[0].log(), positive(9, 31));
            compare("tanh", TOL, in -> in[0].tanh(), x);
            compare("relu", TOL, in -> in[0].relu(), x);
            compare("silu", TOL, in -> in[0].silu(), x);
            compare("gelu tanh", TOL, in -> Ops.geluTanh(in[0]), Tensor.randn(rng, 8f, 300));
            compare("gelu erf", TOL, in -> Ops.geluErf(in[0]), Tensor.randn(rng, 8f, 300));
            compare("scale", TOL, in -> in[0].scale(-1.75f), x);
            compare("square", TOL, in -> Ops.square(in[0]), x);
            compare("sqrt", TOL, in -> Ops.sqrt(in[0]), positive(9, 31));
        }
    }

    @Test
    void reductions() {
        try (Scope s = Scope.open()) {
            Tensor x = randn(3, 50, 7);
            for (int d = 0; d < 3; d++) {
                int dim = d;
                compare("sum dim " + d, TOL, in -> in[0].sum(dim, false), x);
                compare("mean dim " + d, TOL, in -> in[0].mean(dim, true), x);
                compare("max dim " + d, TOL, in -> in[0].max(dim, false), x);
            }
            compare("sum all", 1e-3f, in -> in[0].sum(), randn(10_000));
            compare("long row sum", 1e-3f, in -> in[0].sum(1, false), randn(2, 5000));
            Tensor big = randn(300_001);
            double want = CpuBackend.INSTANCE.sumOfSquares(big);
            double got = CudaBackend.of(GPU).sumOfSquares(big.to(GPU));
            assertEquals(want, got, 1e-4 * want);
        }
    }

    @Test
    void addInPlaceAccumulatesGradients() {
        try (Scope s = Scope.open()) {
            // x used twice: its gradient is accumulated with addInPlace
            compare("x*x + x", TOL, in -> in[0].mul(in[0]).add(in[0]), randn(4, 9));
        }
    }

    // ---------------------------------------------------------------- row ops

    @Test
    void softmaxAndLogSoftmax() {
        try (Scope s = Scope.open()) {
            compare("softmax", TOL, in -> in[0].softmax(), Tensor.randn(rng, 4f, 6, 37));
            compare("logSoftmax", TOL, in -> in[0].logSoftmax(), Tensor.randn(rng, 4f, 6, 37));
            compare("softmax wide", TOL, in -> in[0].softmax(), randn(3, 3000));
        }
    }

    @Test
    void norms() {
        try (Scope s = Scope.open()) {
            compare("layerNorm", 1e-3f, in -> NN.layerNorm(in[0], in[1], in[2], 1e-5f), randn(2, 5, 48), randn(48), randn(48));
            compare("layerNorm no affine", 1e-3f, in -> NN.layerNorm(in[0], null, null, 1e-5f), randn(7, 700));
            compare("rmsNorm", 1e-3f, in -> NN.rmsNorm(in[0], in[1], 1e-6f), randn(6, 96), randn(96));
        }
    }

    @Test
    void rope() {
        try (Scope s = Scope.open()) {
            compare("rope", 1e-4f, in -> NN.rope(in[0], 0, 10000f), randn(2, 7, 3, 16));
            compare("rope offset", 1e-4f, in -> NN.rope(in[0], 1000, 500000f), randn(1, 3, 2, 64));
        }
    }

    @Test
    void embeddingGatherAndScatterAdd() {
        try (Scope s = Scope.open()) {
            Tensor ids = Tensor.ofInts(new int[] {3, 0, 3, 9, 3, 1}, 2, 3);
            compare("embedding", TOL, in -> NN.embedding(in[0], in[1]), randn(10, 12), ids);
            Tensor bad = Tensor.ofInts(new int[] {1, 10}, 2).to(GPU);
            Tensor table = randn(10, 4).to(GPU);
            var e = assertThrows(IllegalArgumentException.class, () -> NN.embedding(table, bad));
            assertTrue(e.getMessage().contains("token id 10 at position 1"), e.getMessage());
        }
    }

    // ---------------------------------------------------------------- attention

    @Test
    void attentionTrainingWithGroupedHeads() {
        try (Scope s = Scope.open()) {
            int b = 2, t = 9, hq = 4, hkv = 2, d = 16;
            float scale = (float) (1 / Math.sqrt(d));
            compare("attention gqa", 1e-3f, in -> NN.attention(in[0], in[1], in[2], 0, scale),
                    randn(b, t, hq, d), randn(b, t, hkv, d), randn(b, t, hkv, d));
            // more keys than one tile of threads
            compare("attention long", 1e-3f, in -> NN.attention(in[0], in[1], in[2], 0, scale),
                    randn(1, 300, 2, 32), randn(1, 300, 1, 32), randn(1, 300, 1, 32));
        }
    }

    @Test
    void attentionOverFusedProjectionViewsWithPastKeys() {
        try (Scope s = Scope.open()) {
            int b = 2, t = 3, past = 5, h = 2, d = 8;
            float scale = 0.3f;
            Tensor qkv = randn(b, t, 3 * h * d); // fused projection: q, k, v are strided views
            Tensor kvPast = randn(b, past + t, 2, h, d);
            compare("attention strided + past", 1e-3f, in -> {
                Tensor q = in[0].narrow(2, 0, h * d).reshape(b, t, h, d);
                Tensor k = in[1].narrow(2, 0, 1).reshape(b, past + t, h, d);
                Tensor v = in[1].narrow(2, 1, 1).reshape(b, past + t, h, d);
                return NN.attention(q, k, v, past, scale);
            }, qkv, kvPast);
            // lse directly
            Tensor q = randn(b, t, h, d), k = randn(b, past + t, h, d), v = randn(b, past + t, h, d);
            Tensor oc = Tensor.empty(DType.F32, b, t, h, d), lc = Tensor.empty(DType.F32, b, h, t);
            CpuBackend.INSTANCE.attention(q, k, v, past, scale, oc, lc);
            Tensor og = Tensor.empty(DType.F32, GPU, b, t, h, d), lg = Tensor.empty(DType.F32, GPU, b, h, t);
            og.backend().attention(q.to(GPU), k.to(GPU), v.to(GPU), past, scale, og, lg);
            assertClose("attention o", oc, og, 1e-4f);
            assertClose("attention lse", lc, lg, 1e-4f);
        }
    }

    // ---------------------------------------------------------------- loss and optimiser

    @Test
    void crossEntropyWithMaskWeightsTemperature() {
        try (Scope s = Scope.open()) {
            int n = 7, v = 1000;
            Tensor targets = Tensor.ofInts(new int[] {5, -100, 999, 0, 17, 17, 3}, n);
            Tensor mask = Tensor.of(new float[] {1, 1, 0, 1, 1, 0.5f, 1}, n);
            Tensor weight = Tensor.uniform(rng, 0.5f, 2f, n);
            var opts = NN.CrossEntropyOptions.DEFAULT.withMask(mask).withWeight(weight).withTemperature(0.7f);
            compare("crossEntropy", 1e-4f, in -> NN.crossEntropy(in[0], targets.to(in[0].device()),
                    new NN.CrossEntropyOptions(-100, mask.to(in[0].device()), weight.to(in[0].device()), 0.7f)),
                    Tensor.randn(rng, 5f, n, v));
            compare("crossEntropy plain", 1e-4f, in -> NN.crossEntropy(in[0], targets.to(in[0].device())), randn(n, v));
            assertTrue(opts.temperature() == 0.7f);
            Tensor logits = randn(n, v);
            logits.set(logits.get(2, 10) + 50f, 2, 10); // a clear winner
            Tensor[] pc = NN.topProbability(logits), pg = NN.topProbability(logits.to(GPU));
            assertClose("maxProb", pc[0], pg[0], 1e-5f);
            assertArrayEquals(pc[1].toIntArray(), pg[1].toIntArray());
            Tensor rc = Tensor.empty(DType.F32, n), rg = Tensor.empty(DType.F32, GPU, n);
            double[] sc = CpuBackend.INSTANCE.crossEntropy(logits, targets, -100, null, null, 1f, rc, null, 0f, null, null);
            double[] sg = rg.backend().crossEntropy(logits.to(GPU), targets.to(GPU), -100, null, null, 1f, rg, null, 0f, null, null);
            assertEquals(sc[0], sg[0], 1e-4 * Math.abs(sc[0]));
            assertEquals(sc[1], sg[1]);
            assertClose("rowLoss", rc, rg, 1e-5f);
            Tensor badTargets = Tensor.ofInts(new int[] {1, v}, 2).to(GPU);
            assertThrows(IllegalArgumentException.class, () -> NN.crossEntropy(randn(2, v).to(GPU), badTargets));
        }
    }

    @Test
    void adamwSteps() {
        try (Scope s = Scope.open()) {
            Tensor p = randn(1000), g = randn(1000), m = Tensor.zeros(1000), v = Tensor.zeros(1000);
            Tensor pg = p.to(GPU), gg = g.to(GPU), mg = m.to(GPU), vg = v.to(GPU);
            Backend cpu = CpuBackend.INSTANCE, gpu = pg.backend();
            for (int step = 1; step <= 3; step++) {
                cpu.adamw(p, g, m, v, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
                gpu.adamw(pg, gg, mg, vg, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
            }
            assertClose("adamw p", p, pg, 1e-5f);
            assertClose("adamw m", m, mg, 1e-5f);
            assertClose("adamw v", v, vg, 1e-5f);
        }
    }

    @Test
    void freedDeviceMemoryIsReused() {
        CudaBackend b = CudaBackend.of(GPU);
        long before = b.allocatedBytes();
        Tensor t = Tensor.empty(DType.F32, GPU, 1 << 20);
        assertTrue(b.allocatedBytes() >= before + (4L << 20));
        t.close();
        assertEquals(before, b.allocatedBytes());
        long cached = b.cachedBytes();
        Tensor u = Tensor.empty(DType.F32, GPU, 1 << 20);
        assertTrue(b.cachedBytes() < cached, "the freed block was reused");
        u.close();
    }
}
