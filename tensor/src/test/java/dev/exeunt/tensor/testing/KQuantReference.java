package dev.exeunt.tensor.testing;

import dev.exeunt.tensor.DType;

/**
 * Test-only k-quant quantizers (Q2_K, Q4_K, Q5_K, Q6_K, and Q3_K, which Exeunt only reads) writing llama.cpp's block layouts, so tests can build weights
 * of these types from floats. They are the simple min/max versions (llama.cpp's quantize_row_q4_K_ref searches
 * for better scales, so its bytes differ), written from the layout, independently of the kernels under test.
 */
public final class KQuantReference {
    private KQuantReference() {}

    /** Quantizes x (length a multiple of 256, row-major rows of such lengths) to consecutive super-blocks of type t. */
    public static byte[] quantize(DType t, float[] x) {
        if (x.length % 256 != 0) throw new IllegalArgumentException("length " + x.length + " is not a multiple of 256");
        int nb = x.length / 256;
        int bb = switch (t) {
            case Q4_K -> 144;
            case Q5_K -> 176;
            case Q6_K -> 210;
            case Q2_K -> 84;
            default -> throw new IllegalArgumentException(t + " is not a k-quant type");
        };
        byte[] out = new byte[nb * bb];
        for (int b = 0; b < nb; b++) {
            if (t == DType.Q6_K) q6(x, b * 256, out, b * bb);
            else if (t == DType.Q2_K) q2(x, b * 256, out, b * bb);
            else q45(t == DType.Q5_K, x, b * 256, out, b * bb);
        }
        return out;
    }

    private static void putF16(byte[] o, int at, float v) {
        short h = Float.floatToFloat16(v);
        o[at] = (byte) h;
        o[at + 1] = (byte) (h >> 8);
    }

    /** The value of largest magnitude among x[from, from + n), with its sign. */
    private static float extreme(float[] x, int from, int n) {
        float amax = 0, max = 0;
        for (int i = from; i < from + n; i++) {
            if (Math.abs(x[i]) > amax) {
                amax = Math.abs(x[i]);
                max = x[i];
            }
        }
        return max;
    }

    private static int clamp(int v, int lo, int hi) {
        return Math.max(lo, Math.min(hi, v));
    }

