package dev.exeunt.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.ops.Ops;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** A library user's JVM without the Vector API module gets an error naming the flags at the first tensor op. */
class MissingVectorModuleTest {
    /** What a library program does first: make tensors and add them. */
    public static final class Program {
        public static void main(String[] args) {
            try (Tensor a = Tensor.of(new float[] {1, 2}, 2); Tensor b = Ops.add(a, a)) {
                System.out.println("sum " + b.toFloatArray()[1]);
            }
        }
    }

    private static String run(List<String> flags) throws Exception {
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        var cmd = new java.util.ArrayList<String>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(flags);
        cmd.addAll(List.of("-cp", cp, Program.class.getName()));
        var p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }

    @Test
    void theFirstOpNamesTheMissingFlags() throws Exception {
        String without = run(List.of("--add-opens=java.base/java.nio=ALL-UNNAMED", "--enable-native-access=ALL-UNNAMED"));
        assertTrue(without.contains("JvmFlags$MissingJvmFlagsError") && without.contains("--add-modules jdk.incubator.vector"), without);
        assertTrue(!without.contains("NoClassDefFoundError"), without);
        // and the same program runs with them
        String with = run(List.of(JvmFlags.REQUIRED.split(" ")));
        assertTrue(with.contains("sum 4.0"), with);
        assertEquals(JvmFlags.hasVectorModule(), true, "this test JVM has the module");
    }
}
