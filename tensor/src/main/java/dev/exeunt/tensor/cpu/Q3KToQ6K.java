package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * llama.cpp's Q3_K super-blocks rewritten as Q6_K super-blocks holding exactly the same weights, so Q3_K
 * tensors (most of a Q3_K_S / Q3_K_M / Q3_K_L file, some of a Q2_K one) run on the Q6_K kernels. Both types
 * give a weight as {@code (d * sc) * q} with one F16 {@code d} per 256 weights and one scale per 16: Q3_K's
 * 6-bit scale less 32 fits Q6_K's int8 scale, and its 3-bit {@code q} in [-4, 3] is Q6_K's 6-bit value less
 * 32. The float operations are the same, so every dequantized weight is bit for bit Q3_K's; the cost is 210
 * bytes per super-block instead of 110.
 *
 * <p>Q3_K's 110 bytes (ggml's {@code block_q3_K}): {@code hmask[32]}, {@code qs[64]}, 12 bytes of scales, F16
 * {@code d}. Weight i (i = 128h + 32j + l) has low bits {@code (qs[32h + l] >> 2j) & 3}, minus 4 unless bit
 * i / 32 of {@code hmask[l]} is set; scale i / 16 takes its low 4 bits from byte (i / 16) % 8 of the scales
 * (low nibble for the first eight, high for the rest) and its high 2 bits from byte 8 + (i / 16) % 4, bits
 * 2 ((i / 16) / 4). Q6_K's layout is {@link CpuKQuant}'s.
 */
public final class Q3KToQ6K {
    private Q3KToQ6K() {}

    /** Bytes per Q3_K super-block. */
    public static final int Q3_K_BYTES = 110;
    /** Bytes per Q6_K super-block. */
    public static final int Q6_K_BYTES = 210;

    /** Rewrites {@code blocks} Q3_K super-blocks from {@code src + srcByteOff} as Q6_K super-blocks at {@code dst + dstByteOff}. */
    public static void transcode(MemorySegment src, long srcByteOff, MemorySegment dst, long dstByteOff, long blocks) {
        if (blocks < 0) throw new IllegalArgumentException("negative block count " + blocks);
        if (srcByteOff < 0 || srcByteOff + blocks * Q3_K_BYTES > src.byteSize()) {
            throw new IndexOutOfBoundsException("Q3_K source: " + blocks + " super-blocks from byte " + srcByteOff + " exceed " + src.byteSize() + " bytes");
        }
        if (dstByteOff < 0 || dstByteOff + blocks * Q6_K_BYTES > dst.byteSize()) {
            throw new IndexOutOfBoundsException("Q6_K destination: " + blocks + " super-blocks from byte " + dstByteOff + " exceed " + dst.byteSize() + " bytes");
        }
        if (blocks > Integer.MAX_VALUE) throw new IllegalArgumentException("too many super-blocks: " + blocks);
        // Split over the pool: a 3 GB Q3_K_M file is 27 M super-blocks (one thread rewrote ~95 MB of them a second).
        CpuThreads.RangeBody body = (from, to) -> {
            byte[] in = new byte[Q3_K_BYTES], out = new byte[Q6_K_BYTES];
            for (long b = from; b < to; b++) {
                MemorySegment.copy(src, ValueLayout.JAVA_BYTE, srcByteOff + b * Q3_K_BYTES, in, 0, Q3_K_BYTES);
                block(in, out);
                MemorySegment.copy(out, 0, dst, ValueLayout.JAVA_BYTE, dstByteOff + b * Q6_K_BYTES, Q6_K_BYTES);
            }
        };
        if (CpuThreads.shareable(src, dst)) CpuThreads.parallelFor((int) blocks, 1024, body);
        else body.run(0, (int) blocks);
    }

    /** One super-block. */
    static void block(byte[] in, byte[] out) {
        final int hmask = 0, qs = 32, scales = 96, d = 108;         // Q3_K
        final int ql = 0, qh = 128, sc6 = 192, d6 = 208;           // Q6_K
        java.util.Arrays.fill(out, (byte) 0);
        for (int s = 0; s < 16; s++) {
            int lo = (in[scales + s % 8] >> (4 * (s / 8))) & 0xF;
            int hi = (in[scales + 8 + s % 4] >> (2 * (s / 4))) & 3;
            out[sc6 + s] = (byte) ((lo | hi << 4) - 32);
        }
        for (int h = 0; h < 2; h++) {
            for (int g = 0; g < 4; g++) {       // weights 128h + 32g + l
                for (int l = 0; l < 32; l++) {
                    int low = (in[qs + 32 * h + l] >> (2 * g)) & 3;
                    int high = (in[hmask + l] >> (4 * h + g)) & 1;
                    int q6 = low + 4 * high + 28;  // low - 4 (unless the hmask bit is set) + 32: in [28, 35]
                    out[ql + 64 * h + 32 * (g & 1) + l] |= (byte) ((q6 & 0xF) << (4 * (g >> 1)));
                    out[qh + 32 * h + l] |= (byte) ((q6 >> 4) << (2 * g));
                }
            }
        }
        out[d6] = in[d];
        out[d6 + 1] = in[d + 1];
    }
}
