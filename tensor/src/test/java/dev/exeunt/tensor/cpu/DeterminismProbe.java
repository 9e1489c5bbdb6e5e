package dev.exeunt.tensor.cpu;

import dev.exeunt.tensor.cpu.CpuAttention.Dims;
import dev.exeunt.tensor.cpu.CpuAttention.View;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.zip.CRC32;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Runs a fixed set of CPU kernels on fixed seeded inputs and hashes their outputs bit for bit (CRC32 of
 * the output bytes per kernel). {@link CpuDeterminismTest} compares the hashes of an interpreter-only
 * child JVM ({@code -Xint}, so every Vector API call takes the Java fallback) with those of the warm test
 * JVM (C2 intrinsics). Shapes are small, so -Xint stays fast, and deliberately not multiples of the
 * vector length, so scalar and masked tails are covered.
 *
 * <p>The entries whose names start with {@code control.} use the raw Vector API operations that are
 * <em>not</em> deterministic ({@code reduceLanes(ADD)}, {@code lanewise(EXP)}); they show whether the warm
 * run really used the intrinsics and are not compared.
 */
public final class DeterminismProbe {
    static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt I = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private DeterminismProbe() {}

    public static void main(String[] args) {
        int reps = args.length > 0 ? Integer.parseInt(args[0]) : 1;
        Map<String, String> h = null;
        for (int i = 0; i < reps; i++) h = run();
        h.forEach((k, v) -> System.out.println(k + "=" + v));
    }

    private static final Arena ARENA = Arena.ofAuto();

    static MemorySegment floats(Random rnd, int n, double scale) {
        var s = ARENA.allocate(4L * n, 64);
        for (int i = 0; i < n; i++) s.setAtIndex(F, i, (float) (rnd.nextGaussian() * scale));
        return s;
    }

    static MemorySegment zeros(int n) {
        return ARENA.allocate(4L * n, 64);
    }

    static String crc(MemorySegment... segs) {
        var c = new CRC32();
        for (var s : segs) c.update(s.asByteBuffer());
        return Long.toHexString(c.getValue());
    }

    static String bits(double... d) {
        var c = new CRC32();
        for (double v : d) {
            long b = Double.doubleToRawLongBits(v);
            for (int i = 0; i < 8; i++) c.update((int) (b >>> (8 * i)));
        }
        return Long.toHexString(c.getValue());
    }

