package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuHalf.F32;
import static dev.exeunt.tensor.cpu.CpuHalf.FS;
import static dev.exeunt.tensor.cpu.CpuHalf.I16;
import static dev.exeunt.tensor.cpu.CpuHalf.LE;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Quantized storage types and the kernels that use them, over native segments. F32 data is little-endian
 * floats addressed by element offsets; quantized data is addressed by byte offsets.
 *
 * <h2>Layouts</h2>
 * Byte for byte the GGUF / ggml ones (llama.cpp's {@code quantize_row_*_ref} and {@code dequantize_row_*}):
 * <ul>
 *   <li><b>Q8_0</b>: blocks of 32 weights, 34 bytes each: an F16 scale {@code d = max|x| / 127}, then 32
 *       int8 {@code q = roundf(x / d)} (half away from zero); {@code x' = q * d}.</li>
 *   <li><b>Q4_0</b>: blocks of 32 weights, 18 bytes each: an F16 scale {@code d = max / -8}, where max is the
 *       first value of largest magnitude (with its sign), then 16 bytes whose low nibbles hold elements 0..15
 *       and high nibbles elements 16..31, {@code q = min(15, (int) (x / d + 8.5))}; {@code x' = (q - 8) * d}.</li>
 *   <li><b>I8 rows</b>: a row-major rows x cols int8 matrix with one F32 scale per row,
 *       {@code scale = max|x| / 127}, {@code q = roundf(x / scale)}; {@code x' = q * scale}.</li>
 * </ul>
 * As in the reference, the quantizer multiplies by {@code 1 / d} computed from the F32 scale (before it is
 * rounded to F16), and a value that does not fit an int converts as x86's {@code cvttss2si} does (to
 * {@code 0x80000000}, whose low byte is 0); that only happens for blocks of subnormal-sized values, whose F16
 * scale is 0 anyway. Inputs holding NaN give unspecified (but memory-safe) results.
 *
 * <h2>Kernels</h2>
 * Quantize / dequantize (split across {@link CpuThreads} when large), GEMV {@code y = W x} with W rows stored
 * as consecutive blocks (decode), and a batched GEMM {@code Y[t] = W X[t]} for a few tokens (prompt processing).
 * Row counts ({@code count}, {@code n}) of Q8_0 / Q4_0 data must be multiples of 32.
 */
public final class CpuQuant {
    private CpuQuant() {}

    /** Weights per Q8_0 / Q4_0 block. */
    public static final int QK = 32;
    /** Bytes per Q8_0 block. */
    public static final int Q8_0_BLOCK_BYTES = 34;
    /** Bytes per Q4_0 block. */
    public static final int Q4_0_BLOCK_BYTES = 18;

    // Float lanes (4, 8 or 16); bytes loaded at once (8 or 16) and how many float vectors they widen to.
    private static final int FL = FS.length();
    static final int BL = Math.max(8, FL);
    static final int PARTS = BL / FL;
    static final VectorSpecies<Integer> IS = FS.withLanes(int.class);
    @SuppressWarnings("unchecked")
    static final VectorSpecies<Byte> BS =
            (VectorSpecies<Byte>) VectorSpecies.of(byte.class, VectorShape.forBitSize(BL * 8));

    /** Rows of W a GEMV / GEMM inner loop handles together. */
    private static final int ROWS = 4;
    /** Weights per thread at least before a GEMV / quantizer is split. */
    private static final int MIN_WORK = 1 << 16;

    // ================================================================= sizes and checks

    /** Bytes that {@code count} weights take as Q8_0 ({@code count / 32 * 34}). */
    public static long bytesQ8_0(long count) {
        checkBlocks("Q8_0", count);
        return count / QK * Q8_0_BLOCK_BYTES;
    }

    /** Bytes that {@code count} weights take as Q4_0 ({@code count / 32 * 18}). */
    public static long bytesQ4_0(long count) {
        checkBlocks("Q4_0", count);
        return count / QK * Q4_0_BLOCK_BYTES;
    }

    private static void checkBlocks(String what, long count) {
        if (count < 0 || count % QK != 0) {
            throw new IllegalArgumentException(what + ": the element count must be a non-negative multiple of " + QK
                    + " (one block), got " + count);
        }
    }

    private static void checkBytes(String what, MemorySegment seg, long byteOff, long bytes) {
        if (byteOff < 0) throw new IllegalArgumentException(what + ": negative byte offset " + byteOff);
        if (byteOff + bytes > seg.byteSize()) {
            throw new IndexOutOfBoundsException(what + ": bytes [" + byteOff + ", " + (byteOff + bytes)
                    + ") exceed a segment of " + seg.byteSize() + " bytes");
        }
    }

    private static void checkF32(String what, MemorySegment seg, long off, long count) {
        CpuHalf.checkRange(what, seg, off, count, 4);
    }

    private static void checkDims(String what, int m, int n) {
        if (m < 0 || n < 0) throw new IllegalArgumentException(what + ": negative size " + m + " x " + n);
    }

    // ================================================================= scalar helpers (reference semantics)

    /** C's float to int conversion as x86 {@code cvttss2si} does it: truncation, 0x80000000 when out of range. */
    static int cvtt(float f) {
        if (!(f >= -0x1p31f && f < 0x1p31f)) return Integer.MIN_VALUE; // also NaN
        return (int) f;
    }

    /** C's {@code roundf}: nearest, halves away from zero. */
    static float roundf(float f) {
        double a = Math.floor(Math.abs((double) f) + 0.5);
        return (float) Math.copySign(a, f);
    }

    private static float f16(MemorySegment seg, long byteOff) {
        return Float.float16ToFloat(seg.get(I16, byteOff));
    }

    /**
     * Runs body over [0, items) on the thread pool when there are enough weights and the segments can be
     * accessed from the pool's threads; else on the caller.
     */
    private static void split(boolean shareable, long items, long weightsPerItem, CpuThreads.RangeBody body) {
        if (items > Integer.MAX_VALUE) throw new IllegalArgumentException("too many blocks: " + items);
        if (!shareable) {
            body.run(0, (int) items);
            return;
        }
        int grain = (int) Math.max(1, MIN_WORK / Math.max(1, weightsPerItem));
        CpuThreads.parallelFor((int) items, grain, body);
    }

    // ================================================================= Q8_0 quantize / dequantize

    /** Quantizes {@code count} floats (a multiple of 32) from {@code src[srcOff..]} into Q8_0 blocks at {@code dst + dstByteOff}. */
    public static void quantizeQ8_0(MemorySegment src, long srcOff, MemorySegment dst, long dstByteOff, long count) {
        long bytes = bytesQ8_0(count);
        checkF32("quantizeQ8_0 src", src, srcOff, count);
        checkBytes("quantizeQ8_0 dst", dst, dstByteOff, bytes);
        split(CpuHalf.shareable(src, dst), count / QK, QK, (from, to) -> {
            for (long b = from; b < to; b++) {
                quantizeBlockQ8_0(src, (srcOff + b * QK) * 4, dst, dstByteOff + b * Q8_0_BLOCK_BYTES);
            }
        });
    }

    private static void quantizeBlockQ8_0(MemorySegment src, long s, MemorySegment dst, long o) {
        float amax = 0f;
        for (int j = 0; j < QK; j++) {
            float a = Math.abs(src.get(F32, s + j * 4L));
            amax = amax > a ? amax : a;
        }
        float d = amax / 127f;
        float id = d != 0f ? 1f / d : 0f;
        dst.set(I16, o, Float.floatToFloat16(d));
        for (int j = 0; j < QK; j++) {
            dst.set(ValueLayout.JAVA_BYTE, o + 2 + j, (byte) cvtt(roundf(src.get(F32, s + j * 4L) * id)));
        }
    }

    /** Dequantizes {@code count} weights (a multiple of 32) of Q8_0 blocks at {@code src + srcByteOff} into {@code dst[dstOff..]}. */
    public static void dequantizeQ8_0(MemorySegment src, long srcByteOff, MemorySegment dst, long dstOff, long count) {
        long bytes = bytesQ8_0(count);
        checkBytes("dequantizeQ8_0 src", src, srcByteOff, bytes);
        checkF32("dequantizeQ8_0 dst", dst, dstOff, count);
        split(CpuHalf.shareable(src, dst), count / QK, QK, (from, to) ->
                dequantBlocksQ8_0(src, srcByteOff + (long) from * Q8_0_BLOCK_BYTES, dst, (dstOff + (long) from * QK) * 4, to - from));
    }

    /** Dequantizes nb consecutive Q8_0 blocks at byte offset s to floats at byte offset d. */
    // The block loops count in int and derive their offsets from the count: with long counters stepping
    // three offsets at once, C2's profiled loop predication trapped and recompiled the method over and over
    // (-Xlog:deoptimization showed hundreds of profile_predicate traps), and a prompt pass ran 4x slower
    // for its first runs.
    private static void dequantBlocksQ8_0(MemorySegment src, long s0, MemorySegment dst, long d0, int nb) {
        for (int b = 0; b < nb; b++) {
            long s = s0 + (long) b * Q8_0_BLOCK_BYTES, d = d0 + (long) b * QK * 4;
            for (int c = 0; c < QK; c += BL) {
                ByteVector q = ByteVector.fromMemorySegment(BS, src, s + 2 + c, LE);
                FloatVector dv = FloatVector.broadcast(FS, f16(src, s)); // after the load: see rowsQ8_0
                for (int p = 0; p < PARTS; p++) {
                    ((FloatVector) q.convertShape(VectorOperators.B2F, FS, p)).mul(dv)
                            .intoMemorySegment(dst, d + (c + p * FL) * 4L, LE);
                }
            }
        }
    }

    // ================================================================= Q4_0 quantize / dequantize

    /** Quantizes {@code count} floats (a multiple of 32) from {@code src[srcOff..]} into Q4_0 blocks at {@code dst + dstByteOff}. */
    public static void quantizeQ4_0(MemorySegment src, long srcOff, MemorySegment dst, long dstByteOff, long count) {
        long bytes = bytesQ4_0(count);
        checkF32("quantizeQ4_0 src", src, srcOff, count);
        checkBytes("quantizeQ4_0 dst", dst, dstByteOff, bytes);
        split(CpuHalf.shareable(src, dst), count / QK, QK, (from, to) -> {
            for (long b = from; b < to; b++) {
                quantizeBlockQ4_0(src, (srcOff + b * QK) * 4, dst, dstByteOff + b * Q4_0_BLOCK_BYTES);
            }
        });
    }

    private static void quantizeBlockQ4_0(MemorySegment src, long s, MemorySegment dst, long o) {
        float amax = 0f, max = 0f;
        for (int j = 0; j < QK; j++) {
            float v = src.get(F32, s + j * 4L);
            if (amax < Math.abs(v)) {
                amax = Math.abs(v);
                max = v;
            }
        }
        float d = max / -8f;
        float id = d != 0f ? 1f / d : 0f;
        dst.set(I16, o, Float.floatToFloat16(d));
        for (int j = 0; j < QK / 2; j++) {
            float x0 = src.get(F32, s + j * 4L) * id;
            float x1 = src.get(F32, s + (QK / 2 + j) * 4L) * id;
            int q0 = Math.min(15, (byte) cvtt(x0 + 8.5f)) & 0xFF;
            int q1 = Math.min(15, (byte) cvtt(x1 + 8.5f)) & 0xFF;
            dst.set(ValueLayout.JAVA_BYTE, o + 2 + j, (byte) (q0 | (q1 << 4)));
        }
    }

    /** Dequantizes {@code count} weights (a multiple of 32) of Q4_0 blocks at {@code src + srcByteOff} into {@code dst[dstOff..]}. */
    public static void dequantizeQ4_0(MemorySegment src, long srcByteOff, MemorySegment dst, long dstOff, long count) {
        long bytes = bytesQ4_0(count);
        checkBytes("dequantizeQ4_0 src", src, srcByteOff, bytes);
        checkF32("dequantizeQ4_0 dst", dst, dstOff, count);
        split(CpuHalf.shareable(src, dst), count / QK, QK, (from, to) ->
                dequantBlocksQ4_0(src, srcByteOff + (long) from * Q4_0_BLOCK_BYTES, dst, (dstOff + (long) from * QK) * 4, to - from));
    }

    private static void dequantBlocksQ4_0(MemorySegment src, long s0, MemorySegment dst, long d0, int nb) {
        for (int b = 0; b < nb; b++) {
            long s = s0 + (long) b * Q4_0_BLOCK_BYTES, d = d0 + (long) b * QK * 4;
            for (int c = 0; c < QK / 2; c += BL) {
                ByteVector q = ByteVector.fromMemorySegment(BS, src, s + 2 + c, LE);
                FloatVector dv = FloatVector.broadcast(FS, f16(src, s)); // after the load: see rowsQ8_0
                ByteVector lo = q.and((byte) 0x0F).sub((byte) 8);
                ByteVector hi = q.lanewise(VectorOperators.LSHR, 4).sub((byte) 8);
                for (int p = 0; p < PARTS; p++) {
                    ((FloatVector) lo.convertShape(VectorOperators.B2F, FS, p)).mul(dv)
                            .intoMemorySegment(dst, d + (c + p * FL) * 4L, LE);
                    ((FloatVector) hi.convertShape(VectorOperators.B2F, FS, p)).mul(dv)
                            .intoMemorySegment(dst, d + (QK / 2 + c + p * FL) * 4L, LE);
                }
            }
        }
    }

    // ================================================================= I8 rows with an F32 scale per row

    /**
     * Quantizes a row-major {@code rows x cols} F32 matrix at {@code src[srcOff..]} to int8 at
     * {@code dst + dstByteOff} (row r at {@code dstByteOff + r * cols}) and one F32 scale per row at
     * {@code scales[scalesOff + r]}.
     */
    public static void quantizeI8Rows(MemorySegment src, long srcOff, MemorySegment dst, long dstByteOff,
                                      MemorySegment scales, long scalesOff, int rows, int cols) {
        checkDims("quantizeI8Rows", rows, cols);
        checkF32("quantizeI8Rows src", src, srcOff, (long) rows * cols);
        checkBytes("quantizeI8Rows dst", dst, dstByteOff, (long) rows * cols);
        checkF32("quantizeI8Rows scales", scales, scalesOff, rows);
        split(CpuHalf.shareable(src, dst, scales), rows, cols, (from, to) -> {
            for (int r = from; r < to; r++) {
                long s = (srcOff + (long) r * cols) * 4;
                long o = dstByteOff + (long) r * cols;
                float amax = 0f;
                for (int j = 0; j < cols; j++) {
                    float a = Math.abs(src.get(F32, s + j * 4L));
                    amax = amax > a ? amax : a;
                }
                float d = amax / 127f;
                float id = d != 0f ? 1f / d : 0f;
                scales.set(F32, (scalesOff + r) * 4, d);
                for (int j = 0; j < cols; j++) {
                    dst.set(ValueLayout.JAVA_BYTE, o + j, (byte) cvtt(roundf(src.get(F32, s + j * 4L) * id)));
                }
            }
        });
    }

    /** Dequantizes I8 rows (see {@link #quantizeI8Rows}) into a row-major F32 matrix at {@code dst[dstOff..]}. */
    public static void dequantizeI8Rows(MemorySegment src, long srcByteOff, MemorySegment scales, long scalesOff,
                                        MemorySegment dst, long dstOff, int rows, int cols) {
        checkDims("dequantizeI8Rows", rows, cols);
        checkBytes("dequantizeI8Rows src", src, srcByteOff, (long) rows * cols);
        checkF32("dequantizeI8Rows scales", scales, scalesOff, rows);
        checkF32("dequantizeI8Rows dst", dst, dstOff, (long) rows * cols);
        split(CpuHalf.shareable(src, dst, scales), rows, cols, (from, to) -> {
            for (int r = from; r < to; r++) {
                long s = srcByteOff + (long) r * cols;
                long d = (dstOff + (long) r * cols) * 4;
                float sc = scales.get(F32, (scalesOff + r) * 4);
                FloatVector dv = FloatVector.broadcast(FS, sc);
                int j = 0;
                for (int vend = cols - cols % BL; j < vend; j += BL) {
                    ByteVector q = ByteVector.fromMemorySegment(BS, src, s + j, LE);
                    for (int p = 0; p < PARTS; p++) {
                        ((FloatVector) q.convertShape(VectorOperators.B2F, FS, p)).mul(dv)
                                .intoMemorySegment(dst, d + (j + p * FL) * 4L, LE);
                    }
                }
                for (; j < cols; j++) {
                    dst.set(F32, d + j * 4L, src.get(ValueLayout.JAVA_BYTE, s + j) * sc);
                }
            }
        });
    }

    // ================================================================= GEMV

    private static void checkGemv(String what, int m, int n, MemorySegment w, long wByteOff, long rowBytes,
                                  MemorySegment x, long xOff, MemorySegment y, long yOff) {
        checkDims(what, m, n);
        checkBytes(what + " w", w, wByteOff, m * rowBytes);
        checkF32(what + " x", x, xOff, n);
        checkF32(what + " y", y, yOff, m);
    }

    /**
     * y[yOff + i] = sum_j W[i][j] x[xOff + j] for i in [0, m), with W an m x n matrix whose rows are
     * consecutive Q8_0 blocks (n / 32 blocks, n / 32 * 34 bytes per row) from {@code w + wByteOff}.
     */
    public static void gemvQ8_0(int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff,
                                MemorySegment y, long yOff) {
        checkBlocks("gemvQ8_0", n);
        long rowBytes = bytesQ8_0(n);
        checkGemv("gemvQ8_0", m, n, w, wByteOff, rowBytes, x, xOff, y, yOff);
        int groups = (m + ROWS - 1) / ROWS;
        split(CpuHalf.shareable(w, x, y), groups, (long) ROWS * n, (from, to) -> {
            int r0 = from * ROWS, r1 = Math.min(m, to * ROWS);
            rowsQ8_0(r0, r1, n / QK, w, wByteOff, rowBytes, x, xOff * 4, y, yOff * 4);
        });
    }

    // The GEMV kernels take one row at a time, so that the weights stream in address order: the hardware
    // prefetcher keeps up with that, while four interleaved rows (each only n / 32 * 34 bytes long) ran about
    // 3x slower once the weights no longer fit the cache. x (n floats) stays in L1 either way. Each block's
    // scale is read after its weights: reading it first made C2's profiled loop predication deoptimize and
    // recompile the kernel again and again in real decoding. The kernels are small methods holding their row
    // loop, so that C2 inlines every Vector API call and lane sum into them (no vector is ever boxed).

    /**
     * Q8_0 rows [r0, r1) of W (rows rb bytes apart from byte offset wOff, nb blocks each) times x into y, rows
     * r and r + half in one pass (half the range apart: two streams, as CpuSkinnyGemm takes F32 rows). Each
     * block's unscaled dot product goes into the row's accumulator through one multiply-add by the block's
     * scale: three vector multiplies per 32 weights on AVX-512 where scaling each weight vector first took
     * four. On an Intel Xeon (AVX-512, 2 MiB L2) one thread read 10.4 GB/s of Q8_0 weights from L2 and 5.6
     * from memory that way, 14.1 and 8.3 now. The few-token kernels add in the same order, so a token's
     * result does not depend on how many tokens share the pass.
     */
    private static void rowsQ8_0(int r0, int r1, int nb, MemorySegment w, long wOff, long rb, MemorySegment x, long xb,
                                 MemorySegment y, long yb) {
        int half = (r1 - r0) / 2;
        rowPairsQ8_0(r0, half, nb, w, wOff, rb, x, xb, y, yb);
        if ((r1 - r0) % 2 != 0) rowQ8_0(r1 - 1, nb, w, wOff, rb, x, xb, y, yb);
    }

    // The pair loop and the lone row are methods of their own, each small enough for C2 to inline every Vector API
    // call into it (see rowsQ4_0 for what happens past that budget).

    /** Rows r and r + half for r in [r0, r0 + half), as {@link #rowsQ8_0} describes. */
    private static void rowPairsQ8_0(int r0, int half, int nb, MemorySegment w, long wOff, long rb, MemorySegment x, long xb,
                                     MemorySegment y, long yb) {
        for (int r = r0; r < r0 + half; r++) {
            long o0 = wOff + r * rb, o1 = o0 + half * rb;
            FloatVector a0 = FloatVector.zero(FS), a1 = a0;
            for (int b = 0; b < nb; b++) {
                long bo = o0 + (long) b * Q8_0_BLOCK_BYTES, bq = o1 + (long) b * Q8_0_BLOCK_BYTES;
                long xo = xb + (long) b * QK * 4;
                FloatVector t0 = q8(w, bo + 2, 0).mul(FloatVector.fromMemorySegment(FS, x, xo, LE));
                FloatVector t1 = q8(w, bq + 2, 0).mul(FloatVector.fromMemorySegment(FS, x, xo, LE));
                for (int j = 1; j < QK / FL; j++) {
                    FloatVector xj = FloatVector.fromMemorySegment(FS, x, xo + j * FL * 4L, LE);
                    t0 = q8(w, bo + 2, j).fma(xj, t0);
                    t1 = q8(w, bq + 2, j).fma(xj, t1);
                }
                a0 = t0.fma(FloatVector.broadcast(FS, f16(w, bo)), a0); // scales after the loads: see above
                a1 = t1.fma(FloatVector.broadcast(FS, f16(w, bq)), a1);
            }
            y.set(F32, yb + r * 4L, VectorMath.sum(a0));
            y.set(F32, yb + (r + half) * 4L, VectorMath.sum(a1));
        }
    }

    /** Row r alone, in the order of {@link #rowPairsQ8_0}. */
    private static void rowQ8_0(int r, int nb, MemorySegment w, long wOff, long rb, MemorySegment x, long xb, MemorySegment y, long yb) {
        long o0 = wOff + r * rb;
        FloatVector a0 = FloatVector.zero(FS);
        for (int b = 0; b < nb; b++) {
            long bo = o0 + (long) b * Q8_0_BLOCK_BYTES, xo = xb + (long) b * QK * 4;
            FloatVector t0 = q8(w, bo + 2, 0).mul(FloatVector.fromMemorySegment(FS, x, xo, LE));
            for (int j = 1; j < QK / FL; j++) t0 = q8(w, bo + 2, j).fma(FloatVector.fromMemorySegment(FS, x, xo + j * FL * 4L, LE), t0);
            a0 = t0.fma(FloatVector.broadcast(FS, f16(w, bo)), a0);
        }
        y.set(F32, yb + r * 4L, VectorMath.sum(a0));
    }

    /**
     * Float vector j (FL weights, unscaled) of the 32 Q8_0 quants at byte offset q. Loops over j run a constant
     * count, so C2 unrolls them; an accumulator picked by a parity test inside such a loop (an earlier form)
     * was compiled into both multiply-adds and a select, one dependent chain: 7 GB/s instead of 21 under AVX2.
     */
    private static FloatVector q8(MemorySegment w, long q, int j) {
        int part = PARTS == 1 ? 0 : j % PARTS;
        return (FloatVector) ByteVector.fromMemorySegment(BS, w, q + (long) (j / PARTS) * BL, LE).convertShape(VectorOperators.B2F, FS, part);
    }

    /**
     * y[yOff + i] = sum_j W[i][j] x[xOff + j] for i in [0, m), with W an m x n matrix whose rows are
     * consecutive Q4_0 blocks (n / 32 blocks, n / 32 * 18 bytes per row) from {@code w + wByteOff}.
     */
    public static void gemvQ4_0(int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff,
                                MemorySegment y, long yOff) {
        checkBlocks("gemvQ4_0", n);
        long rowBytes = bytesQ4_0(n);
        checkGemv("gemvQ4_0", m, n, w, wByteOff, rowBytes, x, xOff, y, yOff);
        int groups = (m + ROWS - 1) / ROWS;
        split(CpuHalf.shareable(w, x, y), groups, (long) ROWS * n, (from, to) -> {
            int r0 = from * ROWS, r1 = Math.min(m, to * ROWS);
            rowsQ4_0(r0, r1, n / QK, w, wByteOff, rowBytes, x, xOff * 4, y, yOff * 4);
        });
    }

    /**
     * Q4_0 rows [r0, r1) of W (rows rb bytes apart from byte offset wOff, nb blocks each) times x into y, one row at
     * a time. Rows in pairs as {@link #rowsQ8_0} takes them read 16% faster from memory (8% slower from L2), but with
     * two rows' nibble unpacking in one loop C2 stopped inlining the lane reinterpretation once a prompt pass had run
     * first, and decode fell to the Vector API's Java fallback (22 tokens/s instead of 100; Intel Xeon, AVX-512).
     */
    private static void rowsQ4_0(int r0, int r1, int nb, MemorySegment w, long wOff, long rb, MemorySegment x, long xb,
                                 MemorySegment y, long yb) {
        for (int r = r0; r < r1; r++) {
            long o0 = wOff + r * rb;
            FloatVector a0 = FloatVector.zero(FS);
            for (int b = 0; b < nb; b++) {
                long bo = o0 + (long) b * Q4_0_BLOCK_BYTES;
                long xo = xb + (long) b * QK * 4;
                FloatVector t0 = FloatVector.zero(FS);
                for (int c = 0; c < QK / 2; c += BL) {
                    ByteVector q0 = ByteVector.fromMemorySegment(BS, w, bo + 2 + c, LE);
                    for (int p = 0; p < PARTS; p++) {
                        FloatVector xl = FloatVector.fromMemorySegment(FS, x, xo + (c + p * FL) * 4L, LE);
                        FloatVector xh = FloatVector.fromMemorySegment(FS, x, xo + (QK / 2 + c + p * FL) * 4L, LE);
                        IntVector v0 = (IntVector) q0.convertShape(VectorOperators.B2I, IS, p);
                        t0 = lo(v0).fma(xl, t0);
                        t0 = hi(v0).fma(xh, t0);
                    }
                }
                a0 = t0.fma(FloatVector.broadcast(FS, f16(w, bo)), a0);
            }
            y.set(F32, yb + r * 4L, VectorMath.sum(a0));
        }
    }

    /**
     * Y[t] = W X[t] for a few tokens t in [0, tokens), X and Y row-major with leading dims ldx and ldy:
     * tokens go in fours (the last group of one through the one-token GEMV) sharing every weight load, each
     * computed with exactly the arithmetic of {@link #gemvQ8_0} (or {@link #gemvQ4_0} when q4), so a token's
     * result is bit for bit the same alone or in a batch (the decode path verifies speculative drafts this
     * way). Four Q8_0 tokens are compute-bound (2.1x one token's time on Zen 5): reading the weights once for
     * eight, each group of four running over a few rows while they sat in L1, saved nothing measurable.
     */
    public static void gemvTokens(boolean q4, int tokens, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff, int ldx,
                                  MemorySegment y, long yOff, int ldy) {
        String what = q4 ? "gemvTokensQ4_0" : "gemvTokensQ8_0";
        checkBlocks(what, n);
        long rowBytes = q4 ? bytesQ4_0(n) : bytesQ8_0(n);
        for (int t = 0; t < tokens; t += 4) {
            int count = Math.min(4, tokens - t);
            long xa = xOff + (long) t * ldx, ya = yOff + (long) t * ldy;
            if (count == 1) {
                if (q4) gemvQ4_0(m, n, w, wByteOff, x, xa, y, ya);
                else gemvQ8_0(m, n, w, wByteOff, x, xa, y, ya);
                continue;
            }
            for (int i = 0; i < count; i++) checkGemv(what, m, n, w, wByteOff, rowBytes, x, xa + (long) i * ldx, y, ya + (long) i * ldy);
            int groups = (m + ROWS - 1) / ROWS;
            long xb = xa * 4, xs = 4L * ldx, yb = ya * 4, ys = 4L * ldy;
            float[] xh = tokenRows(x, xb, xs, count, n);
            split(CpuHalf.shareable(w, x, y), groups, (long) count * ROWS * n, (from, to) -> {
                int r0 = from * ROWS, r1 = Math.min(m, to * ROWS), nb = n / QK;
                if (q4) tokensQ4_0(count, r0, r1, nb, w, wByteOff, rowBytes, xh, y, yb, ys);
                else if (!TWO_ROW_TOKENS) tokensQ8_0(count, r0, r1, nb, w, wByteOff, rowBytes, xh, y, yb, ys);
                else {
                    int half = (r1 - r0) / 2;
                    tokensQ8_0TwoRows(count, r0, half, nb, w, wByteOff, rowBytes, xh, y, yb, ys);
                    if ((r1 - r0) % 2 != 0) tokensQ8_0(count, r1 - 1, r1, nb, w, wByteOff, rowBytes, xh, y, yb, ys);
                }
            });
        }
    }

    /**
     * {@link #rowsQ8_0} for 2 to 4 tokens at once, their x rows n floats apart in a heap array. Read from the
     * segment instead, the four tokens' x loads (each with its segment checks) tipped C2 on AVX2 into leaving
     * the byte-to-float widening to the Vector API's allocating Java fallback once token counts mixed: four
     * tokens took 470-530 us against 57 for one (2048 x 768, AMD Zen 5 under -XX:UseAVX=2); 120-127 us now,
     * and 83 us on AVX-512 as before.
     */
    private static void tokensQ8_0(int count, int r0, int r1, int nb, MemorySegment w, long wOff, long rb, float[] x,
                                 MemorySegment y, long yb, long ys) {
        int n = nb * QK, x1 = n, x2 = 2 * n, x3 = 3 * n;
        boolean three = count > 2, four = count > 3;
        for (int r = r0; r < r1; r++) {
            long o0 = wOff + r * rb;
            FloatVector a0 = FloatVector.zero(FS), a1 = a0, a2 = a0, a3 = a0;
            for (int b = 0; b < nb; b++) {
                long bo = o0 + (long) b * Q8_0_BLOCK_BYTES, q = bo + 2;
                int e = b * QK;
                FloatVector wj = q8(w, q, 0);
                FloatVector t0 = wj.mul(FloatVector.fromArray(FS, x, e)), t1 = wj.mul(FloatVector.fromArray(FS, x, e + x1));
                FloatVector t2 = three ? wj.mul(FloatVector.fromArray(FS, x, e + x2)) : t0;
                FloatVector t3 = four ? wj.mul(FloatVector.fromArray(FS, x, e + x3)) : t0;
                for (int j = 1; j < QK / FL; j++) {
                    wj = q8(w, q, j);
                    int f = e + j * FL;
                    t0 = wj.fma(FloatVector.fromArray(FS, x, f), t0);
                    t1 = wj.fma(FloatVector.fromArray(FS, x, f + x1), t1);
                    if (three) t2 = wj.fma(FloatVector.fromArray(FS, x, f + x2), t2);
                    if (four) t3 = wj.fma(FloatVector.fromArray(FS, x, f + x3), t3);
                }
                FloatVector scale = FloatVector.broadcast(FS, f16(w, bo));
                a0 = t0.fma(scale, a0);
                a1 = t1.fma(scale, a1);
                if (three) a2 = t2.fma(scale, a2);
                if (four) a3 = t3.fma(scale, a3);
            }
            long o = yb + r * 4L;
            y.set(F32, o, VectorMath.sum(a0));
            y.set(F32, o + ys, VectorMath.sum(a1));
            if (three) y.set(F32, o + 2 * ys, VectorMath.sum(a2));
            if (four) y.set(F32, o + 3 * ys, VectorMath.sum(a3));
        }
    }

    /**
     * With 32 vector registers (AVX-512): few-token products take two rows per pass, so each x load feeds
     * two rows' multiply-adds. With 16 (AVX2) the sixteen accumulators would not fit.
     */
    private static final boolean TWO_ROW_TOKENS = FS.vectorBitSize() >= 512;

    /**
     * {@link #tokensQ8_0} on rows r0 + i and r0 + half + i together for i in [0, half), each row summed in
     * the same order as alone. The two rows are half the thread's range apart, two separate streams: rows
     * next to each other (816 bytes apart in a 768-wide matrix) ran 2.8x slower than one at a time once
     * the weights came from memory, rows far apart 1.3x faster (2048 x 768, four tokens, one thread, Zen 5;
     * 1.6x in cache).
     */
    private static void tokensQ8_0TwoRows(int count, int r0, int half, int nb, MemorySegment w, long wOff, long rb, float[] x,
                                        MemorySegment y, long yb, long ys) {
        int n = nb * QK, x1 = n, x2 = 2 * n, x3 = 3 * n;
        boolean three = count > 2, four = count > 3;
        for (int r = r0; r < r0 + half; r++) {
            long o0 = wOff + r * rb, o1 = o0 + half * rb;
            FloatVector z = FloatVector.zero(FS);
            FloatVector a0 = z, a1 = z, a2 = z, a3 = z; // row r, tokens 0..3
            FloatVector b0 = z, b1 = z, b2 = z, b3 = z; // row r + half
            for (int b = 0; b < nb; b++) {
                long bo = o0 + (long) b * Q8_0_BLOCK_BYTES, bq = o1 + (long) b * Q8_0_BLOCK_BYTES;
                int e = b * QK;
                FloatVector u = q8(w, bo + 2, 0), v = q8(w, bq + 2, 0);
                FloatVector x0 = FloatVector.fromArray(FS, x, e), x1v = FloatVector.fromArray(FS, x, e + x1);
                FloatVector t0 = u.mul(x0), t1 = u.mul(x1v), p0 = v.mul(x0), p1 = v.mul(x1v);
                FloatVector t2 = z, t3 = z, p2 = z, p3 = z;
                if (three) {
                    FloatVector x2v = FloatVector.fromArray(FS, x, e + x2);
                    t2 = u.mul(x2v);
                    p2 = v.mul(x2v);
                }
                if (four) {
                    FloatVector x3v = FloatVector.fromArray(FS, x, e + x3);
                    t3 = u.mul(x3v);
                    p3 = v.mul(x3v);
                }
                for (int j = 1; j < QK / FL; j++) {
                    u = q8(w, bo + 2, j);
                    v = q8(w, bq + 2, j);
                    int f = e + j * FL;
                    x0 = FloatVector.fromArray(FS, x, f);
                    x1v = FloatVector.fromArray(FS, x, f + x1);
                    t0 = u.fma(x0, t0);
                    p0 = v.fma(x0, p0);
                    t1 = u.fma(x1v, t1);
                    p1 = v.fma(x1v, p1);
                    if (three) {
                        FloatVector x2v = FloatVector.fromArray(FS, x, f + x2);
                        t2 = u.fma(x2v, t2);
                        p2 = v.fma(x2v, p2);
                    }
                    if (four) {
                        FloatVector x3v = FloatVector.fromArray(FS, x, f + x3);
                        t3 = u.fma(x3v, t3);
                        p3 = v.fma(x3v, p3);
                    }
                }
                FloatVector s0 = FloatVector.broadcast(FS, f16(w, bo)), s1 = FloatVector.broadcast(FS, f16(w, bq));
                a0 = t0.fma(s0, a0);
                a1 = t1.fma(s0, a1);
                b0 = p0.fma(s1, b0);
                b1 = p1.fma(s1, b1);
                if (three) {
                    a2 = t2.fma(s0, a2);
                    b2 = p2.fma(s1, b2);
                }
                if (four) {
                    a3 = t3.fma(s0, a3);
                    b3 = p3.fma(s1, b3);
                }
            }
            long o = yb + r * 4L, q = o + half * 4L;
            y.set(F32, o, VectorMath.sum(a0));
            y.set(F32, o + ys, VectorMath.sum(a1));
            y.set(F32, q, VectorMath.sum(b0));
            y.set(F32, q + ys, VectorMath.sum(b1));
            if (three) {
                y.set(F32, o + 2 * ys, VectorMath.sum(a2));
                y.set(F32, q + 2 * ys, VectorMath.sum(b2));
            }
            if (four) {
                y.set(F32, o + 3 * ys, VectorMath.sum(a3));
                y.set(F32, q + 3 * ys, VectorMath.sum(b3));
            }
        }
    }

    private static final ThreadLocal<float[][]> TOKEN_ROWS = ThreadLocal.withInitial(() -> new float[][] {new float[0]});

    /**
     * The count x rows (n floats each, xs bytes apart from byte offset xb) copied into this thread's heap
     * scratch, n floats apart; the pool's workers only read it, after the job that hands it to them starts.
     */
    private static float[] tokenRows(MemorySegment x, long xb, long xs, int count, int n) {
        float[][] held = TOKEN_ROWS.get();
        if (held[0].length < count * n) held[0] = new float[4 * n];
        float[] rows = held[0];
        for (int i = 0; i < count; i++) MemorySegment.copy(x, ValueLayout.JAVA_FLOAT_UNALIGNED, xb + i * xs, rows, i * n, n);
        return rows;
    }

    /** {@link #rowsQ4_0} for 2 to 4 tokens at once, x rows as in {@link #tokensQ8_0}. */
    private static void tokensQ4_0(int count, int r0, int r1, int nb, MemorySegment w, long wOff, long rb, float[] x,
                                 MemorySegment y, long yb, long ys) {
        int xs = nb * QK;
        boolean three = count > 2, four = count > 3;
        for (int r = r0; r < r1; r++) {
            long o0 = wOff + r * rb;
            FloatVector a0 = FloatVector.zero(FS), a1 = a0, a2 = a0, a3 = a0;
            for (int b = 0; b < nb; b++) {
                long bo = o0 + (long) b * Q4_0_BLOCK_BYTES;
                int xo = b * QK;
                FloatVector t0 = FloatVector.zero(FS), t1 = t0, t2 = t0, t3 = t0;
                for (int c = 0; c < QK / 2; c += BL) {
                    ByteVector q0 = ByteVector.fromMemorySegment(BS, w, bo + 2 + c, LE);
                    for (int p = 0; p < PARTS; p++) {
                        IntVector v0 = (IntVector) q0.convertShape(VectorOperators.B2I, IS, p);
                        FloatVector lo = lo(v0), hi = hi(v0);
                        int l = xo + c + p * FL, h = xo + QK / 2 + c + p * FL;
                        t0 = lo.fma(FloatVector.fromArray(FS, x, l), t0);
                        t0 = hi.fma(FloatVector.fromArray(FS, x, h), t0);
                        t1 = lo.fma(FloatVector.fromArray(FS, x, l + xs), t1);
                        t1 = hi.fma(FloatVector.fromArray(FS, x, h + xs), t1);
                        if (three) t2 = lo.fma(FloatVector.fromArray(FS, x, l + 2 * xs), t2);
                        if (three) t2 = hi.fma(FloatVector.fromArray(FS, x, h + 2 * xs), t2);
                        if (four) t3 = lo.fma(FloatVector.fromArray(FS, x, l + 3 * xs), t3);
                        if (four) t3 = hi.fma(FloatVector.fromArray(FS, x, h + 3 * xs), t3);
                    }
                }
                FloatVector scale = FloatVector.broadcast(FS, f16(w, bo));
                a0 = t0.fma(scale, a0);
                a1 = t1.fma(scale, a1);
                a2 = t2.fma(scale, a2);
                a3 = t3.fma(scale, a3);
            }
            long o = yb + r * 4L;
            y.set(F32, o, VectorMath.sum(a0));
            y.set(F32, o + ys, VectorMath.sum(a1));
            if (three) y.set(F32, o + 2 * ys, VectorMath.sum(a2));
            if (four) y.set(F32, o + 3 * ys, VectorMath.sum(a3));
        }
    }

    // With 16 int lanes (AVX-512) a nibble becomes its weight q - 8 by one lane permute of a table holding the 16
    // values (vpermd), in place of a subtract and a conversion: the same floats, so results do not change (Q4_0
    // GEMV 1.04-1.3x on Zen 5, one thread). Narrower vectors cannot hold the table and convert.
    private static final boolean NIBBLE_TABLE = FL == 16;
    private static final IntVector Q4_WEIGHTS = IntVector.fromArray(IS, nibbleWeights(), 0);

    private static int[] nibbleWeights() {
        int[] bits = new int[FL];
        for (int q = 0; q < FL; q++) bits[q] = Float.floatToRawIntBits((q & 15) - 8);
        return bits;
    }

    /** Low nibbles minus 8 of sign-extended bytes v, as floats. */
    private static FloatVector lo(IntVector v) {
        if (NIBBLE_TABLE) return v.and(0x0F).selectFrom(Q4_WEIGHTS).reinterpretAsFloats();
        return (FloatVector) v.and(0x0F).sub(8).convert(VectorOperators.I2F, 0);
    }

    /** High nibbles minus 8 of sign-extended bytes v, as floats. */
    private static FloatVector hi(IntVector v) {
        if (NIBBLE_TABLE) return v.lanewise(VectorOperators.LSHR, 4).and(0x0F).selectFrom(Q4_WEIGHTS).reinterpretAsFloats();
        return (FloatVector) v.lanewise(VectorOperators.ASHR, 4).and(0x0F).sub(8).convert(VectorOperators.I2F, 0);
    }

    /**
     * y[yOff + i] = scales[scalesOff + i] * sum_j Q[i][j] x[xOff + j] for i in [0, m), with Q an m x n int8
     * matrix stored row-major at {@code w + wByteOff} (any n).
     */
    public static void gemvI8Rows(int m, int n, MemorySegment w, long wByteOff, MemorySegment scales, long scalesOff,
                                  MemorySegment x, long xOff, MemorySegment y, long yOff) {
        checkGemv("gemvI8Rows", m, n, w, wByteOff, n, x, xOff, y, yOff);
        checkF32("gemvI8Rows scales", scales, scalesOff, m);
        int groups = (m + ROWS - 1) / ROWS;
        split(CpuHalf.shareable(w, x, y) && CpuHalf.shareable(scales, scales), groups, (long) ROWS * n, (from, to) -> {
            int r0 = from * ROWS, r1 = Math.min(m, to * ROWS);
            gemvRowsI8(r0, r1, n, w, wByteOff, scales, scalesOff * 4, x, xOff * 4, y, yOff * 4);
        });
    }

    private static void gemvRowsI8(int r0, int r1, int n, MemorySegment w, long wOff, MemorySegment scales, long sb,
                                   MemorySegment x, long xb, MemorySegment y, long yb) {
        int vend = n - n % BL;
        int r = r0;
        for (; r + ROWS <= r1; r += ROWS) {
            long o0 = wOff + (long) r * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n;
            FloatVector a0 = FloatVector.zero(FS), a1 = a0, a2 = a0, a3 = a0;
            int j = 0;
            for (; j < vend; j += BL) {
                ByteVector q0 = ByteVector.fromMemorySegment(BS, w, o0 + j, LE);
                ByteVector q1 = ByteVector.fromMemorySegment(BS, w, o1 + j, LE);
                ByteVector q2 = ByteVector.fromMemorySegment(BS, w, o2 + j, LE);
                ByteVector q3 = ByteVector.fromMemorySegment(BS, w, o3 + j, LE);
                for (int p = 0; p < PARTS; p++) {
                    FloatVector xv = FloatVector.fromMemorySegment(FS, x, xb + (j + p * FL) * 4L, LE);
                    a0 = ((FloatVector) q0.convertShape(VectorOperators.B2F, FS, p)).fma(xv, a0);
                    a1 = ((FloatVector) q1.convertShape(VectorOperators.B2F, FS, p)).fma(xv, a1);
                    a2 = ((FloatVector) q2.convertShape(VectorOperators.B2F, FS, p)).fma(xv, a2);
                    a3 = ((FloatVector) q3.convertShape(VectorOperators.B2F, FS, p)).fma(xv, a3);
                }
            }
            float s0 = VectorMath.sum(a0), s1 = VectorMath.sum(a1);
            float s2 = VectorMath.sum(a2), s3 = VectorMath.sum(a3);
            for (; j < n; j++) {
                float xj = x.get(F32, xb + j * 4L);
                s0 += w.get(ValueLayout.JAVA_BYTE, o0 + j) * xj;
                s1 += w.get(ValueLayout.JAVA_BYTE, o1 + j) * xj;
                s2 += w.get(ValueLayout.JAVA_BYTE, o2 + j) * xj;
                s3 += w.get(ValueLayout.JAVA_BYTE, o3 + j) * xj;
            }
            y.set(F32, yb + r * 4L, s0 * scales.get(F32, sb + r * 4L));
            y.set(F32, yb + (r + 1) * 4L, s1 * scales.get(F32, sb + (r + 1) * 4L));
            y.set(F32, yb + (r + 2) * 4L, s2 * scales.get(F32, sb + (r + 2) * 4L));
            y.set(F32, yb + (r + 3) * 4L, s3 * scales.get(F32, sb + (r + 3) * 4L));
        }
        for (; r < r1; r++) {
            long o0 = wOff + (long) r * n;
            FloatVector a0 = FloatVector.zero(FS);
            int j = 0;
            for (; j < vend; j += BL) {
                ByteVector q0 = ByteVector.fromMemorySegment(BS, w, o0 + j, LE);
                for (int p = 0; p < PARTS; p++) {
                    FloatVector xv = FloatVector.fromMemorySegment(FS, x, xb + (j + p * FL) * 4L, LE);
                    a0 = ((FloatVector) q0.convertShape(VectorOperators.B2F, FS, p)).fma(xv, a0);
                }
            }
            float s0 = VectorMath.sum(a0);
            for (; j < n; j++) s0 += w.get(ValueLayout.JAVA_BYTE, o0 + j) * x.get(F32, xb + j * 4L);
            y.set(F32, yb + r * 4L, s0 * scales.get(F32, sb + r * 4L));
        }
    }

    // ================================================================= batched GEMM for a few tokens

    /**
     * Y[t][i] = sum_j W[i][j] X[t][j] for t in [0, rowsX), i in [0, m): X is a row-major rowsX x n F32 matrix
     * at {@code x[xOff..]}, Y a row-major rowsX x m F32 matrix at {@code y[yOff..]}, W as in {@link #gemvQ8_0}.
     * Each group of W rows is dequantized once and reused for every token.
     */
    public static void gemmQ8_0(int rowsX, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff,
                                MemorySegment y, long yOff) {
        gemm(false, rowsX, m, n, w, wByteOff, x, xOff, y, yOff);
    }

    /** As {@link #gemmQ8_0} with W stored as Q4_0 rows (see {@link #gemvQ4_0}). */
    public static void gemmQ4_0(int rowsX, int m, int n, MemorySegment w, long wByteOff, MemorySegment x, long xOff,
                                MemorySegment y, long yOff) {
        gemm(true, rowsX, m, n, w, wByteOff, x, xOff, y, yOff);
    }

    /** Each thread's dequantized rows for {@link #gemm}. */
    private static final ThreadScratch ROWS_BUF = new ThreadScratch();

    private static void gemm(boolean q4, int rowsX, int m, int n, MemorySegment w, long wByteOff, MemorySegment x,
                             long xOff, MemorySegment y, long yOff) {
        String what = q4 ? "gemmQ4_0" : "gemmQ8_0";
        checkBlocks(what, n);
        if (rowsX < 0) throw new IllegalArgumentException(what + ": negative rowsX " + rowsX);
        long rowBytes = q4 ? bytesQ4_0(n) : bytesQ8_0(n);
        checkDims(what, m, n);
        checkBytes(what + " w", w, wByteOff, m * rowBytes);
        checkF32(what + " x", x, xOff, (long) rowsX * n);
        checkF32(what + " y", y, yOff, (long) rowsX * m);
        if (rowsX == 0 || m == 0) return;
        if (rowsX == 1) {
            if (q4) gemvQ4_0(m, n, w, wByteOff, x, xOff, y, yOff);
            else gemvQ8_0(m, n, w, wByteOff, x, xOff, y, yOff);
            return;
        }
        int groups = (m + ROWS - 1) / ROWS;
        int nb = n / QK;
        split(CpuHalf.shareable(w, x, y), groups, (long) ROWS * n * rowsX, (from, to) -> {
            MemorySegment buf = ROWS_BUF.get((long) ROWS * n * 4);
            for (int g = from; g < to; g++) {
                int r0 = g * ROWS, rows = Math.min(ROWS, m - r0);
                long src = wByteOff + r0 * rowBytes;
                if (q4) dequantBlocksQ4_0(w, src, buf, 0, rows * nb);
                else dequantBlocksQ8_0(w, src, buf, 0, rows * nb);
                for (int t = 0; t < rowsX; t++) {
                    long xb = (xOff + (long) t * n) * 4;
                    long yb = (yOff + (long) t * m + r0) * 4;
                    if (rows == ROWS) dot4(buf, n, x, xb, y, yb);
                    else for (int i = 0; i < rows; i++) y.set(F32, yb + i * 4L, dot1(buf, (long) i * n * 4, n, x, xb));
                }
            }
        });
    }

    /**
     * Four dot products of consecutive F32 rows of buf (n a multiple of the lane count) with x, sharing the
     * x loads; each row's arithmetic is exactly {@link #dot1}'s (one accumulator, index order).
     */
    static void dot4(MemorySegment buf, int n, MemorySegment x, long xb, MemorySegment y, long yb) {
        long rb = (long) n * 4;
        FloatVector a0 = FloatVector.zero(FS), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j += FL) {
            long jb = j * 4L;
            FloatVector xv = FloatVector.fromMemorySegment(FS, x, xb + jb, LE);
            a0 = FloatVector.fromMemorySegment(FS, buf, jb, LE).fma(xv, a0);
            a1 = FloatVector.fromMemorySegment(FS, buf, rb + jb, LE).fma(xv, a1);
            a2 = FloatVector.fromMemorySegment(FS, buf, 2 * rb + jb, LE).fma(xv, a2);
            a3 = FloatVector.fromMemorySegment(FS, buf, 3 * rb + jb, LE).fma(xv, a3);
        }
        y.set(F32, yb, VectorMath.sum(a0));
        y.set(F32, yb + 4, VectorMath.sum(a1));
        y.set(F32, yb + 8, VectorMath.sum(a2));
        y.set(F32, yb + 12, VectorMath.sum(a3));
    }

    /** sum_j buf[j] x[j] over n floats (a multiple of the lane count) from byte rowb of buf. */
    static float dot1(MemorySegment buf, long rowb, int n, MemorySegment x, long xb) {
        FloatVector a0 = FloatVector.zero(FS);
        for (int j = 0; j < n; j += FL) {
            long jb = j * 4L;
            a0 = FloatVector.fromMemorySegment(FS, buf, rowb + jb, LE).fma(FloatVector.fromMemorySegment(FS, x, xb + jb, LE), a0);
        }
        return VectorMath.sum(a0);
    }
}
