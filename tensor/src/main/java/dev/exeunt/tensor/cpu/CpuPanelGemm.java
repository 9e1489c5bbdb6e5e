package dev.exeunt.tensor.cpu;

import dev.exeunt.tensor.DType;
import java.lang.foreign.MemorySegment;

/**
 * Y = X W^T for many rows of X (a prompt) with W block-quantized (Q8_0, Q4_0, the k-quants): W is dequantized panel by
 * panel (a few hundred rows at a time) into a caller's F32 scratch, and each panel goes through the
 * blocked, packed {@link CpuGemm#sgemm}. A prompt of 128 tokens then reads each weight once and runs at
 * GEMM speed, where the row-at-a-time kernels ({@link CpuQuant#gemvTokens}) read the weights once per
 * four tokens. The results equal those kernels' only to float rounding (another summation order), so
 * the decode path uses this for prompts, never to verify drafts.
 */
public final class CpuPanelGemm {
    private CpuPanelGemm() {}

    /** Rows of X from which this beats the row kernels, which read the weights once per four rows. */
    public static final int MIN_ROWS = 16;

    /** Scratch floats a panel aims at: 2 MiB, so a panel is still in cache when the GEMM packs it. */
    public static final int PANEL_FLOATS = 1 << 19;

    /** Each calling thread's panel scratch, for the gemm that takes none. */
    private static final ThreadScratch PANEL = new ThreadScratch();

    /** As the method below, with panels of {@link #panelRows} rows in this thread's reused scratch. */
    public static void gemm(DType t, int rows, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff, int ldx,
                            MemorySegment y, long yOff, int ldy) {
        long floats = (long) panelRows(m, n) * n;
        gemm(t, rows, m, n, w, wByteOff, x, xOff, ldx, y, yOff, ldy, PANEL.get(floats * 4), 0, floats);
    }

    /**
     * Y[r][i] = sum_j X[r][j] W[i][j] for r in [0, rows), i in [0, m): W is m x n in storage type t from byte
     * {@code wByteOff} of w (rows of n weights, consecutive), X rows ldx floats apart from xOff, Y rows ldy apart
     * from yOff. {@code panel} holds {@code panelFloats} floats from panelOff, at least n (one row); {@link #panelRows}
     * gives a good size.
     */
    public static void gemm(DType t, int rows, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff, int ldx,
                            MemorySegment y, long yOff, int ldy, MemorySegment panel, long panelOff, long panelFloats) {
        if (rows < 0 || m < 0 || n <= 0) throw new IllegalArgumentException("panel gemm: bad sizes rows " + rows + ", m " + m + ", n " + n);
        switch (t) {
            case Q8_0, Q4_0, Q2_K, Q4_K, Q5_K, Q6_K -> { }
            default -> throw new IllegalArgumentException("panel gemm: unsupported weight type " + t + " (block-quantized types only)");
        }
        if (rows == 0 || m == 0) return;
        if (panelFloats < n) throw new IllegalArgumentException("panel gemm: scratch of " + panelFloats + " floats holds no row of " + n);
        int panelRows = (int) Math.min(m, panelFloats / n);
        CpuHalf.checkRange("panel gemm scratch", panel, panelOff, (long) panelRows * n, 4);
        for (int r0 = 0; r0 < m; r0 += panelRows) {
            int pr = Math.min(panelRows, m - r0);
            dequantize(t, w, wByteOff + t.byteSize((long) r0 * n), panel, panelOff, (long) pr * n);
            CpuGemm.sgemm(false, true, rows, pr, n, 1f, x, xOff, ldx, panel, panelOff, n, 0f, y, yOff + r0, ldy);
        }
    }

    /** W rows per panel for an m x n weight: the panel a 2 MiB scratch holds, at most m. */
    public static int panelRows(int m, int n) {
        return Math.max(1, Math.min(m, PANEL_FLOATS / n));
    }

    private static void dequantize(DType t, MemorySegment src, long srcByteOff, MemorySegment dst, long dstOff, long count) {
        switch (t) {
            case Q8_0 -> CpuQuant.dequantizeQ8_0(src, srcByteOff, dst, dstOff, count);
            case Q4_0 -> CpuQuant.dequantizeQ4_0(src, srcByteOff, dst, dstOff, count);
            case Q2_K, Q4_K, Q5_K, Q6_K -> CpuKQuant.dequantize(t, src, srcByteOff, dst, dstOff, count);
            default -> throw new AssertionError(t);
        }
    }
}
