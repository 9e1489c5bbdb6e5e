package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuHalf.F32;
import static dev.exeunt.tensor.cpu.CpuHalf.FS;
import static dev.exeunt.tensor.cpu.CpuHalf.I16;
import static dev.exeunt.tensor.cpu.CpuHalf.LE;

import dev.exeunt.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * llama.cpp's k-quant weight types Q4_K, Q5_K and Q6_K over native segments: dequantization to F32 and
 * products {@code Y[t] = W X[t]} with [out, in] weights whose rows are consecutive super-blocks. F32 data is
 * addressed by element offsets, quantized data by byte offsets. These types are read (from GGUF files), never
 * produced here.
 *
 * <h2>Layouts</h2>
 * Byte for byte ggml's ({@code block_q4_K} etc. in ggml-common.h, decoded as {@code dequantize_row_q4_K} etc. in
 * ggml-quants.c do): super-blocks of {@value #QK_K} weights.
 * <ul>
 *   <li><b>Q4_K</b>, 144 bytes: F16 {@code d}, F16 {@code dmin}, 12 bytes packing eight 6-bit scales and eight
 *       6-bit mins (one pair per 32 weights), 128 bytes of nibbles. Weights 64k..64k+31 are the low nibbles of
 *       bytes 32k..32k+31, weights 64k+32..64k+63 their high nibbles; {@code x = (d * sc) * q - dmin * m}.</li>
 *   <li><b>Q5_K</b>, 176 bytes: as Q4_K with 32 bytes {@code qh} before the nibbles: bit 2k of {@code qh[l]} is
 *       the fifth bit of weight 64k+l, bit 2k+1 that of weight 64k+32+l.</li>
 *   <li><b>Q6_K</b>, 210 bytes: 128 bytes {@code ql} (low 4 bits), 64 bytes {@code qh} (high 2 bits), 16 int8
 *       scales (one per 16 weights), F16 {@code d}; in each half of 128 weights {@code x = (d * sc) * (q - 32)}.</li>
 * </ul>
 * The arithmetic is the reference's, operation for operation (products rounded to float, no fused multiply-add),
 * so the F32 values equal llama.cpp's and gguf-py's exactly.
 *
 * <h2>Products</h2>
 * Four W rows at a time are dequantized (vectorized) into a per-thread buffer and dotted with every token's X row,
 * each row with one vector accumulator in index order, so a token's result is bit for bit the same alone or in a batch (the decode
 * path verifies speculative drafts relying on that) and equals a plain F32 dot of the dequantized row.
 */
public final class CpuKQuant {
    private CpuKQuant() {}

    /** Weights per super-block. */
    public static final int QK_K = 256;

    // the byte loads and their widening, as Q8_0 / Q4_0's kernels do them
    private static final int FL = FS.length();
    private static final int BL = CpuQuant.BL;
    private static final int PARTS = CpuQuant.PARTS;
    private static final VectorSpecies<Integer> IS = CpuQuant.IS;
    private static final VectorSpecies<Byte> BS = CpuQuant.BS;

    /** W rows dequantized together and dotted with each X row sharing its loads. */
    private static final int ROWS = 4;
    /** Weights per thread at least before work is split. */
    private static final int MIN_WORK = 1 << 16;

    // ================================================================= sizes and checks

    /** Bytes per super-block of a k-quant type. */
    public static int blockBytes(DType t) {
        if (!t.isKQuant()) throw new IllegalArgumentException(t + " is not a k-quant type (Q4_K, Q5_K, Q6_K)");
        return (int) t.byteSize(QK_K);
    }

    /** Bytes that {@code count} weights (a multiple of 256) take as type t. */
    public static long bytes(DType t, long count) {
        if (count < 0 || count % QK_K != 0) {
            throw new IllegalArgumentException(t + ": the element count must be a non-negative multiple of " + QK_K
                    + " (one super-block), got " + count);
        }
        return count / QK_K * blockBytes(t);
    }

