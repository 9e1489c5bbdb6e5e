// Elementwise kernels: strided copies, fills, broadcast binary ops, activations and their
// backward passes, accumulation, dtype conversions and Q8_0 / Q4_0 dequantization.
// The math mirrors dev.exeunt.tensor.cpu.{CpuElementwise, CpuActivation, CpuHalf, CpuQuant}.

// Backend.Binary ordinals (checked against the Java enum by CudaPureJavaTest).
enum { B_ADD = 0, B_SUB = 1, B_MUL = 2, B_DIV = 3, B_EQ = 4 };
// Backend.Unary ordinals.
enum { U_EXP = 0, U_LOG = 1, U_TANH = 2, U_RELU = 3, U_SILU = 4, U_GELU_TANH = 5, U_GELU_ERF = 6,
       U_SCALE = 7, U_SQUARE = 8, U_SQRT = 9 };

// ---------------------------------------------------------------- copies and fills

extern "C" __global__ void ew_copy4(i64 n, const unsigned int* src, Desc sd, unsigned int* dst, Desc dd) {
    GRID_LOOP(i, n) dst[desc_offset(dd, i)] = src[desc_offset(sd, i)];
}

extern "C" __global__ void ew_copy2(i64 n, const unsigned short* src, Desc sd, unsigned short* dst, Desc dd) {
    GRID_LOOP(i, n) dst[desc_offset(dd, i)] = src[desc_offset(sd, i)];
}

extern "C" __global__ void ew_copy1(i64 n, const unsigned char* src, Desc sd, unsigned char* dst, Desc dd) {
    GRID_LOOP(i, n) dst[desc_offset(dd, i)] = src[desc_offset(sd, i)];
}

extern "C" __global__ void ew_fill32(i64 n, unsigned int* dst, unsigned int bits) {
    GRID_LOOP(i, n) dst[i] = bits;
}

// ---------------------------------------------------------------- binary with broadcast

extern "C" __global__ void ew_binary(int op, i64 n, const float* a, Desc ad, const float* b, Desc bd, float* out) {
    GRID_LOOP(i, n) {
        float x = a[desc_offset(ad, i)], y = b[desc_offset(bd, i)], z;
        switch (op) {
            case B_ADD: z = x + y; break;
            case B_SUB: z = x - y; break;
            case B_MUL: z = x * y; break;
            case B_DIV: z = x / y; break;
            default:    z = x == y ? 1.f : 0.f; break;
        }
        out[i] = z;
    }
}

extern "C" __global__ void ew_add_inplace(i64 n, float* acc, const float* x) {
    GRID_LOOP(i, n) acc[i] += x[i];
}

// ---------------------------------------------------------------- activations

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_K 0.044715f
#define GELU_CLAMP 10.f
#define INV_SQRT2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

__device__ __forceinline__ float unary_f(int op, float x, float param) {
    switch (op) {
        case U_EXP: return expf(x);
        case U_LOG: return logf(x);
        case U_TANH: return tanhf(x);
        case U_RELU: return fmaxf(x, 0.f);
        case U_SILU: return x / (1.f + expf(-x));
        case U_GELU_TANH: {
            // x * sigmoid(2u), u evaluated at x clamped to [-10, 10] (no exp overflow)
            float xc = fminf(fmaxf(x, -GELU_CLAMP), GELU_CLAMP);
            float u = (xc * xc * GELU_K + 1.f) * xc * SQRT_2_OVER_PI;
            float e = expf(-2.f * u);
            return x < -GELU_CLAMP ? 0.f : x / (e + 1.f);
        }
        case U_GELU_ERF: {
            double xd = x;
            return (float)(xd * 0.5 * erfc(-xd * INV_SQRT2));
        }
        case U_SCALE: return x * param;
        case U_SQUARE: return x * x;
        default: return sqrtf(x);
    }
}

extern "C" __global__ void ew_unary(int op, i64 n, const float* x, float param, float* y) {
    GRID_LOOP(i, n) y[i] = unary_f(op, x[i], param);
}

