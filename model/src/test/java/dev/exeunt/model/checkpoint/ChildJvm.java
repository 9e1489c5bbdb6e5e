package dev.exeunt.model.checkpoint;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs a main class of the test classpath in a child JVM with this JVM's flags (the Vector API module among them). */
public final class ChildJvm {
    /** How a child ended: its exit status and what it wrote to stderr. */
    public record Exit(int status, String stderr) {}

    private ChildJvm() {}

    public static Exit run(Path logDir, String name, List<String> properties, Class<?> main, String... args)
            throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!a.startsWith("-agentlib:jdwp") && !a.startsWith("-javaagent")) cmd.add(a);
        }
        // A child trains a step or two and dies: C2 compiles would cost more than they save. The kernels give the
        // same bits in every JIT tier (CpuDeterminismTest), which the bit-for-bit comparisons rely on.
        cmd.add("-XX:TieredStopAtLevel=1");
        cmd.addAll(properties);
        cmd.add("-cp");
        cmd.add(System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")));
        cmd.add(main.getName());
        cmd.addAll(List.of(args));
        Path err = logDir.resolve(name + ".stderr");
        Process p = new ProcessBuilder(cmd).redirectOutput(logDir.resolve(name + ".stdout").toFile()).redirectError(err.toFile())
                .start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
            throw new AssertionError(name + ": child JVM did not finish in 120 s");
        }
        return new Exit(p.exitValue(), Files.readString(err));
    }
}
