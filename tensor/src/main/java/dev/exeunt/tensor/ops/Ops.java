package dev.exeunt.tensor.ops;

import dev.exeunt.tensor.Backend;
import dev.exeunt.tensor.Backend.Binary;
import dev.exeunt.tensor.Backend.Unary;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.autograd.Node;
import java.util.Arrays;
import java.util.function.Supplier;

/**
 * The differentiable array operations: views, arithmetic with broadcasting, unary functions,
 * reductions, softmax and matmul. Each op's forward and backward sit side by side; backward
 * formulas are written with the same ops, so they run on any backend.
 */
public final class Ops {
    private Ops() {}

    // ---------------------------------------------------------------- autograd plumbing

    /**
     * Attaches the backward to {@code out} when grad mode is on and an input needs gradients. Public so
     * that layers outside this package (e.g. tensor-parallel communication) can define their own ops.
     */
    public static Tensor record(Tensor out, String op, Tensor[] inputs, Node.Backward backward) {
        if (!GradMode.isEnabled()) return out;
        for (Tensor in : inputs) {
            if (in != null && in.requiresGrad()) return out.recordedBy(new Node(op, inputs, backward));
        }
        return out;
    }

    static boolean needsGrad(Tensor... inputs) {
        if (!GradMode.isEnabled()) return false;
        for (Tensor t : inputs) if (t != null && t.requiresGrad()) return true;
        return false;
    }

    /** Creates tensors that belong to no scope (for gradients and optimiser state). */
    public static <T> T unowned(Supplier<T> body) {
        return Scope.outside(body);
    }

    static Tensor like(Tensor t) {
        return Tensor.empty(DType.F32, t.device(), t.shape());
    }

    static Tensor emptyF32(Device d, int... shape) {
        return Tensor.empty(DType.F32, d, shape);
    }

    static void requireF32(String op, Tensor t) {
        if (t.dtype() != DType.F32) throw new IllegalArgumentException(op + " needs F32 input, got " + t.dtype() + " " + t);
    }

    // ---------------------------------------------------------------- views

    public static Tensor reshape(Tensor x, int[] newShape) {
        int[] shape = Shape.infer(newShape, x.numel());
        Tensor out;
        if (x.isContiguous()) {
            out = x.view(shape, Shape.contiguousStrides(shape), x.offset());
        } else {
            Tensor c = contiguousCopy(x);
            out = c.view(shape, Shape.contiguousStrides(shape), c.offset());
        }
        int[] orig = x.shape();
        return record(out, "reshape", new Tensor[] {x}, g -> new Tensor[] {reshape(g, orig)});
    }

    /** Splits dim {@code dim} of size a*b into two dims [a, b]; always a view. */
    public static Tensor splitDim(Tensor x, int dim, int a, int b) {
        dim = dim < 0 ? x.rank() + dim : dim;
        if ((long) a * b != x.dim(dim)) {
            throw new IllegalArgumentException("cannot split dim " + dim + " of " + Shape.str(x.shape()) + " into " + a + " x " + b);
        }
        int r = x.rank();
        int[] shape = new int[r + 1];
        long[] strides = new long[r + 1];
        for (int i = 0, j = 0; i < r; i++) {
            if (i == dim) {
                shape[j] = a;
                strides[j++] = x.stride(i) * b;
                shape[j] = b;
                strides[j++] = x.stride(i);
            } else {
                shape[j] = x.dim(i);
                strides[j++] = x.stride(i);
            }
        }
        Tensor out = x.view(shape, strides, x.offset());
        int[] orig = x.shape();
        return record(out, "splitDim", new Tensor[] {x}, g -> new Tensor[] {reshape(g, orig)});
    }

    public static Tensor permute(Tensor x, int... perm) {
        int r = x.rank();
        if (perm.length != r) throw new IllegalArgumentException("permutation " + Arrays.toString(perm) + " for rank " + r);
        int[] shape = new int[r];
        long[] strides = new long[r];
        int[] inverse = new int[r];
        boolean[] used = new boolean[r];
        for (int i = 0; i < r; i++) {
            int p = perm[i];
            if (p < 0 || p >= r || used[p]) throw new IllegalArgumentException("bad permutation " + Arrays.toString(perm));
            used[p] = true;
            shape[i] = x.dim(p);
            strides[i] = x.stride(p);
            inverse[p] = i;
        }
        Tensor out = x.view(shape, strides, x.offset());
        return record(out, "permute", new Tensor[] {x}, g -> new Tensor[] {permute(g, inverse)});
    }