    /** Hashes of every kernel's outputs, in a fixed order. */
    public static Map<String, String> run() {
        var out = new LinkedHashMap<String, String>();
        out.put("species", FloatVector.SPECIES_PREFERRED.toString());
        Random rnd = new Random(20240611);
        final int rows = 5, cols = 203, n = 1037;

        // softmax family
        var x = floats(rnd, rows * cols, 3);
        var y = zeros(rows * cols);
        var dy = floats(rnd, rows * cols, 1);
        var dx = zeros(rows * cols);
        CpuSoftmax.softmax(x, 0, y, 0, rows, cols);
        out.put("softmax", crc(y));
        CpuSoftmax.softmaxBackward(y, 0, dy, 0, dx, 0, rows, cols);
        out.put("softmaxBackward", crc(dx));
        CpuSoftmax.logSoftmax(x, 0, y, 0, rows, cols);
        out.put("logSoftmax", crc(y));
        CpuSoftmax.logSoftmaxBackward(y, 0, dy, 0, dx, 0, rows, cols);
        out.put("logSoftmaxBackward", crc(dx));

        // norms
        var gamma = floats(rnd, cols, 1);
        var beta = floats(rnd, cols, 1);
        var mean = zeros(rows);
        var rstd = zeros(rows);
        var dgamma = zeros(cols);
        var dbeta = zeros(cols);
        CpuNorm.layerNorm(x, 0, gamma, 0, beta, 0, y, 0, mean, 0, rstd, 0, rows, cols, 1e-5f);
        out.put("layerNorm", crc(y, mean, rstd));
        CpuNorm.layerNormBackward(x, 0, gamma, 0, mean, 0, rstd, 0, dy, 0, dx, 0, dgamma, 0, dbeta, 0, rows, cols);
        out.put("layerNormBackward", crc(dx, dgamma, dbeta));
        CpuNorm.rmsNorm(x, 0, gamma, 0, y, 0, rstd, 0, rows, cols, 1e-6f);
        out.put("rmsNorm", crc(y, rstd));
        CpuNorm.rmsNormBackward(x, 0, gamma, 0, rstd, 0, dy, 0, dx, 0, dgamma, 0, rows, cols);
        out.put("rmsNormBackward", crc(dx, dgamma));

        // activations (n is not a multiple of any vector length)
        var a = floats(rnd, n, 4);
        var ay = zeros(n);
        var ady = floats(rnd, n, 1);
        var adx = zeros(n);
        CpuActivation.geluTanh(a, 0, ay, 0, n);
        CpuActivation.geluTanhBackward(a, 0, ady, 0, adx, 0, n);
        out.put("geluTanh", crc(ay, adx));
        CpuActivation.geluErf(a, 0, ay, 0, n);
        CpuActivation.geluErfBackward(a, 0, ady, 0, adx, 0, n);
        out.put("geluErf", crc(ay, adx));
        CpuActivation.silu(a, 0, ay, 0, n);
        CpuActivation.siluBackward(a, 0, ady, 0, adx, 0, n);
        out.put("silu", crc(ay, adx));
        CpuActivation.tanh(a, 0, ay, 0, n);
        out.put("tanh", crc(ay));
        CpuActivation.exp(a, 0, ay, 0, n);
        out.put("exp", crc(ay));
        CpuActivation.log(ay, 0, adx, 0, n);
        out.put("log", crc(adx));

        // cross-entropy with stats, forward then backward
        var logits = floats(rnd, rows * cols, 4);
        var tgt = ARENA.allocate(4L * rows, 64);
        for (int r = 0; r < rows; r++) tgt.setAtIndex(I, r, rnd.nextInt(cols));
        var stats = zeros(2 * rows);
        var rowLoss = zeros(rows);
        var dlogits = zeros(rows * cols);
        var ce = CpuLoss.crossEntropy(logits, 0, rows, cols, tgt, 0).stats(stats, 0).rowLoss(rowLoss, 0).temperature(0.7f);
        var sums = ce.forward();
        ce.backward(0.25f, null, 0, dlogits, 0);
        out.put("crossEntropy", crc(stats, rowLoss, dlogits) + "/" + bits(sums.numerator(), sums.denominator()));
        var ce2 = CpuLoss.crossEntropy(logits, 0, rows, cols, tgt, 0);
        ce2.forward();
        ce2.backward(1f, null, 0, dlogits, 0);
        out.put("crossEntropyNoStats", crc(dlogits));

        // attention: GQA with a past, head dim not a multiple of the vector length
        int B = 1, T = 13, past = 3, Hq = 4, Hkv = 2, D = 24, S = past + T;
        var dims = Dims.of(B, T, past, Hq, Hkv, D);
        var q = View.contiguous(floats(rnd, B * T * Hq * D, 1), 0, T, Hq, D);
        var k = View.contiguous(floats(rnd, B * S * Hkv * D, 1), 0, S, Hkv, D);
        var v = View.contiguous(floats(rnd, B * S * Hkv * D, 1), 0, S, Hkv, D);
        var o = View.contiguous(zeros(B * T * Hq * D), 0, T, Hq, D);
        var lse = zeros(B * Hq * T);
        CpuAttention.forward(dims, q, k, v, o, lse, 0);
        out.put("attentionForward", crc(o.seg(), lse));
        var dO = View.contiguous(floats(rnd, B * T * Hq * D, 1), 0, T, Hq, D);
        var dQ = View.contiguous(zeros(B * T * Hq * D), 0, T, Hq, D);
        var dK = View.contiguous(zeros(B * S * Hkv * D), 0, S, Hkv, D);
        var dV = View.contiguous(zeros(B * S * Hkv * D), 0, S, Hkv, D);
        CpuAttention.backward(dims, q, k, v, o, lse, 0, dO, dQ, dK, dV);
        out.put("attentionBackward", crc(dQ.seg(), dK.seg(), dV.seg()));

        // GEMV (both orientations), GEMM (direct and packed sizes)
        int m = 37, kk = 203;
        var w = floats(rnd, m * kk, 0.5);
        var gx = floats(rnd, kk, 1);
        var gy = zeros(m);
        CpuGemm.sgemv(false, m, kk, 1f, w, 0, kk, gx, 0, 0f, gy, 0);
        out.put("gemv", crc(gy));
        var gxt = floats(rnd, m, 1);
        var gyt = zeros(kk);
        CpuGemm.sgemv(true, m, kk, 0.5f, w, 0, kk, gxt, 0, 0f, gyt, 0);
        out.put("gemvT", crc(gyt));
        var c1 = zeros(3 * kk);
        CpuGemm.sgemm(false, false, 3, kk, m, 1f, floats(rnd, 3 * m, 1), 0, m, w, 0, kk, 0f, c1, 0, kk);
        out.put("gemmSkinny", crc(c1));
        int gm = 45, gn = 67, gk = 131;
        var ga = floats(rnd, gm * gk, 1);
        var gb = floats(rnd, gk * gn, 1);
        var gc = floats(rnd, gm * gn, 1);
        CpuGemm.sgemm(false, false, gm, gn, gk, 1f, ga, 0, gk, gb, 0, gn, 0.5f, gc, 0, gn);
        var gtt = zeros(gk * gk);
        CpuGemm.sgemm(true, false, gk, gk, gm, 1f, ga, 0, gk, ga, 0, gk, 0f, gtt, 0, gk);
        out.put("gemm", crc(gc, gtt));

        // skinny GEMM (a few rows against a weight matrix, both layouts of B)
        var sa = floats(rnd, 5 * m, 1);
        var sc1 = zeros(5 * kk);
        CpuSkinnyGemm.gemm(false, 5, kk, m, sa, 0, m, w, 0, kk, sc1, 0, kk);
        var sc2 = zeros(5 * m);
        CpuSkinnyGemm.gemm(true, 5, m, kk, floats(rnd, 5 * kk, 1), 0, kk, w, 0, kk, sc2, 0, m);
        out.put("skinnyGemm", crc(sc1, sc2));

        // quantized GEMV
        int qn = 96, qm = 9;
        var qw = ARENA.allocate(CpuQuant.bytesQ8_0((long) qm * qn), 64);
        CpuQuant.quantizeQ8_0(floats(rnd, qm * qn, 1), 0, qw, 0, (long) qm * qn);
        var qx = floats(rnd, qn, 1);
        var qy = zeros(qm);
        CpuQuant.gemvQ8_0(qm, qn, qw, 0, qx, 0, qy, 0);
        var qw4 = ARENA.allocate(CpuQuant.bytesQ4_0((long) qm * qn), 64);
        CpuQuant.quantizeQ4_0(floats(rnd, qm * qn, 1), 0, qw4, 0, (long) qm * qn);
        var qy4 = zeros(qm);
        CpuQuant.gemvQ4_0(qm, qn, qw4, 0, qx, 0, qy4, 0);
        out.put("gemvQuant", crc(qy, qy4));

        // rotary embedding, forward then backward on another copy
        int rt = 7, rh = 3, rd = 24;
        var rx = floats(rnd, rt * rh * rd, 1);
        var rg = floats(rnd, rt * rh * rd, 1);
        CpuRope.forward(rx, 0, rh * rd, rd, rt, rh, rd, null, 5, 10000.0);
        CpuRope.backward(rg, 0, rh * rd, rd, rt, rh, rd, null, 5, 10000.0);
        out.put("rope", crc(rx, rg));

        // optimizer and reductions
        var p = floats(rnd, n, 1);
        var g = floats(rnd, n, 1);
        var m1 = zeros(n);
        var v1 = zeros(n);
        for (int step = 1; step <= 3; step++) CpuOptim.adamW(p, 0, g, 0, m1, 0, v1, 0, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
        out.put("adamW", crc(p, m1, v1));
        out.put("sumOfSquares", bits(CpuOptim.sumOfSquares(g, 0, n), CpuElementwise.sumOfSquares(g, 0, n)));
        var red = zeros(rows);
        CpuReduce.reduce(false, rows, cols, 1, x, 0, red, 0);
        out.put("reduceSum", crc(red));

        // controls: the raw, non-deterministic Vector API operations (not compared)
        var sp = FloatVector.SPECIES_PREFERRED;
        float acc = 0f;
        float[] buf = new float[sp.length()];
        for (int i = 0; i + sp.length() <= n; i += sp.length()) {
            var vv = FloatVector.fromMemorySegment(sp, a, 4L * i, ByteOrder.LITTLE_ENDIAN);
            acc += vv.lanewise(VectorOperators.EXP).reduceLanes(VectorOperators.ADD);
            vv.lanewise(VectorOperators.TANH).intoArray(buf, 0);
            for (float f : buf) acc += f;
        }
        out.put("control.rawVectorApi", Integer.toHexString(Float.floatToRawIntBits(acc)));
        return out;
    }
}
