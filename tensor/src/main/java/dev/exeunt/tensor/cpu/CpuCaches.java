package dev.exeunt.tensor.cpu;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The data cache sizes of this machine's first core, for kernels that pick their blocking from them. Read from
 * Linux's {@code /sys/devices/system/cpu/cpu0/cache}; where that is missing or unreadable (other systems,
 * containers hiding it), the sizes of a common x86 server core (48 KiB L1d, 1 MiB L2) stand in.
 *
 * @param l1d bytes of level-1 data cache per core
 * @param l2 bytes of level-2 cache per core
 */
public record CpuCaches(long l1d, long l2) {
    static final CpuCaches DEFAULT = new CpuCaches(48L << 10, 1L << 20);
    private static final CpuCaches THIS_MACHINE = read(Path.of("/sys/devices/system/cpu/cpu0/cache"));

    /** This machine's caches (read once). */
    public static CpuCaches get() {
        return THIS_MACHINE;
    }

    /** The caches described under dir (index0, index1, ... with level, type and size files), or the default. */
    static CpuCaches read(Path dir) {
        long l1d = 0, l2 = 0;
        for (int i = 0; i < 8; i++) {
            Path index = dir.resolve("index" + i);
            if (!Files.isDirectory(index)) break;
            try {
                int level = Integer.parseInt(Files.readString(index.resolve("level")).trim());
                String type = Files.readString(index.resolve("type")).trim();
                long size = bytes(Files.readString(index.resolve("size")).trim());
                if (level == 1 && type.equals("Data")) l1d = size;
                else if (level == 2 && !type.equals("Instruction")) l2 = size;
            } catch (IOException | RuntimeException e) {
                return DEFAULT;
            }
        }
        return new CpuCaches(l1d > 0 ? l1d : DEFAULT.l1d, l2 > 0 ? l2 : DEFAULT.l2);
    }

    /** "48K", "2048K", "1M" or a plain byte count. */
    static long bytes(String size) {
        char unit = Character.toUpperCase(size.charAt(size.length() - 1));
        long scale = switch (unit) {
            case 'K' -> 1L << 10;
            case 'M' -> 1L << 20;
            case 'G' -> 1L << 30;
            default -> 1;
        };
        String digits = scale == 1 ? size : size.substring(0, size.length() - 1);
        return Long.parseLong(digits.trim()) * scale;
    }
}
