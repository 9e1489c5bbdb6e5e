package dev.exeunt.tensor.cpu;

import dev.exeunt.tensor.RopeScaling;
import dev.exeunt.tensor.Backend;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Storage;
import dev.exeunt.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/** The CPU backend: adapts tensors (segment + element offset) to the Vector API kernels in this package. */
public final class CpuBackend implements Backend {
    public static final CpuBackend INSTANCE = new CpuBackend();

    private CpuBackend() {}

    private static MemorySegment seg(Tensor t) {
        return t.segment();
    }

    private static long off(Tensor t) {
        return t.offset();
    }

    private static int rows(Tensor t) {
        return (int) (t.numel() / t.dim(-1));
    }

    private static void contiguous(String op, Tensor... ts) {
        for (Tensor t : ts) {
            if (t != null && !t.isContiguous()) throw new IllegalArgumentException(op + " needs contiguous input, got " + t);
        }
    }

    @Override
    public Device device() {
        return Device.CPU;
    }

    @Override
    public Storage allocate(long bytes) {
        return HostMemory.allocate(bytes);
    }

    // ---------------------------------------------------------------- data movement

    @Override
    public void copy(Tensor src, Tensor dst) {
        if (src.dtype() != dst.dtype() || src.dtype().isQuantized()) {
            if (src.dtype() == dst.dtype() && src.isContiguous() && dst.isContiguous()) {
                MemorySegment.copy(seg(src), src.dtype().byteSize(off(src)), seg(dst), dst.dtype().byteSize(off(dst)),
                        src.dtype().byteSize(src.numel()));
                return;
            }
            throw new IllegalArgumentException("copy needs equal plain dtypes, got " + src.dtype() + " -> " + dst.dtype());
        }
        if (!Arrays.equals(src.shape(), dst.shape())) {
            throw new IllegalArgumentException("copy shape mismatch " + Shape.str(src.shape()) + " -> " + Shape.str(dst.shape()));
        }
        CpuElementwise.copy(src.shape(), src.dtype().elementBytes(), seg(src), off(src), src.strides(),
                seg(dst), off(dst), dst.strides());
    }

