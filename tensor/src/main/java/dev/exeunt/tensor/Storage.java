package dev.exeunt.tensor;

import java.lang.foreign.MemorySegment;

/**
 * A reference-counted block of memory on one device. Tensors and their views share a Storage; the
 * memory goes back to its allocator when the last reference is released. For device memory the
 * segment only carries the address and size (it is never dereferenced on the host).
 */
public final class Storage {
    private final Device device;
    private final MemorySegment segment;
    private final long bytes;
    private final Runnable release;
    private int refs = 1;

    public Storage(Device device, MemorySegment segment, long bytes, Runnable release) {
        this.device = device;
        this.segment = segment;
        this.bytes = bytes;
        this.release = release;
    }

    public Device device() {
        return device;
    }

    public MemorySegment segment() {
        if (refs <= 0) throw new IllegalStateException("storage already released");
        return segment;
    }

    public long bytes() {
        return bytes;
    }

    synchronized Storage retain() {
        if (refs <= 0) throw new IllegalStateException("storage already released");
        refs++;
        return this;
    }

    void release() {
        boolean free;
        synchronized (this) {
            if (refs <= 0) return;
            free = --refs == 0;
        }
        if (free) release.run();
    }

    synchronized boolean isReleased() {
        return refs <= 0;
    }
}
