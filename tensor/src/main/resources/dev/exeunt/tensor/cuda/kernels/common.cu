// Shared prelude of every Exeunt CUDA module: CudaKernels prepends this file to each module's source
// before NVRTC compiles it. No #include: NVRTC has no host headers, and everything below is builtin.
//
// Conventions:
//  * Java passes device pointers already advanced by the tensor's element offset.
//  * Sizes that can exceed 2^31 (element counts) are long long; per-row sizes are int.
//  * Elementwise kernels use grid-stride loops, so any grid size is correct (Launch.java picks it).
//  * Block reductions need blockDim.x to be a multiple of 32 and at most 1024 (Launch.rowThreads).

typedef long long i64;
typedef unsigned long long u64;

#define MAX_DIMS 8

// A strided view of up to 8 dims: the element at linear (row-major) index i of `shape` sits at
// sum_k idx_k * stride[k]. Passed by value (136 bytes, see StridedDesc.java for the byte layout).
struct Desc {
    int rank;
    int pad;
    i64 shape[MAX_DIMS];
    i64 stride[MAX_DIMS];
};

__device__ __forceinline__ i64 desc_offset(const Desc& d, i64 i) {
    if (d.rank == 1) return i * d.stride[0];
    i64 off = 0;
    for (int k = d.rank - 1; k >= 0; --k) {
        i64 s = d.shape[k];
        i64 idx = i % s;
        i /= s;
        off += idx * d.stride[k];
    }
    return off;
}

#define GRID_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// ---------------------------------------------------------------- half / bfloat16 bits

__device__ __forceinline__ float half_bits_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short float_to_half_bits(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_bits_to_float(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

// Round to nearest even; NaN becomes a quiet NaN keeping sign and top payload bits (as CpuHalf).
__device__ __forceinline__ unsigned short float_to_bf16_bits(float f) {
    unsigned int b = __float_as_uint(f);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)((b >> 16) | 0x0040u);
    return (unsigned short)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

// Little-endian 16-bit load from a byte pointer (quantized blocks are only 2-byte aligned).
__device__ __forceinline__ unsigned short load_u16(const unsigned char* p) {
    return (unsigned short)(p[0] | (p[1] << 8));
}

// ---------------------------------------------------------------- reductions

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ int warp_min_i(int v) {
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions; every thread of the block must call them (they synchronise) and every
// thread gets the result. sh: 33 floats of shared scratch (may be reused across calls).
__device__ float block_sum(float v, float* sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? sh[lane] : 0.f;
        t = warp_sum(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

__device__ float block_max(float v, float* sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? sh[lane] : -INFINITY;
        t = warp_max(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

__device__ int block_min_i(int v, int* sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_min_i(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        int t = lane < nw ? sh[lane] : 0x7FFFFFFF;
        t = warp_min_i(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

// sh: 33 doubles.
__device__ double block_sum_d(double v, double* sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        double t = lane < nw ? sh[lane] : 0.0;
        t = warp_sum_d(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}
