package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Bulk conversions between F32 and the 16-bit storage types BF16 and F16 (IEEE binary16), over native
 * segments holding little-endian data. Offsets and counts are in elements.
 *
 * <ul>
 *   <li>F32 to BF16 rounds to nearest even; Inf stays Inf, finite values too large round to Inf, and a NaN
 *       becomes a quiet NaN with the same sign and top payload bits.</li>
 *   <li>BF16 to F32 is exact (a 16-bit shift).</li>
 *   <li>F32 to F16 and back follow {@link Float#floatToFloat16} and {@link Float#float16ToFloat}: round to
 *       nearest even, subnormals, overflow to Inf, NaN kept NaN.</li>
 * </ul>
 *
 * Large counts are split across {@link CpuThreads} when the segments are shareable between threads (not those
 * of a confined arena, which run on the caller).
 */
public final class CpuHalf {
    private CpuHalf() {}

    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /**
     * The float species the CPU kernels of this package use: the preferred one, clamped to a power-of-two
     * shape of 128, 256 or 512 bits (so a lane count of 4, 8 or 16 that divides a 32-element block).
     * {@code -Dexeunt.vector.bits=128|256|512} overrides it (for testing other lane counts).
     */
    static final VectorSpecies<Float> FS = floatSpecies();

    private static VectorSpecies<Float> floatSpecies() {
        int bits = FloatVector.SPECIES_PREFERRED.vectorBitSize();
        String s = System.getProperty("exeunt.vector.bits");
        if (s != null && !s.isBlank()) bits = Integer.parseInt(s.trim());
        if (bits >= 512) return FloatVector.SPECIES_512;
        if (bits >= 256) return FloatVector.SPECIES_256;
        return FloatVector.SPECIES_128;
    }

    private static final int FL = FS.length();
    private static final VectorSpecies<Integer> IS = FS.withLanes(int.class);
    @SuppressWarnings("unchecked")
    private static final VectorSpecies<Short> SS =
            (VectorSpecies<Short>) VectorSpecies.of(short.class, VectorShape.forBitSize(FS.vectorBitSize() / 2));

    /** Elements per parallel work item. */
    private static final int CHUNK = 1 << 15;
    /** Work items per thread at least (so about 128 K elements before a second thread is used). */
    private static final int GRAIN = 4;

    @FunctionalInterface
    private interface Kernel {
        void run(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long count);
    }

    static boolean shareable(MemorySegment a, MemorySegment b) {
        return CpuThreads.shareable(a, b);
    }

    static boolean shareable(MemorySegment a, MemorySegment b, MemorySegment c) {
        return CpuThreads.shareable(a, b, c);
    }

    private static void split(Kernel k, MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long count) {
        if (count <= (long) CHUNK * GRAIN || !shareable(src, dst)) {
            k.run(src, srcOff, dst, dstOff, count);
            return;
        }
        long chunks = (count + CHUNK - 1) / CHUNK;
        if (chunks > Integer.MAX_VALUE) throw new IllegalArgumentException("count too large: " + count);
        CpuThreads.parallelFor((int) chunks, GRAIN, (from, to) -> {
            long a = (long) from * CHUNK;
            long b = Math.min(count, (long) to * CHUNK);
            k.run(src, srcOff + a, dst, dstOff + a, b - a);
        });
    }

    static void checkRange(String what, MemorySegment seg, long offElems, long count, int elemBytes) {
        if (offElems < 0 || count < 0) {
            throw new IllegalArgumentException(what + ": negative offset or count (offset " + offElems + ", count " + count + ")");
        }
        long end = (offElems + count) * elemBytes;
        if (end > seg.byteSize()) {
            throw new IndexOutOfBoundsException(what + ": elements [" + offElems + ", " + (offElems + count) + ") of "
                    + elemBytes + " bytes exceed a segment of " + seg.byteSize() + " bytes");
        }
    }

    // ---------------------------------------------------------------- scalar element conversions

    /** F32 bits to BF16 bits, round to nearest even; NaN becomes a quiet NaN. */
    public static short floatToBf16(float f) {
        int b = Float.floatToRawIntBits(f);
        if ((b & 0x7FFF_FFFF) > 0x7F80_0000) return (short) ((b >>> 16) | 0x0040);
        return (short) ((b + 0x7FFF + ((b >>> 16) & 1)) >>> 16);
    }

    /** BF16 bits to F32, exact. */
    public static float bf16ToFloat(short h) {
        return Float.intBitsToFloat(h << 16);
    }

    // ---------------------------------------------------------------- BF16

    /** dst[dstOff + i] = bf16(src[srcOff + i]) for i in [0, count). */
    public static void f32ToBf16(MemorySegment src, long srcOffElems, MemorySegment dst, long dstOffElems, long count) {
        checkRange("f32ToBf16 src", src, srcOffElems, count, 4);
        checkRange("f32ToBf16 dst", dst, dstOffElems, count, 2);
        split(CpuHalf::f32ToBf16Range, src, srcOffElems, dst, dstOffElems, count);
    }

    private static void f32ToBf16Range(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long count) {
        long s = srcOff * 4, d = dstOff * 2;
        long i = 0;
        long vend = count - count % FL;
        for (; i < vend; i += FL) {
            IntVector b = FloatVector.fromMemorySegment(FS, src, s + i * 4, LE).reinterpretAsInts();
            VectorMask<Integer> nan = b.and(0x7FFF_FFFF).compare(VectorOperators.GT, 0x7F80_0000);
            IntVector hi = b.lanewise(VectorOperators.LSHR, 16);
            IntVector rounded = b.add(hi.and(1)).add(0x7FFF).lanewise(VectorOperators.LSHR, 16);
            IntVector r = rounded.blend(hi.or(0x0040), nan);
            ((ShortVector) r.convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(dst, d + i * 2, LE);
        }
        for (; i < count; i++) {
            dst.set(I16, d + i * 2, floatToBf16(src.get(F32, s + i * 4)));
        }
    }

    /** dst[dstOff + i] = f32(src[srcOff + i]) for i in [0, count), exact. */
    public static void bf16ToF32(MemorySegment src, long srcOffElems, MemorySegment dst, long dstOffElems, long count) {
        checkRange("bf16ToF32 src", src, srcOffElems, count, 2);
        checkRange("bf16ToF32 dst", dst, dstOffElems, count, 4);
        split(CpuHalf::bf16ToF32Range, src, srcOffElems, dst, dstOffElems, count);
    }

    private static void bf16ToF32Range(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long count) {
        long s = srcOff * 2, d = dstOff * 4;
        long i = 0;
        long vend = count - count % FL;
        for (; i < vend; i += FL) {
            ShortVector h = ShortVector.fromMemorySegment(SS, src, s + i * 2, LE);
            IntVector b = ((IntVector) h.convertShape(VectorOperators.S2I, IS, 0)).lanewise(VectorOperators.LSHL, 16);
            b.reinterpretAsFloats().intoMemorySegment(dst, d + i * 4, LE);
        }
        for (; i < count; i++) {
            dst.set(F32, d + i * 4, bf16ToFloat(src.get(I16, s + i * 2)));
        }
    }

    // ---------------------------------------------------------------- F16

    /** dst[dstOff + i] = Float.floatToFloat16(src[srcOff + i]) for i in [0, count). */
    public static void f32ToF16(MemorySegment src, long srcOffElems, MemorySegment dst, long dstOffElems, long count) {
        checkRange("f32ToF16 src", src, srcOffElems, count, 4);
        checkRange("f32ToF16 dst", dst, dstOffElems, count, 2);
        split(CpuHalf::f32ToF16Range, src, srcOffElems, dst, dstOffElems, count);
    }

    private static void f32ToF16Range(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long count) {
        long s = srcOff * 4, d = dstOff * 2;
        for (long i = 0; i < count; i++) {
            dst.set(I16, d + i * 2, Float.floatToFloat16(src.get(F32, s + i * 4)));
        }
    }

    /** dst[dstOff + i] = Float.float16ToFloat(src[srcOff + i]) for i in [0, count), exact. */
    public static void f16ToF32(MemorySegment src, long srcOffElems, MemorySegment dst, long dstOffElems, long count) {
        checkRange("f16ToF32 src", src, srcOffElems, count, 2);
        checkRange("f16ToF32 dst", dst, dstOffElems, count, 4);
        split(CpuHalf::f16ToF32Range, src, srcOffElems, dst, dstOffElems, count);
    }

    private static void f16ToF32Range(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long count) {
        long s = srcOff * 2, d = dstOff * 4;
        for (long i = 0; i < count; i++) {
            dst.set(F32, d + i * 4, Float.float16ToFloat(src.get(I16, s + i * 2)));
        }
    }
}