    public static Tensor narrow(Tensor x, int dim, int start, int length) {
        if (start < 0 || length < 0 || start + length > x.dim(dim)) {
            throw new IndexOutOfBoundsException("narrow(" + dim + ", " + start + ", " + length + ") of " + Shape.str(x.shape()));
        }
        int[] shape = x.shape();
        shape[dim] = length;
        Tensor out = x.view(shape, x.strides(), x.offset() + start * x.stride(dim));
        int[] full = x.shape();
        return record(out, "narrow", new Tensor[] {x}, g -> {
            Tensor dx = Tensor.zeros(g.device(), full);
            try (var ng = GradMode.noGrad()) {
                Tensor slot = narrow(dx, dim, start, length);
                copyInto(g, slot);
                slot.close();
            }
            return new Tensor[] {dx};
        });
    }

    public static Tensor expand(Tensor x, int... shape) {
        int r = shape.length;
        if (r < x.rank()) throw new IllegalArgumentException("cannot expand " + Shape.str(x.shape()) + " to " + Shape.str(shape));
        long[] strides = new long[r];
        for (int i = 0; i < r; i++) {
            int xi = i - (r - x.rank());
            int d = xi < 0 ? 1 : x.dim(xi);
            if (d == shape[i]) strides[i] = xi < 0 ? 0 : x.stride(xi);
            else if (d == 1) strides[i] = 0;
            else throw new IllegalArgumentException("cannot expand " + Shape.str(x.shape()) + " to " + Shape.str(shape));
        }
        Tensor out = x.view(shape, strides, x.offset());
        int[] orig = x.shape();
        return record(out, "expand", new Tensor[] {x}, g -> new Tensor[] {sumTo(g, orig)});
    }

    public static Tensor contiguous(Tensor x) {
        Tensor out = x.isContiguous() ? x.view(x.shape(), x.strides(), x.offset()) : contiguousCopy(x);
        return record(out, "contiguous", new Tensor[] {x}, g -> new Tensor[] {g});
    }

    private static Tensor contiguousCopy(Tensor x) {
        Tensor out = Tensor.empty(x.dtype(), x.device(), x.shape());
        x.backend().copy(x, out);
        return out;
    }

    /** dst = src in place (no autograd); shapes must match, any strides. */
    public static void copyInto(Tensor src, Tensor dst) {
        if (src.device().equals(dst.device())) {
            if (src.dtype() == dst.dtype()) {
                dst.backend().copy(src, dst);
            } else {
                Tensor c = toDType(src, dst.dtype());
                dst.backend().copy(c, dst);
                c.close();
            }
        } else {
            Tensor s = src.isContiguous() ? src : contiguousCopy(src);
            Tensor moved = Tensor.empty(s.dtype(), dst.device(), s.shape());
            (s.device().kind() == Device.Kind.CPU ? dst.backend() : s.backend()).transfer(s, moved);
            copyInto(moved, dst);
            moved.close();
            if (s != src) s.close();
        }
    }

    /** Concatenates along {@code dim}. */
    public static Tensor cat(int dim, Tensor... parts) {
        int[] shape = parts[0].shape();
        int total = 0;
        for (Tensor p : parts) {
            int[] ps = p.shape();
            for (int i = 0; i < shape.length; i++) {
                if (i != dim && ps[i] != shape[i]) {
                    throw new IllegalArgumentException("cat along " + dim + ": shapes " + Shape.str(shape) + " and " + Shape.str(ps));
                }
            }
            total += ps[dim];
        }
        shape[dim] = total;
        Tensor out = Tensor.empty(parts[0].dtype(), parts[0].device(), shape);
        int at = 0;
        int[] starts = new int[parts.length];
        try (var ng = GradMode.noGrad()) {
            for (int i = 0; i < parts.length; i++) {
                starts[i] = at;
                Tensor slot = narrow(out, dim, at, parts[i].dim(dim));
                copyInto(parts[i], slot);
                slot.close();
                at += parts[i].dim(dim);
            }
        }
        return record(out, "cat", parts, g -> {
            Tensor[] grads = new Tensor[parts.length];
            for (int i = 0; i < parts.length; i++) {
                if (parts[i].requiresGrad()) grads[i] = contiguousCopy(narrow(g, dim, starts[i], parts[i].dim(dim)));
            }
            return grads;
        });
    }

