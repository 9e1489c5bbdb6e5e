package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ConfigJson;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's "Use it as a library" program, taken from the README itself, compiles against the
 * build's classes and runs: it generates (each token with its exit layer), trains, and tunes two exits
 * into a checkpoint. The README cannot drift from the API without this failing.
 */
class LibraryExampleTest {
    @Test
    void theReadmesLibraryExampleCompilesAndRuns(@TempDir Path tmp) throws Exception {
        String readme = Files.readString(Path.of("..", "README.md"));
        int section = readme.indexOf("## Use it as a library");
        assertTrue(section >= 0, "README has no library section");
        int start = readme.indexOf("```java\n", section) + "```java\n".length(), end = readme.indexOf("```", start);
        String source = readme.substring(start, end);
        Path src = Files.createDirectories(tmp.resolve("src"));
        Files.writeString(src.resolve("LibraryExample.java"), source);
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        Path classes = Files.createDirectories(tmp.resolve("classes"));
        int rc = ToolProvider.getSystemJavaCompiler().run(null, null, null, "--add-modules", "jdk.incubator.vector", "-cp", cp, "-d",
                classes.toString(), src.resolve("LibraryExample.java").toString());
        assertEquals(0, rc, "the README's example does not compile");

        String ckpt = GenerateLayoutCliTest.writeModel(tmp.resolve("model"));
        Path text = Files.writeString(tmp.resolve("text.txt"), "the quick brown fox jumps over the lazy dog. ".repeat(40));
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(List.of(Main.JVM_FLAGS.split(" ")));
        cmd.addAll(List.of("-Dexeunt.threads=1", "-cp", classes + java.io.File.pathSeparator + cp, "LibraryExample", ckpt, text.toString(),
                tmp.resolve("work").toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), out);
        assertEquals(0, p.exitValue(), out);
        assertEquals(16, out.lines().filter(l -> l.matches("token \\d+ from layer \\d+")).count(), out);
        assertTrue(out.contains("trained, last loss ") && out.contains("tuned exits into "), out);
        var tuned = ConfigJson.read(tmp.resolve("work/tuned").resolve(ModelCheckpoint.CONFIG));
        assertEquals(List.of(2, 3), tuned.exits().stream().map(e -> e.layer()).toList(), "the tuned checkpoint has the two exits");
    }
}
