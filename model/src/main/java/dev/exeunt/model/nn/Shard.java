package dev.exeunt.model.nn;

import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import java.util.Arrays;

/**
 * Where the parameter one rank holds sits in the full tensor a single rank would hold. Along {@code dim}
 * the full tensor is {@code groups} equal blocks (GPT-2's fused c_attn: q, k and v), and each block is
 * cut into {@code parts} equal pieces; rank {@code index} holds piece {@code index} of every block,
 * concatenated. A whole tensor is one block of one part.
 *
 * @param partialGrad a replicated parameter whose gradient each tensor-parallel rank only partly
 *     computes (kv heads shared by several ranks): the ranks' gradients are summed before the update
 */
public record Shard(int[] fullShape, int dim, int groups, int parts, int index, boolean partialGrad) {
    public Shard {
        fullShape = fullShape.clone();
        if (parts > 1 && (dim < 0 || dim >= fullShape.length)) throw new IllegalArgumentException("shard dim " + dim + " of " + Shape.str(fullShape));
        if (groups < 1 || parts < 1 || index < 0 || index >= parts) {
            throw new IllegalArgumentException("bad shard: " + groups + " groups, part " + index + " of " + parts);
        }
        if (parts > 1 && fullShape[dim] % (groups * parts) != 0) {
            throw new IllegalArgumentException("dim " + dim + " of " + Shape.str(fullShape) + " does not split into " + groups + " x " + parts);
        }
    }

    /** A parameter every rank holds whole. */
    public static Shard whole(int[] shape) {
        return new Shard(shape, 0, 1, 1, 0, false);
    }

    /** This rank's piece of every one of {@code groups} blocks along {@code dim}. */
    public static Shard split(int[] fullShape, int dim, int groups, TensorParallel tp) {
        return new Shard(fullShape, dim, groups, tp.size(), tp.rank(), false);
    }

    public Shard withPartialGrad() {
        return new Shard(fullShape, dim, groups, parts, index, true);
    }

    @Override
    public int[] fullShape() {
        return fullShape.clone();
    }

    public boolean isSplit() {
        return parts > 1;
    }

    /** Length along dim of one piece. */
    public int pieceLength() {
        return parts == 1 ? (fullShape.length == 0 ? 1 : fullShape[dim] / groups) : fullShape[dim] / groups / parts;
    }

    /** Where piece {@code group} of rank {@code rank} starts along dim in the full tensor. */
    public int start(int group, int rank) {
        return group * (fullShape[dim] / groups) + rank * pieceLength();
    }

    /** The shape this rank holds. */
    public int[] localShape() {
        int[] s = fullShape.clone();
        if (isSplit()) s[dim] = groups * pieceLength();
        return s;
    }

    /**
     * This rank's part of {@code full} (the full tensor), as a new contiguous tensor in the caller's scope
     * (or owned by the caller outside any).
     */
    public Tensor sliceOf(Tensor full) {
        requireFull(full);
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            Tensor local = Tensor.empty(full.dtype(), full.device(), localShape());
            int len = pieceLength();
            for (int i = 0; i < groups; i++) {
                if (isSplit()) local.narrow(dim, i * len, len).copyFrom(full.narrow(dim, start(i, index), len));
                else local.copyFrom(full);
            }
            return local.escape();
        }
    }

    /** Copies rank {@code rank}'s part {@code piece} (its local shape) into its place in {@code full}. */
    public void place(Tensor piece, int rank, Tensor full) {
        requireFull(full);
        int len = pieceLength();
        try (var s = Scope.open(); var g = GradMode.noGrad()) {
            for (int i = 0; i < groups; i++) full.narrow(dim, start(i, rank), len).copyFrom(piece.narrow(dim, i * len, len));
        }
    }

    private void requireFull(Tensor full) {
        if (!Arrays.equals(full.shape(), fullShape)) {
            throw new IllegalArgumentException("expected a full tensor " + Shape.str(fullShape) + ", got " + Shape.str(full.shape()));
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Shard s && Arrays.equals(fullShape, s.fullShape) && dim == s.dim && groups == s.groups
                && parts == s.parts && index == s.index && partialGrad == s.partialGrad;
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(fullShape) * 31 + Arrays.hashCode(new int[] {dim, groups, parts, index, partialGrad ? 1 : 0});
    }

    @Override
    public String toString() {
        return isSplit() ? "part " + index + "/" + parts + " of " + Shape.str(fullShape) + " along dim " + dim
                + (groups > 1 ? " in " + groups + " blocks" : "") : "whole " + Shape.str(fullShape) + (partialGrad ? " (partial gradient)" : "");
    }
}
