package dev.exeunt.model.nn;

import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A model's named parameters, in creation order, named as in Hugging Face checkpoints. Parameters
 * live outside every scope until {@link #close()}; each can be frozen (no gradient).
 *
 * <p>Random initial values come from {@link ParamInit}: a parameter's values depend only on the seed,
 * its name and its full shape, not on which other parameters exist or the order they are created in,
 * so a pipeline stage building only its layers, or a tensor-parallel shard ({@link #normalShard}),
 * starts from exactly the weights a single rank would have.
 */
public class Parameters implements AutoCloseable {
    private final Map<String, Tensor> byName = new LinkedHashMap<>();
    private final Map<String, Shard> shards = new LinkedHashMap<>();
    private final Device device;
    private final TensorParallel tp;
    private final PipelineParallel pp;
    private final java.util.Set<String> stageCopies = new java.util.HashSet<>();
    private final long seed;
    private final boolean initialise;
    private final Source source;

    /**
     * Supplies parameters in their stored form (e.g. a loader that keeps quantized weights quantized):
     * called with each parameter's name and logical shape as the model creates it, before any
     * initialisation; null means "not supplied" (the parameter is then initialised as usual).
     */
    @FunctionalInterface
    public interface Source {
        Tensor tensor(String name, int[] shape);
    }

    /** Parameters initialised from a seeded generator. */
    public Parameters(Device device, long seed) {
        this(device, seed, true);
    }

    /** With {@code initialise} false every parameter starts at zero, for models about to be loaded from disk. */
    public Parameters(Device device, long seed, boolean initialise) {
        this(device, seed, initialise, TensorParallel.NONE);
    }

    /**
     * The parameters of one tensor-parallel rank ({@code tp}): the sharded layers register only their
     * shards ({@link #normal(String, float, Shard)}), each with its {@link Shard}.
     */
    public Parameters(Device device, long seed, boolean initialise, TensorParallel tp) {
        this(device, seed, initialise, tp, PipelineParallel.NONE);
    }

    /** The parameters of one tensor-parallel rank of one pipeline stage ({@code pp}). */
    public Parameters(Device device, long seed, boolean initialise, TensorParallel tp, PipelineParallel pp) {
        this.device = device;
        this.seed = seed;
        this.initialise = initialise;
        this.source = null;
        this.tp = java.util.Objects.requireNonNull(tp);
        this.pp = java.util.Objects.requireNonNull(pp);
    }

    /**
     * Parameters taken from {@code source} (which must supply every one, with the requested shape):
     * nothing is allocated twice. Block-quantized tensors are added frozen (no gradient).
     */
    public Parameters(Device device, Source source) {
        this.device = device;
        this.seed = 0;
        this.initialise = false;
        this.source = java.util.Objects.requireNonNull(source);
        this.tp = TensorParallel.NONE;
        this.pp = PipelineParallel.NONE;
    }

    private Tensor supplied(String name, int[] shape) {
        if (source == null) return null;
        Tensor t = source.tensor(name, shape.clone());
        if (t == null) throw new IllegalArgumentException("no tensor supplied for parameter " + name + " " + Shape.str(shape));
        if (!java.util.Arrays.equals(t.shape(), shape)) {
            String s = Shape.str(t.shape());
            t.close();
            throw new IllegalArgumentException("tensor " + name + " has shape " + s + " but the model expects " + Shape.str(shape));
        }
        return add(name, t);
    }

    public Device device() {
        return device;
    }

    /** The tensor-parallel group this rank's parameters are shards for ({@link TensorParallel#NONE} for a whole model). */
    public TensorParallel tensorParallel() {
        return tp;
    }

    /** The pipeline stages this rank's stage belongs to ({@link PipelineParallel#NONE} for one stage). */
    public PipelineParallel pipeline() {
        return pp;
    }

    /**
     * Marks {@code name} as this stage's copy of a parameter stage 0 also holds (a tied head's embedding):
     * its gradient is summed over the stages holding it, it counts once in the gradient norm, and only
     * stage 0's copy is saved.
     */
    public void markStageCopy(String name) {
        get(name);
        stageCopies.add(name);
    }

    /** Whether {@code name} is a copy of a parameter stage 0 holds ({@link #markStageCopy}). */
    public boolean isStageCopy(String name) {
        return stageCopies.contains(name);
    }

    /** Where parameter {@code name} sits in the full model (whole unless a sharded layer registered a shard). */
    public Shard shard(String name) {
        Shard s = shards.get(name);
        return s != null ? s : Shard.whole(get(name).shape());
    }

    /**
     * Whether parameter {@code name}'s gradient on this rank is only part of it, to be summed over the
     * tensor-parallel ranks before the update: replicated parameters marked {@link Shard#partialGrad()}
     * (shared kv heads), and under sequence parallelism every replicated one (norms, row-parallel biases
     * and position embeddings each see only this rank's positions).
     */
    public boolean needsTensorParallelSum(String name) {
        if (tp.size() == 1) return false;
        Shard shard = shard(name);
        return shard.partialGrad() || (tp.sequenceParallel() && !shard.isSplit());
    }

    /** An N(0, std) parameter of which this rank holds {@code shard}: the same values as that part of the full one. */
    public Tensor normal(String name, float std, Shard shard) {
        int[] full = shard.fullShape();
        if (!shard.isSplit()) return register(name, shard, normal(name, std, full));
        if (source != null) throw new IllegalStateException("sharded parameters cannot come from a " + source.getClass().getSimpleName());
        int len = shard.pieceLength();
        Tensor t = Ops.unowned(() -> Tensor.zeros(shard.localShape()));
        if (initialises(name)) {
            ParamInit init = ParamInit.normal(seed, name, full, std);
            try (var s = dev.exeunt.tensor.Scope.open()) {
                for (int g = 0; g < shard.groups(); g++) init.fill(t.narrow(shard.dim(), g * len, len), shard.dim(), shard.start(g, shard.index()));
            }
        }
        return register(name, shard, add(name, t));
    }

    /** A constant parameter of which this rank holds {@code shard}. */
    public Tensor constant(String name, float value, Shard shard) {
        return register(name, shard, constant(name, value, shard.localShape()));
    }

    private Tensor register(String name, Shard shard, Tensor t) {
        if (shard.isSplit() || shard.partialGrad()) shards.put(name, shard);
        return t;
    }

    /** N(0, std) initialised parameter. */
    public Tensor normal(String name, float std, int... shape) {
        return normalShard(name, std, shape, 0, 0, shape.length == 0 ? 1 : shape[0]);
    }

    /**
     * A tensor-parallel shard of an N(0, std) parameter whose unsharded shape is {@code fullShape}: its
     * elements {@code [start, start + length)} along {@code dim}, registered under {@code name} with
     * the shard's shape; the values are those of the same slice of the full parameter.
     */
    public Tensor normalShard(String name, float std, int[] fullShape, int dim, int start, int length) {
        int[] shape = fullShape.clone();
        if (shape.length > 0) {
            if (dim < 0 || dim >= shape.length) throw new IllegalArgumentException("dim " + dim + " is out of range for " + name + " " + Shape.str(fullShape));
            if (start < 0 || length < 0 || (long) start + length > fullShape[dim]) {
                throw new IllegalArgumentException("shard [" + start + ", " + ((long) start + length) + ") along dim " + dim
                        + " is outside " + name + " " + Shape.str(fullShape));
            }
            shape[dim] = length;
        }
        if (source != null) return supplied(name, shape);
        if (!initialises(name)) return add(name, Ops.unowned(() -> Tensor.zeros(shape)));
        return add(name, Ops.unowned(() -> ParamInit.normal(seed, name, fullShape, std).slice(dim, start, length)));
    }

    /** Whether parameter {@code name} gets random values (otherwise zeros, to be loaded). */
    protected boolean initialises(String name) {
        return initialise;
    }

    public Tensor constant(String name, float value, int... shape) {
        if (source != null) return supplied(name, shape);
        return add(name, Ops.unowned(() -> Tensor.full(value, Device.CPU, shape)));
    }

    /**
     * Registers an existing tensor (moved to this store's device) under {@code name}; floating-point
     * tensors require grad, block-quantized ones (Q8_0, Q4_0, k-quants) are frozen.
     */
    public Tensor add(String name, Tensor t) {
        if (byName.containsKey(name)) throw new IllegalStateException("duplicate parameter " + name);
        Tensor p = t;
        if (!t.device().equals(device)) {
            p = Ops.unowned(() -> t.to(device));
            t.close();
        }
        p.named(name);
        if (p.dtype().isFloatingPoint()) p.requiresGrad(true);
        byName.put(name, p);
        return p;
    }

    public Tensor get(String name) {
        Tensor t = byName.get(name);
        if (t == null) throw new IllegalArgumentException("no parameter named " + name);
        return t;
    }

    public boolean has(String name) {
        return byName.containsKey(name);
    }

    public Map<String, Tensor> all() {
        return Collections.unmodifiableMap(byName);
    }

    /** Parameters that train (requiresGrad). */
    public Map<String, Tensor> trainable() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        byName.forEach((k, v) -> {
            if (v.requiresGrad()) m.put(k, v);
        });
        return m;
    }

    public long count() {
        long n = 0;
        for (Tensor t : byName.values()) n += t.numel();
        return n;
    }

    /** Replaces a parameter's values in place, checking the shape. */
    public void load(String name, Tensor values) {
        Tensor p = get(name);
        if (!java.util.Arrays.equals(p.shape(), values.shape())) {
            throw new IllegalArgumentException("tensor " + name + " has shape " + Shape.str(values.shape())
                    + " but the model expects " + Shape.str(p.shape()));
        }
        p.copyFrom(values);
    }

    public void zeroGrads() {
        for (Tensor t : byName.values()) t.zeroGrad();
    }

    @Override
    public void close() {
        for (Tensor t : byName.values()) t.close();
        byName.clear();
        shards.clear();
        stageCopies.clear();
    }
}
