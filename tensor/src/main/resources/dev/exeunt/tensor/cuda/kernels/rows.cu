// Reductions and row kernels over contiguous F32 [rows, cols] data: sum/max along a dim, sum of
// squares, softmax / log-softmax, LayerNorm / RMSNorm (forward and backward) and the fused
// cross-entropy. One block per row (grid-stride over rows); the math mirrors
// dev.exeunt.tensor.cpu.{CpuReduce, CpuSoftmax, CpuNorm, CpuLoss}.

// ---------------------------------------------------------------- reduce

// x viewed [rows, r] (inner == 1): out[row] = reduce_j x[row, j]. One block per row.
extern "C" __global__ void reduce_rows(int isMax, i64 rows, int r, const float* x, float* out) {
    __shared__ float sh[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * r;
        float acc = isMax ? -INFINITY : 0.f;
        for (int j = threadIdx.x; j < r; j += blockDim.x) acc = isMax ? fmaxf(acc, xr[j]) : acc + xr[j];
        acc = isMax ? block_max(acc, sh) : block_sum(acc, sh);
        if (threadIdx.x == 0) out[row] = acc;
    }
}

// x viewed [outer, r, inner] (inner > 1): one thread per output, summing j in order (coalesced over inner).
extern "C" __global__ void reduce_strided(int isMax, i64 outer, int r, i64 inner, const float* x, float* out) {
    GRID_LOOP(idx, outer * inner) {
        i64 o = idx / inner, i = idx - o * inner;
        const float* xp = x + o * r * inner + i;
        float acc = xp[0];
        for (int j = 1; j < r; ++j) {
            float v = xp[(i64)j * inner];
            acc = isMax ? fmaxf(acc, v) : acc + v;
        }
        out[idx] = acc;
    }
}

// Per-block partial sums of x^2 in double; the host adds the partials in block order.
extern "C" __global__ void sumsq_partial(i64 n, const float* x, double* partial) {
    __shared__ double sh[33];
    double acc = 0.0;
    GRID_LOOP(i, n) {
        float v = x[i];
        acc += (double)(v * v);
    }
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// ---------------------------------------------------------------- softmax

extern "C" __global__ void softmax_fwd(int logMode, i64 rows, int cols, const float* x, float* y) {
    __shared__ float sh[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        float* yr = y + row * cols;
        float m = -INFINITY;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
        m = block_max(m, sh);
        if (m == -INFINITY) {  // every entry masked: zeros (softmax) or -inf (log-softmax)
            for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = logMode ? -INFINITY : 0.f;
            continue;
        }
        float s = 0.f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(xr[j] - m);
        s = block_sum(s, sh);
        if (logMode) {
            float ls = logf(s);
            for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] - m - ls;
        } else {
            float inv = 1.f / s;
            for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - m) * inv;
        }
    }
}

// softmax: dx = y (dy - sum(dy y)); log-softmax: dx = dy - exp(y) sum(dy). dx may be dy.
extern "C" __global__ void softmax_bwd(int logMode, i64 rows, int cols, const float* y, const float* dy, float* dx) {
    __shared__ float sh[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* yr = y + row * cols;
        const float* gr = dy + row * cols;
        float* dr = dx + row * cols;
        float s = 0.f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += logMode ? gr[j] : gr[j] * yr[j];
        s = block_sum(s, sh);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            dr[j] = logMode ? gr[j] - expf(yr[j]) * s : yr[j] * (gr[j] - s);
        }
    }
}

// ---------------------------------------------------------------- norms

// LayerNorm (centered = 1) or RMSNorm (centered = 0): y = (x - mu) * rstd * gamma + beta with
// rstd = 1 / sqrt(var + eps) (LayerNorm, two-pass) or 1 / sqrt(mean(x^2) + eps) (RMSNorm).
// gamma, beta, mean, rstd may be null.
extern "C" __global__ void norm_fwd(int centered, i64 rows, int cols, const float* x, const float* gamma,
                                    const float* beta, float eps, float* y, float* mean, float* rstd) {
    __shared__ float sh[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        float* yr = y + row * cols;
        float mu = 0.f;
        if (centered) {
            float s = 0.f;
            for (int j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
            mu = block_sum(s, sh) / cols;
        }
        float q = 0.f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            float d = xr[j] - mu;
            q += d * d;
        }
        float var = block_sum(q, sh) / cols;
        float rs = (float)(1.0 / sqrt((double)var + (double)eps));
        if (threadIdx.x == 0) {
            if (mean) mean[row] = mu;
            if (rstd) rstd[row] = rs;
        }
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            float v = (xr[j] - mu) * rs;
            if (gamma) v *= gamma[j];
            if (beta) v += beta[j];
            yr[j] = v;
        }
    }
}

