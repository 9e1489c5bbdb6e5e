package dev.exeunt.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * CPU threads per process under mpirun. The CPU pool (tensor's CpuThreads) takes every core the JVM
 * may use; N ranks on one machine would then run N x cores threads and fight over the cores. So, unless
 * {@code -Dexeunt.threads} or {@code EXEUNT_THREADS} is set, each process of a job takes its share:
 * <ul>
 *   <li>mpirun bound the process to some cores (its CPU affinity is narrower than the machine, as Open
 *       MPI's default bind-to-core does for up to 2 ranks): those cores are its own, use them all;</li>
 *   <li>unbound (bind-to-none, or more ranks than cores with --oversubscribe): the cores the JVM may
 *       use, divided by the ranks on this machine ({@code OMPI_COMM_WORLD_LOCAL_SIZE}), at least 1.</li>
 * </ul>
 * It sets the system property, so it must run before CpuThreads loads (first thing in main).
 */
final class RankThreads {
    private RankThreads() {}

    /** Sets {@code exeunt.threads} for a rank of an mpirun job when the user did not choose. */
    static void configure() {
        if (System.getProperty("exeunt.threads") != null || System.getenv("EXEUNT_THREADS") != null) return;
        String local = System.getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        if (local == null) return;
        int ranksHere;
        try {
            ranksHere = Integer.parseInt(local.trim());
        } catch (NumberFormatException e) {
            return; // not Open MPI's number; leave the pool at its default
        }
        System.setProperty("exeunt.threads", Integer.toString(perRank(Runtime.getRuntime().availableProcessors(), ranksHere, isBound())));
    }

    /** Threads for one of {@code ranksHere} processes on a machine where this one may use {@code available} cores. */
    static int perRank(int available, int ranksHere, boolean bound) {
        if (bound) return Math.max(1, available);
        return Math.max(1, available / Math.max(1, ranksHere));
    }

    /** Whether this process may run on fewer CPUs than are online (Linux; false where it cannot tell). */
    static boolean isBound() {
        try {
            String status = Files.readString(Path.of("/proc/self/status"));
            String allowed = status.lines().filter(l -> l.startsWith("Cpus_allowed_list:")).findFirst().orElse(null);
            if (allowed == null) return false;
            String online = Files.readString(Path.of("/sys/devices/system/cpu/online"));
            return cpuCount(allowed.substring(allowed.indexOf(':') + 1)) < cpuCount(online);
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** The number of CPUs in a Linux CPU list such as {@code 0-3,8,10-11}. */
    static int cpuCount(String list) {
        int n = 0;
        for (String part : list.trim().split(",")) {
            if (part.isBlank()) continue;
            int dash = part.indexOf('-');
            n += dash < 0 ? 1 : Integer.parseInt(part.substring(dash + 1).trim()) - Integer.parseInt(part.substring(0, dash).trim()) + 1;
        }
        return n;
    }
}
