package dev.exeunt.cli;

import dev.exeunt.bench.GemmComparison;
import dev.exeunt.tensor.cpu.CpuThreads;
import java.io.PrintStream;
import java.util.Set;

/** Quick benchmarks for users; the full JMH suite is bench/target/benchmarks.jar. */
final class BenchCommand implements Main.Command {
    public String summary() {
        return "quick benchmarks: 'bench gemm' compares our GEMM/GEMV with OpenBLAS";
    }

    public String usage() {
        return """
                usage: exeunt bench gemm [--threads N] [--seconds S] [--json]
                  Times SGEMM at 256..2048 and a transformer shape, and SGEMV 4096, ours against OpenBLAS's
                  cblas_sgemm/cblas_sgemv (Debian's libopenblas0-pthread; skipped with a message if absent),
                  alternating runs and reporting medians. --seconds is the time per shape and library.""";
    }

    public int run(String[] argv, PrintStream out) {
        var a = new Args(argv, Set.of("json"));
        if (a.positional().isEmpty() || !a.positional().get(0).equals("gemm")) {
            throw new Args.UsageException("which benchmark? (available: gemm)");
        }
        boolean json = a.getBool("json", false);
        int threads = a.getInt("threads", CpuThreads.threads());
        double seconds = a.getDouble("seconds", 0.6);
        a.checkAllUsed();
        var rows = GemmComparison.run(threads, seconds, json ? null : System.err);
        out.println(json ? GemmComparison.toJson(rows) : GemmComparison.table(rows));
        return 0;
    }
}