// dx = rstd * (g - [centered ? mean(g) : 0] - xhat * mean(g * xhat)), g = dy * gamma,
// xhat = (x - mean) * rstd. mean == null means 0 (RMSNorm). dx may be dy.
extern "C" __global__ void norm_bwd_dx(int centered, i64 rows, int cols, const float* x, const float* gamma,
                                       const float* mean, const float* rstd, const float* dy, float* dx) {
    __shared__ float sh[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        const float* gr = dy + row * cols;
        float* dr = dx + row * cols;
        float mu = mean ? mean[row] : 0.f, rs = rstd[row];
        float sg = 0.f, sgx = 0.f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            float xh = (xr[j] - mu) * rs;
            float g = gr[j];
            if (gamma) g *= gamma[j];
            sg += g;
            sgx += g * xh;
        }
        sg = block_sum(sg, sh);
        sgx = block_sum(sgx, sh);
        float a = centered ? sg / cols : 0.f, b = sgx / cols;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            float xh = (xr[j] - mu) * rs;
            float g = gr[j];
            if (gamma) g *= gamma[j];
            dr[j] = (g - a - xh * b) * rs;
        }
    }
}

// dgamma[j] += sum_r dy[r, j] * xhat[r, j]; dbeta[j] += sum_r dy[r, j]. One thread per column,
// rows in order: deterministic, no atomics. Launched before norm_bwd_dx (dx may overwrite dy).
extern "C" __global__ void norm_bwd_params(i64 rows, int cols, const float* x, const float* mean, const float* rstd,
                                           const float* dy, float* dgamma, float* dbeta) {
    GRID_LOOP(j, (i64)cols) {
        float ag = 0.f, ab = 0.f;
        for (i64 r = 0; r < rows; ++r) {
            float d = dy[r * cols + j];
            float mu = mean ? mean[r] : 0.f;
            ag += d * ((x[r * cols + j] - mu) * rstd[r]);
            ab += d;
        }
        if (dgamma) dgamma[j] += ag;
        if (dbeta) dbeta[j] += ab;
    }
}

// ---------------------------------------------------------------- cross-entropy

// Per row of logits [rows, vocab] with z = x / T: loss = logsumexp(z) - z[target]. Writes the
// row's numerator / denominator terms (double) for the host to add in row order, the optional
// rowLoss / maxProb / argmax, and, when dl != null, dl = gradScale * mask * w * (softmax(z) - onehot) / T
// (zeros for ignored rows). dl may be x (in place): each thread rewrites only what it read.
// Targets were validated on the host.
extern "C" __global__ void cross_entropy(i64 rows, int vocab, const float* x, const int* targets, int ignoreIndex,
                                         float invT, const float* mask, const float* weight, float* rowLoss,
                                         float* maxProb, int* argmax, double* num, double* den, float* dl,
                                         float gradScale) {
    __shared__ float sh[33];
    __shared__ int shi[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * vocab;
        int t = targets[row];
        bool ignored = t == ignoreIndex;
        float xt = (!ignored && t >= 0 && t < vocab) ? xr[t] : 0.f;
        float m = -INFINITY;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, xr[j]);
        m = block_max(m, sh);
        float s = 0.f;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) s += expf((xr[j] - m) * invT);
        s = block_sum(s, sh);
        if (argmax) {
            int first = 0x7FFFFFFF;
            for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
                if (xr[j] == m) { first = j; break; }
            }
            first = block_min_i(first, shi);
            if (threadIdx.x == 0) argmax[row] = first == 0x7FFFFFFF ? 0 : first;
        }
        double ls = log((double)s);
        double loss = 0.0;
        float mk = mask ? mask[row] : 1.f, w = weight ? weight[row] : 1.f;
        if (!ignored) loss = ((double)m - (double)xt) * (double)invT + ls;
        if (threadIdx.x == 0) {
            if (maxProb) maxProb[row] = (float)(1.0 / (double)s);
            if (rowLoss) rowLoss[row] = (float)loss;
            num[row] = (ignored || mk == 0.f) ? 0.0 : (double)mk * (double)w * loss;
            den[row] = ignored ? 0.0 : (double)mk;
        }
        if (dl) {
            float* dr = dl + row * vocab;
            float coef = gradScale * mk * w;
            // every thread has read what it needs of this row before the first write (block_sum synced)
            __syncthreads();
            if (ignored || coef == 0.f) {
                for (int j = threadIdx.x; j < vocab; j += blockDim.x) dr[j] = 0.f;
            } else {
                float k = coef * invT, lsf = (float)ls;
                for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
                    float v = k * expf((xr[j] - m) * invT - lsf);
                    dr[j] = j == t ? v - k : v;
                }
            }
        }
        __syncthreads();
    }
}