    private static void checkBytes(String what, MemorySegment seg, long byteOff, long bytes) {
        if (byteOff < 0) throw new IllegalArgumentException(what + ": negative byte offset " + byteOff);
        if (byteOff + bytes > seg.byteSize()) {
            throw new IndexOutOfBoundsException(what + ": bytes [" + byteOff + ", " + (byteOff + bytes)
                    + ") exceed a segment of " + seg.byteSize() + " bytes");
        }
    }

    // ================================================================= dequantize

    /** Dequantizes {@code count} weights (a multiple of 256) of type t at {@code src + srcByteOff} into {@code dst[dstOff..]}. */
    public static void dequantize(DType t, MemorySegment src, long srcByteOff, MemorySegment dst, long dstOff, long count) {
        long bytes = bytes(t, count);
        checkBytes("dequantize " + t + " src", src, srcByteOff, bytes);
        CpuHalf.checkRange("dequantize " + t + " dst", dst, dstOff, count, 4);
        long blocks = count / QK_K;
        if (blocks > Integer.MAX_VALUE) throw new IllegalArgumentException("too many super-blocks: " + blocks);
        int bb = blockBytes(t);
        CpuThreads.RangeBody body = (from, to) -> {
            for (long b = from; b < to; b++) block(t, src, srcByteOff + b * bb, dst, (dstOff + b * QK_K) * 4);
        };
        if (CpuHalf.shareable(src, dst)) CpuThreads.parallelFor((int) blocks, MIN_WORK / QK_K, body);
        else body.run(0, (int) blocks);
    }

    /** One super-block of type t at byte s of src to 256 floats at byte o of dst. */
    private static void block(DType t, MemorySegment src, long s, MemorySegment dst, long o) {
        switch (t) {
            case Q4_K -> blockQ4_K(src, s, dst, o);
            case Q5_K -> blockQ5_K(src, s, dst, o);
            case Q6_K -> blockQ6_K(src, s, dst, o);
            default -> throw new IllegalArgumentException(t + " is not a k-quant type");
        }
    }

    private static int ub(MemorySegment seg, long off) {
        return seg.get(ValueLayout.JAVA_BYTE, off) & 0xFF;
    }

    private static float f16(MemorySegment seg, long off) {
        return Float.float16ToFloat(seg.get(I16, off));
    }

    /** ggml's get_scale_min_k4: the 6-bit scale j (0..7) of the 12 packed bytes at sc. */
    private static int scaleK4(MemorySegment seg, long sc, int j) {
        return j < 4 ? ub(seg, sc + j) & 63 : (ub(seg, sc + j + 4) & 0xF) | ((ub(seg, sc + j - 4) >> 6) << 4);
    }

    /** ggml's get_scale_min_k4: the 6-bit min j (0..7) of the 12 packed bytes at sc. */
    private static int minK4(MemorySegment seg, long sc, int j) {
        return j < 4 ? ub(seg, sc + j + 4) & 63 : (ub(seg, sc + j + 4) >> 4) | ((ub(seg, sc + j) >> 6) << 4);
    }

    private static FloatVector toFloat(IntVector v) {
        return (FloatVector) v.convert(VectorOperators.I2F, 0);
    }

    private static void blockQ4_K(MemorySegment src, long s, MemorySegment dst, long o) {
        float d = f16(src, s), dmin = f16(src, s + 2);
        long sc = s + 4, qs = s + 16;
        for (int k = 0; k < 4; k++) {
            FloatVector d1 = FloatVector.broadcast(FS, d * scaleK4(src, sc, 2 * k));
            FloatVector m1 = FloatVector.broadcast(FS, dmin * minK4(src, sc, 2 * k));
            FloatVector d2 = FloatVector.broadcast(FS, d * scaleK4(src, sc, 2 * k + 1));
            FloatVector m2 = FloatVector.broadcast(FS, dmin * minK4(src, sc, 2 * k + 1));
            long q = qs + 32L * k, out = o + 64L * k * 4;
            for (int c = 0; c < 32; c += BL) {
                ByteVector b = ByteVector.fromMemorySegment(BS, src, q + c, LE);
                for (int p = 0; p < PARTS; p++) {
                    IntVector v = (IntVector) b.convertShape(VectorOperators.B2I, IS, p);
                    long e = out + (c + p * FL) * 4L;
                    toFloat(v.and(0xF)).mul(d1).sub(m1).intoMemorySegment(dst, e, LE);
                    toFloat(v.lanewise(VectorOperators.ASHR, 4).and(0xF)).mul(d2).sub(m2).intoMemorySegment(dst, e + 32 * 4, LE);
                }
            }
        }
    }

