package dev.exeunt.tensor.cuda;

/** Launch-dimension arithmetic (pure functions, tested without a GPU). */
final class Launch {
    private Launch() {}

    /** Threads per block of the elementwise (grid-stride) kernels. */
    static final int ELEMENTWISE_THREADS = 256;
    /** Enough blocks to fill any current GPU; grid-stride loops cover the rest. */
    static final int MAX_ELEMENTWISE_BLOCKS = 65536;
    /** Cap on grid.x of one-block-per-row kernels (they loop over rows with a grid stride). */
    static final int MAX_ROW_BLOCKS = 1 << 20;
    /** Threads per block of the attention kernels. */
    static final int ATTENTION_THREADS = 128;
    /** Blocks of the sum-of-squares partial reduction (fixed, so the result is deterministic). */
    static final int SUMSQ_BLOCKS = 1024;

    /** Blocks for n elements at {@link #ELEMENTWISE_THREADS} per block: at least 1, at most the cap. */
    static int elementwiseBlocks(long n) {
        if (n < 0) throw new IllegalArgumentException("negative element count " + n);
        long blocks = (n + ELEMENTWISE_THREADS - 1) / ELEMENTWISE_THREADS;
        return (int) Math.max(1, Math.min(blocks, MAX_ELEMENTWISE_BLOCKS));
    }

    /** Threads per block for a row of {@code cols} elements: a multiple of 32 in [32, 512]. */
    static int rowThreads(long cols) {
        long t = (Math.max(1, cols) + 31) / 32 * 32;
        return (int) Math.min(512, t);
    }

    /** grid.x of one-block-per-row kernels. */
    static int rowBlocks(long rows) {
        return (int) Math.max(1, Math.min(rows, MAX_ROW_BLOCKS));
    }

    /** Dynamic shared memory (bytes) of attn_fwd: 2 D + threads + 33 floats. */
    static int attentionForwardShared(int headDim) {
        return 4 * (2 * headDim + ATTENTION_THREADS + 33);
    }

    /** attn_bwd_dq: 3 D + threads floats (the reduction scratch is not used). */
    static int attentionDqShared(int headDim) {
        return 4 * (3 * headDim + ATTENTION_THREADS);
    }

    /** attn_bwd_dkv: 4 D + 2 threads floats. */
    static int attentionDkvShared(int headDim) {
        return 4 * (4 * headDim + 2 * ATTENTION_THREADS);
    }

    /** Rows of linear_gemv per block (one warp each) and its block size. */
    static final int GEMV_ROWS_PER_BLOCK = 8;

    static int gemvBlocksX(int m) {
        return Math.max(1, (m + GEMV_ROWS_PER_BLOCK - 1) / GEMV_ROWS_PER_BLOCK);
    }

    static int gemvBlocksY(int tokens) {
        return Math.max(1, Math.min(tokens, 65535));
    }

    /** Checks a one-block-per-row grid fits grid.x (2^31 - 1). */
    static int exactRows(long rows, String what) {
        if (rows > Integer.MAX_VALUE) throw new IllegalArgumentException(what + ": " + rows + " rows exceed grid.x");
        return (int) Math.max(1, rows);
    }
}
