package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Cache sizes as Linux describes them, the fallback when it does not, and the GEMM depth chosen from them. */
class CpuCachesTest {
    private static void index(Path dir, int i, int level, String type, String size) throws IOException {
        Path d = Files.createDirectories(dir.resolve("index" + i));
        Files.writeString(d.resolve("level"), level + "\n");
        Files.writeString(d.resolve("type"), type + "\n");
        Files.writeString(d.resolve("size"), size + "\n");
    }

    @Test
    void readsTheDataCachesAndSkipsInstructionAndL3(@TempDir Path dir) throws IOException {
        index(dir, 0, 1, "Data", "48K");
        index(dir, 1, 1, "Instruction", "64K");
        index(dir, 2, 2, "Unified", "2048K");
        index(dir, 3, 3, "Unified", "491520K");
        assertEquals(new CpuCaches(48L << 10, 2L << 20), CpuCaches.read(dir));
    }

    @Test
    void fallsBackWhereTheDescriptionIsMissingOrMalformed(@TempDir Path dir) throws IOException {
        assertEquals(CpuCaches.DEFAULT, CpuCaches.read(dir.resolve("absent")));
        index(dir, 0, 1, "Data", "lots");
        assertEquals(CpuCaches.DEFAULT, CpuCaches.read(dir));
    }

    @Test
    void parsesSizeUnits() {
        assertEquals(32768, CpuCaches.bytes("32K"));
        assertEquals(1L << 20, CpuCaches.bytes("1M"));
        assertEquals(4096, CpuCaches.bytes("4096"));
    }

    @Test
    void gemmDepthGrowsWithL2() {
        assertEquals(256, CpuGemm.kcFor(256L << 10, 480));
        assertEquals(256, CpuGemm.kcFor(1L << 20, 480));
        assertEquals(512, CpuGemm.kcFor(2L << 20, 480));
        assertEquals(384, CpuGemm.kcFor(1536L << 10, 480));
    }
}
