package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuQuantTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long SEED = System.nanoTime();

    // ------------------------------------------------------------------ llama.cpp reference, transcribed

    /** C roundf: halves away from zero. */
    private static float roundf(float x) {
        return (float) (x < 0 ? -Math.floor(-(double) x + 0.5) : Math.floor((double) x + 0.5));
    }

    /** quantize_row_q8_0_ref. */
    static byte[] refQuantQ8_0(float[] x) {
        int qk = 32, nb = x.length / qk;
        byte[] y = new byte[nb * 34];
        for (int i = 0; i < nb; i++) {
            float amax = 0.0f;
            for (int j = 0; j < qk; j++) {
                float v = x[i * qk + j];
                amax = Math.max(amax, Math.abs(v));
            }
            float d = amax / ((1 << 7) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            short h = Float.floatToFloat16(d);
            y[i * 34] = (byte) h;
            y[i * 34 + 1] = (byte) (h >> 8);
            for (int j = 0; j < qk; ++j) {
                float x0 = x[i * qk + j] * id;
                y[i * 34 + 2 + j] = (byte) (int) roundf(x0);
            }
        }
        return y;
    }

    /** quantize_row_q4_0_ref. */
    static byte[] refQuantQ4_0(float[] x) {
        int qk = 32, nb = x.length / qk;
        byte[] y = new byte[nb * 18];
        for (int i = 0; i < nb; i++) {
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < qk; j++) {
                float v = x[i * qk + j];
                if (amax < Math.abs(v)) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            short h = Float.floatToFloat16(d);
            y[i * 18] = (byte) h;
            y[i * 18 + 1] = (byte) (h >> 8);
            for (int j = 0; j < qk / 2; ++j) {
                float x0 = x[i * qk + j] * id;
                float x1 = x[i * qk + qk / 2 + j] * id;
                int xi0 = Math.min(15, (byte) (int) (x0 + 8.5f)) & 0xFF;
                int xi1 = Math.min(15, (byte) (int) (x1 + 8.5f)) & 0xFF;
                y[i * 18 + 2 + j] = (byte) (xi0 | (xi1 << 4));
            }
        }
        return y;
    }

    private static float fp16(byte[] b, int off) {
        return Float.float16ToFloat((short) ((b[off] & 0xFF) | (b[off + 1] << 8)));
    }

    /** dequantize_row_q8_0. */
    static float[] refDequantQ8_0(byte[] q, int k) {
        float[] y = new float[k];
        for (int i = 0; i < k / 32; i++) {
            float d = fp16(q, i * 34);
            for (int j = 0; j < 32; j++) y[i * 32 + j] = q[i * 34 + 2 + j] * d;
        }
        return y;
    }

    /** dequantize_row_q4_0. */
    static float[] refDequantQ4_0(byte[] q, int k) {
        float[] y = new float[k];
        for (int i = 0; i < k / 32; i++) {
            float d = fp16(q, i * 18);
            for (int j = 0; j < 16; j++) {
                int b = q[i * 18 + 2 + j] & 0xFF;
                y[i * 32 + j] = ((b & 0x0F) - 8) * d;
                y[i * 32 + j + 16] = ((b >> 4) - 8) * d;
            }
        }
        return y;
    }

    // ------------------------------------------------------------------ helpers

    /** Random weights: gaussian blocks of varying scale, some all-zero blocks, some outliers, some tiny blocks. */
    private static float[] weights(Random r, int n) {
        float[] a = new float[n];
        for (int b = 0; b < n / 32; b++) {
            int kind = r.nextInt(10);
            double scale = Math.pow(2, r.nextInt(20) - 12);
            for (int j = 0; j < 32; j++) {
                float v = switch (kind) {
                    case 0 -> 0f;
                    case 1 -> (float) (r.nextGaussian() * 1e-20);
                    case 2 -> j == 0 ? 127f : 0.5f * (r.nextInt(255) - 127); // d = 1, halves: roundf ties
                    case 3 -> j == 0 ? -8f : 0.5f * (r.nextInt(33) - 16); // Q4_0 d = 1, x + 8.5 exact
                    default -> (float) (r.nextGaussian() * scale);
                };
                if (kind > 3 && r.nextInt(50) == 0) v *= 30; // outlier
                a[b * 32 + j] = v;
            }
        }
        return a;
    }

    private static MemorySegment floats(Arena arena, float[] a, int off) {
        MemorySegment s = arena.allocate((a.length + off) * 4L + 4);
        for (int i = 0; i < a.length; i++) s.set(F32, (off + i) * 4L, a[i]);
        return s;
    }

    private static float[] read(MemorySegment s, long off, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = s.get(F32, (off + i) * 4L);
        return a;
    }

    private static byte[] bytes(MemorySegment s, long off, int n) {
        return s.asSlice(off, n).toArray(ValueLayout.JAVA_BYTE);
    }

    private static MemorySegment withBytes(Arena arena, byte[] b, int off) {
        MemorySegment s = arena.allocate(b.length + off + 3);
        MemorySegment.copy(MemorySegment.ofArray(b), 0, s, off, b.length);
        return s;
    }

    // ------------------------------------------------------------------ layout and known answers

    @Test
    void q8_0KnownBlock() {
        float[] x = new float[32];
        x[0] = 127f; x[1] = -127f; x[2] = 63.5f; x[3] = -63.5f; x[4] = 0.5f; x[5] = -0.5f; x[6] = 0.49f; x[7] = 1.5f;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dst = arena.allocate(34);
            CpuQuant.quantizeQ8_0(floats(arena, x, 0), 0, dst, 0, 32);
            byte[] b = bytes(dst, 0, 34);
            assertEquals(0x00, b[0] & 0xFF); // d = 1.0 = 0x3C00, little-endian
            assertEquals(0x3C, b[1] & 0xFF);
            assertArrayEquals(new byte[] {127, -127, 64, -64, 1, -1, 0, 2}, java.util.Arrays.copyOfRange(b, 2, 10));
        }
    }

    @Test
    void q4_0KnownBlock() {
        float[] x = new float[32];
        x[0] = -8f; x[1] = 7f; x[2] = 0.5f; x[3] = -0.5f; x[4] = 7.49f; x[5] = -7.6f; x[6] = 8f; // 8 -> 16 -> clamp 15
        x[16] = 1f; x[17] = -1f; x[18] = -8f;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dst = arena.allocate(18);
            CpuQuant.quantizeQ4_0(floats(arena, x, 0), 0, dst, 0, 32);
            byte[] b = bytes(dst, 0, 18);
            // max = -8 (first of largest magnitude), d = max / -8 = 1.0
            assertEquals(0x3C00, (b[0] & 0xFF) | (b[1] & 0xFF) << 8);
            int[] lo = {0, 15, 9, 8, 15, 0, 15, 8};
            int[] hi = {9, 7, 0, 8, 8, 8, 8, 8};
            for (int j = 0; j < 8; j++) assertEquals(lo[j] | hi[j] << 4, b[2 + j] & 0xFF, "byte " + j);
        }
        float[] y = new float[32];
        y[3] = 4f; y[9] = -4f; // first of equal magnitudes wins: max = +4, d = -0.5
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dst = arena.allocate(18);
            CpuQuant.quantizeQ4_0(floats(arena, y, 0), 0, dst, 0, 32);
            assertEquals(Float.floatToFloat16(-0.5f), (short) ((dst.get(ValueLayout.JAVA_BYTE, 0) & 0xFF) | dst.get(ValueLayout.JAVA_BYTE, 1) << 8));
            assertEquals(0, dst.get(ValueLayout.JAVA_BYTE, 2 + 3) & 0x0F); // 4 / -0.5 = -8 -> 0
            assertEquals(15, dst.get(ValueLayout.JAVA_BYTE, 2 + 9) & 0x0F); // -4 / -0.5 = 8 -> 16 -> 15
        }
    }

    @Test
    void quantizedBytesMatchLlamaCppReference() {
        var r = new Random(SEED);
        for (int n : new int[] {0, 32, 64, 96, 4096}) {
            float[] x = weights(r, n);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment src = floats(arena, x, 3);
                MemorySegment q8 = arena.allocate(CpuQuant.bytesQ8_0(n) + 8), q4 = arena.allocate(CpuQuant.bytesQ4_0(n) + 8);
                CpuQuant.quantizeQ8_0(src, 3, q8, 5, n);
                CpuQuant.quantizeQ4_0(src, 3, q4, 7, n);
                assertArrayEquals(refQuantQ8_0(x), bytes(q8, 5, n / 32 * 34), "Q8_0 seed " + SEED + " n " + n);
                assertArrayEquals(refQuantQ4_0(x), bytes(q4, 7, n / 32 * 18), "Q4_0 seed " + SEED + " n " + n);
            }
        }
    }

    @Test
    void dequantizeMatchesReferenceExactlyAndWithinErrorBounds() {
        var r = new Random(SEED + 1);
        for (int n : new int[] {32, 96, 4096}) {
            float[] x = weights(r, n);
            byte[] q8 = refQuantQ8_0(x), q4 = refQuantQ4_0(x);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment s8 = withBytes(arena, q8, 1), s4 = withBytes(arena, q4, 3);
                MemorySegment d8 = arena.allocate((n + 2) * 4L), d4 = arena.allocate((n + 2) * 4L);
                CpuQuant.dequantizeQ8_0(s8, 1, d8, 2, n);
                CpuQuant.dequantizeQ4_0(s4, 3, d4, 1, n);
                float[] y8 = read(d8, 2, n), y4 = read(d4, 1, n);
                assertArrayEquals(refDequantQ8_0(q8, n), y8, "Q8_0 seed " + SEED);
                assertArrayEquals(refDequantQ4_0(q4, n), y4, "Q4_0 seed " + SEED);
                for (int b = 0; b < n / 32; b++) {
                    float amax = 0, max = 0;
                    for (int j = 0; j < 32; j++) {
                        float v = x[b * 32 + j];
                        if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
                    }
                    double d8f = amax / 127.0, d8h = fp16(q8, b * 34);
                    double d4f = Math.abs(max / 8.0), d4h = Math.abs(fp16(q4, b * 18));
                    for (int j = 0; j < 32; j++) {
                        int i = b * 32 + j;
                        // Q8_0: half a step, plus the step's rounding to F16 times |q| <= 127
                        double bound8 = d8f / 2 + 127 * Math.abs(d8f - d8h) + 1e-6 * amax + 1e-37;
                        assertTrue(Math.abs(x[i] - y8[i]) <= bound8, "Q8_0 block " + b + " error " + Math.abs(x[i] - y8[i]) + " > " + bound8);
                        // Q4_0: half a step, but a full step where the opposite extreme clamps to 15
                        double bound4 = d4f + 8 * Math.abs(d4f - d4h) + 1e-6 * amax + 1e-37;
                        assertTrue(Math.abs(x[i] - y4[i]) <= bound4, "Q4_0 block " + b + " error " + Math.abs(x[i] - y4[i]) + " > " + bound4);
                    }
                }
            }
        }
    }

    @Test
    void i8RowsRoundTrip() {
        var r = new Random(SEED + 2);
        int rows = 5, cols = 37;
        float[] x = new float[rows * cols];
        for (int i = 0; i < x.length; i++) x[i] = (float) (r.nextGaussian() * (1 + i / cols));
        for (int j = 0; j < cols; j++) x[2 * cols + j] = 0; // an all-zero row
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = floats(arena, x, 1), q = arena.allocate(rows * cols + 3), sc = arena.allocate((rows + 2) * 4L);
            CpuQuant.quantizeI8Rows(src, 1, q, 3, sc, 2, rows, cols);
            MemorySegment back = arena.allocate(rows * cols * 4L);
            CpuQuant.dequantizeI8Rows(q, 3, sc, 2, back, 0, rows, cols);
            for (int row = 0; row < rows; row++) {
                float amax = 0;
                for (int j = 0; j < cols; j++) amax = Math.max(amax, Math.abs(x[row * cols + j]));
                float s = sc.get(F32, (2 + row) * 4L);
                assertEquals(amax / 127f, s);
                for (int j = 0; j < cols; j++) {
                    int i = row * cols + j;
                    byte qi = q.get(ValueLayout.JAVA_BYTE, 3 + i);
                    assertEquals((byte) (int) roundf(x[i] * (s != 0 ? 1f / s : 0f)), qi);
                    assertEquals(qi * s, back.get(F32, i * 4L));
                    assertTrue(Math.abs(x[i] - qi * s) <= s / 2 + 1e-6 * amax);
                }
            }
        }
    }

    // ------------------------------------------------------------------ GEMV / GEMM

    private static void assertDots(double[] ref, double[] absSum, float[] got, String what) {
        for (int i = 0; i < ref.length; i++) {
            double tol = 3e-6 * absSum[i] + 1e-30;
            assertTrue(Math.abs(got[i] - ref[i]) <= tol, what + " seed " + SEED + " row " + i + ": " + got[i] + " vs " + ref[i] + " tol " + tol);
        }
    }

    private void checkGemv(Arena arena, Random r, int m, int n) {
        float[] wf = weights(r, m * n);
        float[] x = new float[n];
        for (int j = 0; j < n; j++) x[j] = (float) r.nextGaussian();
        byte[] q8 = refQuantQ8_0(wf), q4 = refQuantQ4_0(wf);
        float[] w8 = refDequantQ8_0(q8, m * n), w4 = refDequantQ4_0(q4, m * n);
        double[] ref8 = new double[m], ref4 = new double[m], abs8 = new double[m], abs4 = new double[m];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                ref8[i] += (double) w8[i * n + j] * x[j];
                abs8[i] += Math.abs((double) w8[i * n + j] * x[j]);
                ref4[i] += (double) w4[i * n + j] * x[j];
                abs4[i] += Math.abs((double) w4[i * n + j] * x[j]);
            }
        }
        MemorySegment s8 = withBytes(arena, q8, 7), s4 = withBytes(arena, q4, 1), xs = floats(arena, x, 3);
        MemorySegment y = arena.allocate((m + 5) * 4L);
        CpuQuant.gemvQ8_0(m, n, s8, 7, xs, 3, y, 5);
        assertDots(ref8, abs8, read(y, 5, m), "gemvQ8_0 " + m + "x" + n);
        CpuQuant.gemvQ4_0(m, n, s4, 1, xs, 3, y, 5);
        assertDots(ref4, abs4, read(y, 5, m), "gemvQ4_0 " + m + "x" + n);
    }

    @Test
    void gemvMatchesFloat64Reference() {
        var r = new Random(SEED + 3);
        try (Arena arena = Arena.ofConfined()) {
            for (int m : new int[] {1, 3, 4, 5, 7, 37}) {
                for (int n : new int[] {32, 64, 96, 4096}) checkGemv(arena, r, m, n);
            }
        }
    }

    @Test
    void gemvMultiThreaded() {
        var r = new Random(SEED + 4);
        try (Arena arena = Arena.ofShared()) {
            checkGemv(arena, r, 259, 1024);
            checkGemv(arena, r, 66, 4096);
        }
    }

    private void checkGemvI8(Arena arena, Random r, int m, int n) {
        float[] wf = new float[m * n];
        for (int i = 0; i < wf.length; i++) wf[i] = (float) r.nextGaussian();
        float[] x = new float[n];
        for (int j = 0; j < n; j++) x[j] = (float) r.nextGaussian();
        MemorySegment ws = floats(arena, wf, 0), q = arena.allocate((long) m * n + 3), sc = arena.allocate((m + 1) * 4L);
        CpuQuant.quantizeI8Rows(ws, 0, q, 3, sc, 1, m, n);
        double[] ref = new double[m], abs = new double[m];
        for (int i = 0; i < m; i++) {
            double s = sc.get(F32, (1 + i) * 4L);
            for (int j = 0; j < n; j++) {
                double p = q.get(ValueLayout.JAVA_BYTE, 3 + (long) i * n + j) * s * x[j];
                ref[i] += p;
                abs[i] += Math.abs(p);
            }
        }
        MemorySegment xs = floats(arena, x, 2), y = arena.allocate((m + 1) * 4L);
        CpuQuant.gemvI8Rows(m, n, q, 3, sc, 1, xs, 2, y, 1);
        assertDots(ref, abs, read(y, 1, m), "gemvI8Rows " + m + "x" + n);
    }

    @Test
    void gemvI8RowsMatchesFloat64Reference() {
        var r = new Random(SEED + 5);
        try (Arena arena = Arena.ofConfined()) {
            for (int m : new int[] {1, 3, 5, 9}) {
                for (int n : new int[] {1, 7, 16, 33, 100, 4096}) checkGemvI8(arena, r, m, n);
            }
        }
        try (Arena arena = Arena.ofShared()) {
            checkGemvI8(arena, r, 301, 1000);
        }
    }

    private void checkGemm(Arena arena, Random r, int rowsX, int m, int n) {
        float[] wf = weights(r, m * n);
        float[] x = new float[rowsX * n];
        for (int j = 0; j < x.length; j++) x[j] = (float) r.nextGaussian();
        byte[] q8 = refQuantQ8_0(wf), q4 = refQuantQ4_0(wf);
        float[] w8 = refDequantQ8_0(q8, m * n), w4 = refDequantQ4_0(q4, m * n);
        double[] ref8 = new double[rowsX * m], ref4 = new double[rowsX * m], abs8 = new double[rowsX * m], abs4 = new double[rowsX * m];
        for (int t = 0; t < rowsX; t++) {
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double xv = x[t * n + j];
                    ref8[t * m + i] += w8[i * n + j] * xv;
                    abs8[t * m + i] += Math.abs(w8[i * n + j] * xv);
                    ref4[t * m + i] += w4[i * n + j] * xv;
                    abs4[t * m + i] += Math.abs(w4[i * n + j] * xv);
                }
            }
        }
        MemorySegment s8 = withBytes(arena, q8, 5), s4 = withBytes(arena, q4, 2), xs = floats(arena, x, 1);
        MemorySegment y = arena.allocate((rowsX * m + 3) * 4L);
        CpuQuant.gemmQ8_0(rowsX, m, n, s8, 5, xs, 1, y, 3);
        assertDots(ref8, abs8, read(y, 3, rowsX * m), "gemmQ8_0 " + rowsX + "x" + m + "x" + n);
        CpuQuant.gemmQ4_0(rowsX, m, n, s4, 2, xs, 1, y, 3);
        assertDots(ref4, abs4, read(y, 3, rowsX * m), "gemmQ4_0 " + rowsX + "x" + m + "x" + n);
    }

    @Test
    void gemmMatchesFloat64Reference() {
        var r = new Random(SEED + 6);
        try (Arena arena = Arena.ofConfined()) {
            for (int rowsX : new int[] {1, 2, 3, 5}) {
                checkGemm(arena, r, rowsX, 37, 96);
                checkGemm(arena, r, rowsX, 4, 32);
            }
            checkGemm(arena, r, 2, 9, 4096);
        }
        try (Arena arena = Arena.ofShared()) {
            checkGemm(arena, r, 4, 131, 512);
        }
    }

    // ------------------------------------------------------------------ errors

    @Test
    void badCountsAndSizesAreRejected() {
        assertEquals(34, CpuQuant.bytesQ8_0(32));
        assertEquals(18 * 128, CpuQuant.bytesQ4_0(4096));
        assertThrows(IllegalArgumentException.class, () -> CpuQuant.bytesQ8_0(33));
        assertThrows(IllegalArgumentException.class, () -> CpuQuant.bytesQ4_0(-32));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment f = arena.allocate(4096), q = arena.allocate(4096), y = arena.allocate(4096);
            var e = assertThrows(IllegalArgumentException.class, () -> CpuQuant.quantizeQ8_0(f, 0, q, 0, 48));
            assertTrue(e.getMessage().contains("multiple of 32"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> CpuQuant.quantizeQ4_0(f, 0, q, 0, 31));
            assertThrows(IllegalArgumentException.class, () -> CpuQuant.dequantizeQ8_0(q, 0, f, 0, 40));
            assertThrows(IllegalArgumentException.class, () -> CpuQuant.dequantizeQ4_0(q, 0, f, 0, 1));
            assertThrows(IllegalArgumentException.class, () -> CpuQuant.gemvQ8_0(2, 48, q, 0, f, 0, y, 0));
            assertThrows(IllegalArgumentException.class, () -> CpuQuant.gemvQ4_0(2, 16, q, 0, f, 0, y, 0));
            assertThrows(IllegalArgumentException.class, () -> CpuQuant.gemmQ8_0(2, 2, 40, q, 0, f, 0, y, 0));
            assertThrows(IndexOutOfBoundsException.class, () -> CpuQuant.quantizeQ8_0(f, 0, q, 0, 2048)); // src too small
            assertThrows(IndexOutOfBoundsException.class, () -> CpuQuant.gemvQ8_0(200, 32, q, 0, f, 0, y, 0)); // w too small
            assertThrows(IndexOutOfBoundsException.class, () -> CpuQuant.gemvQ4_0(2, 1024, q, 0, f, 1, y, 0)); // x too small
        }
    }

    /**
     * The few-tokens product gives each token bit for bit what the one-token GEMV gives it, in both formats:
     * groups of four and a remainder, an odd row left after pairing, more than eight tokens, and a product
     * large enough to split over threads.
     */
    @Test
    void gemvTokensEqualsOneGemvPerTokenBitForBit() {
        Random r = new Random(SEED);
        for (int[] shape : new int[][] {{37, 96, 7}, {37, 96, 5}, {2, 32, 2}, {301, 96, 9}, {64, 160, 13}}) {
            gemvTokensBitForBit(r, shape[0], shape[1], shape[2]);
        }
    }

    private static void gemvTokensBitForBit(Random r, int m, int n, int tokens) {
        int ldx = n + 3, ldy = m + 2;
        for (boolean q4 : new boolean[] {false, true}) {
            try (Arena arena = Arena.ofShared()) {
                float[] wf = weights(r, m * n);
                long wBytes = q4 ? CpuQuant.bytesQ4_0((long) m * n) : CpuQuant.bytesQ8_0((long) m * n);
                MemorySegment w = arena.allocate(wBytes + 8);
                MemorySegment src = floats(arena, wf, 0);
                if (q4) CpuQuant.quantizeQ4_0(src, 0, w, 8, (long) m * n);
                else CpuQuant.quantizeQ8_0(src, 0, w, 8, (long) m * n);
                float[] xf = new float[tokens * ldx];
                for (int i = 0; i < xf.length; i++) xf[i] = (float) r.nextGaussian();
                MemorySegment x = floats(arena, xf, 1);
                MemorySegment all = arena.allocate(4L * tokens * ldy + 8), one = arena.allocate(4L * m + 8);
                CpuQuant.gemvTokens(q4, tokens, m, n, w, 8, x, 1, ldx, all, 1, ldy);
                for (int t = 0; t < tokens; t++) {
                    if (q4) CpuQuant.gemvQ4_0(m, n, w, 8, x, 1 + (long) t * ldx, one, 1);
                    else CpuQuant.gemvQ8_0(m, n, w, 8, x, 1 + (long) t * ldx, one, 1);
                    float[] want = read(one, 1, m), got = read(all, 1 + (long) t * ldy, m);
                    for (int i = 0; i < m; i++) {
                        assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(got[i]), (q4 ? "Q4_0" : "Q8_0") + " " + m + " x " + n + ", " + tokens + " tokens: token " + t + " row " + i);
                    }
                }
            }
        }
    }
}
