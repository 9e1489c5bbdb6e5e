package dev.exeunt.tensor;

/**
 * The host-memory limit and buffer-cache size, from the values of {@code -Dexeunt.memory.limit} and
 * {@code -Dexeunt.memory.cache} (empty when not set) and the machine's memory.
 *
 * @param limit  most bytes of host memory the process may hold in tensors and Arrow buffers
 * @param cache  most bytes of freed buffers kept for reuse
 * @param source where the limit came from, as printed in out-of-memory errors
 */
record HostMemorySettings(long limit, long cache, String source) {
    static final String DEFAULT_CACHE = "256m";

    static HostMemorySettings fromSystemProperties() {
        return of(System.getProperty(HostMemory.LIMIT_PROPERTY, ""),
                System.getProperty(HostMemory.CACHE_PROPERTY, DEFAULT_CACHE), MachineMemory.detect());
    }

    /** @throws IllegalArgumentException naming the property and its value when one is not a size */
    static HostMemorySettings of(String limitValue, String cacheValue, MachineMemory machine) {
        String limit = limitValue.trim();
        long limitBytes;
        String source;
        if (limit.isEmpty()) {
            limitBytes = machine.bytes() == Long.MAX_VALUE ? Long.MAX_VALUE : (long) (machine.bytes() * HostMemory.DEFAULT_SHARE);
            source = "-D" + HostMemory.LIMIT_PROPERTY + "; default " + Math.round(HostMemory.DEFAULT_SHARE * 100)
                    + "% of " + machine.source();
        } else {
            limitBytes = MemorySize.parse(HostMemory.LIMIT_PROPERTY, limit);
            if (limitBytes == 0) {
                throw new IllegalArgumentException("-D" + HostMemory.LIMIT_PROPERTY + "=" + limitValue
                        + ": a limit of 0 bytes allows nothing (expected a size such as 8g)");
            }
            source = "-D" + HostMemory.LIMIT_PROPERTY + "=" + limit;
        }
        String cache = cacheValue.trim();
        long cacheBytes = cache.isEmpty() ? 0 : MemorySize.parse(HostMemory.CACHE_PROPERTY, cache);
        return new HostMemorySettings(limitBytes, cacheBytes, source);
    }
}
