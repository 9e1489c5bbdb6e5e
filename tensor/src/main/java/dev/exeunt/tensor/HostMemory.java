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
 * Host (CPU) memory for tensors, from one Apache Arrow root allocator: accounting, a limit
 * ({@code -Dexeunt.memory.limit=8g}, default unlimited), and a leak report when buffers are still
 * open. Every buffer is 64-byte aligned and used as a {@link MemorySegment} with no copy.
 */
public final class HostMemory {
    static final int ALIGNMENT = 64;
    private static final RootAllocator ROOT = new RootAllocator(parseBytes(System.getProperty("exeunt.memory.limit", "")));
    private static final AtomicLong LIVE = new AtomicLong();
    private static final AtomicLong PEAK = new AtomicLong();

    private HostMemory() {}

    public static BufferAllocator allocator() {
        return ROOT;
    }

    /**
     * Freed buffers by exact size, reused by the next allocation of that size: decode and training
     * steps allocate the same shapes over and over, and going to the system allocator each time
     * costs more than many of the kernels. Bounded by {@code -Dexeunt.memory.cache} (default 256m).
     */
    private static final Map<Long, ArrayDeque<ArrowBuf>> CACHE = new HashMap<>();
    private static final long CACHE_LIMIT = parseBytes(System.getProperty("exeunt.memory.cache", "256m"));
    private static long cached;

    /** Allocates an aligned, uninitialised host storage of {@code bytes} bytes. */
    public static Storage allocate(long bytes) {
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
                throw new TensorAllocationException(String.format(
                        "cannot allocate %s of host memory: %s already in use, limit %s (set -Dexeunt.memory.limit)",
                        human(bytes), human(LIVE.get()), human(ROOT.getLimit())), e);
            }
        }
    }

    private static synchronized ArrowBuf takeCached(long bytes) {
        ArrayDeque<ArrowBuf> q = CACHE.get(bytes);
        if (q == null || q.isEmpty()) return null;
        cached -= bytes;
        return q.pop();
    }

    private static void giveBack(long bytes, ArrowBuf buf) {
        synchronized (HostMemory.class) {
            if (cached + bytes <= CACHE_LIMIT) {
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

    public static long limit() {
        return ROOT.getLimit();
    }

    public static void setLimit(long bytes) {
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

    static long parseBytes(String s) {
        if (s == null || s.isBlank()) return Long.MAX_VALUE;
        String t = s.trim().toLowerCase(java.util.Locale.ROOT);
        long mult = 1;
        char last = t.charAt(t.length() - 1);
        if (last == 'k' || last == 'm' || last == 'g' || last == 't') {
            mult = switch (last) { case 'k' -> 1L << 10; case 'm' -> 1L << 20; case 'g' -> 1L << 30; default -> 1L << 40; };
            t = t.substring(0, t.length() - 1);
        }
        return (long) (Double.parseDouble(t) * mult);
    }

    public static String human(long bytes) {
        if (bytes == Long.MAX_VALUE) return "unlimited";
        if (bytes < 1024) return bytes + " B";
        if (bytes < 1L << 20) return String.format("%.1f KiB", bytes / 1024.0);
        if (bytes < 1L << 30) return String.format("%.1f MiB", bytes / 1048576.0);
        return String.format("%.2f GiB", bytes / 1073741824.0);
    }
}
