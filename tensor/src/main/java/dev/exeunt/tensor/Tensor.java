package dev.exeunt.tensor;

import dev.exeunt.tensor.autograd.Backprop;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.autograd.Node;
import dev.exeunt.tensor.ops.Ops;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * An n-dimensional array: a dtype, a shape, strides and an offset (in elements) over a shared,
 * reference-counted {@link Storage} on one device. Views (reshape of contiguous data, transpose,
 * narrow, expand) share storage; {@link #contiguous()} copies when needed.
 *
 * <p>Lifetime: a tensor created while a {@link Scope} is open belongs to it; otherwise the caller
 * closes it. Autograd: tensors that require grad record the operations applied to them, and
 * {@link #backward()} fills {@link #grad()} of the leaves.
 */
public final class Tensor implements AutoCloseable {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED;

    private final DType dtype;
    private final int[] shape;
    private final long[] strides;
    private final long offset;
    private final Storage storage;
    private Scope owner;
    private boolean closed;

    private boolean requiresGrad;
    private Node gradNode;
    private Tensor grad;
    private String name;

    Tensor(DType dtype, int[] shape, long[] strides, long offset, Storage storage) {
        this.dtype = dtype;
        this.shape = shape;
        this.strides = strides;
        this.offset = offset;
        this.storage = storage;
        this.owner = Scope.current();
        if (owner != null) owner.register(this);
    }

    // ---------------------------------------------------------------- factories

    /** Uninitialised contiguous tensor. */
    public static Tensor empty(DType dtype, Device device, int... shape) {
        long n = Shape.numel(shape);
        Storage s = Backends.of(device).allocate(Math.max(dtype.byteSize(n), 1));
        return new Tensor(dtype, shape.clone(), Shape.contiguousStrides(shape), 0, s);
    }

    public static Tensor empty(DType dtype, int... shape) {
        return empty(dtype, Device.CPU, shape);
    }

    public static Tensor zeros(int... shape) {
        return full(0f, Device.CPU, shape);
    }

    public static Tensor zeros(Device device, int... shape) {
        return full(0f, device, shape);
    }

    public static Tensor ones(int... shape) {
        return full(1f, Device.CPU, shape);
    }

    public static Tensor full(float value, Device device, int... shape) {
        Tensor t = empty(DType.F32, device, shape);
        t.backend().fill(t, value);
        return t;
    }

    /** A CPU F32 tensor holding a copy of {@code data}. */
    public static Tensor of(float[] data, int... shape) {
        if (shape.length == 0 && data.length != 1) shape = new int[] {data.length};
        if (Shape.numel(shape) != data.length) {
            throw new IllegalArgumentException(data.length + " values do not fill shape " + Shape.str(shape));
        }
        Tensor t = empty(DType.F32, shape);
        MemorySegment.copy(data, 0, t.segment(), F32, 0, data.length);
        return t;
    }

    public static Tensor scalar(float value) {
        return of(new float[] {value});
    }

    /** A CPU I32 tensor (token ids) holding a copy of {@code data}. */
    public static Tensor ofInts(int[] data, int... shape) {
        if (shape.length == 0) shape = new int[] {data.length};
        if (Shape.numel(shape) != data.length) {
            throw new IllegalArgumentException(data.length + " values do not fill shape " + Shape.str(shape));
        }
        Tensor t = empty(DType.I32, shape);
        MemorySegment.copy(data, 0, t.segment(), I32, 0, data.length);
        return t;
    }

    /** Normal(0, std) values from a seeded generator, for initialisation and tests. */
    public static Tensor randn(SplittableRandom rng, float std, int... shape) {
        float[] d = new float[(int) Shape.numel(shape)];
        for (int i = 0; i < d.length; i++) d[i] = (float) (gaussian(rng) * std);
        return of(d, shape);
    }

    /** Uniform values in [lo, hi). */
    public static Tensor uniform(SplittableRandom rng, float lo, float hi, int... shape) {
        float[] d = new float[(int) Shape.numel(shape)];
        for (int i = 0; i < d.length; i++) d[i] = (float) (lo + (hi - lo) * rng.nextDouble());
        return of(d, shape);
    }

    static double gaussian(SplittableRandom rng) {
        double u1 = rng.nextDouble(), u2 = rng.nextDouble();
        return Math.sqrt(-2 * Math.log(Math.max(u1, 1e-300))) * Math.cos(2 * Math.PI * u2);
    }

    // ---------------------------------------------------------------- metadata

    public DType dtype() {
        return dtype;
    }

    public int[] shape() {
        return shape.clone();
    }

    public int dim(int i) {
        return shape[i < 0 ? shape.length + i : i];
    }

    public int rank() {
        return shape.length;
    }

    public long numel() {
        return Shape.numel(shape);
    }

    public long[] strides() {
        return strides.clone();
    }

    public long stride(int i) {
        return strides[i < 0 ? strides.length + i : i];
    }

    /** Offset of the first element, in elements, from the start of the storage. */
    public long offset() {
        return offset;
    }

    public Device device() {
        return storage.device();
    }

    public Storage storage() {
        checkOpen();
        return storage;
    }

    /** The storage's memory (for CPU tensors); index it with {@link #offset()} and the strides. */
    public MemorySegment segment() {
        checkOpen();
        return storage.segment();
    }

    public Backend backend() {
        return Backends.of(storage.device());
    }

    public boolean isContiguous() {
        long expected = 1;
        for (int i = shape.length - 1; i >= 0; i--) {
            if (shape[i] != 1 && strides[i] != expected) return false;
            expected *= shape[i];
        }
        return true;
    }

    public String name() {
        return name;
    }

    public Tensor named(String name) {
        this.name = name;
        return this;
    }

    @Override
    public String toString() {
        return "Tensor" + (name == null ? "" : "(" + name + ")") + Arrays.toString(shape) + " " + dtype + " " + device()
                + (requiresGrad ? " requiresGrad" : "");
    }

    // ---------------------------------------------------------------- views (share storage)

    /** A view with the given shape/strides/offset over the same storage. */
    public Tensor view(int[] newShape, long[] newStrides, long newOffset) {
        checkOpen();
        return new Tensor(dtype, newShape.clone(), newStrides.clone(), newOffset, storage.retain());
    }

    /** Same data, new shape (one dim may be -1); a view when contiguous, else a copy. Differentiable. */
    public Tensor reshape(int... newShape) {
        return Ops.reshape(this, Shape.infer(newShape, numel()));
    }

    public Tensor transpose(int a, int b) {
        int r = shape.length;
        int[] perm = new int[r];
        for (int i = 0; i < r; i++) perm[i] = i;
        a = a < 0 ? r + a : a;
        b = b < 0 ? r + b : b;
        perm[a] = b;
        perm[b] = a;
        return permute(perm);
    }

    public Tensor permute(int... perm) {
        return Ops.permute(this, perm);
    }

    /** Elements [start, start+length) along {@code dim}, as a view. Differentiable. */
    public Tensor narrow(int dim, int start, int length) {
        return Ops.narrow(this, dim < 0 ? shape.length + dim : dim, start, length);
    }

    /** Broadcasts size-1 dims to {@code newShape} with stride 0, as a view. Differentiable. */
    public Tensor expand(int... newShape) {
        return Ops.expand(this, newShape);
    }

    public Tensor unsqueeze(int dim) {
        int r = shape.length + 1;
        dim = dim < 0 ? r + dim : dim;
        int[] s = new int[r];
        for (int i = 0, j = 0; i < r; i++) s[i] = i == dim ? 1 : shape[j++];
        return reshape(s);
    }

    /** A contiguous tensor with the same values: this one (retained as a view) when already contiguous. */
    public Tensor contiguous() {
        return Ops.contiguous(this);
    }

    // ---------------------------------------------------------------- data access

    /** Copies the values to a Java array, converting from any dtype (and device) to F32. */
    public float[] toFloatArray() {
        checkOpen();
        try (var g = GradMode.noGrad()) {
            Tensor src = this;
            boolean own = false;
            if (device().kind() != Device.Kind.CPU) {
                src = Ops.toDevice(src, Device.CPU);
                own = true;
            }
            if (src.dtype != DType.F32 || !src.isContiguous()) {
                Tensor c = Ops.toDType(src, DType.F32);
                if (own) src.close();
                src = c;
                own = true;
            }
            float[] out = new float[(int) numel()];
            MemorySegment.copy(src.segment(), F32, src.offset * 4, out, 0, out.length);
            if (own) src.close();
            return out;
        }
    }

    public int[] toIntArray() {
        checkOpen();
        if (dtype != DType.I32) throw new IllegalStateException("toIntArray needs an I32 tensor, this is " + dtype);
        Tensor src = device().kind() == Device.Kind.CPU ? this : Ops.toDevice(this, Device.CPU);
        int[] out = new int[(int) numel()];
        int[] idx = new int[shape.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = src.segment().getAtIndex(I32, src.elementIndex(idx));
            increment(idx, shape);
        }
        if (src != this) src.close();
        return out;
    }

    /** The single value of a one-element tensor. */
    public float item() {
        if (numel() != 1) throw new IllegalStateException("item() needs one element, shape is " + Shape.str(shape));
        return toFloatArray()[0];
    }

    /** One F32 value of a CPU tensor by index. */
    public float get(int... index) {
        checkIndex(index);
        if (dtype != DType.F32) throw new IllegalStateException("get() reads F32 tensors; this is " + dtype);
        return segment().getAtIndex(F32, elementIndex(index));
    }

    public void set(float value, int... index) {
        checkIndex(index);
        if (dtype != DType.F32) throw new IllegalStateException("set() writes F32 tensors; this is " + dtype);
        segment().setAtIndex(F32, elementIndex(index), value);
    }

    /** Copies {@code src}'s values into this tensor in place (shapes must match; no autograd). */
    public void copyFrom(Tensor src) {
        if (!Arrays.equals(shape, src.shape)) {
            throw new IllegalArgumentException("copy shape mismatch: " + Shape.str(src.shape) + " into " + Shape.str(shape));
        }
        Ops.copyInto(src, this);
    }

    long elementIndex(int[] index) {
        long e = offset;
        for (int i = 0; i < index.length; i++) e += index[i] * strides[i];
        return e;
    }

    private void checkIndex(int[] index) {
        if (index.length != shape.length) {
            throw new IllegalArgumentException("index of rank " + index.length + " for shape " + Shape.str(shape));
        }
        for (int i = 0; i < index.length; i++) {
            if (index[i] < 0 || index[i] >= shape[i]) {
                throw new IndexOutOfBoundsException("index " + Arrays.toString(index) + " out of shape " + Shape.str(shape));
            }
        }
    }

    static void increment(int[] idx, int[] shape) {
        for (int d = shape.length - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) return;
            idx[d] = 0;
        }
    }

    // ---------------------------------------------------------------- autograd

    public boolean requiresGrad() {
        return requiresGrad;
    }

    /** Marks a leaf (a parameter) as needing gradients. */
    public Tensor requiresGrad(boolean value) {
        if (gradNode != null && !value) throw new IllegalStateException("cannot clear requiresGrad of a non-leaf tensor");
        if (value && !dtype.isFloatingPoint()) throw new IllegalStateException("only floating-point tensors can require grad");
        this.requiresGrad = value;
        return this;
    }

    public Node gradNode() {
        return gradNode;
    }

    /** Records how this tensor was computed (called by ops when autograd is on). */
    public Tensor recordedBy(Node node) {
        this.gradNode = node;
        this.requiresGrad = true;
        return this;
    }

    /** The accumulated gradient of a leaf, or null before the first backward. */
    public Tensor grad() {
        return grad;
    }

    /** Adds {@code g} into this leaf's gradient (the gradient lives as long as the leaf). */
    public void accumulateGrad(Tensor g) {
        if (!Arrays.equals(g.shape, shape)) {
            throw new IllegalStateException("gradient shape " + Shape.str(g.shape) + " != " + Shape.str(shape) + " for " + this);
        }
        if (grad == null) {
            grad = Ops.unowned(() -> {
                Tensor z = Tensor.empty(DType.F32, device(), shape);
                z.copyFrom(g);
                return z;
            });
        } else {
            Ops.addInPlace(grad, g);
        }
    }

    /** Zeroes the accumulated gradient (keeps its memory). */
    public void zeroGrad() {
        if (grad != null) grad.backend().fill(grad, 0f);
    }

    /** Frees the gradient's memory. */
    public void clearGrad() {
        if (grad != null) {
            grad.close();
            grad = null;
        }
    }

    /** Backpropagates from this scalar (seed 1). */
    public void backward() {
        if (numel() != 1) throw new IllegalStateException("backward() without a seed needs a scalar; shape is " + Shape.str(shape));
        backward(Tensor.full(1f, device(), shape));
    }

    /** Backpropagates with the gradient {@code seed} of some outer loss with respect to this tensor. */
    public void backward(Tensor seed) {
        backward(seed, null);
    }

    /**
     * {@link #backward()} telling {@code listener} about each leaf right after this backward has added its
     * gradient (once per leaf: every contribution is summed before the leaf's turn), e.g. to start a
     * data-parallel all-reduce of the gradients that are final while the rest of the backward runs.
     */
    public void backward(Backprop.LeafListener listener) {
        if (numel() != 1) throw new IllegalStateException("backward() without a seed needs a scalar; shape is " + Shape.str(shape));
        backward(Tensor.full(1f, device(), shape), listener);
    }

    private void backward(Tensor seed, Backprop.LeafListener listener) {
        if (!requiresGrad) throw new IllegalStateException("backward() on a tensor that does not require grad");
        Backprop.run(this, seed, listener);
    }

    /** A tensor sharing this one's data with no autograd history. */
    public Tensor detach() {
        return view(shape, strides, offset);
    }

    // ---------------------------------------------------------------- lifetime

    /** Moves this tensor out of its scope into the enclosing one (or to the caller's care if none). */
    public Tensor escape() {
        if (owner != null) {
            Scope s = owner;
            owner = s.parent();
            s.release(this);
        }
        return this;
    }

    public boolean isClosed() {
        return closed;
    }

    @Override
    public void close() {
        closeStorage();
        clearGrad();
    }

    void closeStorage() {
        if (closed) return;
        closed = true;
        storage.release();
        gradNode = null;
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("use of a closed tensor " + this);
    }

    // ---------------------------------------------------------------- op shortcuts (see Ops)

    public Tensor add(Tensor o) { return Ops.add(this, o); }
    public Tensor sub(Tensor o) { return Ops.sub(this, o); }
    public Tensor mul(Tensor o) { return Ops.mul(this, o); }
    public Tensor div(Tensor o) { return Ops.div(this, o); }
    public Tensor scale(float s) { return Ops.scale(this, s); }
    public Tensor neg() { return Ops.scale(this, -1f); }
    public Tensor matmul(Tensor o) { return Ops.matmul(this, o); }
    public Tensor exp() { return Ops.exp(this); }
    public Tensor log() { return Ops.log(this); }
    public Tensor tanh() { return Ops.tanh(this); }
    public Tensor relu() { return Ops.relu(this); }
    public Tensor silu() { return Ops.silu(this); }
    public Tensor gelu() { return Ops.geluTanh(this); }
    public Tensor sum() { return Ops.sumAll(this); }
    public Tensor mean() { return Ops.meanAll(this); }
    public Tensor sum(int dim, boolean keepDim) { return Ops.sum(this, dim, keepDim); }
    public Tensor mean(int dim, boolean keepDim) { return Ops.mean(this, dim, keepDim); }
    public Tensor max(int dim, boolean keepDim) { return Ops.max(this, dim, keepDim); }
    public Tensor softmax() { return Ops.softmax(this); }
    public Tensor logSoftmax() { return Ops.logSoftmax(this); }
    public Tensor to(DType t) { return Ops.toDType(this, t); }
    public Tensor to(Device d) { return Ops.toDevice(this, d); }
}
