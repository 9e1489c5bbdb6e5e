package dev.exeunt.tensor;

import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.OutOfMemoryException;
import org.apache.arrow.memory.RootAllocator;

/**
 * Host (CPU) memory for tensors and Arrow buffers, from one Apache Arrow root allocator: accounting, a
 * limit, and a leak report when buffers are still open. Every buffer is 64-byte aligned and used as a
 * {@link MemorySegment} with no copy.
 *
 * <p>The limit is {@code -Dexeunt.memory.limit} (e.g. {@code 8g}, {@code 8GiB}; see {@link MemorySize}),
 * by default 90% of RAM or of the cgroup limit if smaller: a file whose sizes lie then fails with a
 * one-line {@link TensorAllocationException} instead of being killed by the kernel. The properties are
 * read on first use, so a bad value is an {@link IllegalArgumentException} naming it at every use,
 * not an {@code ExceptionInInitializerError}.
 */
public final class HostMemory {
    static final int ALIGNMENT = 64;
    public static final String LIMIT_PROPERTY = "exeunt.memory.limit";
    public static final String CACHE_PROPERTY = "exeunt.memory.cache";
    /** Share of the machine's memory the default limit allows. */
    static final double DEFAULT_SHARE = 0.9;

    private static final RootAllocator ROOT = new RootAllocator(Long.MAX_VALUE);
    private static volatile boolean configured;
    /** Where the limit came from, for error messages: the property as given, or the default. */
    private static String limitSource;
    private static final AtomicLong LIVE = new AtomicLong();
    private static final AtomicLong PEAK = new AtomicLong();

    private HostMemory() {}

    /** The root allocator, with the limit applied; Arrow readers take child allocators of it. */
    public static BufferAllocator allocator() {
        configure();
        return ROOT;
    }

    /** Reads the properties once; a bad value throws here on every call until it is fixed. */
    private static void configure() {
        if (configured) return;
        synchronized (HostMemory.class) {
            if (configured) return;
            HostMemorySettings settings = HostMemorySettings.fromSystemProperties();
            ROOT.setLimit(settings.limit());
            cacheLimit = settings.cache();
            limitSource = settings.source();
            configured = true;
        }
    }

    /**
     * Freed buffers by exact size, reused by the next allocation of that size: decode and training
     * steps allocate the same shapes over and over, and going to the system allocator each time
     * costs more than many of the kernels. Bounded by {@code -Dexeunt.memory.cache} (default 256m).
     */
    private static final Map<Long, ArrayDeque<ArrowBuf>> CACHE = new HashMap<>();
    private static long cacheLimit;
    private static long cached;

    /**
     * Allocates an aligned, uninitialised host storage of {@code bytes} bytes.
     *
     * @throws TensorAllocationException when the limit does not allow it (one line: size, use, limit, property)
     */
    public static Storage allocate(long bytes) {
        configure();
        if (bytes < 0) throw new IllegalArgumentException("negative allocation size: " + bytes);
        if (bytes > ROOT.getLimit() - ALIGNMENT) throw outOfMemory(bytes);
        ArrowBuf buf = takeCached(bytes);
        if (buf == null) buf = allocateFresh(bytes);
        long aligned = (buf.memoryAddress() + ALIGNMENT - 1) & -ALIGNMENT;
        MemorySegment segment = MemorySegment.ofAddress(aligned).reinterpret(bytes);
        long live = LIVE.addAndGet(bytes);
        PEAK.accumulateAndGet(live, Math::max);
        ArrowBuf owned = buf;
        return new Storage(Device.CPU, segment, bytes, () -> {
            LIVE.addAndGet(-bytes);
            giveBack(bytes, owned);
        });
    }

    private static ArrowBuf allocateFresh(long bytes) {
        try {
            return ROOT.buffer(bytes + ALIGNMENT);
        } catch (OutOfMemoryException first) {
            trimCache();
            try {
                return ROOT.buffer(bytes + ALIGNMENT);
            } catch (OutOfMemoryException e) {
                throw outOfMemory(bytes);
            }
        }
    }

