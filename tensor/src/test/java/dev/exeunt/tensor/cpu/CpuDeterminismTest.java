package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The CPU kernels give bit-identical results interpreted and JIT-compiled: {@link DeterminismProbe} runs in a
 * child JVM with {@code -Xint} (every Vector API operation takes its Java fallback) and in this JVM, repeatedly,
 * through interpretation, C1 and C2 (intrinsics); every repetition's hashes must equal the child's. This is what
 * lets a training run resumed in a fresh JVM continue the exact loss curve of the uninterrupted run.
 */
class CpuDeterminismTest {
    static final int REPS = Integer.getInteger("exeunt.determinism.reps", 2500);
    static final List<String> FLAGS = List.of("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
            "--add-opens=java.base/java.nio=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow");

    @Test
    void kernelsGiveTheSameBitsInterpretedAndCompiled() throws Exception {
        String java = ProcessHandle.current().info().command().orElse(System.getProperty("java.home") + "/bin/java");
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        List<String> cmd = new ArrayList<>();
        cmd.add(java);
        cmd.addAll(FLAGS);
        // the same vector width as this JVM (the avx2-kernels run caps it with -XX:UseAVX=2)
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("-XX:UseAVX=")) cmd.add(arg);
        }
        cmd.add("-Xint");
        cmd.add("-cp");
        cmd.add(cp);
        cmd.add(DeterminismProbe.class.getName());
        Process child = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        List<String> out;
        try (var r = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            out = r.lines().toList();
        }
        assertTrue(child.waitFor(180, TimeUnit.SECONDS), "the -Xint child did not finish");
        assertEquals(0, child.exitValue(), "the -Xint child failed:\n" + String.join("\n", out));
        Map<String, String> interpreted = new LinkedHashMap<>();
        for (String l : out) {
            int eq = l.indexOf('=');
            if (eq > 0 && !l.startsWith("WARNING")) interpreted.put(l.substring(0, eq), l.substring(eq + 1));
        }

        // this JVM: interpreted at first, then C1, then C2 with the Vector API intrinsics; every repetition
        // must reproduce the child's bits
        Map<String, String> firstBad = new LinkedHashMap<>();
        Map<String, String> last = null;
        for (int i = 0; i < REPS; i++) {
            last = DeterminismProbe.run();
            if (i == 0) assertEquals(interpreted.keySet(), last.keySet(), "child output:\n" + String.join("\n", out));
            for (var e : last.entrySet()) {
                if (e.getKey().startsWith("control.") || e.getValue().equals(interpreted.get(e.getKey()))) continue;
                firstBad.putIfAbsent(e.getKey(), "repetition " + i + ": " + e.getValue() + " vs -Xint " + interpreted.get(e.getKey()));
            }
        }
        String control = "control.rawVectorApi";
        System.out.printf("determinism: %d kernels x %d repetitions; the raw Vector API control %s (-Xint %s, warm %s)%n",
                last.size() - 2, REPS, interpreted.get(control).equals(last.get(control)) ? "agrees"
                        : "differs (so C2 intrinsics ran)", interpreted.get(control), last.get(control));
        if (!firstBad.isEmpty()) {
            StringBuilder sb = new StringBuilder("kernels differ between -Xint and this JVM:");
            firstBad.forEach((k, v) -> sb.append("\n  ").append(k).append(" at ").append(v));
            fail(sb.toString());
        }
    }
}
