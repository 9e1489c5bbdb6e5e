// Causal grouped-query attention, forward and backward (dev.exeunt.tensor.cpu.CpuAttention semantics):
// q [B, T, Hq, D], k / v [B, S, Hkv, D] with S = past + T and any batch / token / head strides (D
// contiguous); query t sits at position past + t and sees keys j <= past + t; query head h reads KV
// head h / (Hq / Hkv); lse [B, Hq, T] = log sum_j exp(scale * q.k_j).
//
// Straightforward, not tuned: one block per query row (forward, dq) or key row (dk, dv); keys or
// queries are taken in tiles of blockDim.x, one per thread for the scores, then the threads switch
// to the head dim to accumulate. Dynamic shared memory sizes are computed in CudaBackend.

struct AttnDims {
    int B, T, past, Hq, Hkv, D;
    float scale;
    int pad;
};

// Element strides of a [batch, token, head, d] view (d contiguous).
struct View4 {
    i64 b, t, h;
};

__device__ __forceinline__ float dot_sh(const float* a_shared, const float* b_global, int D) {
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += a_shared[d] * b_global[d];
    return s;
}

// grid.x: B * Hq * T rows in lse order ((b * Hq + h) * T + t). Shared: 2 D + blockDim.x + 33 floats.
extern "C" __global__ void attn_fwd(AttnDims dm, const float* q, View4 qs, const float* k, View4 ks,
                                    const float* v, View4 vs, float* o, View4 os, float* lse) {
    extern __shared__ float smem[];
    const int D = dm.D, T = dm.T, Hq = dm.Hq;
    float* qv = smem;
    float* acc = qv + D;
    float* p = acc + D;
    float* red = p + blockDim.x;
    const i64 row = blockIdx.x;
    const int t = (int)(row % T);
    const int h = (int)((row / T) % Hq);
    const int b = (int)(row / ((i64)T * Hq));
    const int kvh = h / (Hq / dm.Hkv);
    const float* qp = q + b * qs.b + t * qs.t + h * qs.h;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        qv[d] = qp[d];
        acc[d] = 0.f;
    }
    __syncthreads();
    const int nkeys = dm.past + t + 1;
    const float* kb = k + b * ks.b + kvh * ks.h;
    const float* vb = v + b * vs.b + kvh * vs.h;
    float m = -INFINITY, l = 0.f;
    for (int j0 = 0; j0 < nkeys; j0 += blockDim.x) {
        const int j = j0 + threadIdx.x;
        float s = -INFINITY;
        if (j < nkeys) s = dot_sh(qv, kb + j * ks.t, D) * dm.scale;
        const float mNew = fmaxf(m, block_max(s, red));  // finite: the tile holds a valid key
        const float pj = j < nkeys ? expf(s - mNew) : 0.f;
        p[threadIdx.x] = pj;
        const float tileSum = block_sum(pj, red);         // also publishes p[]
        const float corr = expf(m - mNew);                // 0 on the first tile
        l = l * corr + tileSum;
        const int nt = min((int)blockDim.x, nkeys - j0);
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float a = acc[d] * corr;
            for (int jj = 0; jj < nt; ++jj) a += p[jj] * vb[(i64)(j0 + jj) * vs.t + d];
            acc[d] = a;
        }
        m = mNew;
        __syncthreads();  // p[] is rewritten by the next tile
    }
    const float inv = 1.f / l;
    float* op = o + b * os.b + t * os.t + h * os.h;
    for (int d = threadIdx.x; d < D; d += blockDim.x) op[d] = acc[d] * inv;
    if (lse && threadIdx.x == 0) lse[row] = m + logf(l);
}

// delta[row] = sum_d dO[row, d] * O[row, d], rows in lse order. One warp per row.
extern "C" __global__ void attn_bwd_delta(AttnDims dm, const float* o, View4 os, const float* dO, View4 dos,
                                          float* delta) {
    const int warpsPerBlock = blockDim.x >> 5, lane = threadIdx.x & 31;
    const i64 rows = (i64)dm.B * dm.Hq * dm.T;
    const i64 row = (i64)blockIdx.x * warpsPerBlock + (threadIdx.x >> 5);
    if (row >= rows) return;
    const int t = (int)(row % dm.T), h = (int)((row / dm.T) % dm.Hq), b = (int)(row / ((i64)dm.T * dm.Hq));
    const float* op = o + b * os.b + t * os.t + h * os.h;
    const float* gp = dO + b * dos.b + t * dos.t + h * dos.h;
    float s = 0.f;
    for (int d = lane; d < dm.D; d += 32) s += op[d] * gp[d];
    s = warp_sum(s);
    if (lane == 0) delta[row] = s;
}

