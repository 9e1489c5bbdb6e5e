package dev.exeunt.cli;

import dev.exeunt.bench.GemmComparison;
import dev.exeunt.tensor.cpu.CpuThreads;
import java.io.PrintStream;
import java.util.Set;

/** Quick benchmarks for users; the full JMH suite is bench/target/benchmarks.jar. */
final class BenchCommand implements Main.Command {
    public String summary() {
        return "quick benchmarks: 'bench gemm' (ours vs OpenBLAS), 'bench train' (exits' cost), 'bench decode' (llama-bench style)";
    }

    public String usage() {
        return """
                usage: exeunt bench gemm [--threads N] [--seconds S] [--json]
                  Times SGEMM at 256..2048 and a transformer shape, and SGEMV 4096, ours against OpenBLAS's
                  cblas_sgemm/cblas_sgemv (Debian's libopenblas0-pthread; skipped with a message if absent),
                  alternating runs and reporting medians. --seconds is the time per shape and library.
                usage: exeunt bench train [--steps N (5)] [--d-model 256] [--layers 4] [--seq-len 256] [--vocab 8192]
                                          [--batch 8] [--json]
                  Training tokens/s of a GPT-2 style model without exits and with two norm exits, alternating
                  step by step, medians.
                usage: exeunt bench decode [--prompt 128] [--generate 64] [--repeats 3] [--types f32,q8_0,q4_0] [--json]
                  llama-bench style: prompt and decode tokens/s of a Llama-shaped model (dim 768, 12 layers,
                  12 heads, ffn 2048, vocab 32000, random weights) in each weight type.""";
    }

    public int run(String[] argv, PrintStream out) {
        var a = new Args(argv, Set.of("json"));
        String which = a.positional().isEmpty() ? "" : a.positional().get(0);
        boolean json = a.getBool("json", false);
        if (which.equals("train")) {
            int steps = a.getInt("steps", 5), d = a.getInt("d-model", 256), layers = a.getInt("layers", 4);
            int seq = a.getInt("seq-len", 256), vocab = a.getInt("vocab", 8192), batch = a.getInt("batch", 8);
            a.checkAllUsed();
            var rows = dev.exeunt.bench.TrainThroughput.run(steps, d, layers, seq, vocab, batch, System.err);
            out.print(json ? dev.exeunt.bench.TrainThroughput.toJson(rows) + "\n" : dev.exeunt.bench.TrainThroughput.table(rows));
            return 0;
        }
        if (which.equals("decode")) {
            int pp = a.getInt("prompt", 128), tg = a.getInt("generate", 64), reps = a.getInt("repeats", 3);
            String types = a.get("types", "f32,q8_0");
            a.checkAllUsed();
            var dtypes = java.util.Arrays.stream(types.split(",")).map(t -> dev.exeunt.tensor.DType.valueOf(t.trim().toUpperCase())).toList();
            var rows = dev.exeunt.bench.DecodeBench.run(dev.exeunt.bench.DecodeBench.defaultConfig(), dtypes, pp, tg, reps, System.err);
            out.print(json ? dev.exeunt.bench.DecodeBench.toJson(rows) + "\n" : dev.exeunt.bench.DecodeBench.table(rows));
            return 0;
        }
        if (!which.equals("gemm")) throw new Args.UsageException("which benchmark? (available: gemm, train, decode)");
        int threads = a.getInt("threads", CpuThreads.threads());
        double seconds = a.getDouble("seconds", 0.6);
        a.checkAllUsed();
        var rows = GemmComparison.run(threads, seconds, System.err);
        out.println(json ? GemmComparison.toJson(rows) : GemmComparison.table(rows));
        return 0;
    }
}
