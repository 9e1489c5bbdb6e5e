package dev.exeunt.tensor;

import dev.exeunt.tensor.cpu.CpuThreads;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A counter-based normal generator: element {@code i} of the stream with a given seed is a pure
 * function of (seed, i), never of the elements drawn before it. Any part of a stream can therefore be
 * computed on its own (a tensor-parallel shard computes just its slice of a parameter) and in
 * parallel, with exactly the bits a sequential pass over the whole stream would give.
 *
 * <p>Element {@code i} is the inverse normal CDF of a uniform made from SplitMix64 output {@code i + 1}
 * of the seed (the value {@code new SplittableRandom(seed).nextLong()} returns on its (i+1)-th call).
 * The inverse CDF is Acklam's rational approximation (relative error below 1.2e-9, far under a float's
 * resolution): a rational function in the central 95% and {@code sqrt(-2 ln p)} in the tails, with
 * {@link StrictMath#log}, which every JVM on every machine computes to the same bits ({@link Math}'s may
 * differ by an ulp between platforms), so ranks on different machines agree. Most elements need no
 * transcendental at all, which makes a 124M-parameter initialisation take well under a second of CPU.
 * The uniform is symmetric about 1/2 and its tail mass is computed exactly from the integer, so the
 * stream is exactly symmetric and never infinite ({@code |x| < 8.3}).
 */
public final class CounterNormal {
    /** SplitMix64's increment (the golden ratio), as in {@link java.util.SplittableRandom}. */
    static final long GAMMA = 0x9e3779b97f4a7c15L;

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    /** Elements per parallel block: large enough that dispatch is noise, small enough to balance. */
    private static final int BLOCK = 1 << 15;
    private static final double TWO_TO_MINUS_54 = 0x1.0p-54;
    private static final long HALF = 1L << 53;

    // Acklam's coefficients: central region (a / b) and tails (c / d).
    private static final double A1 = -3.969683028665376e+01, A2 = 2.209460984245205e+02, A3 = -2.759285104469687e+02,
            A4 = 1.383577518672690e+02, A5 = -3.066479806614716e+01, A6 = 2.506628277459239e+00;
    private static final double B1 = -5.447609879822406e+01, B2 = 1.615858368580409e+02, B3 = -1.556989798598866e+02,
            B4 = 6.680131188771972e+01, B5 = -1.328068155288572e+01;
    private static final double C1 = -7.784894002430293e-03, C2 = -3.223964580411365e-01, C3 = -2.400758277161838e+00,
            C4 = -2.549732539343734e+00, C5 = 4.374664141464968e+00, C6 = 2.938163982698783e+00;
    private static final double D1 = 7.784695709041462e-03, D2 = 3.224671290700398e-01, D3 = 2.445134137142996e+00,
            D4 = 3.754408661907416e+00;
    /** Where the tails begin: p below P_LOW or above 1 - P_LOW. */
    private static final double P_LOW = 0.02425;

    private CounterNormal() {}

    /** SplitMix64's finaliser (Stafford's variant 13): a bijection on 64 bits with full avalanche. */
    public static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** Element {@code index} (>= 0) of the N(0, 1) stream of {@code seed}. */
    public static double value(long seed, long index) {
        if (index < 0) throw new IllegalArgumentException("stream index must be >= 0, got " + index);
        return at(seed, index);
    }

    private static double at(long seed, long index) {
        return uniformToNormal(mix64(seed + (index + 1) * GAMMA));
    }

    /** The normal quantile of the uniform p = (2m + 1) / 2^54, m the top 53 bits of {@code bits}. */
    static double uniformToNormal(long bits) {
        long m = bits >>> 11;
        // centred = p - 1/2, exact because |2m + 1 - 2^53| < 2^53.
        return inverseCdf((2 * m + 1 - HALF) * TWO_TO_MINUS_54);
    }