    /** Q4_K (nmax 15) or Q5_K (nmax 31): per 32 weights x ~ scale * q - min with min >= 0. */
    private static void q45(boolean five, float[] x, int xo, byte[] o, int at) {
        int nmax = five ? 31 : 15;
        float[] scale = new float[8], min = new float[8];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++) {
            float lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo = Math.min(lo, x[xo + 32 * j + l]);
                hi = Math.max(hi, x[xo + 32 * j + l]);
            }
            scale[j] = (hi - lo) / nmax;
            min[j] = -lo;
            maxScale = Math.max(maxScale, scale[j]);
            maxMin = Math.max(maxMin, min[j]);
        }
        float d = Float.float16ToFloat(Float.floatToFloat16(maxScale / 63));
        float dmin = Float.float16ToFloat(Float.floatToFloat16(maxMin / 63));
        putF16(o, at, d);
        putF16(o, at + 2, dmin);
        int[] ls = new int[8], lm = new int[8];
        for (int j = 0; j < 8; j++) {
            ls[j] = d > 0 ? clamp(Math.round(scale[j] / d), 0, 63) : 0;
            lm[j] = dmin > 0 ? clamp(Math.round(min[j] / dmin), 0, 63) : 0;
        }
        int sc = at + 4;
        for (int j = 0; j < 8; j++) {
            if (j < 4) {
                o[sc + j] = (byte) ls[j];
                o[sc + j + 4] = (byte) lm[j];
            } else {
                o[sc + j + 4] = (byte) ((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
                o[sc + j - 4] |= (byte) ((ls[j] >> 4) << 6);
                o[sc + j] |= (byte) ((lm[j] >> 4) << 6);
            }
        }
        int[] q = new int[256];
        for (int j = 0; j < 8; j++) {
            float s = d * ls[j], m = dmin * lm[j];
            for (int l = 0; l < 32; l++) {
                q[32 * j + l] = s > 0 ? clamp(Math.round((x[xo + 32 * j + l] + m) / s), 0, nmax) : 0;
            }
        }
        int qh = at + 16, qs = five ? at + 48 : at + 16;
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                int a = q[64 * k + l], b = q[64 * k + 32 + l];
                o[qs + 32 * k + l] = (byte) ((a & 0xF) | ((b & 0xF) << 4));
                if (five) o[qh + l] |= (byte) (((a >> 4) << (2 * k)) | ((b >> 4) << (2 * k + 1)));
            }
        }
    }

    /** Q6_K: per 16 weights x ~ scale * q with q in [-32, 31], scales int8 times one F16 d. */
    private static void q6(float[] x, int xo, byte[] o, int at) {
        float[] scale = new float[16];
        float maxAbs = 0;
        for (int g = 0; g < 16; g++) {
            scale[g] = extreme(x, xo + 16 * g, 16) / -32; // the extreme value maps to q = -32, the end of the range that is reached
            maxAbs = Math.max(maxAbs, Math.abs(scale[g]));
        }
        float d = Float.float16ToFloat(Float.floatToFloat16(maxAbs / 127));
        putF16(o, at + 208, d);
        int[] q = new int[256];
        for (int g = 0; g < 16; g++) {
            int ls = d > 0 ? clamp(Math.round(scale[g] / d), -128, 127) : 0;
            o[at + 192 + g] = (byte) ls;
            float s = d * ls;
            for (int l = 0; l < 16; l++) q[16 * g + l] = (s != 0 ? clamp(Math.round(x[xo + 16 * g + l] / s), -32, 31) : 0) + 32;
        }
        for (int h = 0; h < 2; h++) {
            for (int l = 0; l < 32; l++) {
                int q1 = q[128 * h + l], q2 = q[128 * h + 32 + l], q3 = q[128 * h + 64 + l], q4 = q[128 * h + 96 + l];
                o[at + 64 * h + l] = (byte) ((q1 & 0xF) | ((q3 & 0xF) << 4));
                o[at + 64 * h + 32 + l] = (byte) ((q2 & 0xF) | ((q4 & 0xF) << 4));
                o[at + 128 + 32 * h + l] = (byte) ((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }

    /**
     * Q3_K super-blocks (110 bytes each: hmask[32], qs[64], 12 bytes of 6-bit scales, F16 d), x ~ (d * sc) * q with
     * q in [-4, 3] and sc in [-32, 31] per 16 weights; Q3_K has no {@link DType}, so it is its own method.
     */
    public static byte[] quantizeQ3K(float[] x) {
        if (x.length % 256 != 0) throw new IllegalArgumentException("length " + x.length + " is not a multiple of 256");
        byte[] out = new byte[x.length / 256 * 110];
        for (int b = 0; b < x.length / 256; b++) q3(x, b * 256, out, b * 110);
        return out;
    }

    private static void q3(float[] x, int xo, byte[] o, int at) {
        float[] scale = new float[16];
        float maxAbs = 0;
        for (int g = 0; g < 16; g++) {
            scale[g] = extreme(x, xo + 16 * g, 16) / -4; // the extreme value maps to q = -4
            maxAbs = Math.max(maxAbs, Math.abs(scale[g]));
        }
        float d = Float.float16ToFloat(Float.floatToFloat16(maxAbs / 31));
        putF16(o, at + 108, d);
        for (int g = 0; g < 16; g++) {
            int sc = d > 0 ? clamp(Math.round(scale[g] / d), -32, 31) : 0;
            int u = sc + 32;
            o[at + 96 + g % 8] |= (byte) ((u & 0xF) << (4 * (g / 8)));
            o[at + 104 + g % 4] |= (byte) ((u >> 4) << (2 * (g / 4)));
            float s = d * sc;
            for (int l = 0; l < 16; l++) {
                int i = 16 * g + l;
                int q = s != 0 ? clamp(Math.round(x[xo + i] / s), -4, 3) : 0;
                int low = q >= 0 ? q : q + 4;  // the weight is low - 4 unless its hmask bit is set
                int h = i / 128, j = (i % 128) / 32, li = i % 32;
                o[at + 32 + 32 * h + li] |= (byte) (low << (2 * j));
                if (q >= 0) o[at + li] |= (byte) (1 << (i / 32));
            }
        }
    }

    /**
     * Q2_K (84 bytes: 16 bytes of 4-bit scale | 4-bit min << 4, 64 bytes of 2-bit weights, F16 d, F16 dmin): per 16
     * weights x ~ (d * sc) * q - dmin * m with q in [0, 3]; group g's weights are bits 2 ((g % 8) / 2) of bytes
     * 16 + 32 (g / 8) + 16 (g % 2) + l.
     */
    private static void q2(float[] x, int xo, byte[] o, int at) {
        float[] scale = new float[16], min = new float[16];
        float maxScale = 0, maxMin = 0;
        for (int g = 0; g < 16; g++) {
            float lo = 0, hi = 0;
            for (int l = 0; l < 16; l++) {
                lo = Math.min(lo, x[xo + 16 * g + l]);
                hi = Math.max(hi, x[xo + 16 * g + l]);
            }
            scale[g] = (hi - lo) / 3;
            min[g] = -lo;
            maxScale = Math.max(maxScale, scale[g]);
            maxMin = Math.max(maxMin, min[g]);
        }
        float d = Float.float16ToFloat(Float.floatToFloat16(maxScale / 15)), dmin = Float.float16ToFloat(Float.floatToFloat16(maxMin / 15));
        putF16(o, at + 80, d);
        putF16(o, at + 82, dmin);
        for (int g = 0; g < 16; g++) {
            int sc = d > 0 ? clamp(Math.round(scale[g] / d), 0, 15) : 0, m = dmin > 0 ? clamp(Math.round(min[g] / dmin), 0, 15) : 0;
            o[at + g] = (byte) (sc | (m << 4));
            float s = d * sc, mv = dmin * m;
            for (int l = 0; l < 16; l++) {
                int q = s != 0 ? clamp(Math.round((x[xo + 16 * g + l] + mv) / s), 0, 3) : 0;
                o[at + 16 + 32 * (g / 8) + 16 * (g % 2) + l] |= (byte) (q << (2 * ((g % 8) / 2)));
            }
        }
    }
}
