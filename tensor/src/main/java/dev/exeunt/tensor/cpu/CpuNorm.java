package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * LayerNorm and RMSNorm over the last dimension of a contiguous {@code [rows, cols]} F32 matrix,
 * forward and backward.
 *
 * <p>Conventions (as in {@link CpuSoftmax}): little-endian F32 segments, element offsets, rows contiguous,
 * segments accessible from any thread. {@code y} and {@code dx} are <b>overwritten</b>; {@code y} may be
 * {@code x} and {@code dx} may be {@code dy} (same offset). Parameter gradients {@code dgamma} and
 * {@code dbeta} are <b>accumulated</b> ({@code +=}): the caller zeroes them when it wants a fresh gradient.
 * Parameter gradients are summed over rows in row order by column blocks, so results are bitwise
 * deterministic whatever the thread count.
 *
 * <p>Statistics are computed in F32 with a two-pass mean/variance; {@code rstd = 1 / sqrt(var + eps)}.
 * RMSNorm is the Llama form {@code y = x * rstd * gamma} with {@code rstd = 1 / sqrt(mean(x^2) + eps)}
 * (no {@code 1 +} offset on the weight).
 */
public final class CpuNorm {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final int GRAIN_ELEMS = 1 << 14;
    /** Column block width for the parameter-gradient reduction (a multiple of every species length). */
    private static final int COL_BLOCK = 64;

    private CpuNorm() {}

    // ---------------------------------------------------------------------------------------------
    // LayerNorm

