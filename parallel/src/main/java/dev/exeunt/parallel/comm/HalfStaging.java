package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.cpu.CpuHalf;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * BF16/F16 to and from the F32 staging buffer that {@link MpiProcessGroup} reduces them in. Plain scalar loops
 * on purpose: measured here on 1M elements, CpuHalf's Vector API kernels took 60-200 ms warm (and over a second
 * for their first calls) against 1-20 ms for these loops, which the JIT compiles to tight code; on a collective's
 * path that difference is the whole cost of the operation. Rounding is CpuHalf's (round to nearest even).
 */
final class HalfStaging {
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private HalfStaging() {
    }

    /** {@code dst[i] = float(src[srcOffset + i])} for i in [0, n), exact. */
    static void widen(MemorySegment src, long srcOffset, MemorySegment dst, long n, boolean bf16) {
        if (bf16) {
            for (long i = 0; i < n; i++) {
                dst.setAtIndex(F32, i, CpuHalf.bf16ToFloat(src.getAtIndex(I16, srcOffset + i)));
            }
        } else {
            for (long i = 0; i < n; i++) {
                dst.setAtIndex(F32, i, Float.float16ToFloat(src.getAtIndex(I16, srcOffset + i)));
            }
        }
    }

    /** {@code dst[dstOffset + i] = half(src[i])} for i in [0, n), rounded to nearest even. */
    static void narrow(MemorySegment src, MemorySegment dst, long dstOffset, long n, boolean bf16) {
        if (bf16) {
            for (long i = 0; i < n; i++) {
                dst.setAtIndex(I16, dstOffset + i, CpuHalf.floatToBf16(src.getAtIndex(F32, i)));
            }
        } else {
            for (long i = 0; i < n; i++) {
                dst.setAtIndex(I16, dstOffset + i, Float.floatToFloat16(src.getAtIndex(F32, i)));
            }
        }
    }
}
