package dev.exeunt.tensor.cuda;

/**
 * Row-major GEMM expressed as the column-major call cuBLAS expects. A row-major {@code C [m, n]} with leading dim
 * ldc is, read column-major, {@code C^T [n, m]} with the same leading dim, and {@code C^T = op(B)^T op(A)^T}: so
 * cuBLAS gets B as its first operand and A as its second, the transposes in that order, and dims (n, m, k).
 * Leading dims of operands with a single column (in cuBLAS's column-major sense) never step, so they are raised
 * to the minimum cuBLAS validates ({@code ld >= max(1, rows)}).
 */
record GemmMapping(boolean transA, boolean transB, int m, int n, int k,
                   Operand a, int lda, long strideA, Operand b, int ldb, long strideB, int ldc, long strideC) {
    /** Which row-major input a column-major operand slot reads. */
    enum Operand { ROW_MAJOR_A, ROW_MAJOR_B }

    static GemmMapping fromRowMajor(boolean transA, boolean transB, int m, int n, int k,
                                    int lda, long strideA, int ldb, long strideB, int ldc, long strideC) {
        // column-major first operand: row-major B, op = transB, shape (rows x cols) = transB ? k x n : n x k
        int aRows = transB ? k : n, aCols = transB ? n : k;
        int bRows = transA ? m : k, bCols = transA ? k : m;
        return new GemmMapping(transB, transA, n, m, k,
                Operand.ROW_MAJOR_B, fixLd(ldb, aRows, aCols), strideB,
                Operand.ROW_MAJOR_A, fixLd(lda, bRows, bCols), strideA,
                fixLd(ldc, n, m), strideC);
    }

    /** A column-major rows x cols operand's leading dim, raised to max(1, rows) when it cannot matter. */
    static int fixLd(int ld, int rows, int cols) {
        int min = Math.max(1, rows);
        if (ld >= min) return ld;
        if (cols <= 1) return min;
        throw new IllegalArgumentException("leading dimension " + ld + " < " + min + " rows of a " + rows + " x " + cols
                + " column-major operand");
    }
}
