package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * A real mpirun job of {@code exeunt} JVMs (dev.exeunt.cli.Main on the test classpath), with a time limit
 * after which the job is killed and reported as timed out. Several {@link App}s make one MPMD job
 * ({@code mpirun -np 1 A : -np 1 B}), so one rank can run with other JVM settings than the others.
 */
final class MpiTrainJob {
    private MpiTrainJob() {}

    /** {@code ranks} processes running {@code command}. */
    record App(int ranks, List<String> command) {}

    record Result(int exitCode, boolean timedOut, double seconds, String output) {
        @Override
        public String toString() {
            return "exit " + exitCode + (timedOut ? " (timed out)" : "") + " after " + String.format("%.1f", seconds) + " s; output:\n" + output;
        }
    }

    /** In CI (CI=true) mpirun must be there (.ci/run installs openmpi-bin); elsewhere its absence skips the test. */
    static void requireMpirun() {
        if ("true".equals(System.getenv("CI"))) {
            assertTrue(mpirun().isPresent(), "CI=true but mpirun is not on the PATH: .ci/run installs openmpi-bin");
        }
        assumeTrue(mpirun().isPresent(), "mpirun is not on the PATH: skipping the multi-process train tests");
    }

    static Optional<Path> mpirun() {
        String path = System.getenv("PATH");
        if (path == null) return Optional.empty();
        for (String dir : path.split(File.pathSeparator)) {
            Path p = Path.of(dir.isEmpty() ? "." : dir, "mpirun");
            if (Files.isExecutable(p)) return Optional.of(p);
        }
        return Optional.empty();
    }

    /**
     * The java command line of one exeunt process: the build's JVM flags, a small heap, one CPU thread (the
     * ranks share CI's 2 cores) and {@code jvmFlags}, then the exeunt arguments.
     */
    static List<String> exeunt(List<String> jvmFlags, String... args) {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "--add-opens=java.base/java.nio=ALL-UNNAMED",
                "--sun-misc-unsafe-memory-access=allow", "-Xmx384m", "-XX:+UseSerialGC", "-Dexeunt.threads=1"));
        cmd.addAll(jvmFlags);
        String cp = System.getProperty("surefire.test.class.path");
        cmd.addAll(List.of("-cp", cp != null && !cp.isBlank() ? cp : System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        return cmd;
    }

    /** {@code command}, but its process first writes its pid to {@code <pidDir>/<rank>.pid} (bash exec keeps the pid). */
    static List<String> writingPid(Path pidDir, List<String> command) {
        List<String> cmd = new ArrayList<>(List.of("bash", "-c", "echo $$ > \"$0/$OMPI_COMM_WORLD_RANK.pid\" && exec \"$@\"", pidDir.toString()));
        cmd.addAll(command);
        return cmd;
    }

    static Result run(Duration limit, App... apps) throws IOException, InterruptedException {
        Path log = Files.createTempFile("mpi-train-", ".log");
        try {
            return finish(start(log, apps), limit, log);
        } finally {
            Files.deleteIfExists(log);
        }
    }

    /** Starts the job with its output (stdout and stderr of every rank and of mpirun) going to {@code log}. */
    static Process start(Path log, App... apps) throws IOException {
        return builder(apps).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    /** mpirun for {@code apps} on this machine, its environment set (root in CI); output not yet redirected. */
    static ProcessBuilder builder(App... apps) {
        List<String> cmd = new ArrayList<>(List.of(mpirun().orElseThrow().toString(), "--oversubscribe"));
        if (isRoot()) cmd.add("--allow-run-as-root"); // CI runs as root in a container
        // Shared memory and self only: all one machine needs, and no probing of a container's network interfaces.
        cmd.addAll(List.of("--mca", "btl", "self,vader"));
        for (int i = 0; i < apps.length; i++) {
            if (i > 0) cmd.add(":");
            cmd.addAll(List.of("-np", Integer.toString(apps[i].ranks())));
            cmd.addAll(apps[i].command());
        }
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().remove("EXEUNT_THREADS");
        if (isRoot()) {
            pb.environment().put("OMPI_ALLOW_RUN_AS_ROOT", "1");
            pb.environment().put("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        }
        return pb;
    }

    /** Waits for the job up to {@code limit}; past it, ends mpirun and every process it started. */
    static Result finish(Process p, Duration limit, Path log) throws IOException, InterruptedException {
        long t0 = System.nanoTime();
        boolean done = p.waitFor(limit.toMillis(), TimeUnit.MILLISECONDS);
        if (!done) {
            List<ProcessHandle> ranks = p.descendants().toList();
            p.destroy(); // SIGTERM: mpirun ends its ranks
            if (!p.waitFor(5, TimeUnit.SECONDS)) p.destroyForcibly();
            ranks.forEach(ProcessHandle::destroyForcibly);
            p.waitFor(5, TimeUnit.SECONDS);
        }
        return new Result(done ? p.exitValue() : -1, !done, (System.nanoTime() - t0) / 1e9, Files.readString(log));
    }

    private static boolean isRoot() {
        try {
            return ((Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid")) == 0;
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException e) {
            return "root".equals(System.getProperty("user.name"));
        }
    }
}