    private static void blockQ5_K(MemorySegment src, long s, MemorySegment dst, long o) {
        float d = f16(src, s), dmin = f16(src, s + 2);
        long sc = s + 4, qh = s + 16, qs = s + 48;
        for (int k = 0; k < 4; k++) {
            FloatVector d1 = FloatVector.broadcast(FS, d * scaleK4(src, sc, 2 * k));
            FloatVector m1 = FloatVector.broadcast(FS, dmin * minK4(src, sc, 2 * k));
            FloatVector d2 = FloatVector.broadcast(FS, d * scaleK4(src, sc, 2 * k + 1));
            FloatVector m2 = FloatVector.broadcast(FS, dmin * minK4(src, sc, 2 * k + 1));
            long q = qs + 32L * k, out = o + 64L * k * 4;
            for (int c = 0; c < 32; c += BL) {
                ByteVector b = ByteVector.fromMemorySegment(BS, src, q + c, LE);
                ByteVector hb = ByteVector.fromMemorySegment(BS, src, qh + c, LE);
                for (int p = 0; p < PARTS; p++) {
                    IntVector v = (IntVector) b.convertShape(VectorOperators.B2I, IS, p);
                    IntVector h = (IntVector) hb.convertShape(VectorOperators.B2I, IS, p);
                    IntVector lo = v.and(0xF).or(h.lanewise(VectorOperators.ASHR, 2 * k).and(1).lanewise(VectorOperators.LSHL, 4));
                    IntVector hi = v.lanewise(VectorOperators.ASHR, 4).and(0xF)
                            .or(h.lanewise(VectorOperators.ASHR, 2 * k + 1).and(1).lanewise(VectorOperators.LSHL, 4));
                    long e = out + (c + p * FL) * 4L;
                    toFloat(lo).mul(d1).sub(m1).intoMemorySegment(dst, e, LE);
                    toFloat(hi).mul(d2).sub(m2).intoMemorySegment(dst, e + 32 * 4, LE);
                }
            }
        }
    }

    private static void blockQ6_K(MemorySegment src, long s, MemorySegment dst, long o) {
        float d = f16(src, s + 208);
        for (int half = 0; half < 2; half++) {
            long ql = s + 64L * half, qh = s + 128 + 32L * half, sc = s + 192 + 8L * half, out = o + 128L * half * 4;
            for (int c = 0; c < 32; c += BL) {
                ByteVector a = ByteVector.fromMemorySegment(BS, src, ql + c, LE);
                ByteVector b = ByteVector.fromMemorySegment(BS, src, ql + 32 + c, LE);
                ByteVector hb = ByteVector.fromMemorySegment(BS, src, qh + c, LE);
                for (int p = 0; p < PARTS; p++) {
                    int l = c + p * FL, is = l / 16; // a part never straddles two 16-weight scale groups (FL <= 16)
                    IntVector va = (IntVector) a.convertShape(VectorOperators.B2I, IS, p);
                    IntVector vb = (IntVector) b.convertShape(VectorOperators.B2I, IS, p);
                    IntVector h = (IntVector) hb.convertShape(VectorOperators.B2I, IS, p);
                    IntVector q1 = va.and(0xF).or(h.and(3).lanewise(VectorOperators.LSHL, 4)).sub(32);
                    IntVector q2 = vb.and(0xF).or(h.lanewise(VectorOperators.ASHR, 2).and(3).lanewise(VectorOperators.LSHL, 4)).sub(32);
                    IntVector q3 = va.lanewise(VectorOperators.ASHR, 4).and(0xF)
                            .or(h.lanewise(VectorOperators.ASHR, 4).and(3).lanewise(VectorOperators.LSHL, 4)).sub(32);
                    IntVector q4 = vb.lanewise(VectorOperators.ASHR, 4).and(0xF)
                            .or(h.lanewise(VectorOperators.ASHR, 6).and(3).lanewise(VectorOperators.LSHL, 4)).sub(32);
                    long e = out + l * 4L;
                    toFloat(q1).mul(d * src.get(ValueLayout.JAVA_BYTE, sc + is)).intoMemorySegment(dst, e, LE);
                    toFloat(q2).mul(d * src.get(ValueLayout.JAVA_BYTE, sc + is + 2)).intoMemorySegment(dst, e + 32 * 4, LE);
                    toFloat(q3).mul(d * src.get(ValueLayout.JAVA_BYTE, sc + is + 4)).intoMemorySegment(dst, e + 64 * 4, LE);
                    toFloat(q4).mul(d * src.get(ValueLayout.JAVA_BYTE, sc + is + 6)).intoMemorySegment(dst, e + 96 * 4, LE);
                }
            }
        }
    }