    // ---------------------------------------------------------------- devices and dtypes

    public static Tensor toDType(Tensor x, DType dtype) {
        if (x.dtype() == dtype) return contiguous(x);
        Tensor src = x.isContiguous() ? x : contiguousCopy(x);
        Tensor out = Tensor.empty(dtype, x.device(), x.shape());
        x.backend().convert(src, out);
        if (src != x) src.close();
        if (!x.dtype().isFloatingPoint() || !dtype.isFloatingPoint()) return out;
        return record(out, "to(" + dtype + ")", new Tensor[] {x}, g -> new Tensor[] {g});
    }

    public static Tensor toDevice(Tensor x, Device device) {
        if (x.device().equals(device)) return contiguous(x);
        Tensor src = x.isContiguous() ? x : contiguousCopy(x);
        Tensor out = Tensor.empty(x.dtype(), device, x.shape());
        Backend b = x.device().kind() == Device.Kind.CPU ? out.backend() : x.backend();
        b.transfer(src, out);
        if (src != x) src.close();
        Device from = x.device();
        return record(out, "to(" + device + ")", new Tensor[] {x}, g -> new Tensor[] {toDevice(g, from)});
    }

    // ---------------------------------------------------------------- elementwise

    public static Tensor add(Tensor a, Tensor b) {
        Tensor out = binary(Binary.ADD, a, b);
        return record(out, "add", new Tensor[] {a, b}, g -> new Tensor[] {
                a.requiresGrad() ? sumTo(g, a.shape()) : null, b.requiresGrad() ? sumTo(g, b.shape()) : null});
    }

    public static Tensor sub(Tensor a, Tensor b) {
        Tensor out = binary(Binary.SUB, a, b);
        return record(out, "sub", new Tensor[] {a, b}, g -> new Tensor[] {
                a.requiresGrad() ? sumTo(g, a.shape()) : null, b.requiresGrad() ? sumTo(scale(g, -1f), b.shape()) : null});
    }

    public static Tensor mul(Tensor a, Tensor b) {
        Tensor out = binary(Binary.MUL, a, b);
        return record(out, "mul", new Tensor[] {a, b}, g -> new Tensor[] {
                a.requiresGrad() ? sumTo(mul(g, b), a.shape()) : null, b.requiresGrad() ? sumTo(mul(g, a), b.shape()) : null});
    }

    public static Tensor div(Tensor a, Tensor b) {
        Tensor out = binary(Binary.DIV, a, b);
        return record(out, "div", new Tensor[] {a, b}, g -> new Tensor[] {
                a.requiresGrad() ? sumTo(div(g, b), a.shape()) : null,
                b.requiresGrad() ? sumTo(scale(mul(g, div(out.detach(), b)), -1f), b.shape()) : null});
    }

    /** 1 where a == b (after broadcasting), else 0; not differentiable. */
    public static Tensor eq(Tensor a, Tensor b) {
        return binary(Binary.EQ, a, b);
    }

    private static Tensor binary(Binary op, Tensor a, Tensor b) {
        requireF32(op.name().toLowerCase(), a);
        requireF32(op.name().toLowerCase(), b);
        int[] shape = Shape.broadcast(a.shape(), b.shape());
        Tensor out = emptyF32(a.device(), shape);
        try (var ng = GradMode.noGrad()) {
            Tensor ea = expand(a, shape), eb = expand(b, shape);
            a.backend().binary(op, ea, eb, out);
            ea.close();
            eb.close();
        }
        return out;
    }

    /** acc += x in place, no autograd (gradient accumulation). */
    public static void addInPlace(Tensor acc, Tensor x) {
        Tensor c = x.isContiguous() ? x : contiguousCopy(x);
        acc.backend().addInPlace(acc, c);
        if (c != x) c.close();
    }

    /** Sums {@code g} over broadcast dimensions so it has {@code shape} (the backward of broadcasting). */
    public static Tensor sumTo(Tensor g, int[] shape) {
        if (Arrays.equals(g.shape(), shape)) return g;
        int lead = g.rank() - shape.length;
        Tensor cur = g;
        for (int d = g.rank() - 1; d >= 0; d--) {
            int target = d < lead ? 1 : shape[d - lead];
            if (cur.dim(d) != target) cur = sum(cur, d, true);
        }
        return reshape(cur, shape);
    }

