package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuNormTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuNormTest {
    static final float EPS = 1e-5f;

    // ---------------------------------------------------------------------------------------------
    // float64 references; gamma/beta may be null

    static double[][] layerNormRef(double[] x, double[] gamma, double[] beta, int rows, int cols) {
        double[] y = new double[x.length], mean = new double[rows], rstd = new double[rows];
        for (int r = 0; r < rows; r++) {
            double mu = 0, var = 0;
            for (int j = 0; j < cols; j++) mu += x[r * cols + j];
            mu /= cols;
            for (int j = 0; j < cols; j++) var += (x[r * cols + j] - mu) * (x[r * cols + j] - mu);
            var /= cols;
            double rs = 1 / Math.sqrt(var + EPS);
            mean[r] = mu;
            rstd[r] = rs;
            for (int j = 0; j < cols; j++) {
                y[r * cols + j] = (x[r * cols + j] - mu) * rs * (gamma == null ? 1 : gamma[j]) + (beta == null ? 0 : beta[j]);
            }
        }
        return new double[][] {y, mean, rstd};
    }

    /** Returns {dx, dgamma, dbeta}. */
    static double[][] layerNormBackRef(double[] x, double[] gamma, double[] dy, int rows, int cols) {
        double[][] f = layerNormRef(x, null, null, rows, cols);
        double[] xhat = f[0], rstd = f[2];
        double[] dx = new double[x.length], dg = new double[cols], db = new double[cols];
        for (int r = 0; r < rows; r++) {
            double a = 0, b = 0;
            for (int j = 0; j < cols; j++) {
                double g = dy[r * cols + j] * (gamma == null ? 1 : gamma[j]);
                a += g;
                b += g * xhat[r * cols + j];
                dg[j] += dy[r * cols + j] * xhat[r * cols + j];
                db[j] += dy[r * cols + j];
            }
            a /= cols;
            b /= cols;
            for (int j = 0; j < cols; j++) {
                double g = dy[r * cols + j] * (gamma == null ? 1 : gamma[j]);
                dx[r * cols + j] = rstd[r] * (g - a - xhat[r * cols + j] * b);
            }
        }
        return new double[][] {dx, dg, db};
    }

    static double[][] rmsNormRef(double[] x, double[] gamma, int rows, int cols) {
        double[] y = new double[x.length], rstd = new double[rows];
        for (int r = 0; r < rows; r++) {
            double ms = 0;
            for (int j = 0; j < cols; j++) ms += x[r * cols + j] * x[r * cols + j];
            double rs = 1 / Math.sqrt(ms / cols + EPS);
            rstd[r] = rs;
            for (int j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j] * rs * (gamma == null ? 1 : gamma[j]);
        }
        return new double[][] {y, rstd};
    }

    /** Returns {dx, dgamma}. */
    static double[][] rmsNormBackRef(double[] x, double[] gamma, double[] dy, int rows, int cols) {
        double[] rstd = rmsNormRef(x, null, rows, cols)[1];
        double[] dx = new double[x.length], dg = new double[cols];
        for (int r = 0; r < rows; r++) {
            double b = 0;
            for (int j = 0; j < cols; j++) {
                double xh = x[r * cols + j] * rstd[r];
                double g = dy[r * cols + j] * (gamma == null ? 1 : gamma[j]);
                b += g * xh;
                dg[j] += dy[r * cols + j] * xh;
            }
            b /= cols;
            for (int j = 0; j < cols; j++) {
                double xh = x[r * cols + j] * rstd[r];
                double g = dy[r * cols + j] * (gamma == null ? 1 : gamma[j]);
                dx[r * cols + j] = rstd[r] * (g - xh * b);
            }
        }
        return new double[][] {dx, dg};
    }

    static double[] concat(double[]... parts) {
        int n = 0;
        for (double[] p : parts) n += p.length;
        double[] r = new double[n];
        int o = 0;
        for (double[] p : parts) {
            System.arraycopy(p, 0, r, o, p.length);
            o += p.length;
        }
        return r;
    }

    static MemorySegment seg(double[] v) {
        return v == null ? null : f32(v);
    }

    // ---------------------------------------------------------------------------------------------

    @Test
    void layerNormMatchesFloat64() {
        var rnd = new Random(11);
        for (int cols : COLS) {
            for (int rows : ROWS) {
                for (int variant = 0; variant < 2; variant++) {
                    int n = rows * cols;
                    double[] x = rand(rnd, n, -1, 5), dy = rand(rnd, n, -1, 1);
                    double[] gamma = variant == 0 ? rand(rnd, cols, 0.5, 1.5) : null;
                    double[] beta = variant == 0 ? rand(rnd, cols, -1, 1) : null;
                    String what = "layerNorm " + rows + "x" + cols + (gamma == null ? " no affine" : "");
                    double[][] ref = layerNormRef(x, gamma, beta, rows, cols);
                    var xs = f32(x);
                    var gs = seg(gamma);
                    var ys = f32(n);
                    var ms = f32(rows);
                    var rs = f32(rows);
                    CpuNorm.layerNorm(xs, OFF, gs, OFF, seg(beta), OFF, ys, OFF, ms, OFF, rs, OFF, rows, cols, EPS);
                    assertClose(what + " y", ref[0], read(ys, n), 1e-5, 1e-5);
                    assertClose(what + " mean", ref[1], read(ms, rows), 1e-6, 1e-6);
                    assertClose(what + " rstd", ref[2], read(rs, rows), 1e-6, 1e-5);

                    double[][] back = layerNormBackRef(x, gamma, dy, rows, cols);
                    double[] dg0 = rand(rnd, cols, -1, 1), db0 = rand(rnd, cols, -1, 1);
                    var dxs = f32(n);
                    var dgs = f32(dg0);
                    var dbs = f32(db0);
                    CpuNorm.layerNormBackward(xs, OFF, gs, OFF, ms, OFF, rs, OFF, f32(dy), OFF, dxs, OFF, dgs, OFF, dbs, OFF, rows, cols);
                    assertClose(what + " dx", back[0], read(dxs, n), 1e-5, 1e-4);
                    double[] dgExp = back[1].clone(), dbExp = back[2].clone();
                    for (int j = 0; j < cols; j++) {
                        dgExp[j] += dg0[j];
                        dbExp[j] += db0[j];
                    }
                    assertClose(what + " dgamma (accumulated)", dgExp, read(dgs, cols), 1e-5, 1e-5);
                    assertClose(what + " dbeta (accumulated)", dbExp, read(dbs, cols), 1e-5, 1e-5);
                }
            }
        }
    }

    @Test
    void rmsNormMatchesFloat64() {
        var rnd = new Random(12);
        for (int cols : COLS) {
            for (int rows : ROWS) {
                for (int variant = 0; variant < 2; variant++) {
                    int n = rows * cols;
                    double[] x = rand(rnd, n, -3, 3), dy = rand(rnd, n, -1, 1);
                    double[] gamma = variant == 0 ? rand(rnd, cols, 0.5, 1.5) : null;
                    String what = "rmsNorm " + rows + "x" + cols + (gamma == null ? " no weight" : "");
                    double[][] ref = rmsNormRef(x, gamma, rows, cols);
                    var xs = f32(x);
                    var gs = seg(gamma);
                    var ys = f32(n);
                    var rs = f32(rows);
                    CpuNorm.rmsNorm(xs, OFF, gs, OFF, ys, OFF, rs, OFF, rows, cols, EPS);
                    assertClose(what + " y", ref[0], read(ys, n), 1e-5, 1e-5);
                    assertClose(what + " rstd", ref[1], read(rs, rows), 1e-6, 1e-5);

                    double[][] back = rmsNormBackRef(x, gamma, dy, rows, cols);
                    double[] dg0 = rand(rnd, cols, -1, 1);
                    var dxs = f32(n);
                    var dgs = f32(dg0);
                    CpuNorm.rmsNormBackward(xs, OFF, gs, OFF, rs, OFF, f32(dy), OFF, dxs, OFF, dgs, OFF, rows, cols);
                    assertClose(what + " dx", back[0], read(dxs, n), 1e-5, 1e-4);
                    double[] dgExp = back[1].clone();
                    for (int j = 0; j < cols; j++) dgExp[j] += dg0[j];
                    assertClose(what + " dgamma (accumulated)", dgExp, read(dgs, cols), 1e-5, 1e-5);
                }
            }
        }
    }

    @Test
    void analyticBackwardMatchesFiniteDifferences() {
        var rnd = new Random(13);
        for (int cols : new int[] {2, 3, 16, 17}) {
            int rows = 3, n = rows * cols;
            double[] x = rand(rnd, n, -2, 2), dy = rand(rnd, n, -1, 1);
            double[] gamma = rand(rnd, cols, 0.5, 1.5), beta = rand(rnd, cols, -1, 1);
            // LayerNorm as a function of (x, gamma, beta) at once
            double[][] lb = layerNormBackRef(x, gamma, dy, rows, cols);
            assertVjp("layerNorm " + cols, th -> layerNormRef(Arrays.copyOfRange(th, 0, n), Arrays.copyOfRange(th, n, n + cols),
                    Arrays.copyOfRange(th, n + cols, n + 2 * cols), rows, cols)[0], concat(x, gamma, beta), dy, concat(lb[0], lb[1], lb[2]));
            double[][] rb = rmsNormBackRef(x, gamma, dy, rows, cols);
            assertVjp("rmsNorm " + cols, th -> rmsNormRef(Arrays.copyOfRange(th, 0, n), Arrays.copyOfRange(th, n, n + cols), rows, cols)[0],
                    concat(x, gamma), dy, concat(rb[0], rb[1]));
        }
    }

    @Test
    void inPlaceAndOptionalOutputs() {
        var rnd = new Random(14);
        int rows = 5, cols = 33, n = rows * cols;
        double[] x = rand(rnd, n, -2, 2), dy = rand(rnd, n, -1, 1), gamma = rand(rnd, cols, 0.5, 1.5);
        var xs = f32(x);
        var gs = f32(gamma);
        var rs = f32(rows);
        var y = f32(x);
        CpuNorm.rmsNorm(y, OFF, gs, OFF, y, OFF, rs, OFF, rows, cols, EPS); // in place, y aliases x
        assertClose("rmsNorm in place", rmsNormRef(x, gamma, rows, cols)[0], read(y, n), 1e-5, 1e-5);
        var d = f32(dy);
        CpuNorm.rmsNormBackward(xs, OFF, gs, OFF, rs, OFF, d, OFF, d, OFF, null, 0, rows, cols); // dx aliases dy
        assertClose("rmsNorm backward in place", rmsNormBackRef(x, gamma, dy, rows, cols)[0], read(d, n), 1e-5, 1e-4);

        // dgamma/dbeta computed before dx overwrites dy in place; dx may be skipped
        var ms = f32(rows);
        var ln = f32(n);
        CpuNorm.layerNorm(xs, OFF, gs, OFF, null, 0, ln, OFF, ms, OFF, rs, OFF, rows, cols, EPS);
        var d2 = f32(dy);
        var dg = f32(cols);
        var db = f32(cols);
        CpuNorm.layerNormBackward(xs, OFF, gs, OFF, ms, OFF, rs, OFF, d2, OFF, d2, OFF, dg, OFF, db, OFF, rows, cols);
        double[][] ref = layerNormBackRef(x, gamma, dy, rows, cols);
        assertClose("layerNorm dx in place", ref[0], read(d2, n), 1e-5, 1e-4);
        assertClose("layerNorm dgamma in place", ref[1], read(dg, cols), 1e-5, 1e-5);
        assertClose("layerNorm dbeta in place", ref[2], read(db, cols), 1e-5, 1e-5);
        var dg2 = f32(cols);
        CpuNorm.layerNormBackward(xs, OFF, gs, OFF, ms, OFF, rs, OFF, f32(dy), OFF, null, 0, dg2, OFF, null, 0, rows, cols);
        assertClose("layerNorm dgamma only", ref[1], read(dg2, cols), 1e-5, 1e-5);
    }

    @Test
    void parameterGradientsAreDeterministicAcrossRuns() {
        var rnd = new Random(15);
        int rows = 257, cols = 200, n = rows * cols;
        double[] x = rand(rnd, n, -2, 2), dy = rand(rnd, n, -1, 1);
        var xs = f32(x);
        var rs = f32(rows);
        CpuNorm.rmsNorm(xs, OFF, null, 0, f32(n), OFF, rs, OFF, rows, cols, EPS);
        var dys = f32(dy);
        double[] first = null;
        for (int k = 0; k < 3; k++) {
            var dg = f32(cols);
            CpuNorm.rmsNormBackward(xs, OFF, null, 0, rs, OFF, dys, OFF, f32(n), OFF, dg, OFF, rows, cols);
            double[] got = read(dg, cols);
            if (first == null) {
                first = got;
                assertClose("rmsNorm dgamma large", rmsNormBackRef(x, null, dy, rows, cols)[1], got, 1e-4, 1e-5);
            } else {
                assertArrayEquals(first, got);
            }
        }
    }
}
