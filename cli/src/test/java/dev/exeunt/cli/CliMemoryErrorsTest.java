package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.HostMemory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Memory-limit errors and bad memory properties reach the user as one line, exit code 1, no stack trace. */
class CliMemoryErrorsTest {
    @Test
    void hittingTheLimitPrintsOneLine(@TempDir Path tmp) throws Exception {
        Path corpus = tmp.resolve("corpus");
        Files.createDirectories(corpus);
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 400; i++) text.append("the quick brown fox ").append(i).append(" jumps over the lazy dog\n");
        Files.writeString(corpus.resolve("a.txt"), text);
        String data = tmp.resolve("train.arrow").toString();
        assertEquals(0, CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--train-tokenizer", "300",
                "--out", data, "--json").code());

        long old = HostMemory.limit();
        HostMemory.setLimit(HostMemory.allocator().getAllocatedMemory() + (256 << 10));
        CliEndToEndTest.Run r;
        try {
            r = CliEndToEndTest.exeunt("train", "--data", data, "--out", tmp.resolve("m").toString(), "--layers", "2",
                    "--d-model", "256", "--heads", "4", "--seq-len", "16", "--batch", "2", "--iters", "1", "--json");
        } finally {
            HostMemory.setLimit(old);
        }
        assertEquals(1, r.code(), r.err());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), "one line, no stack trace: " + err);
        assertTrue(err.startsWith("exeunt train: out of host memory: allocating "), err);
        assertTrue(err.contains("would exceed the limit of"), err);
        assertTrue(err.contains("(-Dexeunt.memory.limit"), err);
    }

    @Test
    void arrowBuffersCountAgainstTheSameLimit(@TempDir Path tmp) throws Exception {
        Path corpus = tmp.resolve("corpus");
        Files.createDirectories(corpus);
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 2000; i++) text.append("the quick brown fox ").append(i).append(" jumps over the lazy dog\n");
        Files.writeString(corpus.resolve("a.txt"), text);
        long old = HostMemory.limit();
        HostMemory.setLimit(HostMemory.allocator().getAllocatedMemory() + (4 << 10));
        CliEndToEndTest.Run r;
        try {
            r = CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--train-tokenizer", "300",
                    "--out", tmp.resolve("train.arrow").toString());
        } finally {
            HostMemory.setLimit(old);
        }
        assertEquals(1, r.code(), r.err());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), "one line, no stack trace: " + err);
        assertTrue(err.startsWith("exeunt prepare: out of host memory: allocating "), err);
    }

    /** A fresh JVM, since the properties are read once per process. */
    private static String[] runWithProperty(String property) throws Exception {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> cmd = new ArrayList<>(List.of(java.toString(), "--add-modules=jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", property, "-cp", System.getProperty("java.class.path"),
                "dev.exeunt.cli.Main", "version"));
        Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "exits");
        return new String[] {String.valueOf(p.exitValue()), err};
    }

    @Test
    void badPropertyValuesNameThePropertyAndValue() throws Exception {
        for (String[] c : new String[][] {
                {"-Dexeunt.memory.limit=abc", "-Dexeunt.memory.limit=abc: not a size"},
                {"-Dexeunt.memory.limit=-1", "-Dexeunt.memory.limit=-1: not a size"},
                {"-Dexeunt.memory.cache=lots", "-Dexeunt.memory.cache=lots: not a size"}}) {
            String[] r = runWithProperty(c[0]);
            String err = r[1].strip().replaceAll("(?m)^WARNING:.*\\n?", "").strip();
            assertEquals("1", r[0], err);
            assertTrue(err.startsWith("exeunt version: " + c[1]), err);
            assertFalse(err.contains("\n") || err.contains("ExceptionInInitializerError"), err);
        }
        String[] ok = runWithProperty("-Dexeunt.memory.limit=8GiB");
        assertEquals("0", ok[0], ok[1]);
    }
}