    /**
     * LayerNorm forward: {@code y = (x - mean) * rstd * gamma + beta} per row.
     *
     * @param gamma [cols] or null (scale 1)
     * @param beta  [cols] or null (shift 0)
     * @param mean  [rows] output (overwritten) or null when not needed (inference)
     * @param rstd  [rows] output (overwritten) or null when not needed
     */
    public static void layerNorm(MemorySegment x, long xOff, MemorySegment gamma, long gammaOff,
                                 MemorySegment beta, long betaOff, MemorySegment y, long yOff,
                                 MemorySegment mean, long meanOff, MemorySegment rstd, long rstdOff,
                                 int rows, int cols, float eps) {
        checkShape(rows, cols);
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                long xb = 4 * (xOff + (long) r * cols), yb = 4 * (yOff + (long) r * cols);
                float mu = sum(x, xb, cols) / cols;
                float var = sumSqDev(x, xb, cols, mu) / cols;
                float rs = (float) (1.0 / Math.sqrt((double) var + eps));
                if (mean != null) mean.set(F, 4 * (meanOff + r), mu);
                if (rstd != null) rstd.set(F, 4 * (rstdOff + r), rs);
                layerNormApply(x, xb, gamma, 4 * gammaOff, beta, 4 * betaOff, y, yb, cols, mu, rs);
            }
        });
    }

    /**
     * LayerNorm backward. With {@code xhat = (x - mean) * rstd} and {@code g = dy * gamma}:
     * {@code dx = rstd * (g - mean(g) - xhat * mean(g * xhat))} (overwritten),
     * {@code dgamma += sum_rows(dy * xhat)}, {@code dbeta += sum_rows(dy)} (accumulated).
     *
     * @param gamma  [cols] or null (as in the forward)
     * @param mean   [rows] saved by the forward
     * @param rstd   [rows] saved by the forward
     * @param dx     [rows, cols] output or null to skip
     * @param dgamma [cols] accumulated or null to skip
     * @param dbeta  [cols] accumulated or null to skip
     */
    public static void layerNormBackward(MemorySegment x, long xOff, MemorySegment gamma, long gammaOff,
                                         MemorySegment mean, long meanOff, MemorySegment rstd, long rstdOff,
                                         MemorySegment dy, long dyOff, MemorySegment dx, long dxOff,
                                         MemorySegment dgamma, long dgammaOff, MemorySegment dbeta, long dbetaOff,
                                         int rows, int cols) {
        checkShape(rows, cols);
        // Parameter gradients first: dx may overwrite dy in place.
        if (dgamma != null || dbeta != null) {
            paramGrads(x, xOff, mean, meanOff, rstd, rstdOff, dy, dyOff, dgamma, dgammaOff, dbeta, dbetaOff, rows, cols);
        }
        if (dx == null) return;
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                long ro = (long) r * cols;
                float mu = mean.get(F, 4 * (meanOff + r));
                float rs = rstd.get(F, 4 * (rstdOff + r));
                normBackwardRow(x, 4 * (xOff + ro), gamma, 4 * gammaOff, dy, 4 * (dyOff + ro), dx, 4 * (dxOff + ro),
                        cols, mu, rs, true);
            }
        });
    }

    // ---------------------------------------------------------------------------------------------
    // RMSNorm

    /**
     * RMSNorm forward (Llama): {@code y = x * rstd * gamma}, {@code rstd = 1 / sqrt(mean(x^2) + eps)}.
     *
     * @param gamma [cols] or null (scale 1)
     * @param rstd  [rows] output (overwritten) or null when not needed
     */
    public static void rmsNorm(MemorySegment x, long xOff, MemorySegment gamma, long gammaOff,
                               MemorySegment y, long yOff, MemorySegment rstd, long rstdOff,
                               int rows, int cols, float eps) {
        checkShape(rows, cols);
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                long xb = 4 * (xOff + (long) r * cols), yb = 4 * (yOff + (long) r * cols);
                float ms = sumSqDev(x, xb, cols, 0f) / cols;
                float rs = (float) (1.0 / Math.sqrt((double) ms + eps));
                if (rstd != null) rstd.set(F, 4 * (rstdOff + r), rs);
                layerNormApply(x, xb, gamma, 4 * gammaOff, null, 0, y, yb, cols, 0f, rs);
            }
        });
    }

    /**
     * RMSNorm backward. With {@code xhat = x * rstd} and {@code g = dy * gamma}:
     * {@code dx = rstd * (g - xhat * mean(g * xhat))} (overwritten), {@code dgamma += sum_rows(dy * xhat)}
     * (accumulated).
     *
     * @param gamma  [cols] or null (as in the forward)
     * @param rstd   [rows] saved by the forward
     * @param dx     [rows, cols] output or null to skip
     * @param dgamma [cols] accumulated or null to skip
     */
    public static void rmsNormBackward(MemorySegment x, long xOff, MemorySegment gamma, long gammaOff,
                                       MemorySegment rstd, long rstdOff, MemorySegment dy, long dyOff,
                                       MemorySegment dx, long dxOff, MemorySegment dgamma, long dgammaOff,
                                       int rows, int cols) {
        checkShape(rows, cols);
        if (dgamma != null) {
            paramGrads(x, xOff, null, 0, rstd, rstdOff, dy, dyOff, dgamma, dgammaOff, null, 0, rows, cols);
        }
        if (dx == null) return;
        CpuThreads.parallelFor(rows, grain(cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                long ro = (long) r * cols;
                float rs = rstd.get(F, 4 * (rstdOff + r));
                normBackwardRow(x, 4 * (xOff + ro), gamma, 4 * gammaOff, dy, 4 * (dyOff + ro), dx, 4 * (dxOff + ro),
                        cols, 0f, rs, false);
            }
        });
    }

    // ---------------------------------------------------------------------------------------------

    private static float sum(MemorySegment x, long xb, int n) {
        int i = 0, bound = S.loopBound(n);
        float s = 0f;
        if (bound > 0) {
            var acc = FloatVector.zero(S);
            for (; i < bound; i += L) acc = acc.add(FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE));
            s = VectorMath.sum(acc);
        }
        for (; i < n; i++) s += x.get(F, xb + 4L * i);
        return s;
    }

    /** Sum of (x - mu)^2. */
    private static float sumSqDev(MemorySegment x, long xb, int n, float mu) {
        int i = 0, bound = S.loopBound(n);
        float s = 0f;
        if (bound > 0) {
            var acc = FloatVector.zero(S);
            for (; i < bound; i += L) {
                var d = FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).sub(mu);
                acc = d.fma(d, acc);
            }
            s = VectorMath.sum(acc);
        }
        for (; i < n; i++) {
            float d = x.get(F, xb + 4L * i) - mu;
            s += d * d;
        }
        return s;
    }

    /** y = (x - mu) * rs * gamma + beta, gamma/beta nullable; gb/bb are byte offsets. */
    private static void layerNormApply(MemorySegment x, long xb, MemorySegment gamma, long gb, MemorySegment beta, long bb,
                                       MemorySegment y, long yb, int n, float mu, float rs) {
        int i = 0, bound = S.loopBound(n);
        for (; i < bound; i += L) {
            var v = FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).sub(mu).mul(rs);
            if (gamma != null) v = v.mul(FloatVector.fromMemorySegment(S, gamma, gb + 4L * i, LE));
            if (beta != null) v = v.add(FloatVector.fromMemorySegment(S, beta, bb + 4L * i, LE));
            v.intoMemorySegment(y, yb + 4L * i, LE);
        }
        for (; i < n; i++) {
            float v = (x.get(F, xb + 4L * i) - mu) * rs;
            if (gamma != null) v *= gamma.get(F, gb + 4L * i);
            if (beta != null) v += beta.get(F, bb + 4L * i);
            y.set(F, yb + 4L * i, v);
        }
    }

    /**
     * dx = rs * (g - [centered ? mean(g) : 0] - xhat * mean(g * xhat)), xhat = (x - mu) * rs, g = dy * gamma.
     */
    private static void normBackwardRow(MemorySegment x, long xb, MemorySegment gamma, long gb, MemorySegment dy, long dyb,
                                        MemorySegment dx, long dxb, int n, float mu, float rs, boolean centered) {
        int i = 0, bound = S.loopBound(n);
        float sg = 0f, sgx = 0f;
        if (bound > 0) {
            var accG = FloatVector.zero(S);
            var accGx = FloatVector.zero(S);
            for (; i < bound; i += L) {
                var xh = FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).sub(mu).mul(rs);
                var g = FloatVector.fromMemorySegment(S, dy, dyb + 4L * i, LE);
                if (gamma != null) g = g.mul(FloatVector.fromMemorySegment(S, gamma, gb + 4L * i, LE));
                accG = accG.add(g);
                accGx = g.fma(xh, accGx);
            }
            sg = VectorMath.sum(accG);
            sgx = VectorMath.sum(accGx);
        }
        for (; i < n; i++) {
            float xh = (x.get(F, xb + 4L * i) - mu) * rs;
            float g = dy.get(F, dyb + 4L * i);
            if (gamma != null) g *= gamma.get(F, gb + 4L * i);
            sg += g;
            sgx += g * xh;
        }
        float a = centered ? sg / n : 0f;
        float b = sgx / n;
        i = 0;
        for (; i < bound; i += L) {
            var xh = FloatVector.fromMemorySegment(S, x, xb + 4L * i, LE).sub(mu).mul(rs);
            var g = FloatVector.fromMemorySegment(S, dy, dyb + 4L * i, LE);
            if (gamma != null) g = g.mul(FloatVector.fromMemorySegment(S, gamma, gb + 4L * i, LE));
            g.sub(a).sub(xh.mul(b)).mul(rs).intoMemorySegment(dx, dxb + 4L * i, LE);
        }
        for (; i < n; i++) {
            float xh = (x.get(F, xb + 4L * i) - mu) * rs;
            float g = dy.get(F, dyb + 4L * i);
            if (gamma != null) g *= gamma.get(F, gb + 4L * i);
            dx.set(F, dxb + 4L * i, (g - a - xh * b) * rs);
        }
    }

    /**
     * dgamma[j] += sum_r dy[r, j] * (x[r, j] - mean[r]) * rstd[r]; dbeta[j] += sum_r dy[r, j].
     * Each column block is owned by one thread and summed over rows in order: thread-safe and
     * deterministic. mean == null means 0 (RMSNorm).
     */
    private static void paramGrads(MemorySegment x, long xOff, MemorySegment mean, long meanOff, MemorySegment rstd, long rstdOff,
                                   MemorySegment dy, long dyOff, MemorySegment dgamma, long dgOff, MemorySegment dbeta, long dbOff,
                                   int rows, int cols) {
        int blocks = (cols + COL_BLOCK - 1) / COL_BLOCK;
        int grainBlocks = Math.max(1, GRAIN_ELEMS / Math.max(1, rows * COL_BLOCK));
        CpuThreads.parallelFor(blocks, grainBlocks, (b0, b1) -> {
            float[] accG = new float[COL_BLOCK];
            float[] accB = new float[COL_BLOCK];
            for (int blk = b0; blk < b1; blk++) {
                int c0 = blk * COL_BLOCK, w = Math.min(COL_BLOCK, cols - c0);
                java.util.Arrays.fill(accG, 0f);
                java.util.Arrays.fill(accB, 0f);
                int bound = S.loopBound(w);
                for (int r = 0; r < rows; r++) {
                    float mu = mean == null ? 0f : mean.get(F, 4 * (meanOff + r));
                    float rs = rstd.get(F, 4 * (rstdOff + r));
                    long xb = 4 * (xOff + (long) r * cols + c0), dyb = 4 * (dyOff + (long) r * cols + c0);
                    int j = 0;
                    for (; j < bound; j += L) {
                        var d = FloatVector.fromMemorySegment(S, dy, dyb + 4L * j, LE);
                        var xh = FloatVector.fromMemorySegment(S, x, xb + 4L * j, LE).sub(mu).mul(rs);
                        d.fma(xh, FloatVector.fromArray(S, accG, j)).intoArray(accG, j);
                        if (dbeta != null) d.add(FloatVector.fromArray(S, accB, j)).intoArray(accB, j);
                    }
                    for (; j < w; j++) {
                        float d = dy.get(F, dyb + 4L * j);
                        accG[j] += d * ((x.get(F, xb + 4L * j) - mu) * rs);
                        accB[j] += d;
                    }
                }
                for (int j = 0; j < w; j++) {
                    if (dgamma != null) {
                        long o = 4 * (dgOff + c0 + j);
                        dgamma.set(F, o, dgamma.get(F, o) + accG[j]);
                    }
                    if (dbeta != null) {
                        long o = 4 * (dbOff + c0 + j);
                        dbeta.set(F, o, dbeta.get(F, o) + accB[j]);
                    }
                }
            }
        });
    }

    private static int grain(int cols) {
        return Math.max(1, GRAIN_ELEMS / Math.max(1, cols));
    }

    private static void checkShape(int rows, int cols) {
        if (rows < 0 || cols < 1) throw new IllegalArgumentException("bad shape rows=" + rows + " cols=" + cols);
    }
}
