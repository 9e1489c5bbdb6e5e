package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

/**
 * Q8_0 and Q4_0 against llama.cpp's reference quantizer as gguf-py implements it ({@code q8q4/make_fixtures.py}):
 * quantizing the fixture's floats gives gguf-py's blocks byte for byte, and dequantizing those blocks gives
 * gguf-py's floats bit for bit. Rows include zeros, outliers and values on the rounding boundaries.
 */
class CpuQuantGgufTest {
    private static final int ROWS = 7, COLS = 96;

    private static byte[] resource(String name) throws IOException {
        try (InputStream in = CpuQuantGgufTest.class.getResourceAsStream("/q8q4/" + name)) {
            if (in == null) throw new IOException("missing test resource q8q4/" + name);
            return in.readAllBytes();
        }
    }

    private static float[] floats(byte[] b) {
        float[] f = new float[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
        return f;
    }

    @Test
    void quantizationAndDequantizationEqualGgufPy() throws IOException {
        float[] input = floats(resource("input.f32"));
        int n = ROWS * COLS;
        assertEquals(n, input.length);
        for (String type : new String[] {"Q8_0", "Q4_0"}) {
            boolean q8 = type.equals("Q8_0");
            byte[] want = resource(type + ".bin");
            float[] wantBack = floats(resource(type + ".f32"));
            long bytes = q8 ? CpuQuant.bytesQ8_0(n) : CpuQuant.bytesQ4_0(n);
            assertEquals(bytes, want.length, type + " fixture size");
            try (Arena a = Arena.ofConfined()) {
                MemorySegment src = a.allocate(4L * n), q = a.allocate(bytes), back = a.allocate(4L * n);
                MemorySegment.copy(input, 0, src, ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, n);
                if (q8) CpuQuant.quantizeQ8_0(src, 0, q, 0, n);
                else CpuQuant.quantizeQ4_0(src, 0, q, 0, n);
                byte[] got = q.toArray(ValueLayout.JAVA_BYTE);
                for (int i = 0; i < got.length; i++) {
                    int block = i / (q8 ? CpuQuant.Q8_0_BLOCK_BYTES : CpuQuant.Q4_0_BLOCK_BYTES);
                    assertEquals(want[i], got[i], type + " byte " + i + " (block " + block + ")");
                }
                MemorySegment.copy(MemorySegment.ofArray(want), 0, q, 0, bytes);
                if (q8) CpuQuant.dequantizeQ8_0(q, 0, back, 0, n);
                else CpuQuant.dequantizeQ4_0(q, 0, back, 0, n);
                for (int i = 0; i < n; i++) {
                    float g = back.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i);
                    assertEquals(Float.floatToRawIntBits(wantBack[i]), Float.floatToRawIntBits(g), type + " weight " + i + ": " + g + " vs " + wantBack[i]);
                }
            }
        }
    }
}
