package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.CpuHalf;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.function.LongToIntFunction;

/**
 * Writes and checks small-integer test values in any of the engine's dtypes. Values stay within [-100, 100],
 * so they and their sums over 4 ranks are exact in every dtype (BF16 holds integers up to 256 exactly, I8 up to
 * 127) and a mismatch is a real error, never rounding.
 */
final class MpiTestValues {
    private MpiTestValues() {
    }

    static final DType[] DTYPES = {DType.F32, DType.BF16, DType.F16, DType.I32, DType.I8};

    /** A new contiguous tensor of {@code n} elements whose element i is {@code value(i)}. */
    static Tensor filled(DType dtype, long n, LongToIntFunction value) {
        if (n > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("test tensors are one-dimensional: " + n);
        }
        Tensor t = Tensor.empty(dtype, (int) n);
        MemorySegment s = t.segment();
        for (long i = 0; i < n; i++) {
            int v = value.applyAsInt(i);
            switch (dtype) {
                case F32 -> s.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, v);
                case BF16 -> s.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, CpuHalf.floatToBf16(v));
                case F16 -> s.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Float.floatToFloat16(v));
                case I32 -> s.setAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i, v);
                case I8 -> s.set(ValueLayout.JAVA_BYTE, i, (byte) v);
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return t;
    }

    /** Throws naming {@code what}, the first wrong index, and both values, unless element i of t is {@code expected(i)}. */
    static void expect(String what, Tensor t, LongToIntFunction expected) {
        float[] got = t.toFloatArray();
        for (int i = 0; i < got.length; i++) {
            int e = expected.applyAsInt(i);
            if (got[i] != e) {
                throw new IllegalStateException(what + ": element " + i + " of " + got.length + " is " + got[i]
                        + ", expected " + e);
            }
        }
    }
}
