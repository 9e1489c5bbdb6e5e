package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.KQuantReference;
import dev.exeunt.tensor.testing.LeakCheck;
import dev.exeunt.tensor.testing.ProductCheck;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Q2_K / Q4_K / Q5_K / Q6_K (and Q3_K as Q6_K): dequantization against gguf-py's, products against a float64 reference. */
@ExtendWith(LeakCheck.class)
class CpuKQuantTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final DType[] TYPES = {DType.Q4_K, DType.Q5_K, DType.Q6_K, DType.Q2_K};
    /** The fixtures' shape (make_fixtures.py's ROWS, COLS). */
    private static final int ROWS = 3, COLS = 512;
    private static final long SEED = System.nanoTime();

    private static byte[] resource(String name) throws IOException {
        try (InputStream in = CpuKQuantTest.class.getResourceAsStream("/kquants/" + name)) {
            if (in == null) throw new IOException("missing test resource kquants/" + name);
            return in.readAllBytes();
        }
    }

    private static float[] floats(byte[] b) {
        MemorySegment s = MemorySegment.ofArray(b);
        float[] f = new float[b.length / 4];
        for (int i = 0; i < f.length; i++) f[i] = s.getAtIndex(F32, i);
        return f;
    }

    private static void assertBitsEqual(float[] want, float[] got, String what) {
        assertEquals(want.length, got.length, what + " length");
        for (int i = 0; i < want.length; i++) {
            if (Float.floatToRawIntBits(want[i]) != Float.floatToRawIntBits(got[i])) {
                throw new AssertionError(what + ": element " + i + " is " + got[i] + ", gguf-py gives " + want[i]);
            }
        }
    }

    /** Dequantizes count weights of type t from bytes (at a byte offset) with the kernel. */
    private static float[] dequantize(DType t, byte[] blocks, long byteOff, int count) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment src = a.allocate(blocks.length);
            MemorySegment.copy(MemorySegment.ofArray(blocks), 0, src, 0, blocks.length);
            MemorySegment dst = a.allocate(4L * (count + 3));
            CpuKQuant.dequantize(t, src, byteOff, dst, 3, count);
            float[] f = new float[count];
            for (int i = 0; i < count; i++) f[i] = dst.getAtIndex(F32, 3 + i);
            return f;
        }
    }

    @Test
    void dequantizationEqualsGgufPyBitForBit() throws IOException {
        for (DType t : TYPES) {
            byte[] blocks = resource(t + ".bin");
            float[] want = floats(resource(t + ".f32"));
            assertEquals(CpuKQuant.bytes(t, (long) ROWS * COLS), blocks.length, t + " fixture size");
            assertBitsEqual(want, dequantize(t, blocks, 0, ROWS * COLS), t.toString());
            // From the second row on (a byte offset into the segment).
            long rowBytes = t.byteSize(COLS);
            float[] tail = new float[(ROWS - 1) * COLS];
            System.arraycopy(want, COLS, tail, 0, tail.length);
            assertBitsEqual(tail, dequantize(t, blocks, rowBytes, tail.length), t + " from row 1");
        }
    }

    /** Q3_K, rewritten as Q6_K, dequantizes to gguf-py's Q3_K values bit for bit (fixture Q3_K.bin / Q3_K.f32). */
    @Test
    void q3KRewrittenAsQ6KDequantizesAsGgufPyDoes() throws IOException {
        byte[] q3 = resource("Q3_K.bin");
        int blocks = ROWS * COLS / CpuKQuant.QK_K;
        assertEquals(blocks * Q3KToQ6K.Q3_K_BYTES, q3.length, "Q3_K fixture size");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment src = a.allocate(q3.length + 5), dst = a.allocate((long) blocks * Q3KToQ6K.Q6_K_BYTES + 7);
            MemorySegment.copy(MemorySegment.ofArray(q3), 0, src, 5, q3.length);
            Q3KToQ6K.transcode(src, 5, dst, 7, blocks);
            byte[] q6 = dst.asSlice(7, (long) blocks * Q3KToQ6K.Q6_K_BYTES).toArray(ValueLayout.JAVA_BYTE);
            assertBitsEqual(floats(resource("Q3_K.f32")), dequantize(DType.Q6_K, q6, 0, ROWS * COLS), "Q3_K as Q6_K");
            assertThrows(IndexOutOfBoundsException.class, () -> Q3KToQ6K.transcode(src, 6, dst, 7, blocks), "a source one byte short");
            assertThrows(IndexOutOfBoundsException.class, () -> Q3KToQ6K.transcode(src, 5, dst, 8, blocks), "a destination one byte short");
        }
    }

    @Test
    void tensorConversionToF32EqualsGgufPy() throws IOException {
        for (DType t : TYPES) {
            byte[] blocks = resource(t + ".bin");
            try (Scope s = Scope.open()) {
                Tensor q = Tensor.empty(t, Device.CPU, ROWS, COLS);
                MemorySegment.copy(MemorySegment.ofArray(blocks), 0, q.segment(), 0, blocks.length);
                assertBitsEqual(floats(resource(t + ".f32")), q.to(DType.F32).toFloatArray(), t + " via Tensor.to(F32)");
            }
        }
    }

    @Test
    void referenceQuantizerRoundTripsThroughTheKernel() {
        Random r = new Random(SEED);
        double[] bound = {0.12, 0.06, 0.04, 0.35}; // relative RMS error of 4-, 5-, 6- and 2-bit weights
        for (int k = 0; k < TYPES.length; k++) {
            float[] x = new float[5 * 256];
            for (int i = 0; i < x.length; i++) x[i] = (float) (r.nextGaussian() * 0.05 + (i % 256 < 32 ? 0.03 : 0));
            float[] back = dequantize(TYPES[k], KQuantReference.quantize(TYPES[k], x), 0, x.length);
            double num = 0, den = 0;
            for (int i = 0; i < x.length; i++) {
                num += (x[i] - back[i]) * (double) (x[i] - back[i]);
                den += x[i] * (double) x[i];
            }
            double err = Math.sqrt(num / den);
            assertTrue(err < bound[k], TYPES[k] + " round trip relative error " + err + " (seed " + SEED + ")");
        }
    }

    @Test
    void productsMatchAFloat64ReferenceAndAreBatchInvariant() {
        Random r = new Random(SEED);
        int[][] sizes = {{1, 256}, {7, 512}, {33, 768}, {5, 1024}};
        for (DType t : TYPES) {
            for (int[] mn : sizes) {
                int m = mn[0], n = mn[1];
                float[] wf = new float[m * n];
                for (int i = 0; i < wf.length; i++) wf[i] = (float) r.nextGaussian() * 0.1f;
                byte[] wq = KQuantReference.quantize(t, wf);
                float[] w = dequantize(t, wq, 0, m * n);
                for (int rows : new int[] {1, 3, 5, 6}) { // 5: four rows, then a lone one
                    int ldx = n + 5, ldy = m + 3;
                    try (Arena a = Arena.ofShared()) {
                        MemorySegment ws = a.allocate(wq.length + 7);
                        MemorySegment.copy(MemorySegment.ofArray(wq), 0, ws, 7, wq.length);
                        MemorySegment x = a.allocate(4L * rows * ldx), y = a.allocate(4L * rows * ldy), y1 = a.allocate(4L * m);
                        for (long i = 0; i < (long) rows * ldx; i++) x.setAtIndex(F32, i, (float) r.nextGaussian());
                        CpuKQuant.gemm(t, rows, m, n, ws, 7, x, 0, ldx, y, 0, ldy);
                        for (int row = 0; row < rows; row++) {
                            ProductCheck.assertRowMatchesFloat64(w, m, n, x, ldx, y, ldy, row, t + " " + m + "x" + n + " rows " + rows + " (seed " + SEED + ")");
                            // One token alone gives the same bits as within the batch.
                            CpuKQuant.gemv(t, m, n, ws, 7, x, (long) row * ldx, y1, 0);
                            for (int i = 0; i < m; i++) {
                                assertEquals(Float.floatToRawIntBits(y.getAtIndex(F32, (long) row * ldy + i)),
                                        Float.floatToRawIntBits(y1.getAtIndex(F32, i)), t + " batch invariance, out " + i);
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void linearQuantizedOnTheBackendMatchesTheDequantizedWeights() {
        Random r = new Random(SEED);
        int m = 9, n = 512;
        for (DType t : TYPES) {
            float[] wf = new float[m * n];
            for (int i = 0; i < wf.length; i++) wf[i] = (float) r.nextGaussian() * 0.1f;
            byte[] wq = KQuantReference.quantize(t, wf);
            try (Scope s = Scope.open()) {
                Tensor w = Tensor.empty(t, Device.CPU, m, n);
                MemorySegment.copy(MemorySegment.ofArray(wq), 0, w.segment(), 0, wq.length);
                Tensor wDeq = w.to(DType.F32);
                for (int tokens : new int[] {1, 4}) {
                    float[] xf = new float[tokens * n];
                    for (int i = 0; i < xf.length; i++) xf[i] = (float) r.nextGaussian();
                    Tensor x = Tensor.of(xf, tokens, n);
                    Tensor got = Tensor.empty(DType.F32, tokens, m), want = Tensor.empty(DType.F32, tokens, m);
                    CpuBackend.INSTANCE.linearQuantized(w, x, got);
                    CpuBackend.INSTANCE.linearQuantized(wDeq, x, want);
                    assertArrayEquals(want.toFloatArray(), got.toFloatArray(), 1e-4f, t + " x" + tokens);
                }
            }
        }
    }

    @Test
    void badSizesAndRangesAreClearErrors() {
        var e = assertThrows(IllegalArgumentException.class, () -> DType.Q4_K.byteSize(300));
        assertTrue(e.getMessage().contains("Q4_K stores blocks of 256 elements"), e.getMessage());
        assertEquals(210, DType.Q6_K.byteSize(256));
        assertEquals(176 * 2, DType.Q5_K.byteSize(512));
        assertEquals(84 * 3, DType.Q2_K.byteSize(768));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment w = a.allocate(144 * 4), x = a.allocate(4 * 512), y = a.allocate(4 * 4);
            e = assertThrows(IllegalArgumentException.class, () -> CpuKQuant.gemv(DType.Q4_K, 2, 300, w, 0, x, 0, y, 0));
            assertTrue(e.getMessage().contains("multiple of 256"), e.getMessage());
            var oob = assertThrows(IndexOutOfBoundsException.class, () -> CpuKQuant.gemv(DType.Q4_K, 3, 512, w, 0, x, 0, y, 0));
            assertTrue(oob.getMessage().contains("exceed a segment of 576 bytes"), oob.getMessage());
            oob = assertThrows(IndexOutOfBoundsException.class, () -> CpuKQuant.dequantize(DType.Q6_K, w, 0, y, 0, 256));
            assertTrue(oob.getMessage().contains("dequantize Q6_K dst"), oob.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> CpuKQuant.bytes(DType.Q8_0, 256));
            assertTrue(e.getMessage().contains("not a k-quant type"), e.getMessage());
        }
        // The k-quants are read, never produced: asking for one names the conversion.
        try (Scope s = Scope.open()) {
            e = assertThrows(IllegalArgumentException.class, () -> Tensor.zeros(256).to(DType.Q5_K));
            assertTrue(e.getMessage().contains("conversion F32 -> Q5_K is not supported"), e.getMessage());
        }
    }
}
