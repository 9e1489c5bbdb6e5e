package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** A JVM started without the engine's flags gets a message that names them, not a NoClassDefFoundError. */
class MissingJvmFlagsTest {
    @Test
    void aJvmWithoutTheVectorModuleIsToldWhichFlagsToAdd() throws Exception {
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        var p = new ProcessBuilder(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp", cp, Main.class.getName(),
                "version")).redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(2, p.exitValue(), out);
        assertTrue(out.contains("started without the Vector API module") && out.contains(Main.JVM_FLAGS), out);
        assertTrue(!out.contains("NoClassDefFoundError"), out);
    }
}