// dx = dy * f'(x); y = f(x) is read where the derivative is cheaper from it (EXP, TANH, SQRT).
extern "C" __global__ void ew_unary_bwd(int op, i64 n, const float* x, const float* y, const float* dy, float param,
                                        float* dx) {
    GRID_LOOP(i, n) {
        float g = dy[i], r;
        switch (op) {
            case U_EXP: r = g * y[i]; break;
            case U_LOG: r = g / x[i]; break;
            case U_TANH: { float v = y[i]; r = (1.f - v * v) * g; break; }
            case U_RELU: r = x[i] > 0.f ? g : 0.f; break;
            case U_SILU: {
                float v = x[i];
                float s = 1.f / (1.f + expf(-v));
                r = g * s * (v * (1.f - s) + 1.f);
                break;
            }
            case U_GELU_TANH: {
                float v = x[i];
                float xc = fminf(fmaxf(v, -GELU_CLAMP), GELU_CLAMP);
                float x2 = xc * xc;
                float u = (x2 * GELU_K + 1.f) * xc * SQRT_2_OVER_PI;
                float du = (x2 * (3.f * GELU_K) + 1.f) * SQRT_2_OVER_PI;
                float e = expf(-2.f * u);
                float s = 1.f / (e + 1.f);
                r = g * (xc * du * 2.f * s * (e * s) + s);
                break;
            }
            case U_GELU_ERF: {
                double v = x[i];
                double cdf = 0.5 * erfc(-v * INV_SQRT2);
                r = (float)((double)g * (cdf + v * exp(-0.5 * v * v) * INV_SQRT_2PI));
                break;
            }
            case U_SCALE: r = g * param; break;
            case U_SQUARE: r = g * x[i] * 2.f; break;
            default: r = g / y[i] * 0.5f; break;
        }
        dx[i] = r;
    }
}

// ---------------------------------------------------------------- conversions

extern "C" __global__ void cv_bf16_to_f32(i64 n, const unsigned short* src, float* dst) {
    GRID_LOOP(i, n) dst[i] = bf16_bits_to_float(src[i]);
}

extern "C" __global__ void cv_f32_to_bf16(i64 n, const float* src, unsigned short* dst) {
    GRID_LOOP(i, n) dst[i] = float_to_bf16_bits(src[i]);
}

extern "C" __global__ void cv_f16_to_f32(i64 n, const unsigned short* src, float* dst) {
    GRID_LOOP(i, n) dst[i] = half_bits_to_float(src[i]);
}

extern "C" __global__ void cv_f32_to_f16(i64 n, const float* src, unsigned short* dst) {
    GRID_LOOP(i, n) dst[i] = float_to_half_bits(src[i]);
}

extern "C" __global__ void cv_i32_to_f32(i64 n, const int* src, float* dst) {
    GRID_LOOP(i, n) dst[i] = (float)src[i];
}

// Java's (int) cast: truncation, saturating, NaN -> 0 (PTX cvt.rzi.s32.f32 does exactly this).
extern "C" __global__ void cv_f32_to_i32(i64 n, const float* src, int* dst) {
    GRID_LOOP(i, n) dst[i] = __float2int_rz(src[i]);
}

extern "C" __global__ void cv_i8_to_f32(i64 n, const signed char* src, float* dst) {
    GRID_LOOP(i, n) dst[i] = (float)src[i];
}

// Q8_0: 34-byte blocks, an F16 scale then 32 int8; x = q * d.
extern "C" __global__ void cv_q8_0_to_f32(i64 n, const unsigned char* src, float* dst) {
    GRID_LOOP(i, n) {
        const unsigned char* blk = src + (i >> 5) * 34;
        float d = half_bits_to_float(load_u16(blk));
        dst[i] = (float)(signed char)blk[2 + (i & 31)] * d;
    }
}

// Q4_0: 18-byte blocks, an F16 scale then 16 bytes: low nibbles are elements 0..15, high 16..31.
extern "C" __global__ void cv_q4_0_to_f32(i64 n, const unsigned char* src, float* dst) {
    GRID_LOOP(i, n) {
        const unsigned char* blk = src + (i >> 5) * 18;
        float d = half_bits_to_float(load_u16(blk));
        int j = (int)(i & 31);
        int q = j < 16 ? (blk[2 + j] & 0x0F) : (blk[2 + j - 16] >> 4);
        dst[i] = (float)(q - 8) * d;
    }
}
