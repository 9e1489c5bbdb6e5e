package dev.exeunt.cli;

import dev.exeunt.tensor.cpu.CpuThreads;
import java.io.PrintStream;
import java.util.Set;

final class VersionCommand implements Main.Command {
    static final String VERSION = "0.1.0-SNAPSHOT";

    public String summary() {
        return "print the version, the Java runtime and the CPU threads used";
    }

    public String usage() {
        return "usage: exeunt version [--json]";
    }

    public int run(String[] argv, PrintStream out) {
        var a = new Args(argv, Set.of("json"));
        boolean json = a.getBool("json", false);
        a.checkAllUsed();
        String vec = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.toString();
        if (json) {
            out.printf("{\"version\":\"%s\",\"java\":\"%s\",\"threads\":%d,\"vector_species\":\"%s\"}%n", VERSION,
                    Runtime.version(), CpuThreads.threads(), vec);
        } else {
            out.printf("exeunt %s (Java %s, %d CPU threads, %s)%n", VERSION, Runtime.version(), CpuThreads.threads(), vec);
        }
        return 0;
    }
}