    /**
     * The standard normal quantile of {@code p = 1/2 + centred} ({@code |centred| < 1/2}, a multiple of 2^-54,
     * so 1/2 - |centred| is exact and the tails lose nothing to cancellation).
     */
    static double inverseCdf(double centred) {
        double abs = Math.abs(centred);
        if (abs <= 0.5 - P_LOW) {
            double r = centred * centred;
            return (((((A1 * r + A2) * r + A3) * r + A4) * r + A5) * r + A6) * centred
                    / (((((B1 * r + B2) * r + B3) * r + B4) * r + B5) * r + 1);
        }
        double q = Math.sqrt(-2 * StrictMath.log(0.5 - abs));
        double lower = (((((C1 * q + C2) * q + C3) * q + C4) * q + C5) * q + C6) / ((((D1 * q + D2) * q + D3) * q + D4) * q + 1);
        return centred < 0 ? lower : -lower;
    }

    /**
     * Writes {@code (float) (std * N(0,1))} for stream elements {@code [first, first + count)} to
     * consecutive floats of {@code dst} starting at byte {@code byteOffset}.
     */
    public static void fill(long seed, float std, long first, long count, MemorySegment dst, long byteOffset) {
        fillRuns(seed, std, first, 0, 1, count, dst, byteOffset);
    }

    /**
     * Writes {@code runs} runs of {@code runLength} elements each, run {@code j} being stream elements
     * {@code [first + j * stride, first + j * stride + runLength)}, to consecutive floats of {@code dst}
     * from byte {@code byteOffset}: the layout of a slice of a row-major tensor (e.g. columns
     * {@code [c0, c1)} of a matrix with {@code cols} columns is {@code first = c0, stride = cols,
     * runLength = c1 - c0}, one run per row). Runs in parallel on the CPU pool.
     */
    public static void fillRuns(long seed, float std, long first, long stride, int runs, long runLength, MemorySegment dst,
            long byteOffset) {
        if (first < 0 || stride < 0 || runs < 0 || runLength < 0) {
            throw new IllegalArgumentException("negative stream range: first " + first + ", stride " + stride + ", runs "
                    + runs + ", run length " + runLength);
        }
        long total = Math.multiplyExact((long) runs, runLength);
        if (total == 0) return;
        if (byteOffset < 0 || byteOffset + total * Float.BYTES > dst.byteSize()) {
            throw new IndexOutOfBoundsException(total + " floats from byte " + byteOffset + " do not fit a segment of "
                    + dst.byteSize() + " bytes");
        }
        long blocks = (total + BLOCK - 1) / BLOCK;
        if (blocks > Integer.MAX_VALUE) throw new IllegalArgumentException(total + " elements are too many for one fill");
        CpuThreads.RangeBody body = (from, to) -> {
            long a = (long) from * BLOCK, b = Math.min(total, (long) to * BLOCK);
            while (a < b) {
                long run = a / runLength, within = a % runLength;
                long n = Math.min(b - a, runLength - within);
                fillRange(seed, std, first + run * stride + within, n, dst, byteOffset + a * Float.BYTES);
                a += n;
            }
        };
        if (CpuThreads.shareable(dst)) CpuThreads.parallelFor((int) blocks, 1, body);
        else body.run(0, (int) blocks);
    }

    /**
     * One contiguous range of the stream, sequentially, through a float[] buffer (an int-indexed loop
     * over an array compiles much tighter than per-element segment stores).
     */
    private static void fillRange(long seed, float std, long first, long count, MemorySegment dst, long byteOffset) {
        float[] buf = new float[(int) Math.min(count, BLOCK)];
        for (long done = 0; done < count; ) {
            int n = (int) Math.min(buf.length, count - done);
            long base = seed + (first + done + 1) * GAMMA;
            for (int j = 0; j < n; j++) buf[j] = (float) (uniformToNormal(mix64(base + j * GAMMA)) * std);
            MemorySegment.copy(buf, 0, dst, F32, byteOffset + done * Float.BYTES, n);
            done += n;
        }
    }
}
