// Rotary embedding, embedding gather / scatter-add, AdamW and the quantized (or 16-bit) GEMV used by
// Backend.linearQuantized. Math as in dev.exeunt.tensor.cpu.{CpuRope, CpuEmbedding, CpuOptim, CpuQuant}.

// HF rotate-half RoPE in place on contiguous x [B, T, H, D]; token t at position startPos + t.
// Angles in double (pos * theta^(-2i/D), then cos / sin), as CpuRope's tables. One thread per pair.
extern "C" __global__ void rope(i64 pairs, int T, int H, int D, int startPos, double theta, int inverse, float* x) {
    const int half = D / 2;
    GRID_LOOP(idx, pairs) {
        const int i = (int)(idx % half);
        const i64 head = idx / half;            // (b * T + t) * H + h
        const int t = (int)((head / H) % T);
        const double invFreq = 1.0 / pow(theta, (2.0 * i) / D);
        const double a = (double)(startPos + t) * invFreq;
        const float c = (float)cos(a);
        float s = (float)sin(a);
        if (inverse) s = -s;
        float* hp = x + head * D;
        const float x1 = hp[i], x2 = hp[i + half];
        hp[i] = x1 * c - x2 * s;
        hp[i + half] = x2 * c + x1 * s;
    }
}

// out[i, :] = table[ids[i], :]. Ids were validated on the host; an out-of-range id (only possible
// with -Dexeunt.cuda.checkIds=false) gives a zero row instead of an out-of-bounds read.
extern "C" __global__ void embedding_gather(i64 n, int vocab, int dim, const float* table, const int* ids, float* out) {
    GRID_LOOP(e, n * dim) {
        const i64 i = e / dim;
        const int c = (int)(e - i * dim);
        const int id = ids[i];
        out[e] = (id >= 0 && id < vocab) ? table[(i64)id * dim + c] : 0.f;
    }
}

// dTable[ids[i], :] += dOut[i, :] with atomicAdd: correct, but the order of additions into a row
// that several positions share is not fixed (results may differ in the last bits run to run).
extern "C" __global__ void embedding_scatter_add(i64 n, int vocab, int dim, const float* dOut, const int* ids,
                                                 float* dTable) {
    GRID_LOOP(e, n * dim) {
        const i64 i = e / dim;
        const int c = (int)(e - i * dim);
        const int id = ids[i];
        if (id >= 0 && id < vocab) atomicAdd(dTable + (i64)id * dim + c, dOut[e]);
    }
}

// One AdamW step (CpuOptim.adamW): the host computes decay = 1 - lr wd, stepSize = lr / (1 - b1^t)
// and invSqrtBc2 = 1 / sqrt(1 - b2^t) exactly as the CPU does.
extern "C" __global__ void adamw(i64 n, float* p, const float* grad, float* m, float* v, float b1, float c1, float b2,
                                 float c2, float eps, float decay, float stepSize, float invSqrtBc2) {
    GRID_LOOP(i, n) {
        const float g = grad[i];
        const float mv = m[i] * b1 + g * c1;
        const float vv = v[i] * b2 + g * g * c2;
        const float denom = sqrtf(vv) * invSqrtBc2 + eps;
        m[i] = mv;
        v[i] = vv;
        p[i] = p[i] * decay - mv / denom * stepSize;
    }
}

// Weight storage types of linear_gemv (LinearWeight in CudaBackend).
enum { W_F32 = 0, W_BF16 = 1, W_F16 = 2, W_Q8_0 = 3, W_Q4_0 = 4 };

__device__ __forceinline__ float weight_at(int wtype, const unsigned char* row, int e) {
    switch (wtype) {
        case W_F32: return ((const float*)row)[e];
        case W_BF16: return bf16_bits_to_float(((const unsigned short*)row)[e]);
        case W_F16: return half_bits_to_float(((const unsigned short*)row)[e]);
        case W_Q8_0: {
            const unsigned char* blk = row + (e >> 5) * 34;
            return (float)(signed char)blk[2 + (e & 31)] * half_bits_to_float(load_u16(blk));
        }
        default: {
            const unsigned char* blk = row + (e >> 5) * 18;
            const int j = e & 31;
            const int q = j < 16 ? (blk[2 + j] & 0x0F) : (blk[2 + j - 16] >> 4);
            return (float)(q - 8) * half_bits_to_float(load_u16(blk));
        }
    }
}

// y[tok, r] = sum_e W[r, e] x[tok, e] for W [m, n] stored as wtype with rowBytes bytes per row.
// One warp per (output row, token): blockDim.x = 256 (8 rows), grid = (ceil(m / 8), min(tokens, 65535)).
extern "C" __global__ void linear_gemv(int wtype, int m, int n, i64 rowBytes, const unsigned char* w, const float* x,
                                       float* y, int tokens) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= m) return;
    const unsigned char* row = w + (i64)r * rowBytes;
    for (int tok = blockIdx.y; tok < tokens; tok += gridDim.y) {
        const float* xr = x + (i64)tok * n;
        float acc = 0.f;
        for (int e = lane; e < n; e += 32) acc += weight_at(wtype, row, e) * xr[e];
        acc = warp_sum(acc);
        if (lane == 0) y[(i64)tok * m + r] = acc;
    }
}
