package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.function.LongToDoubleFunction;

/**
 * Reads and writes single elements of a contiguous host tensor of any plain dtype as doubles, for the
 * collective checks (which must compare every dtype the same way, without the tensor library's F32
 * conversion kernels in the path under test).
 */
final class TypedValues {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private TypedValues() {}

    static Tensor filled(DType dtype, long n, LongToDoubleFunction value) {
        Tensor t = Tensor.empty(dtype, Math.toIntExact(n));
        for (long i = 0; i < n; i++) set(t, i, value.applyAsDouble(i));
        return t;
    }

    static void set(Tensor t, long i, double v) {
        MemorySegment s = t.segment();
        long e = t.offset() + i;
        switch (t.dtype()) {
            case F32 -> s.setAtIndex(F32, e, (float) v);
            case BF16 -> s.setAtIndex(I16, e, toBf16((float) v));
            case F16 -> s.setAtIndex(I16, e, Float.floatToFloat16((float) v));
            case I32 -> s.setAtIndex(I32, e, (int) v);
            case I8 -> s.set(ValueLayout.JAVA_BYTE, e, (byte) v);
            default -> throw new IllegalArgumentException("no element access for " + t.dtype());
        }
    }

    static double get(Tensor t, long i) {
        MemorySegment s = t.segment();
        long e = t.offset() + i;
        return switch (t.dtype()) {
            case F32 -> s.getAtIndex(F32, e);
            case BF16 -> Float.intBitsToFloat(s.getAtIndex(I16, e) << 16);
            case F16 -> Float.float16ToFloat(s.getAtIndex(I16, e));
            case I32 -> s.getAtIndex(I32, e);
            case I8 -> s.get(ValueLayout.JAVA_BYTE, e);
            default -> throw new IllegalArgumentException("no element access for " + t.dtype());
        };
    }

    /** The value {@code v} takes once stored in {@code dtype} (round to nearest even, integer wrap). */
    static double rounded(DType dtype, double v) {
        return switch (dtype) {
            case F32 -> (float) v;
            case BF16 -> Float.intBitsToFloat(toBf16((float) v) << 16);
            case F16 -> Float.float16ToFloat(Float.floatToFloat16((float) v));
            case I32 -> (int) (long) v;
            case I8 -> (byte) (long) v;
            default -> throw new IllegalArgumentException("no element access for " + dtype);
        };
    }

    /** A 64-bit hash of the raw bytes of {@code t}: equal hashes on every rank mean bit-identical results. */
    static long bitsHash(Tensor t) {
        MemorySegment s = t.segment();
        long bytes = t.numel() * t.dtype().elementBytes();
        long base = t.offset() * t.dtype().elementBytes();
        long h = 0xcbf29ce484222325L;
        for (long b = 0; b < bytes; b++) {
            h ^= s.get(ValueLayout.JAVA_BYTE, base + b) & 0xff;
            h *= 0x100000001b3L;
        }
        return h;
    }

    private static short toBf16(float f) {
        int b = Float.floatToRawIntBits(f);
        if ((b & 0x7FFF_FFFF) > 0x7F80_0000) return (short) ((b >>> 16) | 0x0040);
        return (short) ((b + 0x7FFF + ((b >>> 16) & 1)) >>> 16);
    }
}
