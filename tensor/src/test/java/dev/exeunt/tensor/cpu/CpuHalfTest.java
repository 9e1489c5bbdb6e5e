package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuHalfTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long SEED = System.nanoTime();

    private static final float[] SPECIALS = {
        0f, -0f, 1f, -1f, Float.MIN_VALUE, -Float.MIN_VALUE, Float.MIN_NORMAL, Float.MAX_VALUE, -Float.MAX_VALUE,
        Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN, Float.intBitsToFloat(0xFFC0_0001),
        Float.intBitsToFloat(0x7F80_0001), // signalling NaN, payload only in low bits
        Float.intBitsToFloat(0x3F80_8000), // exact tie, even below: rounds down
        Float.intBitsToFloat(0x3F81_8000), // exact tie, odd below: rounds up
        Float.intBitsToFloat(0x7F7F_FFFF), // rounds to Inf in bf16
        65504f, 65519.996f, 65520f, 1e-8f, 6e-8f, 5.96e-8f, 2.98e-8f, 3e-5f, 6.1035156e-5f, -6.1e-5f, 1e6f, -1e6f,
    };

    /** Random floats of every magnitude plus specials. */
    private static float[] inputs(Random r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            switch (r.nextInt(4)) {
                case 0 -> a[i] = Float.intBitsToFloat(r.nextInt());
                case 1 -> a[i] = (float) r.nextGaussian();
                case 2 -> a[i] = (float) (r.nextGaussian() * Math.pow(2, r.nextInt(60) - 30));
                default -> a[i] = SPECIALS[r.nextInt(SPECIALS.length)];
            }
        }
        return a;
    }

    /** Independent RNE reference for bf16: pick the closer of the two neighbours, ties to the even one. */
    private static short refBf16(float f) {
        int b = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) ((b >>> 16) | 0x40);
        if (Float.isInfinite(f)) return (short) (b >>> 16);
        int lo = b & 0xFFFF_0000; // truncation toward zero
        int hi = lo + 0x10000; // next bf16 away from zero (may be Inf)
        double v = Math.abs((double) f);
        double dl = v - Math.abs((double) Float.intBitsToFloat(lo));
        // the Inf neighbour counts as 2^128, the next step above the largest bf16, as IEEE rounding does
        double vh = (hi & 0x7FFF_FFFF) == 0x7F80_0000 ? 0x1p128 : Math.abs((double) Float.intBitsToFloat(hi));
        double dh = vh - v;
        if (dl < dh) return (short) (lo >>> 16);
        if (dh < dl) return (short) (hi >>> 16);
        return (short) (((lo >>> 16) & 1) == 0 ? lo >>> 16 : hi >>> 16);
    }

    @Test
    void bf16MatchesReferenceOnRandomAndSpecialValues() {
        var r = new Random(SEED);
        for (int n : new int[] {0, 1, 15, 16, 17, 33, 1000, 4099}) {
            float[] a = inputs(r, n);
            try (Arena arena = Arena.ofConfined()) {
                int so = 3, dof = 5;
                MemorySegment src = arena.allocate((n + so) * 4L), dst = arena.allocate((n + dof + 2) * 2L);
                for (int i = 0; i < n; i++) src.set(F32, (so + i) * 4L, a[i]);
                dst.set(I16, (dof + n) * 2L, (short) 0x1234);
                CpuHalf.f32ToBf16(src, so, dst, dof, n);
                for (int i = 0; i < n; i++) {
                    short got = dst.get(I16, (dof + i) * 2L);
                    assertEquals(refBf16(a[i]), got, "seed " + SEED + " n " + n + " i " + i + " value " + a[i]
                            + " bits " + Integer.toHexString(Float.floatToRawIntBits(a[i])));
                    assertEquals(refBf16(a[i]), CpuHalf.floatToBf16(a[i]));
                }
                assertEquals((short) 0x1234, dst.get(I16, (dof + n) * 2L), "wrote past the end");
            }
        }
    }

    @Test
    void bf16SpecialValues() {
        assertEquals((short) 0x7F80, CpuHalf.floatToBf16(Float.POSITIVE_INFINITY));
        assertEquals((short) 0xFF80, CpuHalf.floatToBf16(Float.NEGATIVE_INFINITY));
        assertEquals((short) 0x8000, CpuHalf.floatToBf16(-0f));
        assertEquals((short) 0x7F80, CpuHalf.floatToBf16(Float.MAX_VALUE)); // overflow rounds to Inf
        assertEquals((short) 0x7FC0, CpuHalf.floatToBf16(Float.intBitsToFloat(0x7F80_0001))); // sNaN -> qNaN
        assertEquals((short) 0x3F80, CpuHalf.floatToBf16(Float.intBitsToFloat(0x3F80_8000))); // tie to even
        assertEquals((short) 0x3F82, CpuHalf.floatToBf16(Float.intBitsToFloat(0x3F81_8000)));
        assertEquals((short) 0x0001, CpuHalf.floatToBf16(Float.intBitsToFloat(0x0000_8001))); // subnormal rounds up
    }

    @Test
    void bf16RoundTripIsExactForEveryBf16() {
        int n = 65536;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment h = arena.allocate(n * 2L), f = arena.allocate((n + 1) * 4L), h2 = arena.allocate(n * 2L);
            for (int i = 0; i < n; i++) h.set(I16, i * 2L, (short) i);
            CpuHalf.bf16ToF32(h, 0, f, 1, n);
            CpuHalf.f32ToBf16(f, 1, h2, 0, n);
            for (int i = 0; i < n; i++) {
                float v = f.get(F32, (i + 1) * 4L);
                assertEquals(i << 16, Float.floatToRawIntBits(v), "bf16 " + Integer.toHexString(i));
                int back = h2.get(I16, i * 2L) & 0xFFFF;
                boolean nan = (i & 0x7F80) == 0x7F80 && (i & 0x7F) != 0;
                assertEquals(nan ? i | 0x40 : i, back, "bf16 " + Integer.toHexString(i));
            }
        }
    }

    @Test
    void f16MatchesJavaOnRandomAndSpecialValues() {
        var r = new Random(SEED + 1);
        for (int n : new int[] {0, 1, 7, 31, 1000, 4097}) {
            float[] a = inputs(r, n);
            for (int i = 0; i < n; i += 3) a[i] = (float) (r.nextGaussian() * Math.pow(2, r.nextInt(44) - 28)); // f16 range
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment src = arena.allocate((n + 2) * 4L), dst = arena.allocate((n + 1) * 2L);
                for (int i = 0; i < n; i++) src.set(F32, (2 + i) * 4L, a[i]);
                CpuHalf.f32ToF16(src, 2, dst, 1, n);
                for (int i = 0; i < n; i++) {
                    short got = dst.get(I16, (1 + i) * 2L);
                    assertEquals(Float.floatToFloat16(a[i]), got, "seed " + SEED + " value " + a[i]);
                    float back = Float.float16ToFloat(got);
                    if (Float.isNaN(a[i])) {
                        assertTrue(Float.isNaN(back));
                    } else if (Math.abs(a[i]) < 65520f) {
                        // round to nearest: error at most half a step of the input's binade (2^-24 for subnormals)
                        double bound = Math.abs(a[i]) < 0x1p-14 ? 0x1p-25 : Math.scalb(1.0, Math.getExponent(a[i]) - 11);
                        assertTrue(Math.abs((double) back - a[i]) <= bound, "value " + a[i] + " -> " + back);
                    } else {
                        assertEquals(Math.copySign(Float.POSITIVE_INFINITY, a[i]), back);
                    }
                }
            }
        }
    }

    @Test
    void f16RoundTripIsExactForEveryF16() {
        int n = 65536;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment h = arena.allocate(n * 2L), f = arena.allocate(n * 4L), h2 = arena.allocate(n * 2L);
            for (int i = 0; i < n; i++) h.set(I16, i * 2L, (short) i);
            CpuHalf.f16ToF32(h, 0, f, 0, n);
            CpuHalf.f32ToF16(f, 0, h2, 0, n);
            for (int i = 0; i < n; i++) {
                float v = f.get(F32, i * 4L);
                assertEquals(Float.floatToRawIntBits(Float.float16ToFloat((short) i)), Float.floatToRawIntBits(v));
                boolean nan = (i & 0x7C00) == 0x7C00 && (i & 0x3FF) != 0;
                if (nan) assertTrue(Float.isNaN(Float.float16ToFloat(h2.get(I16, i * 2L))));
                else assertEquals(i, h2.get(I16, i * 2L) & 0xFFFF, "f16 " + Integer.toHexString(i));
            }
            assertEquals(0x0001, Float.floatToFloat16(0x1p-24f)); // smallest subnormal
            assertEquals(0x7C00, Float.floatToFloat16(65520f) & 0xFFFF); // overflow to Inf
            assertEquals((short) 0x8000, Float.floatToFloat16(-0f));
        }
    }

    @Test
    void largeCountsSplitAcrossThreads() {
        int n = 1_000_003;
        var r = new Random(SEED + 2);
        try (Arena arena = Arena.ofShared()) {
            MemorySegment src = arena.allocate(n * 4L), h = arena.allocate(n * 2L), back = arena.allocate(n * 4L);
            for (int i = 0; i < n; i++) src.set(F32, i * 4L, (float) r.nextGaussian());
            CpuHalf.f32ToBf16(src, 0, h, 0, n);
            CpuHalf.bf16ToF32(h, 0, back, 0, n);
            for (int i = 0; i < n; i++) {
                float v = src.get(F32, i * 4L);
                assertEquals(refBf16(v), h.get(I16, i * 2L));
                assertEquals(CpuHalf.bf16ToFloat(refBf16(v)), back.get(F32, i * 4L));
            }
            CpuHalf.f32ToF16(src, 0, h, 0, n);
            CpuHalf.f16ToF32(h, 0, back, 0, n);
            for (int i = 0; i < n; i++) {
                float v = src.get(F32, i * 4L);
                assertEquals(Float.floatToFloat16(v), h.get(I16, i * 2L));
                assertEquals(Float.float16ToFloat(Float.floatToFloat16(v)), back.get(F32, i * 4L));
            }
        }
    }

    @Test
    void rangesAreChecked() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment f = arena.allocate(40), h = arena.allocate(20);
            assertThrows(IndexOutOfBoundsException.class, () -> CpuHalf.f32ToBf16(f, 0, h, 1, 10));
            assertThrows(IndexOutOfBoundsException.class, () -> CpuHalf.bf16ToF32(h, 0, f, 1, 10));
            assertThrows(IndexOutOfBoundsException.class, () -> CpuHalf.f32ToF16(f, 1, h, 0, 10));
            assertThrows(IllegalArgumentException.class, () -> CpuHalf.f16ToF32(h, 0, f, 0, -1));
        }
    }
}
