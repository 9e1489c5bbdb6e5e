package dev.exeunt.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The memory properties: sizes people write are accepted, anything else is one line naming property and value. */
class HostMemorySettingsTest {
    private static final MachineMemory RAM_16G = new MachineMemory(16L << 30, "RAM");

    @Test
    void sizesWithUnitsBAndI() {
        for (String s : new String[] {"8g", "8G", "8gb", "8GB", "8GiB", "8gib", " 8g ", "8192m", "8388608k"}) {
            assertEquals(8L << 30, MemorySize.parse("exeunt.memory.limit", s), s);
        }
        assertEquals(1536L << 20, MemorySize.parse("p", "1.5g"));
        assertEquals(4096, MemorySize.parse("p", "4096"));
        assertEquals(512, MemorySize.parse("p", "512b"));
        assertEquals(2L << 40, MemorySize.parse("p", "2TiB"));
        assertEquals(0, MemorySize.parse("p", "0"));
    }

    @Test
    void badSizesNameThePropertyAndTheValue() {
        for (String s : new String[] {"abc", "-1", "8 gigs", "g", "", "1e9", "8x", "9223372036854775807t"}) {
            var e = assertThrows(IllegalArgumentException.class, () -> MemorySize.parse("exeunt.memory.limit", s), s);
            assertTrue(e.getMessage().startsWith("-Dexeunt.memory.limit=" + s + ": "), e.getMessage());
            assertTrue(!e.getMessage().contains("\n"), e.getMessage());
        }
    }

    @Test
    void defaultLimitIsNinetyPercentOfTheMachine() {
        var s = HostMemorySettings.of("", "256m", RAM_16G);
        assertEquals((long) ((16L << 30) * 0.9), s.limit());
        assertEquals(256L << 20, s.cache());
        assertEquals("-Dexeunt.memory.limit; default 90% of RAM", s.source());
        var cg = HostMemorySettings.of("", "", new MachineMemory(1L << 30, "the cgroup memory limit"));
        assertEquals("-Dexeunt.memory.limit; default 90% of the cgroup memory limit", cg.source());
        assertEquals(0, cg.cache());
    }

    @Test
    void givenLimitAndCache() {
        var s = HostMemorySettings.of("8gb", "1g", RAM_16G);
        assertEquals(8L << 30, s.limit());
        assertEquals(1L << 30, s.cache());
        assertEquals("-Dexeunt.memory.limit=8gb", s.source());
    }

    @Test
    void badValuesOfEitherPropertyAreOneLineErrors() {
        var limit = assertThrows(IllegalArgumentException.class, () -> HostMemorySettings.of("abc", "256m", RAM_16G));
        assertTrue(limit.getMessage().startsWith("-Dexeunt.memory.limit=abc: not a size"), limit.getMessage());
        var neg = assertThrows(IllegalArgumentException.class, () -> HostMemorySettings.of("-1", "256m", RAM_16G));
        assertTrue(neg.getMessage().startsWith("-Dexeunt.memory.limit=-1: "), neg.getMessage());
        var zero = assertThrows(IllegalArgumentException.class, () -> HostMemorySettings.of("0", "256m", RAM_16G));
        assertTrue(zero.getMessage().contains("allows nothing"), zero.getMessage());
        var cache = assertThrows(IllegalArgumentException.class, () -> HostMemorySettings.of("", "lots", RAM_16G));
        assertTrue(cache.getMessage().startsWith("-Dexeunt.memory.cache=lots: not a size"), cache.getMessage());
    }

    @Test
    void cgroupFiles(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("memory.max");
        Files.writeString(f, "max\n");
        assertEquals(Long.MAX_VALUE, MachineMemory.cgroupLimit(f));
        Files.writeString(f, "2147483648\n");
        assertEquals(1L << 31, MachineMemory.cgroupLimit(f));
        assertEquals(Long.MAX_VALUE, MachineMemory.cgroupLimit(dir.resolve("absent")));
    }

    @Test
    void theRunningLimitIsBoundedByTheMachine() {
        // this JVM runs without -Dexeunt.memory.limit: the limit must be the default, not unlimited
        if (System.getProperty(HostMemory.LIMIT_PROPERTY) == null) {
            MachineMemory m = MachineMemory.detect();
            assertTrue(m.bytes() < Long.MAX_VALUE, "machine memory detected");
            assertEquals((long) (m.bytes() * 0.9), HostMemory.limit());
        }
    }
}
