package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.testing.KQuantReference;
import dev.exeunt.tensor.testing.ProductCheck;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The prompt pass's panel GEMM against a float64 product of the dequantized weights, every quantized type, several panels. */
class CpuPanelGemmTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long SEED = System.nanoTime();

    /** Random weights quantized to t, as bytes. */
    private static byte[] quantize(DType t, float[] w) {
        return switch (t) {
            case Q8_0, Q4_0 -> {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment src = a.allocate(4L * w.length), dst = a.allocate(t.byteSize(w.length));
                    MemorySegment.copy(MemorySegment.ofArray(w), 0, src, 0, 4L * w.length);
                    if (t == DType.Q8_0) CpuQuant.quantizeQ8_0(src, 0, dst, 0, w.length);
                    else CpuQuant.quantizeQ4_0(src, 0, dst, 0, w.length);
                    yield dst.toArray(ValueLayout.JAVA_BYTE);
                }
            }
            default -> KQuantReference.quantize(t, w);
        };
    }

    /** The weights t holds, as floats (the kernels' own dequantizers, checked bit for bit elsewhere). */
    private static float[] dequantize(DType t, byte[] q, int count) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment src = a.allocate(q.length), dst = a.allocate(4L * count);
            MemorySegment.copy(MemorySegment.ofArray(q), 0, src, 0, q.length);
            switch (t) {
                case Q8_0 -> CpuQuant.dequantizeQ8_0(src, 0, dst, 0, count);
                case Q4_0 -> CpuQuant.dequantizeQ4_0(src, 0, dst, 0, count);
                default -> CpuKQuant.dequantize(t, src, 0, dst, 0, count);
            }
            return dst.toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    @Test
    void matchesAFloat64ProductOfTheDequantizedWeights() {
        Random r = new Random(SEED);
        DType[] types = {DType.Q8_0, DType.Q4_0, DType.Q4_K, DType.Q5_K, DType.Q6_K};
        int[][] sizes = {{37, 256}, {70, 512}};
        for (DType t : types) {
            for (int[] mn : sizes) {
                int m = mn[0], n = mn[1];
                float[] wf = new float[m * n];
                for (int i = 0; i < wf.length; i++) wf[i] = (float) r.nextGaussian() * 0.1f;
                byte[] wq = quantize(t, wf);
                float[] w = dequantize(t, wq, m * n);
                // a panel of 5 rows (several panels, the last one short) and one holding every row
                for (long panelFloats : new long[] {5L * n + 3, (long) m * n}) {
                    for (int rows : new int[] {16, 33}) {
                        int ldx = n + 5, ldy = m + 3;
                        try (Arena a = Arena.ofShared()) {
                            MemorySegment ws = a.allocate(wq.length + 7);
                            MemorySegment.copy(MemorySegment.ofArray(wq), 0, ws, 7, wq.length);
                            MemorySegment x = a.allocate(4L * rows * ldx), y = a.allocate(4L * rows * ldy);
                            MemorySegment panel = a.allocate(4 * (panelFloats + 2));
                            for (long i = 0; i < (long) rows * ldx; i++) x.setAtIndex(F32, i, (float) r.nextGaussian());
                            for (long i = 0; i < (long) rows * ldy; i++) y.setAtIndex(F32, i, Float.NaN);
                            CpuPanelGemm.gemm(t, rows, m, n, ws, 7, x, 0, ldx, y, 0, ldy, panel, 2, panelFloats);
                            for (int row = 0; row < rows; row++) {
                                ProductCheck.assertRowMatchesFloat64(w, m, n, x, ldx, y, ldy, row,
                                        t + " " + m + "x" + n + " rows " + rows + " panel " + panelFloats + " (seed " + SEED + ")");
                                // the padding between Y rows is left alone
                                for (int i = m; i < ldy; i++) assertTrue(Float.isNaN(y.getAtIndex(F32, (long) row * ldy + i)), "padding written");
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void aScratchWithoutRoomForOneRowIsAClearError() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment w = a.allocate(DType.Q8_0.byteSize(64 * 2)), x = a.allocate(4 * 64 * 16), y = a.allocate(4 * 2 * 16);
            MemorySegment panel = a.allocate(4 * 63);
            var e = assertThrows(IllegalArgumentException.class,
                    () -> CpuPanelGemm.gemm(DType.Q8_0, 16, 2, 64, w, 0, x, 0, 64, y, 0, 2, panel, 0, 63));
            assertTrue(e.getMessage().contains("holds no row"), e.getMessage());
            var f32 = assertThrows(IllegalArgumentException.class,
                    () -> CpuPanelGemm.gemm(DType.F32, 16, 2, 64, w, 0, x, 0, 64, y, 0, 2, panel, 0, 64));
            assertTrue(f32.getMessage().contains("unsupported weight type F32"), f32.getMessage());
        }
    }
}
