package dev.exeunt.ffm.cuda;

import static dev.exeunt.ffm.cuda.Cuda.checkDriver;

import dev.exeunt.ffm.loader.NativeLibraries;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * Checked calls over {@link cuda_h} (the driver API, libcuda.so.1): device queries, primary contexts, modules and
 * kernel launches. Handles (contexts, modules, functions, streams) are opaque {@link MemorySegment}s; device pointers
 * are {@code long}. Runtime-API pointers and streams work here too once the device's primary context is current
 * ({@link #primaryContextRetain} + {@link #setCurrentContext}), which is what cudart itself uses.
 */
public final class CudaDriver {
    private CudaDriver() {
    }

    public static final String LIBRARY = "cuda";

    private static volatile boolean initialized;

    /** Whether libcuda can be opened. Never throws. */
    public static boolean isAvailable() {
        return unavailableReason() == null;
    }

    /** Why the driver API cannot be used (library missing, or cuInit fails: stub library, no device), or null. Never throws. */
    public static String unavailableReason() {
        String reason = NativeLibraries.unavailableReason(LIBRARY);
        if (reason != null) {
            return reason;
        }
        try {
            init();
            return null;
        } catch (CudaException e) {
            return e.getMessage();
        } catch (RuntimeException | LinkageError e) {
            return e.toString();
        }
    }

    /** {@code cuInit(0)}, once. */
    public static void init() {
        if (!initialized) {
            synchronized (CudaDriver.class) {
                if (!initialized) {
                    checkDriver(cuda_h.cuInit(0), "cuInit");
                    initialized = true;
                }
            }
        }
    }

    public static int driverVersion() {
        return intOut(p -> cuda_h.cuDriverGetVersion(p), "cuDriverGetVersion");
    }

    public static int deviceCount() {
        init();
        return intOut(p -> cuda_h.cuDeviceGetCount(p), "cuDeviceGetCount");
    }

    /** {@code cuDeviceGet}: the CUdevice for an ordinal. */
    public static int device(int ordinal) {
        init();
        return intOut(p -> cuda_h.cuDeviceGet(p, ordinal), "cuDeviceGet(" + ordinal + ")");
    }

    public static String deviceName(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(256);
            checkDriver(cuda_h.cuDeviceGetName(buf, 256, device), "cuDeviceGetName");
            return buf.getString(0);
        }
    }

    /** {@code cuDeviceGetAttribute}; {@code attribute} is a {@code cuda_h.CU_DEVICE_ATTRIBUTE_*()} constant. */
    public static int deviceAttribute(int attribute, int device) {
        return intOut(p -> cuda_h.cuDeviceGetAttribute(p, attribute, device), "cuDeviceGetAttribute(" + attribute + ")");
    }

    /** {major, minor}. */
    public static int[] computeCapability(int device) {
        return new int[] {deviceAttribute(cuda_h.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR(), device),
                deviceAttribute(cuda_h.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR(), device)};
    }

    public static long totalMemory(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_LONG);
            checkDriver(cuda_h.cuDeviceTotalMem_v2(out, device), "cuDeviceTotalMem");
            return out.get(ValueLayout.JAVA_LONG, 0);
        }
    }

    // ------------------------------------------------------------------------------------------- contexts

    public static MemorySegment primaryContextRetain(int device) {
        return pointerOut(p -> cuda_h.cuDevicePrimaryCtxRetain(p, device), "cuDevicePrimaryCtxRetain");
    }

    public static void primaryContextRelease(int device) {
        checkDriver(cuda_h.cuDevicePrimaryCtxRelease_v2(device), "cuDevicePrimaryCtxRelease");
    }

    /** The calling thread's current context ({@link MemorySegment#NULL} when none). */
    public static MemorySegment currentContext() {
        return pointerOut(p -> cuda_h.cuCtxGetCurrent(p), "cuCtxGetCurrent");
    }

    public static void setCurrentContext(MemorySegment context) {
        checkDriver(cuda_h.cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    /** Retains device {@code ordinal}'s primary context and makes it current on this thread; returns the context. */
    public static MemorySegment usePrimaryContext(int ordinal) {
        int dev = device(ordinal);
        MemorySegment ctx = primaryContextRetain(dev);
        setCurrentContext(ctx);
        return ctx;
    }

    public static void contextSynchronize() {
        checkDriver(cuda_h.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    // ------------------------------------------------------------------------------------------- memory (driver)

    public static long memAlloc(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_LONG);
            checkDriver(cuda_h.cuMemAlloc_v2(out, bytes), "cuMemAlloc(" + bytes + ")");
            return out.get(ValueLayout.JAVA_LONG, 0);
        }
    }

    public static void memFree(long devicePtr) {
        checkDriver(cuda_h.cuMemFree_v2(devicePtr), "cuMemFree");
    }

    public static void copyToDevice(long dstDevice, MemorySegment src) {
        CudaRuntime.requireNative(src);
        checkDriver(cuda_h.cuMemcpyHtoD_v2(dstDevice, src, src.byteSize()), "cuMemcpyHtoD");
    }

    public static void copyToHost(MemorySegment dst, long srcDevice) {
        CudaRuntime.requireNative(dst);
        checkDriver(cuda_h.cuMemcpyDtoH_v2(dst, srcDevice, dst.byteSize()), "cuMemcpyDtoH");
    }

    // ------------------------------------------------------------------------------------------- modules, launches

    /**
     * Loads a module from a PTX (text, NUL added when missing) or CUBIN/fatbin image, reporting the JIT error log in
     * the exception on failure. A current context is required.
     */
    public static MemorySegment moduleLoad(byte[] image) {
        boolean elf = image.length >= 4 && image[0] == 0x7f && image[1] == 'E' && image[2] == 'L' && image[3] == 'F';
        boolean terminated = image.length > 0 && image[image.length - 1] == 0;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment img = arena.allocate(image.length + (elf || terminated ? 0 : 1), 16);
            MemorySegment.copy(image, 0, img, ValueLayout.JAVA_BYTE, 0, image.length);
            int logSize = 16 * 1024;
            MemorySegment log = arena.allocate(logSize);
            MemorySegment options = arena.allocate(ValueLayout.JAVA_INT, 2);
            options.setAtIndex(ValueLayout.JAVA_INT, 0, cuda_h.CU_JIT_ERROR_LOG_BUFFER());
            options.setAtIndex(ValueLayout.JAVA_INT, 1, cuda_h.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES());
            MemorySegment values = arena.allocate(ValueLayout.ADDRESS, 2);
            values.setAtIndex(ValueLayout.ADDRESS, 0, log);
            values.setAtIndex(ValueLayout.ADDRESS, 1, MemorySegment.ofAddress(logSize)); // the size travels in the pointer
            MemorySegment module = arena.allocate(ValueLayout.ADDRESS);
            int status = cuda_h.cuModuleLoadDataEx(module, img, 2, options, values);
            if (status != cuda_h.CUDA_SUCCESS()) {
                String jitLog = log.getString(0);
                throw new CudaException("cuda", "cuModuleLoadDataEx", status,
                        Cuda.driverErrorString(status) + (jitLog.isBlank() ? "" : "; JIT log: " + jitLog.strip()));
            }
            return module.get(ValueLayout.ADDRESS, 0);
        }
    }

    /** Loads a PTX module from text. */
    public static MemorySegment moduleLoadPtx(String ptx) {
        return moduleLoad(ptx.getBytes(StandardCharsets.UTF_8));
    }

    public static MemorySegment moduleGetFunction(MemorySegment module, String name) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            checkDriver(cuda_h.cuModuleGetFunction(out, module, arena.allocateFrom(name)), "cuModuleGetFunction(" + name + ")");
            return out.get(ValueLayout.ADDRESS, 0);
        }
    }

    public static void moduleUnload(MemorySegment module) {
        checkDriver(cuda_h.cuModuleUnload(module), "cuModuleUnload");
    }

    /** {@code cuFuncSetAttribute}, e.g. CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES for more than 48 KiB of shared memory. */
    public static void functionSetAttribute(MemorySegment function, int attribute, int value) {
        checkDriver(cuda_h.cuFuncSetAttribute(function, attribute, value), "cuFuncSetAttribute");
    }

    /**
     * Builds the {@code void** kernelParams} array of {@code cuLaunchKernel}: one slot per argument holding the address
     * of a copy of its value. Integer → int, Long → 8 bytes (device pointers), Float, Double, Short, Byte, and
     * MemorySegment → its address (a pointer argument).
     */
    public static MemorySegment kernelParams(Arena arena, Object... args) {
        MemorySegment array = arena.allocate(ValueLayout.ADDRESS, Math.max(1, args.length));
        for (int i = 0; i < args.length; i++) {
            MemorySegment slot = switch (args[i]) {
                case Integer v -> arena.allocateFrom(ValueLayout.JAVA_INT, v);
                case Long v -> arena.allocateFrom(ValueLayout.JAVA_LONG, v);
                case Float v -> arena.allocateFrom(ValueLayout.JAVA_FLOAT, v);
                case Double v -> arena.allocateFrom(ValueLayout.JAVA_DOUBLE, v);
                case Short v -> arena.allocateFrom(ValueLayout.JAVA_SHORT, v);
                case Byte v -> arena.allocateFrom(ValueLayout.JAVA_BYTE, v);
                case MemorySegment v -> arena.allocateFrom(ValueLayout.ADDRESS, v);
                case null -> arena.allocateFrom(ValueLayout.ADDRESS, MemorySegment.NULL);
                default -> throw new IllegalArgumentException("unsupported kernel argument type: " + args[i].getClass());
            };
            array.setAtIndex(ValueLayout.ADDRESS, i, slot);
        }
        return array;
    }

    /** {@code cuLaunchKernel} with a {@link #kernelParams} array (asynchronous on {@code stream}). */
    public static void launchKernel(MemorySegment function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                                    int sharedMemBytes, MemorySegment stream, MemorySegment kernelParams) {
        checkDriver(cuda_h.cuLaunchKernel(function, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedMemBytes, stream,
                kernelParams, MemorySegment.NULL), "cuLaunchKernel");
    }

    public static String errorString(int status) {
        return Cuda.driverErrorString(status);
    }

    // ------------------------------------------------------------------------------------------- helpers

    private static int intOut(CudaRuntime.OutCall c, String call) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            checkDriver(c.call(out), call);
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    private static MemorySegment pointerOut(CudaRuntime.OutCall c, String call) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            checkDriver(c.call(out), call);
            return out.get(ValueLayout.ADDRESS, 0);
        }
    }
}
