package dev.exeunt.tensor.ops;

import dev.exeunt.tensor.Tensor;

/** How a tensor is handed to GEMM: row-major or transposed in place, copied only when neither fits. */
final class Gemm {
    private Gemm() {}

    /** A GEMM operand: the tensor to read, whether it is transposed, its leading dim and batch stride. */
    record Operand(Tensor t, boolean trans, int ld, long batchStride) {
        /** Frees the copy made for a non-GEMM-friendly layout. */
        void release(Tensor original) {
            if (t != original) t.close();
        }
    }

    /** A rank-2 operand. */
    static Operand operand(Tensor t) {
        int rows = t.dim(0), cols = t.dim(1);
        long s0 = t.stride(0), s1 = t.stride(1);
        if ((s1 == 1 || cols == 1) && s0 >= Math.max(1, cols)) return new Operand(t, false, (int) s0, 0);
        if ((s0 == 1 || rows == 1) && s1 >= Math.max(1, rows)) return new Operand(t, true, (int) s1, 0);
        Tensor c = copy(t);
        return new Operand(c, false, cols, 0);
    }

    /** All leading dims folded into rows of a row-major [rows, K] matrix. */
    static Operand rows(Tensor t) {
        Tensor c = t.isContiguous() ? t : copy(t);
        return new Operand(c, false, t.dim(-1), 0);
    }

    /** A rank >= 3 operand whose batch dims fold into one stride. */
    static Operand batchedOperand(Tensor t) {
        int r = t.rank();
        boolean foldable = true;
        for (int i = 0; i < r - 3; i++) {
            if (t.stride(i) != t.stride(i + 1) * t.dim(i + 1)) foldable = false;
        }
        if (foldable) {
            long bs = t.stride(r - 3);
            int rows = t.dim(-2), cols = t.dim(-1);
            long s0 = t.stride(-2), s1 = t.stride(-1);
            if ((s1 == 1 || cols == 1) && s0 >= Math.max(1, cols)) return new Operand(t, false, (int) s0, bs);
            if ((s0 == 1 || rows == 1) && s1 >= Math.max(1, rows)) return new Operand(t, true, (int) s1, bs);
        }
        Tensor c = copy(t);
        return new Operand(c, false, t.dim(-1), (long) t.dim(-2) * t.dim(-1));
    }

    private static Tensor copy(Tensor t) {
        Tensor c = Tensor.empty(t.dtype(), t.device(), t.shape());
        t.backend().copy(t, c);
        return c;
    }
}