    @Override
    public void fill(Tensor dst, float value) {
        contiguous("fill", dst);
        long n = dst.numel();
        switch (dst.dtype()) {
            case F32 -> {
                if (value == 0f) seg(dst).asSlice(off(dst) * 4, n * 4).fill((byte) 0);
                else for (long i = 0; i < n; i++) seg(dst).setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, off(dst) + i, value);
            }
            case I32 -> {
                int v = (int) value;
                for (long i = 0; i < n; i++) seg(dst).setAtIndex(ValueLayout.JAVA_INT_UNALIGNED, off(dst) + i, v);
            }
            default -> throw new IllegalArgumentException("fill supports F32 and I32, got " + dst.dtype());
        }
    }

    @Override
    public void convert(Tensor src, Tensor dst) {
        contiguous("convert", src, dst);
        long n = src.numel();
        DType from = src.dtype(), to = dst.dtype();
        MemorySegment s = seg(src), d = seg(dst);
        if (to == DType.F32) {
            switch (from) {
                case F32 -> MemorySegment.copy(s, off(src) * 4, d, off(dst) * 4, n * 4);
                case BF16 -> CpuHalf.bf16ToF32(s, off(src), d, off(dst), n);
                case F16 -> CpuHalf.f16ToF32(s, off(src), d, off(dst), n);
                case I32 -> {
                    for (long i = 0; i < n; i++) {
                        d.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, off(dst) + i, s.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, off(src) + i));
                    }
                }
                case Q8_0 -> CpuQuant.dequantizeQ8_0(s, from.byteSize(off(src)), d, off(dst), n);
                case Q4_0 -> CpuQuant.dequantizeQ4_0(s, from.byteSize(off(src)), d, off(dst), n);
                case Q2_K, Q4_K, Q5_K, Q6_K -> CpuKQuant.dequantize(from, s, from.byteSize(off(src)), d, off(dst), n);
                case I8 -> {
                    // Plain int8 values; scaled int8 weights keep their scales beside them (CpuQuant.dequantizeI8Rows).
                    for (long i = 0; i < n; i++) {
                        d.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, off(dst) + i, s.get(ValueLayout.JAVA_BYTE, off(src) + i));
                    }
                }
            }
            return;
        }
        if (from != DType.F32) throw new IllegalArgumentException("conversion " + from + " -> " + to + " goes through F32");
        switch (to) {
            case BF16 -> CpuHalf.f32ToBf16(s, off(src), d, off(dst), n);
            case F16 -> CpuHalf.f32ToF16(s, off(src), d, off(dst), n);
            case I32 -> {
                for (long i = 0; i < n; i++) {
                    d.setAtIndex(ValueLayout.JAVA_INT_UNALIGNED, off(dst) + i, (int) s.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, off(src) + i));
                }
            }
            case I8 -> {
                for (long i = 0; i < n; i++) {
                    float v = s.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, off(src) + i);
                    if (!(v >= -128 && v <= 127)) throw new IllegalArgumentException("value " + v + " at " + i + " does not fit in I8");
                    d.set(ValueLayout.JAVA_BYTE, off(dst) + i, (byte) Math.round(v));
                }
            }
            case Q8_0 -> CpuQuant.quantizeQ8_0(s, off(src), d, to.byteSize(off(dst)), n);
            case Q4_0 -> CpuQuant.quantizeQ4_0(s, off(src), d, to.byteSize(off(dst)), n);
            default -> throw new IllegalArgumentException("conversion F32 -> " + to + " is not supported");
        }
    }

    @Override
    public void transfer(Tensor src, Tensor dst) {
        copy(src, dst);
    }

    // ---------------------------------------------------------------- linear algebra

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, Tensor a, long aOff, int lda,
                     long strideA, Tensor b, long bOff, int ldb, long strideB, float beta, Tensor c, long cOff, int ldc,
                     long strideC, int batch) {
        if (batch == 1 && m >= 2 && m <= CpuSkinnyGemm.MAX_ROWS && !transA && beta == 0f && alpha == 1f) {
            // Batched decode and KV recomputation: a few rows times a weight matrix, weights read once.
            CpuSkinnyGemm.gemm(transB, m, n, k, seg(a), aOff, lda, seg(b), bOff, ldb, seg(c), cOff, ldc);
            return;
        }
        if (batch == 1 && m == 1 && !transA && beta == 0f && alpha == 1f) {
            // One-token decode: y = B x for [out, in] weights, y = B^T x for input-major ones.
            if (transB) CpuGemm.sgemv(false, n, k, 1f, seg(b), bOff, ldb, seg(a), aOff, 0f, seg(c), cOff);
            else CpuGemm.sgemv(true, k, n, 1f, seg(b), bOff, ldb, seg(a), aOff, 0f, seg(c), cOff);
            return;
        }
        if (batch == 1) {
            CpuGemm.sgemm(transA, transB, m, n, k, alpha, seg(a), aOff, lda, seg(b), bOff, ldb, beta, seg(c), cOff, ldc);
        } else {
            CpuGemm.sgemmBatched(transA, transB, m, n, k, alpha, seg(a), aOff, lda, strideA, seg(b), bOff, ldb, strideB,
                    beta, seg(c), cOff, ldc, strideC, batch);
        }
    }

    @Override
    public void linearQuantized(Tensor w, Tensor x, Tensor y) {
        contiguous("linearQuantized", w, x, y);
        int m = w.dim(0), n = w.dim(1), t = rows(x);
        long wb = w.dtype().byteSize(off(w));
        if (t >= CpuPanelGemm.MIN_ROWS && w.dtype().isQuantized()) {
            // many rows (a prompt, an evaluation batch): dequantized panels through the blocked GEMM
            CpuPanelGemm.gemm(w.dtype(), t, m, n, seg(w), wb, seg(x), off(x), n, seg(y), off(y), m);
            return;
        }
        switch (w.dtype()) {
            case Q8_0 -> {
                if (t == 1) CpuQuant.gemvQ8_0(m, n, seg(w), wb, seg(x), off(x), seg(y), off(y));
                else CpuQuant.gemmQ8_0(t, m, n, seg(w), wb, seg(x), off(x), seg(y), off(y));
            }
            case Q4_0 -> {
                if (t == 1) CpuQuant.gemvQ4_0(m, n, seg(w), wb, seg(x), off(x), seg(y), off(y));
                else CpuQuant.gemmQ4_0(t, m, n, seg(w), wb, seg(x), off(x), seg(y), off(y));
            }
            case Q2_K, Q4_K, Q5_K, Q6_K -> CpuKQuant.gemm(w.dtype(), t, m, n, seg(w), wb, seg(x), off(x), n, seg(y), off(y), m);
            case F32 -> gemm(false, true, t, m, n, 1f, x, off(x), n, 0, w, off(w), n, 0, 0f, y, off(y), m, 0, 1);
            default -> throw new IllegalArgumentException("linearQuantized: unsupported weight dtype " + w.dtype());
        }
    }

    // ---------------------------------------------------------------- elementwise

    @Override
    public void binary(Binary op, Tensor a, Tensor b, Tensor out) {
        contiguous("binary", out);
        CpuElementwise.binary(op, out.shape(), seg(a), off(a), a.strides(), seg(b), off(b), b.strides(), seg(out), off(out));
    }

    @Override
    public void unary(Unary op, Tensor x, float param, Tensor y) {
        contiguous("unary", x, y);
        MemorySegment xs = seg(x), ys = seg(y);
        long xo = off(x), yo = off(y), n = x.numel();
        switch (op) {
            case EXP -> CpuActivation.exp(xs, xo, ys, yo, n);
            case LOG -> CpuActivation.log(xs, xo, ys, yo, n);
            case TANH -> CpuActivation.tanh(xs, xo, ys, yo, n);
            case RELU -> CpuActivation.relu(xs, xo, ys, yo, n);
            case SILU -> CpuActivation.silu(xs, xo, ys, yo, n);
            case GELU_TANH -> CpuActivation.geluTanh(xs, xo, ys, yo, n);
            case GELU_ERF -> CpuActivation.geluErf(xs, xo, ys, yo, n);
            case SCALE -> CpuElementwise.scale(xs, xo, param, ys, yo, n);
            case SQUARE -> CpuElementwise.binary(Binary.MUL, new int[] {(int) n}, xs, xo, new long[] {1}, xs, xo,
                    new long[] {1}, ys, yo);
            case SQRT -> {
                for (long i = 0; i < n; i++) {
                    ys.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, yo + i,
                            (float) Math.sqrt(xs.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, xo + i)));
                }
            }
        }
    }

    @Override
    public void unaryBackward(Unary op, Tensor x, Tensor y, Tensor dy, float param, Tensor dx) {
        contiguous("unaryBackward", x, y, dy, dx);
        long n = x.numel();
        MemorySegment xs = seg(x), ys = seg(y), gs = seg(dy), ds = seg(dx);
        long xo = off(x), yo = off(y), go = off(dy), dO = off(dx);
        switch (op) {
            case EXP -> CpuActivation.expBackward(ys, yo, gs, go, ds, dO, n);
            case LOG -> CpuActivation.logBackward(xs, xo, gs, go, ds, dO, n);
            case TANH -> CpuActivation.tanhBackward(ys, yo, gs, go, ds, dO, n);
            case RELU -> CpuActivation.reluBackward(xs, xo, gs, go, ds, dO, n);
            case SILU -> CpuActivation.siluBackward(xs, xo, gs, go, ds, dO, n);
            case GELU_TANH -> CpuActivation.geluTanhBackward(xs, xo, gs, go, ds, dO, n);
            case GELU_ERF -> CpuActivation.geluErfBackward(xs, xo, gs, go, ds, dO, n);
            case SCALE -> CpuElementwise.scale(gs, go, param, ds, dO, n);
            case SQUARE -> {
                long[] one = {1};
                CpuElementwise.binary(Binary.MUL, new int[] {(int) n}, gs, go, one, xs, xo, one, ds, dO);
                CpuElementwise.scale(ds, dO, 2f, ds, dO, n);
            }
            case SQRT -> {
                long[] one = {1};
                CpuElementwise.binary(Binary.DIV, new int[] {(int) n}, gs, go, one, ys, yo, one, ds, dO);
                CpuElementwise.scale(ds, dO, 0.5f, ds, dO, n);
            }
        }
    }

    @Override
    public void addInPlace(Tensor acc, Tensor x) {
        contiguous("addInPlace", acc, x);
        CpuElementwise.addInPlace(seg(acc), off(acc), seg(x), off(x), acc.numel());
    }

    // ---------------------------------------------------------------- reductions

    @Override
    public void reduce(Reduce op, Tensor x, int dim, Tensor out) {
        contiguous("reduce", x, out);
        long outer = 1, inner = 1;
        for (int i = 0; i < dim; i++) outer *= x.dim(i);
        for (int i = dim + 1; i < x.rank(); i++) inner *= x.dim(i);
        CpuReduce.reduce(op == Reduce.MAX, outer, x.dim(dim), inner, seg(x), off(x), seg(out), off(out));
    }

    @Override
    public double sumOfSquares(Tensor x) {
        contiguous("sumOfSquares", x);
        return CpuElementwise.sumOfSquares(seg(x), off(x), x.numel());
    }

    // ---------------------------------------------------------------- row ops

    @Override
    public void softmax(Tensor x, Tensor y, boolean log) {
        contiguous("softmax", x, y);
        if (log) CpuSoftmax.logSoftmax(seg(x), off(x), seg(y), off(y), rows(x), x.dim(-1));
        else CpuSoftmax.softmax(seg(x), off(x), seg(y), off(y), rows(x), x.dim(-1));
    }

    @Override
    public void softmaxBackward(Tensor y, Tensor dy, Tensor dx, boolean log) {
        contiguous("softmaxBackward", y, dy, dx);
        if (log) CpuSoftmax.logSoftmaxBackward(seg(y), off(y), seg(dy), off(dy), seg(dx), off(dx), rows(y), y.dim(-1));
        else CpuSoftmax.softmaxBackward(seg(y), off(y), seg(dy), off(dy), seg(dx), off(dx), rows(y), y.dim(-1));
    }

    @Override
    public void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor y, Tensor mean, Tensor rstd) {
        contiguous("layerNorm", x, gamma, beta, y, mean, rstd);
        CpuNorm.layerNorm(seg(x), off(x), gamma == null ? null : seg(gamma), gamma == null ? 0 : off(gamma),
                beta == null ? null : seg(beta), beta == null ? 0 : off(beta), seg(y), off(y), seg(mean), off(mean),
                seg(rstd), off(rstd), rows(x), x.dim(-1), eps);
    }

    @Override
    public void layerNormBackward(Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dy, Tensor dx, Tensor dGamma,
                                  Tensor dBeta) {
        contiguous("layerNormBackward", x, gamma, mean, rstd, dy, dx, dGamma, dBeta);
        CpuNorm.layerNormBackward(seg(x), off(x), gamma == null ? null : seg(gamma), gamma == null ? 0 : off(gamma),
                seg(mean), off(mean), seg(rstd), off(rstd), seg(dy), off(dy), seg(dx), off(dx),
                dGamma == null ? null : seg(dGamma), dGamma == null ? 0 : off(dGamma),
                dBeta == null ? null : seg(dBeta), dBeta == null ? 0 : off(dBeta), rows(x), x.dim(-1));
    }

    @Override
    public void rmsNorm(Tensor x, Tensor gamma, float eps, Tensor y, Tensor rstd) {
        contiguous("rmsNorm", x, gamma, y, rstd);
        CpuNorm.rmsNorm(seg(x), off(x), seg(gamma), off(gamma), seg(y), off(y), seg(rstd), off(rstd), rows(x), x.dim(-1), eps);
    }

    @Override
    public void rmsNormBackward(Tensor x, Tensor gamma, Tensor rstd, Tensor dy, Tensor dx, Tensor dGamma) {
        contiguous("rmsNormBackward", x, gamma, rstd, dy, dx, dGamma);
        CpuNorm.rmsNormBackward(seg(x), off(x), seg(gamma), off(gamma), seg(rstd), off(rstd), seg(dy), off(dy),
                seg(dx), off(dx), dGamma == null ? null : seg(dGamma), dGamma == null ? 0 : off(dGamma), rows(x), x.dim(-1));
    }

    @Override
    public void rope(Tensor x, int startPos, float theta, boolean inverse) {
        rope(x, startPos, theta, RopeScaling.NONE, inverse);
    }

    @Override
    public void rope(Tensor x, int startPos, double theta, RopeScaling scaling, boolean inverse) {
        contiguous("rope", x);
        int b = x.dim(0), t = x.dim(1), h = x.dim(2), d = x.dim(3);
        int[] positions = new int[b * t];
        for (int i = 0; i < positions.length; i++) positions[i] = startPos + i % t;
        if (inverse) CpuRope.backward(seg(x), off(x), (long) h * d, d, b * t, h, d, positions, 0, theta, scaling);
        else CpuRope.forward(seg(x), off(x), (long) h * d, d, b * t, h, d, positions, 0, theta, scaling);
    }

    // ---------------------------------------------------------------- embeddings

    @Override
    public void embedding(Tensor table, Tensor ids, Tensor out) {
        contiguous("embedding", table, ids, out);
        CpuEmbedding.gather(seg(table), off(table), table.dim(0), table.dim(1), seg(ids), off(ids), (int) ids.numel(),
                seg(out), off(out));
    }

    @Override
    public void embeddingBackward(Tensor ids, Tensor dOut, Tensor dTable) {
        contiguous("embeddingBackward", ids, dOut, dTable);
        CpuEmbedding.scatterAdd(seg(dOut), off(dOut), seg(ids), off(ids), (int) ids.numel(), seg(dTable), off(dTable),
                dTable.dim(0), dTable.dim(1));
    }

    // ---------------------------------------------------------------- attention

    private static CpuAttention.View view(Tensor t) {
        return new CpuAttention.View(seg(t), off(t), t.stride(0), t.stride(1), t.stride(2));
    }

    private static void checkHeadDimContiguous(Tensor... ts) {
        for (Tensor t : ts) {
            if (t.stride(3) != 1) throw new IllegalArgumentException("attention needs the head dim contiguous: " + t);
        }
    }

    @Override
    public void attention(Tensor q, Tensor k, Tensor v, int pastLen, float scale, Tensor o, Tensor lse) {
        attention(q, k, v, pastLen, scale, 0, o, lse);
    }

    @Override
    public void attention(Tensor q, Tensor k, Tensor v, int pastLen, float scale, int window, Tensor o, Tensor lse) {
        checkHeadDimContiguous(q, k, v, o);
        var dims = new CpuAttention.Dims(q.dim(0), q.dim(1), pastLen, q.dim(2), k.dim(2), q.dim(3), scale, window);
        CpuAttention.forward(dims, view(q), view(k), view(v), view(o), lse == null ? null : seg(lse), lse == null ? 0 : off(lse));
    }

    @Override
    public void attentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dO, int pastLen, float scale,
                                  Tensor dq, Tensor dk, Tensor dv) {
        attentionBackward(q, k, v, o, lse, dO, pastLen, scale, 0, dq, dk, dv);
    }

    @Override
    public void attentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dO, int pastLen, float scale, int window,
                                  Tensor dq, Tensor dk, Tensor dv) {
        checkHeadDimContiguous(q, k, v, o, dO, dq, dk, dv);
        var dims = new CpuAttention.Dims(q.dim(0), q.dim(1), pastLen, q.dim(2), k.dim(2), q.dim(3), scale, window);
        CpuAttention.backward(dims, view(q), view(k), view(v), view(o), seg(lse), off(lse), view(dO), view(dq), view(dk),
                view(dv));
    }

    // ---------------------------------------------------------------- loss and optimiser

    @Override
    public double[] crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor mask, Tensor weight, float temperature,
                               Tensor rowLoss, Tensor dLogits, float gradScale, Tensor maxProb, Tensor argmax) {
        contiguous("crossEntropy", logits, targets, mask, weight, rowLoss, dLogits, maxProb, argmax);
        var ce = CpuLoss.crossEntropy(seg(logits), off(logits), rows(logits), logits.dim(-1), seg(targets), off(targets))
                .ignoreIndex(ignoreIndex).temperature(temperature);
        if (mask != null) ce.mask(seg(mask), off(mask));
        if (weight != null) ce.weights(seg(weight), off(weight));
        if (rowLoss != null) ce.rowLoss(seg(rowLoss), off(rowLoss));
        if (maxProb != null) ce.maxProb(seg(maxProb), off(maxProb));
        if (argmax != null) ce.argmax(seg(argmax), off(argmax));
        var sums = ce.forward();
        if (dLogits != null) ce.backward(gradScale, null, 0, seg(dLogits), off(dLogits));
        return new double[] {sums.numerator(), sums.denominator()};
    }

    @Override
    public void adamw(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
                      float weightDecay, int step) {
        contiguous("adamw", p, grad, m, v);
        CpuOptim.adamW(seg(p), off(p), seg(grad), off(grad), seg(m), off(m), seg(v), off(v), p.numel(), lr, beta1, beta2,
                eps, weightDecay, step);
    }
}
