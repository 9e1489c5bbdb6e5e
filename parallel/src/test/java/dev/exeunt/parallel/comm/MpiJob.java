package dev.exeunt.parallel.comm;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/** Runs {@link MpiRankMain} (or another main class) as a real mpirun job of N JVMs, with a time limit, and collects its output. */
public final class MpiJob {
    private MpiJob() {
    }

    public record Result(int exitCode, boolean timedOut, double seconds, String output) {
        @Override
        public String toString() {
            return "exit " + exitCode + (timedOut ? " (timed out)" : "") + " after " + String.format("%.1f", seconds)
                    + " s; output:\n" + output;
        }
    }

    /**
     * In CI (CI=true) the mpi engine must run for real: .ci/run installs Open MPI, so its absence fails the
     * test; elsewhere its absence skips it.
     */
    public static void requireMpirun() {
        if ("true".equals(System.getenv("CI"))) {
            org.junit.jupiter.api.Assertions.assertTrue(mpirun().isPresent(), "CI=true but mpirun is not on the PATH: .ci/run installs openmpi-bin");
        }
        org.junit.jupiter.api.Assumptions.assumeTrue(mpirun().isPresent(), "mpirun is not on the PATH: skipping the multi-process tests");
    }

    /** mpirun on the PATH, if any. */
    public static Optional<Path> mpirun() {
        String path = System.getenv("PATH");
        if (path == null) {
            return Optional.empty();
        }
        for (String dir : path.split(File.pathSeparator)) {
            Path p = Path.of(dir.isEmpty() ? "." : dir, "mpirun");
            if (Files.isExecutable(p)) {
                return Optional.of(p);
            }
        }
        return Optional.empty();
    }

    /** {@code ranks} 0: one plain JVM without mpirun (MPI's singleton mode). */
    static Result run(int ranks, Duration limit, String... mainArgs) throws IOException, InterruptedException {
        return run(MpiRankMain.class, ranks, limit, mainArgs);
    }

    /** {@code main}'s main method on every rank, with the test classpath. */
    public static Result run(Class<?> main, int ranks, Duration limit, String... mainArgs) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        if (ranks > 0) {
            cmd.addAll(mpirunPrefix(ranks));
        }
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        return start(javaCommand(cmd, main, mainArgs), limit);
    }

    private static List<String> mpirunPrefix(int ranks) {
        List<String> cmd = new ArrayList<>();
        cmd.add(mpirun().orElseThrow(() -> new IllegalStateException("mpirun is not on the PATH")).toString());
        cmd.add("--oversubscribe"); // more ranks than the CI machine's 2 cores
        if (isRoot()) {
            cmd.add("--allow-run-as-root"); // CI runs as root in a container
        }
        // Shared memory (vader) and self only: on one machine that is all the job needs, and it keeps Open MPI
        // from probing network interfaces a container may lack. A real multi-machine run uses mpirun's defaults.
        cmd.addAll(List.of("--mca", "btl", "self,vader"));
        cmd.addAll(List.of("-np", Integer.toString(ranks)));
        return cmd;
    }

    private static List<String> javaCommand(List<String> cmd, Class<?> main, String... mainArgs) {
        // The flags the build gives every JVM (exeunt.jvm.flags in the parent pom); a small heap and one compute
        // thread per rank, since N JVMs share CI's memory and 2 cores (more threads only fight over them).
        cmd.addAll(List.of("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "--add-opens=java.base/java.nio=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow", "-Xmx512m",
                "-XX:+UseSerialGC", "-Dexeunt.threads=1"));
        cmd.addAll(List.of("-cp", classpath(), main.getName()));
        cmd.addAll(List.of(mainArgs));
        return cmd;
    }

    private static Result start(List<String> cmd, Duration limit) throws IOException, InterruptedException {
        Path log = Files.createTempFile("mpi-job-", ".log");
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
            if (isRoot()) {
                pb.environment().put("OMPI_ALLOW_RUN_AS_ROOT", "1");
                pb.environment().put("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
            }
            long t0 = System.nanoTime();
            Process p = pb.start();
            boolean finished = p.waitFor(limit.toMillis(), TimeUnit.MILLISECONDS);
            if (!finished) {
                // SIGTERM lets mpirun end its ranks; then make sure nothing of the job survives the test.
                p.destroy();
                if (!p.waitFor(5, TimeUnit.SECONDS)) {
                    p.descendants().forEach(ProcessHandle::destroyForcibly);
                    p.destroyForcibly();
                    p.waitFor(5, TimeUnit.SECONDS);
                }
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            return new Result(finished ? p.exitValue() : -1, !finished, seconds, Files.readString(log));
        } finally {
            Files.deleteIfExists(log);
        }
    }

    /** The test classpath: surefire's real one when it runs the tests from a manifest-only jar. */
    private static String classpath() {
        String cp = System.getProperty("surefire.test.class.path");
        return cp != null && !cp.isBlank() ? cp : System.getProperty("java.class.path");
    }

    private static boolean isRoot() {
        try {
            return ((Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid")) == 0;
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException e) {
            return "root".equals(System.getProperty("user.name"));
        }
    }
}