    // ================================================================= products

    /** Each thread's dequantized rows for {@link #gemm}. */
    private static final ThreadScratch ROWS_BUF = new ThreadScratch();

    /**
     * y[yOff + i] = sum_j W[i][j] x[xOff + j] for i in [0, m): W an m x n matrix of type t (n a multiple of 256)
     * whose rows are consecutive super-blocks from {@code w + wByteOff}.
     */
    public static void gemv(DType t, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff,
                            MemorySegment y, long yOff) {
        gemm(t, 1, m, n, w, wByteOff, x, xOff, n, y, yOff, m);
    }

    /**
     * Y[r][i] = sum_j W[i][j] X[r][j] for r in [0, rows), i in [0, m): X rows {@code ldx} floats apart from
     * {@code x[xOff..]}, Y rows {@code ldy} apart from {@code y[yOff..]}, W as in {@link #gemv}. Each W row is
     * dequantized once and reused for every X row; a Y row's values do not depend on the other X rows.
     */
    public static void gemm(DType t, int rows, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff, int ldx,
                            MemorySegment y, long yOff, int ldy) {
        String what = "linear " + t;
        if (rows < 0 || m < 0) throw new IllegalArgumentException(what + ": negative size (rows " + rows + ", out " + m + ")");
        long rowBytes = bytes(t, n);
        if (rows > 1 && (ldx < n || ldy < m)) { // strides matter only between rows
            throw new IllegalArgumentException(what + ": leading dimensions " + ldx + " / " + ldy + " are below " + n + " / " + m);
        }
        checkBytes(what + " w", w, wByteOff, m * rowBytes);
        if (rows == 0 || m == 0) return;
        CpuHalf.checkRange(what + " x", x, xOff, (long) (rows - 1) * ldx + n, 4);
        CpuHalf.checkRange(what + " y", y, yOff, (long) (rows - 1) * ldy + m, 4);
        if (n == 0) {
            for (int r = 0; r < rows; r++) for (int i = 0; i < m; i++) y.setAtIndex(F32, yOff + (long) r * ldy + i, 0f);
            return;
        }
        int bb = blockBytes(t), nb = n / QK_K, groups = (m + ROWS - 1) / ROWS;
        CpuThreads.RangeBody body = (from, to) -> {
            MemorySegment buf = ROWS_BUF.get((long) ROWS * n * 4);
            for (int g = from; g < to; g++) {
                int i0 = g * ROWS, count = Math.min(ROWS, m - i0);
                long ro = wByteOff + i0 * rowBytes;
                for (int b = 0; b < count * nb; b++) block(t, w, ro + (long) b * bb, buf, (long) b * QK_K * 4);
                for (int r = 0; r < rows; r++) {
                    long xb = (xOff + (long) r * ldx) * 4, yb = (yOff + (long) r * ldy + i0) * 4;
                    if (count == ROWS) CpuQuant.dot4(buf, n, x, xb, y, yb); // the same dot products as Q8_0/Q4_0's
                    else for (int i = 0; i < count; i++) y.set(F32, yb + i * 4L, CpuQuant.dot1(buf, (long) i * n * 4, n, x, xb));
                }
            }
        };
        if (CpuHalf.shareable(w, x, y)) CpuThreads.parallelFor(groups, (int) Math.max(1, MIN_WORK / ((long) ROWS * n * rows)), body);
        else body.run(0, groups);
    }
}