    /**
     * The error for an allocation of {@code bytes} that the limit refuses, e.g. "out of host memory:
     * allocating 12.0 GiB with 3.10 GiB in use would exceed the limit of 14.0 GiB (-Dexeunt.memory.limit;
     * default 90% of RAM)". Arrow readers use it too when the shared limit stops them ({@code bytes < 0}:
     * size unknown).
     */
    public static TensorAllocationException outOfMemory(long bytes) {
        configure();
        return outOfMemory(bytes, ROOT.getAllocatedMemory());
    }

    private static TensorAllocationException outOfMemory(long bytes, long inUse) {
        configure();
        return new TensorAllocationException(String.format(
                "out of host memory: allocating %s with %s in use would exceed the limit of %s (%s)",
                bytes < 0 ? "more" : human(bytes), human(inUse), human(ROOT.getLimit()), limitSource));
    }

    /**
     * The one-line error for an Arrow allocation (a reader's or writer's vectors, from a child of
     * {@link #allocator()}) that the host-memory limit refused.
     */
    public static TensorAllocationException outOfMemory(OutOfMemoryException e) {
        // Arrow's message: "Unable to allocate buffer of size N due to memory limit. ..."
        // (the in-use figure is Arrow's at the time: by now the failed reader may have freed its buffers)
        String msg = String.valueOf(e.getMessage());
        var size = java.util.regex.Pattern.compile("of size (\\d+)").matcher(msg);
        var used = java.util.regex.Pattern.compile("Current allocation: (\\d+)").matcher(msg);
        TensorAllocationException t = outOfMemory(size.find() ? Long.parseLong(size.group(1)) : -1,
                used.find() ? Long.parseLong(used.group(1)) : ROOT.getAllocatedMemory());
        t.initCause(e);
        return t;
    }

    private static synchronized ArrowBuf takeCached(long bytes) {
        ArrayDeque<ArrowBuf> q = CACHE.get(bytes);
        if (q == null || q.isEmpty()) return null;
        cached -= bytes;
        return q.pop();
    }

    private static void giveBack(long bytes, ArrowBuf buf) {
        synchronized (HostMemory.class) {
            if (cached + bytes <= cacheLimit) {
                CACHE.computeIfAbsent(bytes, k -> new ArrayDeque<>()).push(buf);
                cached += bytes;
                return;
            }
        }
        buf.close();
    }

    /** Returns every cached buffer to the system. */
    public static synchronized void trimCache() {
        for (ArrayDeque<ArrowBuf> q : CACHE.values()) {
            for (ArrowBuf b : q) b.close();
        }
        CACHE.clear();
        cached = 0;
    }

    /** Bytes held by live tensors right now. */
    public static long allocatedBytes() {
        return LIVE.get();
    }

    /** The most bytes held at once since start or the last {@link #resetPeak()}. */
    public static long peakBytes() {
        return PEAK.get();
    }

    public static void resetPeak() {
        PEAK.set(LIVE.get());
    }

    /** The limit in bytes (reads the properties first; throws on a bad value). */
    public static long limit() {
        configure();
        return ROOT.getLimit();
    }

    /** Overrides the limit for the rest of the run (tests). */
    public static void setLimit(long bytes) {
        configure();
        ROOT.setLimit(bytes);
    }

    /** Throws with Arrow's accounting report if any tensor memory is still allocated. */
    public static void assertNoLeaks() {
        trimCache();
        if (LIVE.get() != 0 || ROOT.getAllocatedMemory() != 0) {
            throw new IllegalStateException("host memory leaked: " + human(LIVE.get()) + " in tensors, "
                    + ROOT.getAllocatedMemory() + " bytes in Arrow buffers\n" + ROOT.toVerboseString());
        }
    }

    public static String human(long bytes) {
        if (bytes == Long.MAX_VALUE) return "unlimited";
        if (bytes < 1024) return bytes + " B";
        if (bytes < 1L << 20) return String.format("%.1f KiB", bytes / 1024.0);
        if (bytes < 1L << 30) return String.format("%.1f MiB", bytes / 1048576.0);
        return String.format("%.2f GiB", bytes / 1073741824.0);
    }
}
