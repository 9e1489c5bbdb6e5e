package dev.exeunt.tensor.cuda;

import static dev.exeunt.tensor.cuda.KernelSources.Module.ATTENTION;
import static dev.exeunt.tensor.cuda.KernelSources.Module.ELEMENTWISE;
import static dev.exeunt.tensor.cuda.KernelSources.Module.MISC;
import static dev.exeunt.tensor.cuda.KernelSources.Module.ROWS;

import dev.exeunt.ffm.cublas.Cublas;
import dev.exeunt.ffm.cublas.cublas_api_h;
import dev.exeunt.ffm.cuda.CudaDriver;
import dev.exeunt.ffm.cuda.CudaException;
import dev.exeunt.ffm.cuda.CudaRuntime;
import dev.exeunt.ffm.cuda.cuda_runtime_api_h;
import dev.exeunt.ffm.nvrtc.Nvrtc;
import dev.exeunt.tensor.Backend;
import dev.exeunt.tensor.Backends;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Storage;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.CpuBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * The CUDA backend of one device: cuBLAS for GEMM, NVRTC-compiled kernels ({@code kernels/*.cu}) for the rest,
 * everything queued on one stream per device, memory from a {@link CudaAllocator}. Semantics are those of
 * {@link CpuBackend} (see {@code package-info.java} for the differences: atomics in the embedding backward,
 * host fallbacks for quantization). Calls are asynchronous except those that return host data (transfers,
 * {@link #sumOfSquares}, {@link #crossEntropy}) and the id checks of embeddings.
 *
 * <p>Settings: {@code -Dexeunt.cuda.tf32=true} (TF32 tensor cores for F32 GEMMs), {@code -Dexeunt.cuda.cache=DIR}
 * (compiled kernels), {@code -Dexeunt.cuda.sync=true} (synchronize after every launch so an asynchronous fault is
 * reported by the kernel that caused it), {@code -Dexeunt.cuda.checkIds=false} (skip the host-side id checks).
 */
public final class CudaBackend implements Backend, AutoCloseable {
    private static final ThreadLocal<CudaBackend> BOUND = new ThreadLocal<>();

    private final Device device;
    private final int index;
    private final MemorySegment context;
    private final MemorySegment stream;
    private final MemorySegment cublas;
    private final CudaAllocator allocator;
    private final CudaKernels kernels;
    private final boolean tf32 = Boolean.getBoolean("exeunt.cuda.tf32");
    private final boolean syncEachLaunch = Boolean.getBoolean("exeunt.cuda.sync");
    private final boolean checkIds = !"false".equals(System.getProperty("exeunt.cuda.checkIds"));
    private volatile boolean closed;

    public CudaBackend(Device device) {
        if (device.kind() != Device.Kind.CUDA) throw new IllegalArgumentException("not a CUDA device: " + device);
        String why = CudaRuntime.noDeviceReason();
        if (why != null) throw new IllegalStateException("CUDA backend for " + device + " unavailable: " + why);
        if (!Nvrtc.isAvailable()) throw new IllegalStateException("CUDA backend needs NVRTC: " + Nvrtc.unavailableReason());
        int count = CudaRuntime.deviceCount();
        if (device.index() < 0 || device.index() >= count) {
            throw new IllegalArgumentException("no device " + device + ": " + count + " CUDA device(s) visible");
        }
        this.device = device;
        this.index = device.index();
        CudaRuntime.setDevice(index);
        this.context = CudaDriver.usePrimaryContext(index);
        this.stream = CudaRuntime.streamCreate();
        this.cublas = Cublas.create();
        Cublas.setStream(cublas, stream);
        BOUND.set(this);
        this.allocator = new CudaAllocator(new DeviceBacking());
        String arch = CudaKernels.chooseArch(CudaRuntime.computeCapability(index), Nvrtc.supportedArchitectures());
        this.kernels = new CudaKernels(arch, new KernelCache(KernelCache.defaultDir()));
    }

    /** The backend registered for {@code device} (creating it on first use). */
    public static CudaBackend of(Device device) {
        return (CudaBackend) Backends.of(device);
    }

    private final class DeviceBacking implements CudaAllocator.Backing {
        @Override
        public long tryAllocate(long bytes) {
            bind();
            try {
                return CudaRuntime.malloc(bytes);
            } catch (CudaException e) {
                if (e.status() == cuda_runtime_api_h.cudaErrorMemoryAllocation()) {
                    CudaRuntime.getLastError(); // clear the sticky-free error state
                    return 0;
                }
                throw e;
            }
        }

        @Override
        public void free(long ptr) {
            bind();
            CudaRuntime.free(ptr);
        }

        @Override
        public String describe() {
            try {
                bind();
                var info = CudaRuntime.memGetInfo();
                return device + " has " + HostMemory.human(info.free()) + " free of " + HostMemory.human(info.total());
            } catch (RuntimeException e) {
                return device + " (memory info unavailable: " + e.getMessage() + ")";
            }
        }

        @Override
        public void synchronize() {
            CudaBackend.this.synchronize();
        }
    }

    /** Makes this device (runtime) and its primary context (driver) current on the calling thread. */
    private void bind() {
        if (closed) throw new IllegalStateException("CUDA backend for " + device + " is closed");
        if (BOUND.get() != this) {
            CudaRuntime.setDevice(index);
            CudaDriver.setCurrentContext(context);
            BOUND.set(this);
        }
    }

    /** Waits for all queued work of this device. */
    public void synchronize() {
        bind();
        CudaRuntime.streamSynchronize(stream);
    }

    /**
     * The stream all of this device's work is queued on, with the device and its context made current on the
     * calling thread: work queued there by other libraries (NCCL collectives) runs in order with this backend's.
     */
    public MemorySegment stream() {
        bind();
        return stream;
    }

    /** The NVRTC target, e.g. {@code sm_90}. */
    public String architecture() {
        return kernels.arch();
    }

    /** Bytes held by live device tensors. */
    public long allocatedBytes() {
        return allocator.inUseBytes();
    }

    /** Bytes kept in the allocator's free lists. */
    public long cachedBytes() {
        return allocator.cachedBytes();
    }

    /** Gives cached device blocks back to CUDA. */
    public void emptyCache() {
        allocator.releaseCached();
    }

    @Override
    public void close() {
        if (closed) return;
        bind();
        CudaRuntime.streamSynchronize(stream);
        allocator.close();
        kernels.close();
        Cublas.destroy(cublas);
        CudaRuntime.streamDestroy(stream);
        CudaDriver.primaryContextRelease(CudaDriver.device(index));
        closed = true;
        BOUND.remove();
    }

    @Override
    public Device device() {
        return device;
    }

    @Override
    public Storage allocate(long bytes) {
        bind();
        long ptr = allocator.allocate(bytes);
        return new Storage(device, MemorySegment.ofAddress(ptr).reinterpret(bytes), bytes, () -> allocator.free(ptr, bytes));
    }

    // ---------------------------------------------------------------- helpers

    /** Device address of a tensor's first element. */
    private long ptr(Tensor t) {
        if (t == null) return 0L;
        if (!t.device().equals(device)) throw new IllegalArgumentException("tensor on " + t.device() + " passed to the " + device + " backend: " + t);
        return t.storage().segment().address() + t.dtype().byteSize(t.offset());
    }

    /** Device address of element {@code off} (relative to the storage) of a tensor. */
    private long storagePtr(Tensor t, long off) {
        if (!t.device().equals(device)) throw new IllegalArgumentException("tensor on " + t.device() + " passed to the " + device + " backend: " + t);
        return t.storage().segment().address() + t.dtype().byteSize(off);
    }

    private static void contiguous(String op, Tensor... ts) {
        for (Tensor t : ts) {
            if (t != null && !t.isContiguous()) throw new IllegalArgumentException(op + " needs contiguous input, got " + t);
        }
    }

    private static void f32(String op, Tensor... ts) {
        for (Tensor t : ts) {
            if (t != null && t.dtype() != DType.F32) throw new IllegalArgumentException(op + " needs F32, got " + t);
        }
    }

    private static int rows(Tensor t) {
        return (int) (t.numel() / t.dim(-1));
    }

    private void launch(KernelSources.Module module, String name, int gridX, int gridY, int threads, int sharedBytes,
                        Object... args) {
        bind();
        MemorySegment f = kernels.function(module, name);
        try (Arena arena = Arena.ofConfined()) {
            CudaDriver.launchKernel(f, gridX, gridY, 1, threads, 1, 1, sharedBytes, stream, KernelArgs.params(arena, args));
        }
        if (syncEachLaunch) {
            try {
                CudaRuntime.streamSynchronize(stream);
            } catch (CudaException e) {
                throw new IllegalStateException("CUDA kernel " + name + " failed: " + e.getMessage(), e);
            }
        }
    }

    private void elementwise(KernelSources.Module module, String name, long n, Object... args) {
        if (n == 0) return;
        launch(module, name, Launch.elementwiseBlocks(n), 1, Launch.ELEMENTWISE_THREADS, 0, args);
    }

    private void memcpy(long dst, long src, long bytes, int kind) {
        if (bytes == 0) return;
        bind();
        CudaRuntime.memcpyAsync(dst, src, bytes, kind, stream);
    }

    /** Copies device bytes to a fresh host array (synchronizes). */
    private byte[] toHost(long src, long bytes) {
        bind();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate(Math.max(1, bytes), 16);
            CudaRuntime.memcpyAsync(host.address(), src, bytes, cuda_runtime_api_h.cudaMemcpyDeviceToHost(), stream);
            CudaRuntime.streamSynchronize(stream);
            return host.asSlice(0, bytes).toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private int[] intsToHost(Tensor t) {
        byte[] b = toHost(ptr(t), 4 * t.numel());
        int[] out = new int[(int) t.numel()];
        MemorySegment.copy(MemorySegment.ofArray(b), ValueLayout.JAVA_INT_UNALIGNED, 0, out, 0, out.length);
        return out;
    }

    /** A temporary device buffer; give it back with {@link #release}. */
    private long temp(long bytes) {
        bind();
        return allocator.allocate(bytes);
    }

    private void release(long ptr, long bytes) {
        allocator.free(ptr, bytes);
    }

    // ---------------------------------------------------------------- data movement

    @Override
    public void copy(Tensor src, Tensor dst) {
        if (src.dtype() != dst.dtype() || src.dtype().isQuantized()) {
            if (src.dtype() == dst.dtype() && src.isContiguous() && dst.isContiguous()) {
                memcpy(ptr(dst), ptr(src), src.dtype().byteSize(src.numel()), cuda_runtime_api_h.cudaMemcpyDeviceToDevice());
                return;
            }
            throw new IllegalArgumentException("copy needs equal plain dtypes, got " + src.dtype() + " -> " + dst.dtype());
        }
        if (!Arrays.equals(src.shape(), dst.shape())) {
            throw new IllegalArgumentException("copy shape mismatch " + Shape.str(src.shape()) + " -> " + Shape.str(dst.shape()));
        }
        long n = src.numel();
        if (n == 0) return;
        int eb = src.dtype().elementBytes();
        if (src.isContiguous() && dst.isContiguous()) {
            memcpy(ptr(dst), ptr(src), n * eb, cuda_runtime_api_h.cudaMemcpyDeviceToDevice());
            return;
        }
        StridedDesc[] d = StridedDesc.collapse(src.shape(), src.strides(), dst.strides());
        String kernel = switch (eb) {
            case 4 -> "ew_copy4";
            case 2 -> "ew_copy2";
            case 1 -> "ew_copy1";
            default -> throw new IllegalArgumentException("copy of " + eb + "-byte elements");
        };
        elementwise(ELEMENTWISE, kernel, n, n, ptr(src), d[0], ptr(dst), d[1]);
    }

    @Override
    public void fill(Tensor dst, float value) {
        contiguous("fill", dst);
        long n = dst.numel();
        int bits = switch (dst.dtype()) {
            case F32 -> Float.floatToRawIntBits(value);
            case I32 -> (int) value;
            default -> throw new IllegalArgumentException("fill supports F32 and I32, got " + dst.dtype());
        };
        if (n == 0) return;
        if (bits == 0) {
            bind();
            CudaRuntime.memsetAsync(ptr(dst), 0, 4 * n, stream);
        } else {
            elementwise(ELEMENTWISE, "ew_fill32", n, n, ptr(dst), bits);
        }
    }

    @Override
    public void convert(Tensor src, Tensor dst) {
        contiguous("convert", src, dst);
        long n = src.numel();
        DType from = src.dtype(), to = dst.dtype();
        if (to == DType.F32 && from.isKQuant()) {
            convertOnHost(src, dst); // k-quants have no CUDA kernels yet: dequantized on the host (rare: loading)
            return;
        }
        if (to == DType.F32) {
            String k = switch (from) {
                case F32 -> null;
                case BF16 -> "cv_bf16_to_f32";
                case F16 -> "cv_f16_to_f32";
                case I32 -> "cv_i32_to_f32";
                case I8 -> "cv_i8_to_f32";
                case Q8_0 -> "cv_q8_0_to_f32";
                case Q4_0 -> "cv_q4_0_to_f32";
                case Q2_K, Q4_K, Q5_K, Q6_K -> throw new IllegalStateException("unreachable: k-quants convert on the host");
            };
            if (k == null) memcpy(ptr(dst), ptr(src), 4 * n, cuda_runtime_api_h.cudaMemcpyDeviceToDevice());
            else elementwise(ELEMENTWISE, k, n, n, ptr(src), ptr(dst));
            return;
        }
        if (from != DType.F32) throw new IllegalArgumentException("conversion " + from + " -> " + to + " goes through F32");
        switch (to) {
            case BF16 -> elementwise(ELEMENTWISE, "cv_f32_to_bf16", n, n, ptr(src), ptr(dst));
            case F16 -> elementwise(ELEMENTWISE, "cv_f32_to_f16", n, n, ptr(src), ptr(dst));
            case I32 -> elementwise(ELEMENTWISE, "cv_f32_to_i32", n, n, ptr(src), ptr(dst));
            // Quantizers (and the range-checked I8) run on the host: rare, and bit-exact with the CPU by construction.
            case I8, Q8_0, Q4_0 -> convertOnHost(src, dst);
            default -> throw new IllegalArgumentException("conversion F32 -> " + to + " is not supported");
        }
    }

    private void convertOnHost(Tensor src, Tensor dst) {
        Scope.outside(() -> {
            try (Tensor hs = Tensor.empty(src.dtype(), Device.CPU, src.shape());
                 Tensor hd = Tensor.empty(dst.dtype(), Device.CPU, dst.shape())) {
                transfer(src, hs);
                CpuBackend.INSTANCE.convert(hs, hd);
                transfer(hd, dst);
            }
            return null;
        });
    }

    @Override
    public void transfer(Tensor src, Tensor dst) {
        contiguous("transfer", src, dst);
        if (src.dtype() != dst.dtype() || src.numel() != dst.numel()) {
            throw new IllegalArgumentException("transfer needs equal dtype and size: " + src + " -> " + dst);
        }
        long bytes = src.dtype().byteSize(src.numel());
        if (bytes == 0) return;
        boolean srcHost = src.device().kind() == Device.Kind.CPU, dstHost = dst.device().kind() == Device.Kind.CPU;
        bind();
        if (srcHost && !dstHost) {
            long host = src.segment().address() + src.dtype().byteSize(src.offset());
            CudaRuntime.memcpyAsync(ptr(dst), host, bytes, cuda_runtime_api_h.cudaMemcpyHostToDevice(), stream);
        } else if (!srcHost && dstHost) {
            long host = dst.segment().address() + dst.dtype().byteSize(dst.offset());
            CudaRuntime.memcpyAsync(host, ptr(src), bytes, cuda_runtime_api_h.cudaMemcpyDeviceToHost(), stream);
        } else if (!srcHost) {
            // device to device (possibly another GPU: UVA copy after that device's queued work)
            for (Device d : new Device[] {src.device(), dst.device()}) {
                if (!d.equals(device)) ((CudaBackend) Backends.of(d)).synchronize();
            }
            bind();
            long s = src.storage().segment().address() + src.dtype().byteSize(src.offset());
            long d = dst.storage().segment().address() + dst.dtype().byteSize(dst.offset());
            CudaRuntime.memcpyAsync(d, s, bytes, cuda_runtime_api_h.cudaMemcpyDefault(), stream);
        } else {
            CpuBackend.INSTANCE.copy(src, dst);
            return;
        }
        // Host memory is pageable Arrow memory that the caller may free right after: wait for the copy.
        CudaRuntime.streamSynchronize(stream);
    }

    // ---------------------------------------------------------------- linear algebra

    private static int cudaType(DType t) {
        return switch (t) {
            case F32 -> cublas_api_h.CUDA_R_32F();
            case BF16 -> cublas_api_h.CUDA_R_16BF();
            case F16 -> cublas_api_h.CUDA_R_16F();
            default -> throw new IllegalArgumentException("cuBLAS GEMM does not take " + t);
        };
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha, Tensor a, long aOff, int lda,
                     long strideA, Tensor b, long bOff, int ldb, long strideB, float beta, Tensor c, long cOff, int ldc,
                     long strideC, int batch) {
        if (a.dtype() != b.dtype()) throw new IllegalArgumentException("gemm needs A and B of one dtype: " + a + ", " + b);
        if (c.dtype() != DType.F32 && c.dtype() != a.dtype()) {
            throw new IllegalArgumentException("gemm writes F32 or the inputs' dtype, got C " + c);
        }
        if (m == 0 || n == 0 || batch == 0) return;
        GemmMapping g = GemmMapping.fromRowMajor(transA, transB, m, n, k, lda, strideA, ldb, strideB, ldc, strideC);
        int compute = a.dtype() == DType.F32 && tf32 ? cublas_api_h.CUBLAS_COMPUTE_32F_FAST_TF32() : cublas_api_h.CUBLAS_COMPUTE_32F();
        int ab = cudaType(a.dtype());
        int opN = cublas_api_h.CUBLAS_OP_N(), opT = cublas_api_h.CUBLAS_OP_T();
        bind();
        Cublas.gemmStridedBatchedEx(cublas, g.transA() ? opT : opN, g.transB() ? opT : opN, g.m(), g.n(), g.k(), alpha,
                storagePtr(b, bOff), ab, g.lda(), g.strideA(),
                storagePtr(a, aOff), ab, g.ldb(), g.strideB(),
                beta, storagePtr(c, cOff), cudaType(c.dtype()), g.ldc(), g.strideC(), batch, compute,
                cublas_api_h.CUBLAS_GEMM_DEFAULT());
    }

    /** Weight codes of linear_gemv (misc.cu). */
    static int weightCode(DType t) {
        return switch (t) {
            case F32 -> 0;
            case BF16 -> 1;
            case F16 -> 2;
            case Q8_0 -> 3;
            case Q4_0 -> 4;
            case Q2_K, Q4_K, Q5_K, Q6_K -> throw new IllegalArgumentException("linearQuantized: " + t
                    + " weights have no CUDA kernel yet; run this model on the CPU or convert its weights to Q8_0 / Q4_0");
            default -> throw new IllegalArgumentException("linearQuantized: unsupported weight dtype " + t);
        };
    }

    @Override
    public void linearQuantized(Tensor w, Tensor x, Tensor y) {
        contiguous("linearQuantized", w, x, y);
        f32("linearQuantized", x, y);
        int m = w.dim(0), n = w.dim(1), t = rows(x);
        if (w.dtype() == DType.F32) {
            gemm(false, true, t, m, n, 1f, x, x.offset(), n, 0, w, w.offset(), n, 0, 0f, y, y.offset(), m, 0, 1);
            return;
        }
        int code = weightCode(w.dtype());
        if (m == 0 || t == 0) return;
        launch(MISC, "linear_gemv", Launch.gemvBlocksX(m), Launch.gemvBlocksY(t), 32 * Launch.GEMV_ROWS_PER_BLOCK, 0,
                code, m, n, w.dtype().byteSize(n), ptr(w), ptr(x), ptr(y), t);
    }

    // ---------------------------------------------------------------- elementwise

    @Override
    public void binary(Binary op, Tensor a, Tensor b, Tensor out) {
        contiguous("binary", out);
        f32("binary", a, b, out);
        StridedDesc[] d = StridedDesc.collapse(out.shape(), a.strides(), b.strides(), out.strides());
        long n = out.numel();
        elementwise(ELEMENTWISE, "ew_binary", n, op.ordinal(), n, ptr(a), d[0], ptr(b), d[1], ptr(out));
    }

    @Override
    public void unary(Unary op, Tensor x, float param, Tensor y) {
        contiguous("unary", x, y);
        long n = x.numel();
        elementwise(ELEMENTWISE, "ew_unary", n, op.ordinal(), n, ptr(x), param, ptr(y));
    }

    @Override
    public void unaryBackward(Unary op, Tensor x, Tensor y, Tensor dy, float param, Tensor dx) {
        contiguous("unaryBackward", x, y, dy, dx);
        long n = x.numel();
        elementwise(ELEMENTWISE, "ew_unary_bwd", n, op.ordinal(), n, ptr(x), ptr(y), ptr(dy), param, ptr(dx));
    }

    @Override
    public void addInPlace(Tensor acc, Tensor x) {
        contiguous("addInPlace", acc, x);
        long n = acc.numel();
        elementwise(ELEMENTWISE, "ew_add_inplace", n, n, ptr(acc), ptr(x));
    }

    // ---------------------------------------------------------------- reductions

    @Override
    public void reduce(Reduce op, Tensor x, int dim, Tensor out) {
        contiguous("reduce", x, out);
        long outer = 1, inner = 1;
        for (int i = 0; i < dim; i++) outer *= x.dim(i);
        for (int i = dim + 1; i < x.rank(); i++) inner *= x.dim(i);
        int r = x.dim(dim);
        int isMax = op == Reduce.MAX ? 1 : 0;
        if (outer * inner == 0) return;
        if (inner == 1) {
            launch(ROWS, "reduce_rows", Launch.rowBlocks(outer), 1, Launch.rowThreads(r), 0, isMax, outer, r, ptr(x), ptr(out));
        } else {
            elementwise(ROWS, "reduce_strided", outer * inner, isMax, outer, r, inner, ptr(x), ptr(out));
        }
    }

    @Override
    public double sumOfSquares(Tensor x) {
        contiguous("sumOfSquares", x);
        long n = x.numel();
        if (n == 0) return 0;
        int blocks = Math.min(Launch.SUMSQ_BLOCKS, Launch.elementwiseBlocks(n));
        long buf = temp(8L * blocks);
        try {
            launch(ROWS, "sumsq_partial", blocks, 1, Launch.ELEMENTWISE_THREADS, 0, n, ptr(x), buf);
            byte[] b = toHost(buf, 8L * blocks);
            MemorySegment s = MemorySegment.ofArray(b);
            double total = 0;
            for (int i = 0; i < blocks; i++) total += s.getAtIndex(ValueLayout.JAVA_DOUBLE_UNALIGNED, i);
            return total;
        } finally {
            release(buf, 8L * blocks);
        }
    }

    // ---------------------------------------------------------------- row ops

    private void rowKernel(String name, Tensor x, Object... args) {
        long rows = rows(x);
        if (rows == 0) return;
        launch(ROWS, name, Launch.rowBlocks(rows), 1, Launch.rowThreads(x.dim(-1)), 0, args);
    }

    @Override
    public void softmax(Tensor x, Tensor y, boolean log) {
        contiguous("softmax", x, y);
        rowKernel("softmax_fwd", x, log ? 1 : 0, (long) rows(x), x.dim(-1), ptr(x), ptr(y));
    }

    @Override
    public void softmaxBackward(Tensor y, Tensor dy, Tensor dx, boolean log) {
        contiguous("softmaxBackward", y, dy, dx);
        rowKernel("softmax_bwd", y, log ? 1 : 0, (long) rows(y), y.dim(-1), ptr(y), ptr(dy), ptr(dx));
    }

    @Override
    public void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor y, Tensor mean, Tensor rstd) {
        contiguous("layerNorm", x, gamma, beta, y, mean, rstd);
        rowKernel("norm_fwd", x, 1, (long) rows(x), x.dim(-1), ptr(x), ptr(gamma), ptr(beta), eps, ptr(y), ptr(mean), ptr(rstd));
    }

    @Override
    public void layerNormBackward(Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dy, Tensor dx, Tensor dGamma,
                                  Tensor dBeta) {
        contiguous("layerNormBackward", x, gamma, mean, rstd, dy, dx, dGamma, dBeta);
        normBackward(true, x, gamma, mean, rstd, dy, dx, dGamma, dBeta);
    }

    @Override
    public void rmsNorm(Tensor x, Tensor gamma, float eps, Tensor y, Tensor rstd) {
        contiguous("rmsNorm", x, gamma, y, rstd);
        rowKernel("norm_fwd", x, 0, (long) rows(x), x.dim(-1), ptr(x), ptr(gamma), 0L, eps, ptr(y), 0L, ptr(rstd));
    }

    @Override
    public void rmsNormBackward(Tensor x, Tensor gamma, Tensor rstd, Tensor dy, Tensor dx, Tensor dGamma) {
        contiguous("rmsNormBackward", x, gamma, rstd, dy, dx, dGamma);
        normBackward(false, x, gamma, null, rstd, dy, dx, dGamma, null);
    }

    private void normBackward(boolean centered, Tensor x, Tensor gamma, Tensor mean, Tensor rstd, Tensor dy, Tensor dx,
                              Tensor dGamma, Tensor dBeta) {
        long rows = rows(x);
        int cols = x.dim(-1);
        // parameter gradients first: dx may overwrite dy (stream order keeps them apart)
        if (dGamma != null || dBeta != null) {
            elementwise(ROWS, "norm_bwd_params", cols, rows, cols, ptr(x), ptr(mean), ptr(rstd), ptr(dy), ptr(dGamma), ptr(dBeta));
        }
        if (dx != null) {
            rowKernel("norm_bwd_dx", x, centered ? 1 : 0, rows, cols, ptr(x), ptr(gamma), ptr(mean), ptr(rstd), ptr(dy), ptr(dx));
        }
    }

    @Override
    public void rope(Tensor x, int startPos, float theta, boolean inverse) {
        contiguous("rope", x);
        int b = x.dim(0), t = x.dim(1), h = x.dim(2), d = x.dim(3);
        if (d % 2 != 0) throw new IllegalArgumentException("rope needs an even head dim, got " + d);
        if (startPos < 0) throw new IllegalArgumentException("startPos must be >= 0, got " + startPos);
        long pairs = (long) b * t * h * (d / 2);
        elementwise(MISC, "rope", pairs, pairs, t, h, d, startPos, (double) theta, inverse ? 1 : 0, ptr(x));
    }

    // ---------------------------------------------------------------- embeddings

    private void checkIds(Tensor ids, int vocab) {
        if (!checkIds) return;
        int[] id = intsToHost(ids);
        for (int i = 0; i < id.length; i++) {
            if (id[i] < 0 || id[i] >= vocab) {
                throw new IllegalArgumentException("token id " + id[i] + " at position " + i + " is out of range [0, " + vocab + ")");
            }
        }
    }

    @Override
    public void embedding(Tensor table, Tensor ids, Tensor out) {
        contiguous("embedding", table, ids, out);
        int vocab = table.dim(0), dim = table.dim(1);
        long n = ids.numel();
        checkIds(ids, vocab);
        elementwise(MISC, "embedding_gather", n * dim, n, vocab, dim, ptr(table), ptr(ids), ptr(out));
    }

    @Override
    public void embeddingBackward(Tensor ids, Tensor dOut, Tensor dTable) {
        contiguous("embeddingBackward", ids, dOut, dTable);
        int vocab = dTable.dim(0), dim = dTable.dim(1);
        long n = ids.numel();
        checkIds(ids, vocab);
        elementwise(MISC, "embedding_scatter_add", n * dim, n, vocab, dim, ptr(dOut), ptr(ids), ptr(dTable));
    }

    // ---------------------------------------------------------------- attention

    private static void checkHeadDimContiguous(Tensor... ts) {
        for (Tensor t : ts) {
            if (t.stride(3) != 1) throw new IllegalArgumentException("attention needs the head dim contiguous: " + t);
        }
    }

    private static KernelArgs.Struct view4(Tensor t) {
        return KernelArgs.longs(t.stride(0), t.stride(1), t.stride(2));
    }

    private static KernelArgs.Struct dims(Tensor q, Tensor k, int pastLen, float scale) {
        int hq = q.dim(2), hkv = k.dim(2);
        if (hkv < 1 || hq % hkv != 0) throw new IllegalArgumentException("qHeads (" + hq + ") must be a positive multiple of kvHeads (" + hkv + ")");
        if (k.dim(1) != pastLen + q.dim(1)) {
            throw new IllegalArgumentException("attention: k has " + k.dim(1) + " tokens, expected pastLen + T = " + (pastLen + q.dim(1)));
        }
        return KernelArgs.ints(q.dim(0), q.dim(1), pastLen, hq, hkv, q.dim(3), Float.floatToRawIntBits(scale), 0);
    }

    @Override
    public void attention(Tensor q, Tensor k, Tensor v, int pastLen, float scale, Tensor o, Tensor lse) {
        checkHeadDimContiguous(q, k, v, o);
        f32("attention", q, k, v, o, lse);
        KernelArgs.Struct dm = dims(q, k, pastLen, scale);
        long rows = (long) q.dim(0) * q.dim(2) * q.dim(1);
        if (rows == 0) return;
        launch(ATTENTION, "attn_fwd", Launch.exactRows(rows, "attention"), 1, Launch.ATTENTION_THREADS,
                Launch.attentionForwardShared(q.dim(3)), dm, ptr(q), view4(q), ptr(k), view4(k), ptr(v), view4(v),
                ptr(o), view4(o), ptr(lse));
    }

    @Override
    public void attentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dO, int pastLen, float scale,
                                  Tensor dq, Tensor dk, Tensor dv) {
        checkHeadDimContiguous(q, k, v, o, dO, dq, dk, dv);
        f32("attentionBackward", q, k, v, o, lse, dO, dq, dk, dv);
        contiguous("attentionBackward lse", lse);
        KernelArgs.Struct dm = dims(q, k, pastLen, scale);
        int d = q.dim(3);
        long rows = (long) q.dim(0) * q.dim(2) * q.dim(1);
        long keyRows = (long) k.dim(0) * k.dim(1) * k.dim(2);
        if (keyRows == 0) return;
        if (rows == 0) { // no queries: nothing flows into k and v
            fill(dk, 0f);
            fill(dv, 0f);
            return;
        }
        long delta = temp(4 * rows);
        try {
            int warps = Launch.GEMV_ROWS_PER_BLOCK;
            launch(ATTENTION, "attn_bwd_delta", Launch.exactRows((rows + warps - 1) / warps, "attention"), 1, 32 * warps, 0,
                    dm, ptr(o), view4(o), ptr(dO), view4(dO), delta);
            launch(ATTENTION, "attn_bwd_dq", Launch.exactRows(rows, "attention"), 1, Launch.ATTENTION_THREADS,
                    Launch.attentionDqShared(d), dm, ptr(q), view4(q), ptr(k), view4(k), ptr(v), view4(v),
                    ptr(dO), view4(dO), ptr(lse), delta, ptr(dq), view4(dq));
            launch(ATTENTION, "attn_bwd_dkv", Launch.exactRows(keyRows, "attention"), 1, Launch.ATTENTION_THREADS,
                    Launch.attentionDkvShared(d), dm, ptr(q), view4(q), ptr(k), view4(k), ptr(v), view4(v),
                    ptr(dO), view4(dO), ptr(lse), delta, ptr(dk), view4(dk), ptr(dv), view4(dv));
        } finally {
            release(delta, 4 * rows); // stream-ordered: safe to reuse for later work at once
        }
    }

    // ---------------------------------------------------------------- loss and optimiser

    @Override
    public double[] crossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor mask, Tensor weight, float temperature,
                                 Tensor rowLoss, Tensor dLogits, float gradScale, Tensor maxProb, Tensor argmax) {
        contiguous("crossEntropy", logits, targets, mask, weight, rowLoss, dLogits, maxProb, argmax);
        if (!(temperature > 0) || Float.isInfinite(temperature)) {
            throw new IllegalArgumentException("temperature must be finite and > 0, got " + temperature);
        }
        int n = rows(logits), vocab = logits.dim(-1);
        int[] tgt = intsToHost(targets);
        for (int r = 0; r < n; r++) {
            if (tgt[r] != ignoreIndex && (tgt[r] < 0 || tgt[r] >= vocab)) {
                throw new IllegalArgumentException("target " + tgt[r] + " at row " + r + " is out of range [0, " + vocab
                        + ") and is not the ignore index " + ignoreIndex);
            }
        }
        if (n == 0) return new double[] {0, 0};
        long bytes = 16L * n;
        long sums = temp(bytes);
        try {
            launch(ROWS, "cross_entropy", Launch.rowBlocks(n), 1, Launch.rowThreads(vocab), 0,
                    (long) n, vocab, ptr(logits), ptr(targets), ignoreIndex, 1f / temperature, ptr(mask), ptr(weight),
                    ptr(rowLoss), ptr(maxProb), ptr(argmax), sums, sums + 8L * n, ptr(dLogits), gradScale);
            MemorySegment s = MemorySegment.ofArray(toHost(sums, bytes));
            double num = 0, den = 0;
            for (int r = 0; r < n; r++) {
                num += s.getAtIndex(ValueLayout.JAVA_DOUBLE_UNALIGNED, r);
                den += s.getAtIndex(ValueLayout.JAVA_DOUBLE_UNALIGNED, n + r);
            }
            return new double[] {num, den};
        } finally {
            release(sums, bytes);
        }
    }

    @Override
    public void adamw(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
                      float weightDecay, int step) {
        contiguous("adamw", p, grad, m, v);
        if (step < 1) throw new IllegalArgumentException("step must be >= 1, got " + step);
        double bc1 = 1.0 - Math.pow(beta1, step);
        double bc2 = 1.0 - Math.pow(beta2, step);
        float stepSize = (float) (lr / bc1);
        float invSqrtBc2 = (float) (1.0 / Math.sqrt(bc2));
        float decay = 1f - lr * weightDecay;
        long n = p.numel();
        elementwise(MISC, "adamw", n, n, ptr(p), ptr(grad), ptr(m), ptr(v), beta1, 1f - beta1, beta2, 1f - beta2, eps, decay,
                stepSize, invSqrtBc2);
    }
}