    public static Tensor scale(Tensor x, float s) {
        Tensor out = unary(Unary.SCALE, x, s);
        return record(out, "scale", new Tensor[] {x}, g -> new Tensor[] {scale(g, s)});
    }

    public static Tensor exp(Tensor x) { return unaryOp(Unary.EXP, x); }
    public static Tensor log(Tensor x) { return unaryOp(Unary.LOG, x); }
    public static Tensor tanh(Tensor x) { return unaryOp(Unary.TANH, x); }
    public static Tensor relu(Tensor x) { return unaryOp(Unary.RELU, x); }
    public static Tensor silu(Tensor x) { return unaryOp(Unary.SILU, x); }
    public static Tensor geluTanh(Tensor x) { return unaryOp(Unary.GELU_TANH, x); }
    public static Tensor geluErf(Tensor x) { return unaryOp(Unary.GELU_ERF, x); }
    public static Tensor square(Tensor x) { return unaryOp(Unary.SQUARE, x); }
    public static Tensor sqrt(Tensor x) { return unaryOp(Unary.SQRT, x); }

    private static Tensor unaryOp(Unary op, Tensor x) {
        Tensor c = x.isContiguous() ? x : contiguousCopy(x);
        Tensor out = unary(op, c, 0f);
        return record(out, op.name().toLowerCase(), new Tensor[] {x}, g -> {
            Tensor gc = g.isContiguous() ? g : contiguousCopy(g);
            Tensor dx = like(c);
            x.backend().unaryBackward(op, c, out, gc, 0f, dx);
            return new Tensor[] {dx};
        });
    }

    private static Tensor unary(Unary op, Tensor x, float param) {
        requireF32(op.name().toLowerCase(), x);
        Tensor c = x.isContiguous() ? x : contiguousCopy(x);
        Tensor out = like(c);
        x.backend().unary(op, c, param, out);
        if (c != x) c.close();
        return out;
    }

    // ---------------------------------------------------------------- reductions

    public static Tensor sum(Tensor x, int dim, boolean keepDim) {
        return reduce(Backend.Reduce.SUM, x, dim, keepDim, 1f);
    }

    public static Tensor mean(Tensor x, int dim, boolean keepDim) {
        dim = dim < 0 ? x.rank() + dim : dim;
        return reduce(Backend.Reduce.SUM, x, dim, keepDim, 1f / x.dim(dim));
    }

    public static Tensor sumAll(Tensor x) {
        return reshape(sum(reshape(x, new int[] {(int) x.numel()}), 0, false), new int[] {1});
    }

    public static Tensor meanAll(Tensor x) {
        return scale(sumAll(x), 1f / x.numel());
    }

    /** Max along {@code dim}; the gradient goes to every position equal to the max. */
    public static Tensor max(Tensor x, int dim, boolean keepDim) {
        return reduce(Backend.Reduce.MAX, x, dim, keepDim, 1f);
    }

    private static Tensor reduce(Backend.Reduce op, Tensor x, int dim, boolean keepDim, float factor) {
        requireF32("reduce", x);
        int d = dim < 0 ? x.rank() + dim : dim;
        Tensor c = x.isContiguous() ? x : contiguousCopy(x);
        int[] kept = x.shape();
        kept[d] = 1;
        Tensor out = emptyF32(x.device(), kept);
        x.backend().reduce(op, c, d, out);
        if (c != x) c.close();
        if (factor != 1f) {
            Tensor scaled = unary(Unary.SCALE, out, factor);
            out.close();
            out = scaled;
        }
        int[] full = x.shape();
        Tensor kout = out;
        Node.Backward bw = g -> {
            Tensor gk = reshape(g, kept);
            Tensor dx = contiguousCopy(expand(gk, full));
            if (factor != 1f) dx = scale(dx, factor);
            if (op == Backend.Reduce.MAX) dx = mul(dx, eq(x.detach(), expand(kout.detach(), full)));
            return new Tensor[] {dx};
        };
        Tensor result = keepDim ? out : squeezeView(out, d);
        return record(result, op.name().toLowerCase(), new Tensor[] {x}, bw);
    }

    private static Tensor squeezeView(Tensor t, int dim) {
        int[] s = t.shape();
        int[] r = new int[s.length - 1];
        for (int i = 0, j = 0; i < s.length; i++) if (i != dim) r[j++] = s[i];
        return t.view(r, Shape.contiguousStrides(r), t.offset());
    }

