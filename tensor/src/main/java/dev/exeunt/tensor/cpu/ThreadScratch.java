package dev.exeunt.tensor.cpu;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A kernel's per-thread native scratch, reused call after call: it grows and never shrinks, and is freed with
 * its thread by the GC (an automatic arena, so pool threads may touch it). Kernels used to open a confined
 * arena per chunk instead: an allocation per chunk, and owner and liveness checks on every access that C2
 * did not hoist out of the per-block dequantizers. In a Q4_K decode those checks took more samples than the
 * arithmetic, and left Q8_0 decode in the same process at 55-60% of its speed afterwards. A heap array in
 * its place ran Q4_K decode at half the speed. Each kernel holds its own instance, so scratches never alias.
 */
final class ThreadScratch {
    private final ThreadLocal<MemorySegment[]> held = ThreadLocal.withInitial(() -> new MemorySegment[] {MemorySegment.NULL});

    /** This thread's scratch of at least {@code bytes}, 64-byte aligned; its contents are undefined. */
    MemorySegment get(long bytes) {
        MemorySegment[] h = held.get();
        if (h[0].byteSize() < bytes) h[0] = Arena.ofAuto().allocate(bytes, 64);
        return h[0];
    }
}
