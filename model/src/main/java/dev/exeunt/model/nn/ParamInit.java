package dev.exeunt.model.nn;

import dev.exeunt.tensor.CounterNormal;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import java.nio.charset.StandardCharsets;

/**
 * The N(0, std) initial values of one parameter, independent of the parallel layout and of the order
 * parameters are created in: the values come from a seed derived from the model's seed, the
 * parameter's name and its full (unsharded) shape, through a counter-based generator
 * ({@link CounterNormal}), so element i of the full row-major tensor is the same number whichever
 * rank computes it. A tensor-parallel shard fills just its slice ({@link #fill(Tensor, int, int)})
 * without generating the rest, and gets exactly the weights one rank holding the whole tensor has.
 */
public final class ParamInit {
    private final long seed;
    private final String name;
    private final int[] fullShape;
    private final float std;

    private ParamInit(long seed, String name, int[] fullShape, float std) {
        this.seed = seed;
        this.name = name;
        this.fullShape = fullShape;
        this.std = std;
    }

    /** The initialiser of parameter {@code name}, whose unsharded shape is {@code fullShape}. */
    public static ParamInit normal(long modelSeed, String name, int[] fullShape, float std) {
        if (!(std >= 0) || Float.isInfinite(std)) throw new IllegalArgumentException("std of " + name + " must be finite and >= 0, got " + std);
        int[] shape = fullShape.clone();
        for (int d : shape) if (d < 0) throw new IllegalArgumentException("negative dimension in " + name + " " + Shape.str(shape));
        return new ParamInit(seed(modelSeed, name, shape), name, shape, std);
    }

    /**
     * A stable 64-bit hash of (model seed, name as UTF-8, full shape): SplitMix64 absorbing the name's
     * length and bytes eight at a time, then the rank and every dim. Unlike {@link String#hashCode} it
     * has 64 bits and mixes every input bit, so distinct parameters get unrelated streams.
     */
    public static long seed(long modelSeed, String name, int[] fullShape) {
        byte[] utf8 = name.getBytes(StandardCharsets.UTF_8);
        long h = absorb(CounterNormal.mix64(modelSeed), utf8.length);
        for (int i = 0; i < utf8.length; i += 8) {
            long word = 0;
            for (int j = i; j < Math.min(i + 8, utf8.length); j++) word |= (utf8[j] & 0xffL) << (8 * (j - i));
            h = absorb(h, word);
        }
        h = absorb(h, fullShape.length);
        for (int d : fullShape) h = absorb(h, d);
        return h;
    }

    /** One SplitMix64 absorption step: injective in {@code x} for a fixed state. */
    private static long absorb(long h, long x) {
        return CounterNormal.mix64((h ^ x) + 0x9e3779b97f4a7c15L);
    }

    public int[] fullShape() {
        return fullShape.clone();
    }

    /** The whole tensor, as a new CPU F32 tensor (the caller owns it). */
    public Tensor full() {
        return slice(0, 0, fullShape.length == 0 ? 1 : fullShape[0]);
    }

    /**
     * Elements {@code [start, start + length)} along {@code dim} of the full tensor (every other dim
     * whole), as a new CPU F32 tensor (the caller owns it).
     */
    public Tensor slice(int dim, int start, int length) {
        int[] shape = fullShape.clone();
        if (shape.length > 0) {
            checkDim(dim);
            shape[dim] = length;
        }
        Tensor t = Tensor.empty(DType.F32, Device.CPU, shape);
        try {
            fill(t, dim, start);
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    /**
     * Fills {@code dst} with the slice of the full tensor that starts at {@code start} along {@code dim}:
     * dst has the full shape except along {@code dim}, where its length says how much it takes. Only
     * the slice is generated. A dst that is not a contiguous CPU tensor is filled through a copy.
     */
    public void fill(Tensor dst, int dim, int start) {
        if (dst.dtype() != DType.F32) throw new IllegalArgumentException("initialising " + name + " needs an F32 tensor, got " + dst.dtype());
        int[] shape = dst.shape();
        if (shape.length != fullShape.length) {
            throw new IllegalArgumentException("a slice of " + name + " " + Shape.str(fullShape) + " must have rank " + fullShape.length
                    + ", got " + Shape.str(shape));
        }
        if (fullShape.length == 0) {
            if (start != 0) throw new IllegalArgumentException("a scalar " + name + " has no slice starting at " + start);
            fillContiguous(dst, 0, 0);
            return;
        }
        checkDim(dim);
        for (int d = 0; d < shape.length; d++) {
            if (d != dim && shape[d] != fullShape[d]) {
                throw new IllegalArgumentException("a slice of " + name + " " + Shape.str(fullShape) + " along dim " + dim + " must keep dim "
                        + d + " whole (" + fullShape[d] + "), got " + Shape.str(shape));
            }
        }
        if (start < 0 || (long) start + shape[dim] > fullShape[dim]) {
            throw new IllegalArgumentException("slice [" + start + ", " + ((long) start + shape[dim]) + ") along dim " + dim + " is outside "
                    + name + " " + Shape.str(fullShape));
        }
        fillContiguous(dst, dim, start);
    }

    private void fillContiguous(Tensor dst, int dim, int start) {
        if (!dst.device().equals(Device.CPU) || !dst.isContiguous()) {
            try (Tensor staged = Tensor.empty(DType.F32, Device.CPU, dst.shape())) {
                fillContiguous(staged, dim, start);
                dst.copyFrom(staged);
            }
            return;
        }
        // Row-major: the slice is `outer` runs of shape[dim] * inner consecutive elements, one per
        // index of the dims before `dim`, each fullShape[dim] * inner apart in the full tensor.
        long outer = 1, inner = 1;
        for (int d = 0; d < dim; d++) outer *= fullShape[d];
        for (int d = dim + 1; d < fullShape.length; d++) inner *= fullShape[d];
        long run = fullShape.length == 0 ? 1 : dst.dim(dim) * inner;
        long stride = fullShape.length == 0 ? 0 : fullShape[dim] * inner;
        if (outer > Integer.MAX_VALUE) throw new IllegalArgumentException(name + " " + Shape.str(fullShape) + " has too many rows to slice");
        CounterNormal.fillRuns(seed, std, start * inner, stride, (int) outer, run, dst.segment(), dst.offset() * Float.BYTES);
    }

    private void checkDim(int dim) {
        if (dim < 0 || dim >= fullShape.length) {
            throw new IllegalArgumentException("dim " + dim + " is out of range for " + name + " " + Shape.str(fullShape));
        }
    }
}
