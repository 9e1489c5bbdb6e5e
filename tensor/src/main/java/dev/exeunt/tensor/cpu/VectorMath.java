package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Deterministic vector building blocks: results are bit-identical whether the caller runs interpreted,
 * C1- or C2-compiled.
 *
 * <p>The Vector API leaves the order of {@code reduceLanes(ADD)} unspecified (the C2 intrinsic and the
 * Java fallback add in different orders), and its transcendental lanewise operators ({@code EXP},
 * {@code TANH}, {@code LOG}, ...) call SVML-like stubs when intrinsified but {@code Math} when not, which
 * differ in the last bit. Everything here is built only from operations that are exactly specified by
 * IEEE 754 and implemented identically on both paths: lanewise add/sub/mul/fma/min/max, comparisons and
 * blends, integer shifts on the bit patterns, reinterpretation and constant rearranges.
 *
 * <p>Each vector function has a scalar twin ({@link #exp(float)}, {@link #tanh(float)}, {@link #log(float)},
 * {@link #exp(double)}) performing the same operations in the same order, so a loop's scalar tail gives
 * exactly the value the vector body would have given for that element.
 *
 * <p>Accuracy (measured by {@code VectorMathTest} against {@code Math} in double over dense sweeps of
 * the float range): float exp within 1.05 ulp, float log within 0.8 ulp, float tanh within 2.3 ulp, double exp
 * within 1 ulp. Special values follow {@code Math}: exp(NaN) = NaN, exp(-Inf) = 0, exp(+Inf) = +Inf and
 * overflow to +Inf, underflow through the subnormals to 0; {@code log(x < 0)} = NaN, log(±0) = -Inf,
 * log(+Inf) = +Inf; tanh(±Inf) = ±1, tanh keeps the sign of zero.
 */
public final class VectorMath {
    private VectorMath() {}

    // ---------------------------------------------------------------------------------------------
    // Fixed-order horizontal sums: a pairwise tree, lane i += lane i + h for h = L/2, L/4, ..., 1.

    private static final VectorShuffle<Float> R16_8 = VectorShuffle.iota(FloatVector.SPECIES_512, 8, 1, true),
            R16_4 = VectorShuffle.iota(FloatVector.SPECIES_512, 4, 1, true), R16_2 = VectorShuffle.iota(FloatVector.SPECIES_512, 2, 1, true),
            R16_1 = VectorShuffle.iota(FloatVector.SPECIES_512, 1, 1, true);
    private static final VectorShuffle<Float> R8_4 = VectorShuffle.iota(FloatVector.SPECIES_256, 4, 1, true),
            R8_2 = VectorShuffle.iota(FloatVector.SPECIES_256, 2, 1, true), R8_1 = VectorShuffle.iota(FloatVector.SPECIES_256, 1, 1, true);
    private static final VectorShuffle<Float> R4_2 = VectorShuffle.iota(FloatVector.SPECIES_128, 2, 1, true),
            R4_1 = VectorShuffle.iota(FloatVector.SPECIES_128, 1, 1, true);
    private static final VectorSpecies<Float>[] F_SPECIES = speciesF();
    /** The widest float vector this machine runs natively, in bits. */
    private static final int MAX_BITS = FloatVector.SPECIES_MAX.vectorBitSize();
    private static final VectorShuffle<Float>[][] F_SHUF = shufflesF();
    private static final VectorSpecies<Double>[] D_SPECIES = speciesD();
    private static final VectorShuffle<Double>[][] D_SHUF = shufflesD();

    @SuppressWarnings("unchecked")
    private static VectorSpecies<Float>[] speciesF() {
        return new VectorSpecies[] {FloatVector.SPECIES_64, FloatVector.SPECIES_128, FloatVector.SPECIES_256,
                FloatVector.SPECIES_512};
    }

    @SuppressWarnings("unchecked")
    private static VectorSpecies<Double>[] speciesD() {
        return new VectorSpecies[] {DoubleVector.SPECIES_64, DoubleVector.SPECIES_128, DoubleVector.SPECIES_256,
                DoubleVector.SPECIES_512};
    }

    @SuppressWarnings("unchecked")
    private static VectorShuffle<Float>[][] shufflesF() {
        var sp = speciesF();
        VectorShuffle<Float>[][] out = new VectorShuffle[sp.length][];
        for (int k = 0; k < sp.length; k++) out[k] = halves(sp[k]);
        return out;
    }

    @SuppressWarnings("unchecked")
    private static VectorShuffle<Double>[][] shufflesD() {
        var sp = speciesD();
        VectorShuffle<Double>[][] out = new VectorShuffle[sp.length][];
        for (int k = 0; k < sp.length; k++) out[k] = halves(sp[k]);
        return out;
    }

    /** Shuffles moving lane i + h to lane i, for h = L/2, L/4, ..., 1. */
    @SuppressWarnings("unchecked")
    private static <E> VectorShuffle<E>[] halves(VectorSpecies<E> s) {
        int n = s.length();
        int steps = Integer.numberOfTrailingZeros(n);
        VectorShuffle<E>[] out = new VectorShuffle[steps];
        for (int k = 0, h = n / 2; h >= 1; k++, h /= 2) {
            final int hh = h;
            out[k] = VectorShuffle.fromOp(s, i -> (i + hh) % n);
        }
        return out;
    }

    private static int speciesIndex(int length, int bytesPerLane) {
        // 64, 128, 256, 512 bits -> 0..3
        return Integer.numberOfTrailingZeros(length * bytesPerLane) - 3;
    }

    /**
     * Sum of the lanes of v in a fixed pairwise order (lane i += lane i + h for h = L/2, ..., 1), the same
     * whether compiled or interpreted. Equals {@link #sumReference(float[])} of {@code v.toArray()}.
     */
    public static float sum(FloatVector v) {
        // Constant shuffles (static final fields C2 folds; the array below is not): 3-4x faster in kernels
        // that sum lanes per output. Rotating by h adds lane i + h to lane i, the order documented above.
        // Vectors wider than the machine's are not tested for (MAX_BITS folds), so their never-taken branches
        // cost no part of an inlining kernel's C2 budget.
        if (MAX_BITS >= 512 && v.species() == FloatVector.SPECIES_512) {
            v = v.add(v.rearrange(R16_8));
            v = v.add(v.rearrange(R16_4));
            v = v.add(v.rearrange(R16_2));
            return v.add(v.rearrange(R16_1)).lane(0);
        }
        if (MAX_BITS >= 256 && v.species() == FloatVector.SPECIES_256) {
            v = v.add(v.rearrange(R8_4));
            v = v.add(v.rearrange(R8_2));
            return v.add(v.rearrange(R8_1)).lane(0);
        }
        if (v.species() == FloatVector.SPECIES_128) {
            v = v.add(v.rearrange(R4_2));
            return v.add(v.rearrange(R4_1)).lane(0);
        }
        int idx = speciesIndex(v.length(), 4);
        if (idx >= 0 && idx < 4 && v.species() == F_SPECIES[idx]) {
            VectorShuffle<Float>[] sh = F_SHUF[idx];
            for (VectorShuffle<Float> s : sh) v = v.add(v.rearrange(s));
            return v.lane(0);
        }
        return sumReference(v.toArray());
    }

    /** Sum of the lanes of v in the fixed pairwise order of {@link #sum(FloatVector)}. */
    public static double sum(DoubleVector v) {
        int idx = speciesIndex(v.length(), 8);
        if (idx >= 0 && idx < 4 && v.species() == D_SPECIES[idx]) {
            VectorShuffle<Double>[] sh = D_SHUF[idx];
            for (VectorShuffle<Double> s : sh) v = v.add(v.rearrange(s));
            return v.lane(0);
        }
        return sumReference(v.toArray());
    }

    /**
     * {@link #sum(FloatVector)} of the vector of species s stored at byte offset off of seg. Kernels that keep
     * several accumulators store them and sum them here: summed in the kernel, the sums' species tests and
     * shuffles pushed it past C2's inlining budget, and the vectors went to a call boxed (the skinny GEMM's
     * dot kernel).
     */
    public static float sumAt(VectorSpecies<Float> s, MemorySegment seg, long off) {
        return sum(FloatVector.fromMemorySegment(s, seg, off, ByteOrder.LITTLE_ENDIAN));
    }

    /** The scalar reference of {@link #sum(FloatVector)}: a pairwise tree over a power-of-two length. */
    public static float sumReference(float[] a) {
        float[] t = a.clone();
        for (int h = t.length / 2; h >= 1; h /= 2) for (int i = 0; i < h; i++) t[i] = t[i] + t[i + h];
        return t[0];
    }

    /** The scalar reference of {@link #sum(DoubleVector)}. */
    public static double sumReference(double[] a) {
        double[] t = a.clone();
        for (int h = t.length / 2; h >= 1; h /= 2) for (int i = 0; i < h; i++) t[i] = t[i] + t[i + h];
        return t[0];
    }

    // ---------------------------------------------------------------------------------------------
    // float exp: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, fma), exp(r) - 1 by its Taylor polynomial to
    // r^7 (truncation below 0.1 ulp), result 2^n + 2^n p in one fma. Where 2^n is not a normal float
    // (|n| > 126: overflow, the subnormal range, infinities; rare, checked per vector) the argument is
    // clamped to [-110, 89] (NaN passes) and 2^n applied in two steps, 2^(n>>1) * 2^(n - (n>>1)).

    private static final float SHIFT = 0x1.8p23f;
    private static final int SHIFT_BITS = Float.floatToRawIntBits(SHIFT);
    private static final float INV_LN2 = 0x1.715476p+0f;
    private static final float LN2_HI = 0x1.62e4p-1f;
    private static final float LN2_LO = 0x1.7f7d1cp-20f;
    private static final float EXP_LO = -110f, EXP_HI = 89f;
    private static final int ONE_BITS = 0x3f800000;
    /** {@code exp(x) < MIN_VALUE / 2} below this, so it rounds to 0. */
    private static final float EXP_ZERO = -104f;
    private static final float C2 = 1f / 2, C3 = 1f / 6, C4 = 1f / 24, C5 = 1f / 120, C6 = 1f / 720,
            C7 = 1f / 5040;

    /** {@code exp(r) - 1} for {@code |r| <= ln2/2}: r + r^2 (1/2 + r/6 + ... + r^5/5040). */
    private static FloatVector expm1Poly(FloatVector r) {
        var p = r.fma(C7, C6);
        p = p.fma(r, r.broadcast(C5));
        p = p.fma(r, r.broadcast(C4));
        p = p.fma(r, r.broadcast(C3));
        p = p.fma(r, r.broadcast(C2));
        return r.mul(r).fma(p, r);
    }

    private static float expm1Poly(float r) {
        float p = Math.fma(r, C7, C6);
        p = Math.fma(p, r, C5);
        p = Math.fma(p, r, C4);
        p = Math.fma(p, r, C3);
        p = Math.fma(p, r, C2);
        return Math.fma(r * r, p, r);
    }

    /** Deterministic e^x for every lane (within 1.05 ulp of the exact value). */
    public static FloatVector exp(FloatVector x) {
        var z = x.fma(INV_LN2, SHIFT);
        var n = z.sub(SHIFT);
        var r = n.fma(x.broadcast(-LN2_HI), x);
        r = n.fma(x.broadcast(-LN2_LO), r);
        var p = expm1Poly(r);
        // (bits(z) << 23) == n << 23: the shift constant's own bits leave the word
        var scale = (FloatVector) ((IntVector) z.reinterpretAsInts()).lanewise(VectorOperators.LSHL, 23)
                .add(ONE_BITS).reinterpretAsFloats();
        var res = p.fma(scale, scale);
        var special = n.abs().compare(VectorOperators.GT, 126f); // 2^n not a normal float; NaN is not special
        if (special.anyTrue()) {
            // below -104 (masked scores at -Inf, say) the result is 0; the rest needs the wide path
            var zero = x.compare(VectorOperators.LT, EXP_ZERO);
            res = res.blend(0f, zero);
            var wide = special.andNot(zero);
            if (wide.anyTrue()) res = res.blend(expWide(x), wide);
        }
        return res;
    }

    /** exp for any argument (overflow, the subnormal range, infinities), scaling by 2^n in two steps. */
    private static FloatVector expWide(FloatVector x) {
        x = x.max(EXP_LO).min(EXP_HI);
        var z = x.fma(INV_LN2, SHIFT);
        var n = z.sub(SHIFT);
        var r = n.fma(x.broadcast(-LN2_HI), x);
        r = n.fma(x.broadcast(-LN2_LO), r);
        var p = expm1Poly(r);
        var ni = ((IntVector) z.reinterpretAsInts()).sub(SHIFT_BITS);
        var n1 = ni.lanewise(VectorOperators.ASHR, 1);
        var n2 = ni.sub(n1);
        var s1 = (FloatVector) n1.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        var s2 = (FloatVector) n2.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        return p.fma(s1, s1).mul(s2);
    }

    /** The scalar twin of {@link #exp(FloatVector)}: the same value as any lane would give. */
    public static float exp(float x) {
        float z = Math.fma(x, INV_LN2, SHIFT);
        float n = z - SHIFT;
        if (Math.abs(n) > 126f) return x < EXP_ZERO ? 0f : expWide(x);
        float r = Math.fma(n, -LN2_HI, x);
        r = Math.fma(n, -LN2_LO, r);
        float p = expm1Poly(r);
        float scale = Float.intBitsToFloat((Float.floatToRawIntBits(z) << 23) + ONE_BITS);
        return Math.fma(p, scale, scale);
    }

    private static float expWide(float x) {
        x = Math.min(Math.max(x, EXP_LO), EXP_HI);
        float z = Math.fma(x, INV_LN2, SHIFT);
        float n = z - SHIFT;
        float r = Math.fma(n, -LN2_HI, x);
        r = Math.fma(n, -LN2_LO, r);
        float p = expm1Poly(r);
        int ni = Float.floatToRawIntBits(z) - SHIFT_BITS;
        int n1 = ni >> 1, n2 = ni - n1;
        float s1 = Float.intBitsToFloat((n1 + 127) << 23), s2 = Float.intBitsToFloat((n2 + 127) << 23);
        return Math.fma(p, s1, s1) * s2;
    }

    // ---------------------------------------------------------------------------------------------
    // float tanh from e = exp(-2|x|) = 2^n (1 + p): tanh|x| = (1 - e) / (1 + e), written as -q / (1 + e) with
    // q = e - 1 = p 2^n + (2^n - 1) for small |x| (relative accuracy near 0, since the polynomial starts with
    // r exactly), and as 1 - 2e / (1 + e) for larger |x| (the subtraction is then exact-ish and the error of
    // the small quotient is scaled down). Numerators and the denominator p 2^n + (2^n + 1) round once each.
    // Beyond |x| = 10, tanh is 1 in float. The sign is copied from x (so tanh(-0) = -0).

    private static final int SIGN = 0x80000000;
    /** atanh(1/2): below it tanh = -q / (e + 1), above it 1 - 2e / (e + 1), e = exp(-2|x|), q = e - 1. */
    private static final float TANH_SPLIT = 0.5493f;

    public static FloatVector tanh(FloatVector x) {
        var a = x.abs();
        var y = a.mul(-2f).max(-20f);
        var z = y.fma(INV_LN2, SHIFT);
        var n = z.sub(SHIFT);
        var r = n.fma(x.broadcast(-LN2_HI), y);
        r = n.fma(x.broadcast(-LN2_LO), r);
        var p = expm1Poly(r);
        var ni = ((IntVector) z.reinterpretAsInts()).sub(SHIFT_BITS);
        var t = (FloatVector) ni.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        var large = a.compare(VectorOperators.GE, TANH_SPLIT);
        // e = exp(-2a) = p t + t, q = e - 1, e + 1 = p t + (t + 1), each rounded once
        var num = p.fma(t, t.sub(1f)).neg().blend(p.fma(t, t).mul(2f), large);
        var ratio = num.div(p.fma(t, t.add(1f)));
        var res = ratio.blend(ratio.neg().add(1f), large);
        var bits = ((IntVector) res.reinterpretAsInts()).and(~SIGN)
                .or(((IntVector) x.reinterpretAsInts()).and(SIGN));
        return (FloatVector) bits.reinterpretAsFloats();
    }

    /** The scalar twin of {@link #tanh(FloatVector)}. */
    public static float tanh(float x) {
        float a = Math.abs(x);
        float y = Math.max(a * -2f, -20f);
        float z = Math.fma(y, INV_LN2, SHIFT);
        float n = z - SHIFT;
        float r = Math.fma(n, -LN2_HI, y);
        r = Math.fma(n, -LN2_LO, r);
        float p = expm1Poly(r);
        int ni = Float.floatToRawIntBits(z) - SHIFT_BITS;
        float t = Float.intBitsToFloat((ni + 127) << 23);
        boolean large = a >= TANH_SPLIT;
        float num = large ? Math.fma(p, t, t) * 2f : -Math.fma(p, t, t - 1f);
        float ratio = num / Math.fma(p, t, t + 1f);
        float res = large ? 1f - ratio : ratio;
        return Float.intBitsToFloat((Float.floatToRawIntBits(res) & ~SIGN) | (Float.floatToRawIntBits(x) & SIGN));
    }

    // ---------------------------------------------------------------------------------------------
    // float log: x = 2^k m with m in [2/3, 4/3) (subnormals prescaled by 2^23), f = m - 1 exactly,
    // s = f / (2 + f), log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with R the atanh series to s^10
    // (fdlibm's arrangement), plus k ln2 in two parts.

    private static final int OFF = 0x3f2aaaab; // bits of 2/3
    private static final float LG1 = 2f / 3, LG2 = 2f / 5, LG3 = 2f / 7, LG4 = 2f / 9, LG5 = 2f / 11;
    private static final float LOG_LN2_HI = Float.intBitsToFloat(0x3f317180), LOG_LN2_LO = Float.intBitsToFloat(0x3717f7d1);
    private static final float MIN_NORMAL = Float.MIN_NORMAL, TWO23 = 0x1p23f;

    public static FloatVector log(FloatVector x) {
        var sub = x.compare(VectorOperators.LT, MIN_NORMAL);
        var xs = x.blend(x.mul(TWO23), sub);
        var adj = x.broadcast(0f).blend(-23f, sub);
        var u = ((IntVector) xs.reinterpretAsInts()).sub(OFF);
        var k = (FloatVector) u.lanewise(VectorOperators.ASHR, 23).convert(VectorOperators.I2F, 0);
        k = k.add(adj);
        var m = (FloatVector) u.and(0x007fffff).add(OFF).reinterpretAsFloats();
        var f = m.sub(1f);
        var s = f.div(f.add(2f));
        var z = s.mul(s);
        var rr = z.fma(LG5, LG4);
        rr = rr.fma(z, x.broadcast(LG3));
        rr = rr.fma(z, x.broadcast(LG2));
        rr = rr.fma(z, x.broadcast(LG1));
        rr = rr.mul(z);
        var hfsq = f.mul(f).mul(0.5f);
        var inner = hfsq.sub(s.fma(hfsq.add(rr), k.mul(LOG_LN2_LO))).sub(f);
        var res = k.fma(x.broadcast(LOG_LN2_HI), inner.neg());
        // special values: NaN and +Inf give x, x < 0 gives NaN, +-0 gives -Inf
        res = res.blend(x, x.test(VectorOperators.IS_NAN).or(x.compare(VectorOperators.EQ, Float.POSITIVE_INFINITY)));
        res = res.blend(Float.NaN, x.compare(VectorOperators.LT, 0f));
        return res.blend(Float.NEGATIVE_INFINITY, x.compare(VectorOperators.EQ, 0f));
    }

    /** The scalar twin of {@link #log(FloatVector)}. */
    public static float log(float x) {
        boolean sub = x < MIN_NORMAL;
        float xs = sub ? x * TWO23 : x;
        float adj = sub ? -23f : 0f;
        int u = Float.floatToRawIntBits(xs) - OFF;
        float k = (float) (u >> 23);
        k = k + adj;
        float m = Float.intBitsToFloat((u & 0x007fffff) + OFF);
        float f = m - 1f;
        float s = f / (f + 2f);
        float z = s * s;
        float rr = Math.fma(z, LG5, LG4);
        rr = Math.fma(rr, z, LG3);
        rr = Math.fma(rr, z, LG2);
        rr = Math.fma(rr, z, LG1);
        rr = rr * z;
        float hfsq = f * f * 0.5f;
        float inner = (hfsq - Math.fma(s, hfsq + rr, k * LOG_LN2_LO)) - f;
        float res = Math.fma(k, LOG_LN2_HI, -inner);
        if (Float.isNaN(x) || x == Float.POSITIVE_INFINITY) res = x;
        if (x < 0f) res = Float.NaN;
        if (x == 0f) res = Float.NEGATIVE_INFINITY;
        return res;
    }

    // ---------------------------------------------------------------------------------------------
    // double exp: the float scheme in double, fdlibm's Cody-Waite split and the Taylor polynomial of
    // exp(r) - 1 to r^13 (Estrin's scheme); |n| > 1022 takes the clamped two-step path
    // ([-760, 710]).

    private static final double SHIFT_D = 0x1.8p52;
    private static final long SHIFT_D_BITS = Double.doubleToRawLongBits(SHIFT_D);
    private static final double INV_LN2_D = 1.44269504088896338700e+00;
    private static final double LN2_HI_D = 6.93147180369123816490e-01, LN2_LO_D = 1.90821492927058770002e-10;
    private static final double EXP_LO_D = -760, EXP_HI_D = 710;
    private static final long ONE_BITS_D = 0x3ff0000000000000L;
    private static final double[] INV_FACT = invFact();

    private static double[] invFact() {
        double[] c = new double[14];
        double f = 1;
        for (int k = 1; k < 14; k++) {
            f *= k;
            c[k] = 1.0 / f;
        }
        return c;
    }

    private static final double D2 = INV_FACT[2], D3 = INV_FACT[3], D4 = INV_FACT[4], D5 = INV_FACT[5],
            D6 = INV_FACT[6], D7 = INV_FACT[7], D8 = INV_FACT[8], D9 = INV_FACT[9], D10 = INV_FACT[10],
            D11 = INV_FACT[11], D12 = INV_FACT[12], D13 = INV_FACT[13];

    /** Deterministic e^x for every lane in double (within 1 ulp). */
    public static DoubleVector exp(DoubleVector x) {
        var z = x.fma(INV_LN2_D, SHIFT_D);
        var n = z.sub(SHIFT_D);
        var p = expm1PolyD(x, n);
        var scale = (DoubleVector) ((LongVector) z.reinterpretAsLongs()).lanewise(VectorOperators.LSHL, 52)
                .add(ONE_BITS_D).reinterpretAsDoubles();
        var res = p.fma(scale, scale);
        var special = n.abs().compare(VectorOperators.GT, 1022.0);
        if (special.anyTrue()) res = res.blend(expWide(x), special);
        return res;
    }

    /** exp(r) - 1 for r = x - n ln2 (Cody-Waite), by Taylor to r^13 evaluated with Estrin's scheme. */
    private static DoubleVector expm1PolyD(DoubleVector x, DoubleVector n) {
        var r = n.fma(x.broadcast(-LN2_HI_D), x);
        r = n.fma(x.broadcast(-LN2_LO_D), r);
        var r2 = r.mul(r);
        var r4 = r2.mul(r2);
        // p(r) = sum_{k=2..13} r^(k-2) / k!, so that expm1 = r + r^2 p
        var a = r.fma(D3, D2);      // D2 + D3 r
        var b = r.fma(D5, D4);
        var c = r.fma(D7, D6);
        var d = r.fma(D9, D8);
        var e = r.fma(D11, D10);
        var f = r.fma(D13, D12);
        var ab = b.fma(r2, a);      // a + b r^2
        var cd = d.fma(r2, c);
        var ef = f.fma(r2, e);
        var cdef = ef.fma(r4, cd);  // cd + ef r^4
        var p = cdef.fma(r4, ab);   // ab + cdef r^4
        return r2.fma(p, r);
    }

    private static double expm1PolyD(double x, double n) {
        double r = Math.fma(n, -LN2_HI_D, x);
        r = Math.fma(n, -LN2_LO_D, r);
        double r2 = r * r;
        double r4 = r2 * r2;
        double a = Math.fma(r, D3, D2), b = Math.fma(r, D5, D4), c = Math.fma(r, D7, D6);
        double d = Math.fma(r, D9, D8), e = Math.fma(r, D11, D10), f = Math.fma(r, D13, D12);
        double ab = Math.fma(b, r2, a), cd = Math.fma(d, r2, c), ef = Math.fma(f, r2, e);
        double cdef = Math.fma(ef, r4, cd);
        double p = Math.fma(cdef, r4, ab);
        return Math.fma(r2, p, r);
    }

    private static DoubleVector expWide(DoubleVector x) {
        x = x.max(EXP_LO_D).min(EXP_HI_D);
        var z = x.fma(INV_LN2_D, SHIFT_D);
        var n = z.sub(SHIFT_D);
        var p = expm1PolyD(x, n);
        var ni = ((LongVector) z.reinterpretAsLongs()).sub(SHIFT_D_BITS);
        var n1 = ni.lanewise(VectorOperators.ASHR, 1);
        var n2 = ni.sub(n1);
        var s1 = (DoubleVector) n1.add(1023).lanewise(VectorOperators.LSHL, 52).reinterpretAsDoubles();
        var s2 = (DoubleVector) n2.add(1023).lanewise(VectorOperators.LSHL, 52).reinterpretAsDoubles();
        return p.fma(s1, s1).mul(s2);
    }

    /** The scalar twin of {@link #exp(DoubleVector)}. */
    public static double exp(double x) {
        double z = Math.fma(x, INV_LN2_D, SHIFT_D);
        double n = z - SHIFT_D;
        if (Math.abs(n) > 1022.0) return expWide(x);
        double p = expm1PolyD(x, n);
        double scale = Double.longBitsToDouble((Double.doubleToRawLongBits(z) << 52) + ONE_BITS_D);
        return Math.fma(p, scale, scale);
    }

    private static double expWide(double x) {
        x = Math.min(Math.max(x, EXP_LO_D), EXP_HI_D);
        double z = Math.fma(x, INV_LN2_D, SHIFT_D);
        double n = z - SHIFT_D;
        double p = expm1PolyD(x, n);
        long ni = Double.doubleToRawLongBits(z) - SHIFT_D_BITS;
        long n1 = ni >> 1, n2 = ni - n1;
        double s1 = Double.longBitsToDouble((n1 + 1023) << 52), s2 = Double.longBitsToDouble((n2 + 1023) << 52);
        return Math.fma(p, s1, s1) * s2;
    }
}