    // ---------------------------------------------------------------- softmax

    public static Tensor softmax(Tensor x) {
        return softmax(x, false);
    }

    public static Tensor logSoftmax(Tensor x) {
        return softmax(x, true);
    }

    private static Tensor softmax(Tensor x, boolean log) {
        requireF32("softmax", x);
        Tensor c = x.isContiguous() ? x : contiguousCopy(x);
        Tensor y = like(c);
        x.backend().softmax(c, y, log);
        return record(y, log ? "logSoftmax" : "softmax", new Tensor[] {x}, g -> {
            Tensor gc = g.isContiguous() ? g : contiguousCopy(g);
            Tensor dx = like(y);
            x.backend().softmaxBackward(y, gc, dx, log);
            return new Tensor[] {dx};
        });
    }

    // ---------------------------------------------------------------- matmul

    /**
     * Matrix product over the last two dims: [..., M, K] @ [K, N] (weights, one GEMM over all rows)
     * or [..., M, K] @ [..., K, N] with equal batch dims. Transposed views are passed to GEMM as
     * transpose flags instead of being copied.
     */
    public static Tensor matmul(Tensor a, Tensor b) {
        requireF32("matmul", a);
        requireF32("matmul", b);
        if (a.rank() < 2 || b.rank() < 2) throw new IllegalArgumentException("matmul needs rank >= 2: " + a + " @ " + b);
        int m = a.dim(-2), k = a.dim(-1), n = b.dim(-1);
        if (b.dim(-2) != k) {
            throw new IllegalArgumentException("matmul shapes " + Shape.str(a.shape()) + " @ " + Shape.str(b.shape()) + " do not match");
        }
        int[] outShape;
        Tensor out;
        if (b.rank() == 2) {
            // Fold all leading dims of a into rows (a rank-2 a may be a transposed view).
            Gemm.Operand oa = a.rank() == 2 ? Gemm.operand(a) : Gemm.rows(a);
            int rows = (int) (a.numel() / k);
            outShape = a.shape();
            outShape[outShape.length - 1] = n;
            out = emptyF32(a.device(), outShape);
            Gemm.Operand ob = Gemm.operand(b);
            a.backend().gemm(oa.trans(), ob.trans(), rows, n, k, 1f, oa.t(), oa.t().offset(), oa.ld(), 0,
                    ob.t(), ob.t().offset(), ob.ld(), 0, 0f, out, 0, n, 0, 1);
            oa.release(a);
            ob.release(b);
        } else {
            int[] batchA = Arrays.copyOf(a.shape(), a.rank() - 2), batchB = Arrays.copyOf(b.shape(), b.rank() - 2);
            if (!Arrays.equals(batchA, batchB)) {
                throw new IllegalArgumentException("matmul batch dims differ: " + Shape.str(a.shape()) + " @ " + Shape.str(b.shape()));
            }
            outShape = a.shape();
            outShape[outShape.length - 1] = n;
            out = emptyF32(a.device(), outShape);
            int batch = (int) Shape.numel(batchA);
            Gemm.Operand oa = Gemm.batchedOperand(a), ob = Gemm.batchedOperand(b);
            a.backend().gemm(oa.trans(), ob.trans(), m, n, k, 1f, oa.t(), oa.t().offset(), oa.ld(), oa.batchStride(),
                    ob.t(), ob.t().offset(), ob.ld(), ob.batchStride(), 0f, out, 0, n, (long) m * n, batch);
            oa.release(a);
            ob.release(b);
        }
        return record(out, "matmul", new Tensor[] {a, b}, g -> new Tensor[] {
                a.requiresGrad() ? matmul(g, b.detach().transpose(-1, -2)) : null,
                b.requiresGrad() ? (b.rank() == 2
                        ? matmul(reshape(a.detach(), new int[] {-1, k}).transpose(0, 1), reshape(g, new int[] {-1, n}))
                        : matmul(a.detach().transpose(-1, -2), g)) : null});
    }

    /** y = x @ w^T (+ bias): w is [out, in] as in Hugging Face checkpoints. */
    public static Tensor linear(Tensor x, Tensor w, Tensor bias) {
        Tensor y = matmul(x, w.transpose(0, 1));
        return bias == null ? y : add(y, bias);
    }
}