// dq[row] = scale * sum_j p_j (dO.v_j - delta) k_j with p_j = exp(scale q.k_j - lse). One block per
// query row (lse order). Shared: 3 D + blockDim.x + 33 floats.
extern "C" __global__ void attn_bwd_dq(AttnDims dm, const float* q, View4 qs, const float* k, View4 ks,
                                       const float* v, View4 vs, const float* dO, View4 dos, const float* lse,
                                       const float* delta, float* dq, View4 dqs) {
    extern __shared__ float smem[];
    const int D = dm.D, T = dm.T, Hq = dm.Hq;
    float* qv = smem;
    float* gv = qv + D;
    float* acc = gv + D;
    float* ds = acc + D;
    const i64 row = blockIdx.x;
    const int t = (int)(row % T);
    const int h = (int)((row / T) % Hq);
    const int b = (int)(row / ((i64)T * Hq));
    const int kvh = h / (Hq / dm.Hkv);
    const float* qp = q + b * qs.b + t * qs.t + h * qs.h;
    const float* gp = dO + b * dos.b + t * dos.t + h * dos.h;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        qv[d] = qp[d];
        gv[d] = gp[d];
        acc[d] = 0.f;
    }
    __syncthreads();
    const float L = lse[row], dl = delta[row];
    const int nkeys = dm.past + t + 1;
    const float* kb = k + b * ks.b + kvh * ks.h;
    const float* vb = v + b * vs.b + kvh * vs.h;
    for (int j0 = 0; j0 < nkeys; j0 += blockDim.x) {
        const int j = j0 + threadIdx.x;
        float dsj = 0.f;
        if (j < nkeys) {
            float pj = expf(dot_sh(qv, kb + j * ks.t, D) * dm.scale - L);
            dsj = pj * (dot_sh(gv, vb + j * vs.t, D) - dl);
        }
        ds[threadIdx.x] = dsj;
        __syncthreads();
        const int nt = min((int)blockDim.x, nkeys - j0);
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float a = acc[d];
            for (int jj = 0; jj < nt; ++jj) a += ds[jj] * kb[(i64)(j0 + jj) * ks.t + d];
            acc[d] = a;
        }
        __syncthreads();
    }
    float* out = dq + b * dqs.b + t * dqs.t + h * dqs.h;
    for (int d = threadIdx.x; d < D; d += blockDim.x) out[d] = acc[d] * dm.scale;
}

// dv[j] = sum p (over the queries that see key j, in every query head of the group) * dO,
// dk[j] = scale * sum p (dO.v_j - delta) q. One block per key row, grid.x = B * S * Hkv in
// ((b * S + j) * Hkv + kvh) order; overwrites dk / dv (no atomics: deterministic).
// Shared: 4 D + 2 blockDim.x floats.
extern "C" __global__ void attn_bwd_dkv(AttnDims dm, const float* q, View4 qs, const float* k, View4 ks,
                                        const float* v, View4 vs, const float* dO, View4 dos, const float* lse,
                                        const float* delta, float* dk, View4 dks, float* dv, View4 dvs) {
    extern __shared__ float smem[];
    const int D = dm.D, T = dm.T, Hq = dm.Hq, Hkv = dm.Hkv, G = Hq / Hkv, S = dm.past + T;
    float* kv = smem;
    float* vv = kv + D;
    float* accK = vv + D;
    float* accV = accK + D;
    float* pv = accV + D;
    float* dsv = pv + blockDim.x;
    const i64 idx = blockIdx.x;
    const int kvh = (int)(idx % Hkv);
    const int j = (int)((idx / Hkv) % S);
    const int b = (int)(idx / ((i64)Hkv * S));
    const float* kp = k + b * ks.b + j * ks.t + kvh * ks.h;
    const float* vp = v + b * vs.b + j * vs.t + kvh * vs.h;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        kv[d] = kp[d];
        vv[d] = vp[d];
        accK[d] = 0.f;
        accV[d] = 0.f;
    }
    __syncthreads();
    const int tmin = max(0, j - dm.past);
    const int nT = T - tmin;                 // queries of one head that see key j
    const int total = nT > 0 ? G * nT : 0;   // over the G query heads of this KV head
    for (int c0 = 0; c0 < total; c0 += blockDim.x) {
        const int c = c0 + threadIdx.x;
        float p = 0.f, dsc = 0.f;
        if (c < total) {
            const int h = kvh * G + c / nT, t = tmin + c % nT;
            const i64 row = ((i64)b * Hq + h) * T + t;
            p = expf(dot_sh(kv, q + b * qs.b + t * qs.t + h * qs.h, D) * dm.scale - lse[row]);
            dsc = p * (dot_sh(vv, dO + b * dos.b + t * dos.t + h * dos.h, D) - delta[row]);
        }
        pv[threadIdx.x] = p;
        dsv[threadIdx.x] = dsc;
        __syncthreads();
        const int nt = min((int)blockDim.x, total - c0);
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float ak = accK[d], av = accV[d];
            for (int cc = 0; cc < nt; ++cc) {
                const int c2 = c0 + cc;
                const int h = kvh * G + c2 / nT, t = tmin + c2 % nT;
                ak += dsv[cc] * q[b * qs.b + t * qs.t + h * qs.h + d];
                av += pv[cc] * dO[b * dos.b + t * dos.t + h * dos.h + d];
            }
            accK[d] = ak;
            accV[d] = av;
        }
        __syncthreads();
    }
    float* dkp = dk + b * dks.b + j * dks.t + kvh * dks.h;
    float* dvp = dv + b * dvs.b + j * dvs.t + kvh * dvs.h;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        dkp[d] = accK[d] * dm.scale;
        dvp[d] = accV[d];
    }
}
