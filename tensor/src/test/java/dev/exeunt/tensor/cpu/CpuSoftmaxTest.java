package dev.exeunt.tensor.cpu;

import static dev.exeunt.tensor.cpu.CpuNormTestSupport.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuSoftmaxTest {

    static double[] softmaxRef(double[] x, int rows, int cols) {
        double[] y = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double m = Double.NEGATIVE_INFINITY, s = 0;
            for (int j = 0; j < cols; j++) m = Math.max(m, x[r * cols + j]);
            for (int j = 0; j < cols; j++) s += Math.exp(x[r * cols + j] - m);
            for (int j = 0; j < cols; j++) y[r * cols + j] = Math.exp(x[r * cols + j] - m) / s;
        }
        return y;
    }

    static double[] logSoftmaxRef(double[] x, int rows, int cols) {
        double[] y = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double m = Double.NEGATIVE_INFINITY, s = 0;
            for (int j = 0; j < cols; j++) m = Math.max(m, x[r * cols + j]);
            for (int j = 0; j < cols; j++) s += Math.exp(x[r * cols + j] - m);
            for (int j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j] - m - Math.log(s);
        }
        return y;
    }

    /** dx = y * (dy - sum(dy * y)) with y = softmax(x). */
    static double[] softmaxBackRef(double[] x, double[] dy, int rows, int cols) {
        double[] y = softmaxRef(x, rows, cols), dx = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double d = 0;
            for (int j = 0; j < cols; j++) d += dy[r * cols + j] * y[r * cols + j];
            for (int j = 0; j < cols; j++) dx[r * cols + j] = y[r * cols + j] * (dy[r * cols + j] - d);
        }
        return dx;
    }

    /** dx = dy - softmax(x) * sum(dy). */
    static double[] logSoftmaxBackRef(double[] x, double[] dy, int rows, int cols) {
        double[] p = softmaxRef(x, rows, cols), dx = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int j = 0; j < cols; j++) s += dy[r * cols + j];
            for (int j = 0; j < cols; j++) dx[r * cols + j] = dy[r * cols + j] - p[r * cols + j] * s;
        }
        return dx;
    }

    @Test
    void forwardAndBackwardMatchFloat64() {
        var rnd = new Random(1);
        for (int cols : COLS) {
            for (int rows : ROWS) {
                int n = rows * cols;
                double[] x = rand(rnd, n, -6, 6), dy = rand(rnd, n, -1, 1);
                var xs = f32(x);
                var ys = f32(n);
                CpuSoftmax.softmax(xs, OFF, ys, OFF, rows, cols);
                double[] y = read(ys, n);
                assertClose("softmax " + rows + "x" + cols, softmaxRef(x, rows, cols), y, 1e-7, 2e-6);
                var dxs = f32(n);
                CpuSoftmax.softmaxBackward(ys, OFF, f32(dy), OFF, dxs, OFF, rows, cols);
                assertClose("softmax backward " + rows + "x" + cols, softmaxBackRef(x, dy, rows, cols), read(dxs, n), 1e-7, 1e-5);

                var ls = f32(n);
                CpuSoftmax.logSoftmax(xs, OFF, ls, OFF, rows, cols);
                assertClose("logSoftmax " + rows + "x" + cols, logSoftmaxRef(x, rows, cols), read(ls, n), 2e-6, 1e-6);
                CpuSoftmax.logSoftmaxBackward(ls, OFF, f32(dy), OFF, dxs, OFF, rows, cols);
                assertClose("logSoftmax backward " + rows + "x" + cols, logSoftmaxBackRef(x, dy, rows, cols), read(dxs, n), 1e-6, 1e-5);
            }
        }
    }

    @Test
    void analyticBackwardMatchesFiniteDifferences() {
        var rnd = new Random(2);
        for (int cols : new int[] {1, 3, 16, 17, 33}) {
            int rows = 2, n = rows * cols;
            double[] x = rand(rnd, n, -3, 3), dy = rand(rnd, n, -1, 1);
            assertVjp("softmax " + cols, v -> softmaxRef(v, rows, cols), x, dy, softmaxBackRef(x, dy, rows, cols));
            assertVjp("logSoftmax " + cols, v -> logSoftmaxRef(v, rows, cols), x, dy, logSoftmaxBackRef(x, dy, rows, cols));
        }
    }

    @Test
    void hugeLogitsInPlaceAndMaskedRows() {
        var rnd = new Random(3);
        int rows = 3, cols = 33, n = rows * cols;
        double[] x = rand(rnd, n, -1e4, 1e4);
        x[5] = 1e4;
        x[40] = -1e4;
        var s = f32(x);
        CpuSoftmax.softmax(s, OFF, s, OFF, rows, cols); // in place
        assertClose("softmax huge", softmaxRef(x, rows, cols), read(s, n), 1e-7, 2e-6);
        var l = f32(x);
        CpuSoftmax.logSoftmax(l, OFF, l, OFF, rows, cols);
        assertClose("logSoftmax huge", logSoftmaxRef(x, rows, cols), read(l, n), 1e-6, 1e-6);

        double[] masked = new double[17];
        java.util.Arrays.fill(masked, Double.NEGATIVE_INFINITY);
        var m = f32(masked);
        var y = f32(17);
        CpuSoftmax.softmax(m, OFF, y, OFF, 1, 17);
        for (double v : read(y, 17)) assertEquals(0.0, v);
        masked[4] = 0.5;
        CpuSoftmax.softmax(f32(masked), OFF, y, OFF, 1, 17);
        double[] out = read(y, 17);
        for (int j = 0; j < 17; j++) assertEquals(j == 4 ? 1.0 : 0.0, out[j]);
    }

    @Test
    void parallelRowsMatchSequential() {
        var rnd = new Random(4);
        int rows = 301, cols = 257, n = rows * cols;
        double[] x = rand(rnd, n, -5, 5);
        var ys = f32(n);
        CpuSoftmax.softmax(f32(x), OFF, ys, OFF, rows, cols);
        assertClose("softmax parallel", softmaxRef(x, rows, cols), read(ys, n), 1e-7, 2e-6);
    }
}
