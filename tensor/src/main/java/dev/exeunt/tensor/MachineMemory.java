package dev.exeunt.tensor;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * How much memory this process can have: physical RAM, or the control group's limit when that is
 * smaller (a container), so that the default host-memory limit makes a hostile file fail with a
 * clear error before the kernel's OOM killer ends the process.
 */
record MachineMemory(long bytes, String source) {
    private static final Path CGROUP_V2 = Path.of("/sys/fs/cgroup/memory.max");
    private static final Path CGROUP_V1 = Path.of("/sys/fs/cgroup/memory/memory.limit_in_bytes");

    static MachineMemory detect() {
        long ram = physicalRam();
        long cgroup = Math.min(cgroupLimit(CGROUP_V2), cgroupLimit(CGROUP_V1));
        if (cgroup < ram) {
            return new MachineMemory(cgroup, "the cgroup memory limit");
        }
        return new MachineMemory(ram, "RAM");
    }

    private static long physicalRam() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            long total = os.getTotalMemorySize();
            if (total > 0) return total;
        }
        return Long.MAX_VALUE;
    }

    /** The limit in a cgroup file, or {@code Long.MAX_VALUE} when there is none ("max", absent, unreadable). */
    static long cgroupLimit(Path file) {
        try {
            String s = Files.readString(file).trim();
            long v = Long.parseLong(s);
            return v > 0 ? v : Long.MAX_VALUE;
        } catch (IOException | NumberFormatException | SecurityException e) {
            return Long.MAX_VALUE;
        }
    }
}
