package dev.exeunt.tensor.cuda;

import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.TensorAllocationException;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/**
 * A caching device allocator. Requests are rounded up to a size class (multiples of 512 bytes up to 1 MiB, then of
 * 2 MiB); freed blocks go to a free list per class and are handed out again without a device call. All work of a
 * device runs on its one stream, so a block freed on the host can be reused by later work immediately: the stream
 * orders the new use after every kernel already queued that read or wrote the old one (stream-ordered reuse).
 * When the backing allocator is out of memory, cached blocks are released and the allocation retried once; then a
 * {@link TensorAllocationException} names the request, the bytes in use and cached, and the device's view.
 * Thread-safe. {@link #close} releases every cached block; live blocks are released when their storage is.
 */
final class CudaAllocator implements AutoCloseable {
    /** Where the memory comes from (cudaMalloc / cudaFree in {@link CudaBackend}; a fake in tests). */
    interface Backing {
        /** A device pointer, or 0 when out of memory (other failures throw). */
        long tryAllocate(long bytes);

        void free(long ptr);

        /** Free / total memory in words for error messages. */
        String describe();

        /** Called before cached blocks are freed: waits for queued work (cudaStreamSynchronize). */
        default void synchronize() {}
    }

    static final long SMALL_LIMIT = 1L << 20;
    static final long SMALL_ROUND = 512;
    static final long LARGE_ROUND = 2L << 20;

    private final Backing backing;
    private final Map<Long, ArrayDeque<Long>> free = new HashMap<>();
    private long inUse, cached, peak, backingCalls;
    private boolean closed;

    CudaAllocator(Backing backing) {
        this.backing = backing;
    }

    static long sizeClass(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("negative allocation " + bytes);
        long b = Math.max(1, bytes);
        long r = b <= SMALL_LIMIT ? SMALL_ROUND : LARGE_ROUND;
        return Math.addExact(b, r - 1) / r * r;
    }

    /** A block of at least {@code bytes}; returns its device pointer. */
    synchronized long allocate(long bytes) {
        if (closed) throw new IllegalStateException("device allocator is closed");
        long size = sizeClass(bytes);
        ArrayDeque<Long> q = free.get(size);
        long ptr;
        if (q != null && !q.isEmpty()) {
            ptr = q.pop();
            cached -= size;
        } else {
            ptr = fresh(bytes, size);
        }
        inUse += size;
        peak = Math.max(peak, inUse);
        return ptr;
    }

    private long fresh(long requested, long size) {
        backingCalls++;
        long ptr = backing.tryAllocate(size);
        if (ptr != 0) return ptr;
        releaseCached();
        backingCalls++;
        ptr = backing.tryAllocate(size);
        if (ptr != 0) return ptr;
        throw new TensorAllocationException(String.format(
                "cannot allocate %s of device memory (%d bytes requested, size class %d): %s in use by tensors, "
                        + "cache released; device: %s", HostMemory.human(size), requested, size, HostMemory.human(inUse),
                backing.describe()), null);
    }

    /** Returns a block (from {@link #allocate} with the same {@code bytes}) to its free list. */
    synchronized void free(long ptr, long bytes) {
        long size = sizeClass(bytes);
        inUse -= size;
        if (closed) {
            backing.free(ptr);
            return;
        }
        free.computeIfAbsent(size, k -> new ArrayDeque<>()).push(ptr);
        cached += size;
    }

    /** Frees every cached block to the backing allocator (after queued work finishes). */
    synchronized void releaseCached() {
        if (cached == 0) return;
        backing.synchronize();
        for (ArrayDeque<Long> q : free.values()) {
            for (long p : q) backing.free(p);
        }
        free.clear();
        cached = 0;
    }

    synchronized long inUseBytes() {
        return inUse;
    }

    synchronized long cachedBytes() {
        return cached;
    }

    synchronized long peakBytes() {
        return peak;
    }

    /** How many times the backing allocator was asked for memory (tests). */
    synchronized long backingCalls() {
        return backingCalls;
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        releaseCached();
        closed = true;
    }
}
