package dev.exeunt.ffm.cuda;

import static dev.exeunt.ffm.cuda.Cuda.check;

import dev.exeunt.ffm.loader.NativeLibraries;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Checked, Java-friendly calls over {@link cuda_runtime_api_h} (libcudart). Device pointers are {@code long}
 * addresses; streams and events are opaque {@link MemorySegment} handles ({@link MemorySegment#NULL} is the legacy
 * default stream); host buffers are native {@link MemorySegment}s. Every failing call throws {@link CudaException}.
 */
public final class CudaRuntime {
    private CudaRuntime() {
    }

    public static final String LIBRARY = "cudart";

    /** Whether libcudart can be opened. Never throws. */
    public static boolean isAvailable() {
        return unavailableReason() == null;
    }

    /** Why libcudart cannot be used, or null when it can. Never throws. */
    public static String unavailableReason() {
        String reason = NativeLibraries.unavailableReason(LIBRARY);
        if (reason != null) {
            return reason;
        }
        try {
            NativeLibraries.load(LIBRARY).find("cudaGetDeviceCount")
                    .orElseThrow(() -> new IllegalStateException("cudaGetDeviceCount not exported"));
            return null;
        } catch (RuntimeException e) {
            return e.getMessage();
        }
    }

    /** Whether the runtime loads and sees at least one device. Never throws. */
    public static boolean hasDevice() {
        return noDeviceReason() == null;
    }

    /** Why there is no usable device (library missing, driver too old, no GPU), or null. Never throws. */
    public static String noDeviceReason() {
        String reason = unavailableReason();
        if (reason != null) {
            return reason;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(ValueLayout.JAVA_INT);
            int status = cuda_runtime_api_h.cudaGetDeviceCount(count);
            if (status != 0) {
                return "cudaGetDeviceCount: " + Cuda.runtimeErrorString(status);
            }
            return count.get(ValueLayout.JAVA_INT, 0) > 0 ? null : "cudaGetDeviceCount reports 0 devices";
        } catch (RuntimeException | LinkageError e) {
            return e.toString();
        }
    }

    // ------------------------------------------------------------------------------------------- versions, devices

    /** {@code cudaRuntimeGetVersion}: 1000 * major + 10 * minor, e.g. 12040. */
    public static int runtimeVersion() {
        return intOut(p -> cuda_runtime_api_h.cudaRuntimeGetVersion(p), "cudaRuntimeGetVersion");
    }

    /** {@code cudaDriverGetVersion}: the newest CUDA version the installed driver supports (0 when none). */
    public static int driverVersion() {
        return intOut(p -> cuda_runtime_api_h.cudaDriverGetVersion(p), "cudaDriverGetVersion");
    }

    public static int deviceCount() {
        return intOut(p -> cuda_runtime_api_h.cudaGetDeviceCount(p), "cudaGetDeviceCount");
    }

    public static void setDevice(int device) {
        check(cuda_runtime_api_h.cudaSetDevice(device), "cudaSetDevice(" + device + ")");
    }

    public static int getDevice() {
        return intOut(p -> cuda_runtime_api_h.cudaGetDevice(p), "cudaGetDevice");
    }

    /** {@code cudaDeviceGetAttribute}; {@code attr} is a {@code cuda_runtime_api_h.cudaDevAttr*()} constant. */
    public static int deviceAttribute(int attr, int device) {
        return intOut(p -> cuda_runtime_api_h.cudaDeviceGetAttribute(p, attr, device),
                "cudaDeviceGetAttribute(" + attr + ", " + device + ")");
    }

    /** {major, minor} compute capability. */
    public static int[] computeCapability(int device) {
        return new int[] {deviceAttribute(cuda_runtime_api_h.cudaDevAttrComputeCapabilityMajor(), device),
                deviceAttribute(cuda_runtime_api_h.cudaDevAttrComputeCapabilityMinor(), device)};
    }

    public static void deviceSynchronize() {
        check(cuda_runtime_api_h.cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    }

    /** Free and total device memory in bytes, for the current device. */
    public record MemInfo(long free, long total) {
    }

    public static MemInfo memGetInfo() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(ValueLayout.JAVA_LONG);
            MemorySegment total = arena.allocate(ValueLayout.JAVA_LONG);
            check(cuda_runtime_api_h.cudaMemGetInfo(free, total), "cudaMemGetInfo");
            return new MemInfo(free.get(ValueLayout.JAVA_LONG, 0), total.get(ValueLayout.JAVA_LONG, 0));
        }
    }

    /** {@code cudaGetLastError}: returns and clears the last error (0 = cudaSuccess). */
    public static int getLastError() {
        return cuda_runtime_api_h.cudaGetLastError();
    }

    public static String errorString(int status) {
        return Cuda.runtimeErrorString(status);
    }

    // ------------------------------------------------------------------------------------------- memory

    /** {@code cudaMalloc}: a device pointer. */
    public static long malloc(long bytes) {
        return pointerOut(p -> cuda_runtime_api_h.cudaMalloc(p, bytes), "cudaMalloc(" + bytes + ")");
    }

    public static void free(long devicePtr) {
        check(cuda_runtime_api_h.cudaFree(MemorySegment.ofAddress(devicePtr)), "cudaFree");
    }

    /** {@code cudaMallocAsync} (stream-ordered allocator; needs cudaDevAttrMemoryPoolsSupported). */
    public static long mallocAsync(long bytes, MemorySegment stream) {
        return pointerOut(p -> cuda_runtime_api_h.cudaMallocAsync(p, bytes, stream), "cudaMallocAsync(" + bytes + ")");
    }

    public static void freeAsync(long devicePtr, MemorySegment stream) {
        check(cuda_runtime_api_h.cudaFreeAsync(MemorySegment.ofAddress(devicePtr), stream), "cudaFreeAsync");
    }

    /** {@code cudaMallocHost}: page-locked host memory of {@code bytes}, as a segment of that size (free with {@link #freeHost}). */
    public static MemorySegment mallocHost(long bytes) {
        long address = pointerOut(p -> cuda_runtime_api_h.cudaMallocHost(p, bytes), "cudaMallocHost(" + bytes + ")");
        return MemorySegment.ofAddress(address).reinterpret(bytes);
    }

    public static void freeHost(MemorySegment pinned) {
        check(cuda_runtime_api_h.cudaFreeHost(pinned), "cudaFreeHost");
    }

    /** {@code cudaMemcpy} between raw addresses; {@code kind} is a {@code cudaMemcpy*()} constant (cudaMemcpyDefault works with UVA). */
    public static void memcpy(long dst, long src, long bytes, int kind) {
        check(cuda_runtime_api_h.cudaMemcpy(MemorySegment.ofAddress(dst), MemorySegment.ofAddress(src), bytes, kind), "cudaMemcpy");
    }

    public static void memcpyAsync(long dst, long src, long bytes, int kind, MemorySegment stream) {
        check(cuda_runtime_api_h.cudaMemcpyAsync(MemorySegment.ofAddress(dst), MemorySegment.ofAddress(src), bytes, kind, stream),
                "cudaMemcpyAsync");
    }

    /** Copies all of the native host segment {@code src} to {@code dstDevice}. */
    public static void copyToDevice(long dstDevice, MemorySegment src) {
        requireNative(src);
        check(cuda_runtime_api_h.cudaMemcpy(MemorySegment.ofAddress(dstDevice), src, src.byteSize(),
                cuda_runtime_api_h.cudaMemcpyHostToDevice()), "cudaMemcpy(HostToDevice)");
    }

    /** Fills all of the native host segment {@code dst} from {@code srcDevice}. */
    public static void copyToHost(MemorySegment dst, long srcDevice) {
        requireNative(dst);
        check(cuda_runtime_api_h.cudaMemcpy(dst, MemorySegment.ofAddress(srcDevice), dst.byteSize(),
                cuda_runtime_api_h.cudaMemcpyDeviceToHost()), "cudaMemcpy(DeviceToHost)");
    }

    /** Copies a float array to a device buffer of at least {@code values.length * 4} bytes. */
    public static void copyToDevice(long dstDevice, float[] values) {
        try (Arena arena = Arena.ofConfined()) {
            copyToDevice(dstDevice, arena.allocateFrom(ValueLayout.JAVA_FLOAT, values));
        }
    }

    /** Reads {@code count} floats from a device buffer. */
    public static float[] copyFloatsToHost(long srcDevice, int count) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate(ValueLayout.JAVA_FLOAT, count);
            copyToHost(host, srcDevice);
            return host.toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    public static void memset(long devicePtr, int value, long bytes) {
        check(cuda_runtime_api_h.cudaMemset(MemorySegment.ofAddress(devicePtr), value, bytes), "cudaMemset");
    }

    public static void memsetAsync(long devicePtr, int value, long bytes, MemorySegment stream) {
        check(cuda_runtime_api_h.cudaMemsetAsync(MemorySegment.ofAddress(devicePtr), value, bytes, stream), "cudaMemsetAsync");
    }

    // ------------------------------------------------------------------------------------------- streams, events

    public static MemorySegment streamCreate() {
        return MemorySegment.ofAddress(pointerOut(p -> cuda_runtime_api_h.cudaStreamCreate(p), "cudaStreamCreate"));
    }

    /** {@code cudaStreamCreateWithFlags}, e.g. {@code cudaStreamNonBlocking()}. */
    public static MemorySegment streamCreate(int flags) {
        return MemorySegment.ofAddress(pointerOut(p -> cuda_runtime_api_h.cudaStreamCreateWithFlags(p, flags), "cudaStreamCreateWithFlags"));
    }

    public static void streamDestroy(MemorySegment stream) {
        check(cuda_runtime_api_h.cudaStreamDestroy(stream), "cudaStreamDestroy");
    }

    public static void streamSynchronize(MemorySegment stream) {
        check(cuda_runtime_api_h.cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }

    public static MemorySegment eventCreate() {
        return MemorySegment.ofAddress(pointerOut(p -> cuda_runtime_api_h.cudaEventCreate(p), "cudaEventCreate"));
    }

    /** {@code cudaEventCreateWithFlags}, e.g. {@code cudaEventDisableTiming()} for an event only waited on. */
    public static MemorySegment eventCreate(int flags) {
        return MemorySegment.ofAddress(pointerOut(p -> cuda_runtime_api_h.cudaEventCreateWithFlags(p, flags), "cudaEventCreateWithFlags"));
    }

    /** {@code cudaEventQuery}: whether the work before the event's last record has completed; never blocks. */
    public static boolean eventQuery(MemorySegment event) {
        int status = cuda_runtime_api_h.cudaEventQuery(event);
        if (status == cuda_runtime_api_h.cudaErrorNotReady()) {
            return false;
        }
        check(status, "cudaEventQuery");
        return true;
    }

    public static void eventRecord(MemorySegment event, MemorySegment stream) {
        check(cuda_runtime_api_h.cudaEventRecord(event, stream), "cudaEventRecord");
    }

    public static void eventSynchronize(MemorySegment event) {
        check(cuda_runtime_api_h.cudaEventSynchronize(event), "cudaEventSynchronize");
    }

    /** Milliseconds between two recorded events. */
    public static float eventElapsedMillis(MemorySegment start, MemorySegment end) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ms = arena.allocate(ValueLayout.JAVA_FLOAT);
            check(cuda_runtime_api_h.cudaEventElapsedTime(ms, start, end), "cudaEventElapsedTime");
            return ms.get(ValueLayout.JAVA_FLOAT, 0);
        }
    }

    public static void eventDestroy(MemorySegment event) {
        check(cuda_runtime_api_h.cudaEventDestroy(event), "cudaEventDestroy");
    }

    // ------------------------------------------------------------------------------------------- helpers

    @FunctionalInterface
    interface OutCall {
        int call(MemorySegment out);
    }

    static int intOut(OutCall c, String call) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            check(c.call(out), call);
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    static long pointerOut(OutCall c, String call) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            check(c.call(out), call);
            return out.get(ValueLayout.ADDRESS, 0).address();
        }
    }

    static void requireNative(MemorySegment s) {
        if (!s.isNative()) {
            throw new IllegalArgumentException("host buffers passed to CUDA must be native (off-heap) segments");
        }
    }
}
