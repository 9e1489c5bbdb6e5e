package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.DType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;

/**
 * Element-wise reduction of the ranks' buffers, in rank order (rank 0, then 1, ...), so the result is
 * one set of bits that every rank then copies. BF16 and F16 are reduced in float and rounded once at the
 * end (to nearest even). Integer sums wrap in two's complement (I32 modulo 2^32, I8 modulo 2^8), as
 * Open MPI's and NCCL's integer sums do; nothing is clamped.
 */
final class LocalReduce {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfByte I8 = ValueLayout.JAVA_BYTE;

    private LocalReduce() {}

    /** A new segment (from {@code arena}) holding the reduction of the first {@code n} elements of every input. */
    static MemorySegment reduce(List<MemorySegment> inputs, DType dtype, ReduceOp op, long n, Arena arena) {
        MemorySegment out = arena.allocate(Math.max(1, n * dtype.elementBytes()), 64);
        boolean sum = op == ReduceOp.SUM;
        int ranks = inputs.size();
        switch (dtype) {
            case F32 -> {
                for (long i = 0; i < n; i++) {
                    float a = inputs.get(0).getAtIndex(F32, i);
                    for (int r = 1; r < ranks; r++) {
                        float b = inputs.get(r).getAtIndex(F32, i);
                        a = sum ? a + b : Math.max(a, b);
                    }
                    out.setAtIndex(F32, i, a);
                }
            }
            case BF16, F16 -> {
                boolean bf16 = dtype == DType.BF16;
                for (long i = 0; i < n; i++) {
                    float a = half(bf16, inputs.get(0).getAtIndex(I16, i));
                    for (int r = 1; r < ranks; r++) {
                        float b = half(bf16, inputs.get(r).getAtIndex(I16, i));
                        a = sum ? a + b : Math.max(a, b);
                    }
                    out.setAtIndex(I16, i, bf16 ? toBf16(a) : Float.floatToFloat16(a));
                }
            }
            case I32 -> {
                for (long i = 0; i < n; i++) {
                    int a = inputs.get(0).getAtIndex(I32, i);
                    for (int r = 1; r < ranks; r++) {
                        int b = inputs.get(r).getAtIndex(I32, i);
                        a = sum ? a + b : Math.max(a, b);
                    }
                    out.setAtIndex(I32, i, a);
                }
            }
            case I8 -> {
                for (long i = 0; i < n; i++) {
                    byte a = inputs.get(0).get(I8, i);
                    for (int r = 1; r < ranks; r++) {
                        byte b = inputs.get(r).get(I8, i);
                        a = sum ? (byte) (a + b) : (byte) Math.max(a, b);
                    }
                    out.set(I8, i, a);
                }
            }
            default -> throw new IllegalArgumentException("no reduction for " + dtype);
        }
        return out;
    }

    private static float half(boolean bf16, short bits) {
        return bf16 ? Float.intBitsToFloat(bits << 16) : Float.float16ToFloat(bits);
    }

    /** Round to nearest even; a NaN stays a (quiet) NaN. */
    private static short toBf16(float f) {
        int b = Float.floatToRawIntBits(f);
        if ((b & 0x7FFF_FFFF) > 0x7F80_0000) return (short) ((b >>> 16) | 0x0040);
        return (short) ((b + 0x7FFF + ((b >>> 16) & 1)) >>> 16);
    }
}
