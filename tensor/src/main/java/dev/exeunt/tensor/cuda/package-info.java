/**
 * The CUDA backend.
 *
 * <h2>Design</h2>
 * <ul>
 *   <li>{@link dev.exeunt.tensor.cuda.CudaBackend}: one instance per device, registered through
 *       {@link dev.exeunt.tensor.cuda.CudaBackendProvider} ({@code META-INF/services}), so
 *       {@code tensor.to(Device.cuda(0))} and every {@code Ops} / {@code NN} call just work. All work goes to one
 *       stream per device; each call first makes the device (runtime) and its primary context (driver) current on
 *       the calling thread. Device storage carries the device address in a {@code MemorySegment} that is never
 *       dereferenced on the host.</li>
 *   <li>Memory: {@code CudaAllocator}, size classes (512 B steps to 1 MiB, then 2 MiB steps) with free lists; with
 *       one stream per device, reuse is stream-ordered. Out of memory: cached blocks are released and the
 *       allocation retried, then a {@code TensorAllocationException} gives the sizes.</li>
 *   <li>GEMM: cuBLAS {@code cublasGemmStridedBatchedEx}. Row-major C = op(A) op(B) is column-major
 *       C^T = op(B)^T op(A)^T: operands and transposes are swapped and (m, n) exchanged ({@code GemmMapping}).
 *       F32 uses CUBLAS_COMPUTE_32F, or CUBLAS_COMPUTE_32F_FAST_TF32 with {@code -Dexeunt.cuda.tf32=true}; BF16 / F16
 *       inputs accumulate in F32 (C may be F32).</li>
 *   <li>Everything else: CUDA C kernels in {@code resources/dev/exeunt/tensor/cuda/kernels/*.cu} ({@code common.cu}
 *       is put in front of each module), compiled at run time by NVRTC for the device's {@code sm_XY} (or PTX for
 *       the newest supported {@code compute_XY} when NVRTC does not know the device), cached on disk under
 *       {@code ~/.cache/exeunt/cuda} or {@code -Dexeunt.cuda.cache} keyed by SHA-256 of (source, options, NVRTC
 *       version) and the architecture, loaded with {@code cuModuleLoadDataEx}, launched with {@code cuLaunchKernel}.
 *       Strided views reach kernels as a by-value {@code Desc} struct of up to 8 dims (after merging contiguous
 *       dims). Kernels are written for correctness first: grid-stride elementwise loops, one block per row with
 *       warp-shuffle block reductions (softmax, norms, cross-entropy), attention with one block per query row
 *       (online softmax over tiles of keys) and a backward that recomputes P from lse (one block per query row for
 *       dq, one per key row for dk / dv: no atomics).</li>
 *   <li>Errors: every CUDA, driver, NVRTC and cuBLAS status is checked by the ffm-bindings facades and thrown naming
 *       the call; a compile failure carries the NVRTC log. Kernel faults are asynchronous: they surface at the next
 *       synchronizing call, or at the launch itself with {@code -Dexeunt.cuda.sync=true}.</li>
 * </ul>
 *
 * <h2>Differences from the CPU backend</h2>
 * <ul>
 *   <li>Embedding backward uses {@code atomicAdd}: same values up to the order of float additions into rows that
 *       several positions share (not bitwise reproducible run to run).</li>
 *   <li>Quantizing F32 to Q8_0 / Q4_0 and the range-checked F32 to I8 conversion run on the host (copy, CPU kernel,
 *       copy back); dequantization runs on the device.</li>
 *   <li>{@code linearQuantized} also takes BF16 / F16 weights (a warp-per-row GEMV that converts on the fly; so do
 *       Q8_0 / Q4_0, re-reading the weights once per token: slow for long prompts).</li>
 *   <li>Synchronizing calls: transfers (host memory is pageable Arrow memory), {@code sumOfSquares},
 *       {@code crossEntropy} (targets are validated on the host, sums come back), and {@code embedding} /
 *       {@code embeddingBackward} (ids are checked on the host; {@code -Dexeunt.cuda.checkIds=false} skips that and
 *       out-of-range ids then read as zero rows).</li>
 *   <li>Float results differ from the CPU in the last bits (different summation orders, FMA contraction, GPU
 *       {@code expf}/{@code tanhf}); GELU-erf, RoPE angles and the norms' rstd are computed in double like the CPU.</li>
 * </ul>
 *
 * <h2>Tests</h2>
 * {@code CudaPureJavaTest} runs anywhere: the GEMM mapping against naive row- and column-major references, the
 * allocator with a fake backing allocator, cache keys and paths, architecture choice, descriptor byte layout,
 * launch dimensions, that every launched kernel exists in its module and the op codes match the Java enums, and, where
 * {@code nvcc} is on the PATH, that every module compiles for sm_80 and sm_90. {@code CudaBackendTest} compares
 * every backend method (forward and autograd backward) against the CPU backend; it skips itself without a GPU. On the
 * device machine:
 * <pre>
 *   ./mvnw -B -q -pl tensor -am test -Dtest='Cuda*' -Dsurefire.failIfNoSpecifiedTests=false
 *   # add -Dexeunt.cuda.sync=true to attribute an asynchronous fault to its kernel
 * </pre>
 *
 * <h2>Not verified yet</h2>
 * Written on a machine without a GPU: the kernels compile with nvcc (sm_80, sm_90) but have never run, NVRTC has
 * not compiled them, and nothing of {@code CudaBackend} has executed against a device (launch parameter layouts,
 * cuBLAS argument validity, context handling across threads, multi-GPU transfers). {@code CudaBackendTest} is the
 * first thing to run on a GPU machine. Performance has not been measured at all.
 */
package dev.exeunt.tensor.cuda;
