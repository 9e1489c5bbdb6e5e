package dev.exeunt.cli;

import dev.exeunt.bench.GemmComparison;
import dev.exeunt.tensor.cpu.CpuThreads;
import java.io.PrintStream;
import java.util.Set;

/** Quick benchmarks for users; the full JMH suite is bench/target/benchmarks.jar. */
final class BenchCommand implements Main.Command {
    public String summary() {
        return "quick benchmarks: 'bench gemm' (ours vs OpenBLAS), 'bench train' (exits' cost), 'bench decode' (llama-bench style), "
                + "'bench early-exit' (forced exit rates against the ideal), 'bench pipeline-exit' (the pipeline method against recomputation)";
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
                usage: exeunt bench decode [--model FILE.gguf|DIR] [--prompt 128] [--generate 64] [--repeats 3]
                                           [--types f32,q8_0,q4_0] [--json] | --write-gguf FILE.gguf
                  llama-bench style: prompt and decode tokens/s of a Llama-shaped model (dim 768, 12 layers,
                  12 heads, ffn 2048, vocab 32000, random weights) in each weight type, or of --model, the same
                  file llama-bench -m takes (--json: llama-bench's n_prompt, n_gen, avg_ts, stddev_ts, plus median_ts).
                  --types also takes q2_k, q4_k, q5_k and q6_k: random valid blocks, the output head Q6_K as in Q4_K_M.
                  --write-gguf writes the F32 random model as a GGUF file llama.cpp loads and measures nothing: quantize
                  it with llama-quantize and run llama-bench and bench decode --model on the same files
                  (scripts/bench-llamacpp.sh does all of it).
                usage: exeunt bench early-exit [--model DIR] [--generate 64] [--repeats 7] [--types f32,q8_0] [--rates 0,0.25,0.5,0.75]
                                               [--kv-fill recompute[,propagate]] [--dim 768] [--layers 12] [--heads 12] [--ffn 2048]
                                               [--vocab 32000] [--json]
                  Greedy decode of that shape with random exits after layers L/4 and L/2, each token's exit forced
                  by a seeded pattern at each rate, against early exit off (alternating, medians); the ideal
                  speedup is the full model's weight bytes over the mean bytes a token reads (checks included).
                  --model DIR forces the exits of that checkpoint instead (e.g. ./exeunt demo's demo-out).
                  --kv-fill: rows per way the skipped layers get keys and values; propagate's ideal counts the norm
                  and k / v projections it reads per skipped layer, recompute's extra arithmetic is not in its ideal.
                usage: exeunt bench pipeline-exit [--pp 2,4] [--generate 32] [--repeats 3] [--rates 0.25,0.5,0.75]
                                                  [--dim 768] [--layers 12] [--heads 12] [--ffn 2048] [--vocab 32000] [--json]
                  The same shape cut into --pp stages (threads of this process), exits forced at each rate: decode
                  tokens/s of KV recomputation against pipeline-based early exit (alternating, medians), and how
                  much of the stages' cache filling for exited tokens ran while stage 0 computed the next tokens.""";
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
            String types = a.get("types", "f32,q8_0,q4_0"), file = a.get("model", null), write = a.get("write-gguf", null);
            a.checkAllUsed();
            if (write != null) {
                if (file != null || a.has("types")) throw new Args.UsageException("--write-gguf writes the random F32 model: it takes no --model or --types");
                if (!write.toLowerCase(java.util.Locale.ROOT).endsWith(".gguf")) throw new Args.UsageException("--write-gguf must name a .gguf file, got " + write);
                try {
                    var s = dev.exeunt.bench.DecodeBench.writeGguf(dev.exeunt.bench.DecodeBench.defaultConfig(), java.nio.file.Path.of(write));
                    out.printf(java.util.Locale.ROOT, "wrote %s: %d tensors, %.2f MiB%n", write, s.tensors(), s.bytes() / (double) (1 << 20));
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
                return 0;
            }
            if (file != null) {
                java.nio.file.Path path = java.nio.file.Path.of(file);
                try (var loaded = dev.exeunt.model.ModelLoader.load(path, dev.exeunt.tensor.Device.CPU)) {
                    var m = loaded.model();
                    var rows = dev.exeunt.bench.DecodeBench.run(m, path.getFileName().toString(), dev.exeunt.bench.DecodeBench.mainType(m), pp, tg,
                            reps, System.err);
                    out.print(json ? dev.exeunt.bench.DecodeBench.toJson(rows) + "\n" : dev.exeunt.bench.DecodeBench.table(rows));
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
                return 0;
            }
            var dtypes = java.util.Arrays.stream(types.split(",")).map(t -> dev.exeunt.tensor.DType.valueOf(t.trim().toUpperCase())).toList();
            var rows = dev.exeunt.bench.DecodeBench.run(dev.exeunt.bench.DecodeBench.defaultConfig(), dtypes, pp, tg, reps, System.err);
            out.print(json ? dev.exeunt.bench.DecodeBench.toJson(rows) + "\n" : dev.exeunt.bench.DecodeBench.table(rows));
            return 0;
        }
        if (which.equals("early-exit")) {
            int tg = a.getInt("generate", 64), reps = a.getInt("repeats", 7);
            var dtypes = java.util.Arrays.stream(a.get("types", "f32,q8_0").split(",")).map(t -> dev.exeunt.tensor.DType.valueOf(t.trim().toUpperCase())).toList();
            double[] rates = java.util.Arrays.stream(a.get("rates", "0,0.25,0.5,0.75").split(",")).mapToDouble(x -> Double.parseDouble(x.trim())).toArray();
            var fills = java.util.Arrays.stream(a.get("kv-fill", "recompute").split(",")).map(GenerateCommand::kvFill).distinct().toList();
            String file = a.get("model", null);
            if (file != null) {
                if (a.has("types")) throw new Args.UsageException("--types is for the random model: --model " + file + " runs in its own weight types");
                a.checkAllUsed();
                java.nio.file.Path path = java.nio.file.Path.of(file);
                try (var loaded = dev.exeunt.model.ModelLoader.load(path, dev.exeunt.tensor.Device.CPU)) {
                    var m = loaded.model();
                    String name = path.getFileName() + ", exits at " + m.config().exits().stream().map(e -> Integer.toString(e.layer())).toList();
                    var rows = dev.exeunt.bench.EarlyExitBench.run(m, name, dev.exeunt.bench.DecodeBench.mainType(m), fills, rates, tg, reps, System.err);
                    out.print(json ? dev.exeunt.bench.EarlyExitBench.toJson(rows) + "\n" : dev.exeunt.bench.EarlyExitBench.table(rows));
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
                return 0;
            }
            var config = dev.exeunt.bench.EarlyExitBench.shape(a.getInt("dim", 768), a.getInt("layers", 12), a.getInt("heads", 12),
                    a.getInt("ffn", 2048), a.getInt("vocab", 32000));
            a.checkAllUsed();
            var rows = dev.exeunt.bench.EarlyExitBench.run(config, dtypes, fills, rates, tg, reps, System.err);
            out.print(json ? dev.exeunt.bench.EarlyExitBench.toJson(rows) + "\n" : dev.exeunt.bench.EarlyExitBench.table(rows));
            return 0;
        }
        if (which.equals("pipeline-exit")) {
            int tg = a.getInt("generate", 32), reps = a.getInt("repeats", 3);
            int[] stages = a.getInts("pp", new int[] {2, 4});
            double[] rates = java.util.Arrays.stream(a.get("rates", "0.25,0.5,0.75").split(",")).mapToDouble(x -> Double.parseDouble(x.trim())).toArray();
            var config = dev.exeunt.bench.EarlyExitBench.shape(a.getInt("dim", 768), a.getInt("layers", 12), a.getInt("heads", 12),
                    a.getInt("ffn", 2048), a.getInt("vocab", 32000));
            a.checkAllUsed();
            for (int p : stages) {
                if (p < 2 || p > config.nLayers()) throw new Args.UsageException("--pp must list stage counts in 2.." + config.nLayers() + ", got " + p);
            }
            var rows = dev.exeunt.bench.PipelineExitBench.run(config, stages, rates, tg, reps, System.err);
            out.print(json ? dev.exeunt.bench.PipelineExitBench.toJson(rows) + "\n" : dev.exeunt.bench.PipelineExitBench.table(rows));
            return 0;
        }
        if (!which.equals("gemm")) throw new Args.UsageException("which benchmark? (available: gemm, train, decode, early-exit, pipeline-exit)");
        int threads = a.getInt("threads", CpuThreads.threads());
        double seconds = a.getDouble("seconds", 0.6);
        a.checkAllUsed();
        var rows = GemmComparison.run(threads, seconds, System.err);
        out.println(json ? GemmComparison.toJson(rows) : GemmComparison.table(rows));
        return 0;
    }
}
