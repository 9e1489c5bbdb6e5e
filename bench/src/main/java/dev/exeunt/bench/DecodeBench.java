package dev.exeunt.bench;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.gguf.GgufExporter;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.tokenizer.SpmTokenizer;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.CpuKQuant;
import dev.exeunt.tensor.cpu.CpuThreads;
import dev.exeunt.tensor.ops.Ops;
import java.io.PrintStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * llama-bench style inference benchmark of a Llama-shaped model with random weights: {@code ppN}
 * (prompt processing: one KV-cached prefill of N tokens through {@link Generator}, tokens/s) and
 * {@code tgN} (text generation: N greedy decode steps after a one-token prompt, tokens/s), for F32
 * weights and for weights quantized in memory (Q8_0 / Q4_0: every projection and the output head; the
 * embedding stays F32). Each test runs untimed until its rate stops climbing ({@link #WARMUPS} to {@link #MAX_WARMUPS} times: JIT warm-up), then {@code reps}
 * times; the table shows the median and the standard deviation. Threads: {@code -Dexeunt.threads} / {@code EXEUNT_THREADS}
 * (fixed when the CPU backend starts; {@link #main} sets it from {@code -t}).
 */
public final class DecodeBench {
    /** One measurement: model, weight type, bytes and count of parameters, threads, test, tokens/s. */
    public record Row(String model, DType type, long sizeBytes, long params, int threads, String test, int tokens,
                      double medianTokensPerSecond, double stddevTokensPerSecond, double[] samples) {}

    private DecodeBench() {}

    /** dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000 (a Llama-shaped ~134M model). */
    public static ModelConfig defaultConfig() {
        return ModelConfig.llama(32000, 768, 12, 12, 12, 2048, 1024, List.of());
    }

    public static List<Row> run(ModelConfig config, List<DType> types, int promptTokens, int genTokens, int reps,
                                PrintStream log) {
        List<Row> rows = new ArrayList<>();
        for (DType type : types) {
            try (EarlyExitModel model = randomModel(config, type, 1)) {
                String name = String.format(Locale.ROOT, "llama %dx%d %s", config.nLayers(), config.dModel(), type);
                rows.addAll(run(model, name, type, promptTokens, genTokens, reps, log));
            }
        }
        return rows;
    }

    /**
     * llama-bench's pp and tg tests on a loaded model (a GGUF file or checkpoint, {@code bench decode --model}),
     * so its numbers compare with {@code llama-bench -m} on the same file; {@code type} labels the rows.
     */
    public static List<Row> run(EarlyExitModel model, String name, DType type, int promptTokens, int genTokens, int reps, PrintStream log) {
        List<Row> rows = new ArrayList<>();
        long bytes = 0, params = 0;
        for (Tensor t : model.parameters().all().values()) {
            bytes += t.dtype().byteSize(t.numel());
            params += t.numel();
        }
        int vocab = model.config().vocabSize();
        Generator gen = new Generator(model);
        SplittableRandom rng = new SplittableRandom(42);
        int[] prompt = new int[promptTokens];
        for (int i = 0; i < prompt.length; i++) prompt[i] = rng.nextInt(vocab);
        if (promptTokens > 0) {
            double[] s = measure(reps, log, name + " pp" + promptTokens, () -> {
                gen.generate(List.<int[]>of(prompt), GenerationConfig.greedy(1), TokenListener.NONE);
                return promptTokens / gen.lastStats().promptSeconds();
            });
            rows.add(row(name, type, bytes, params, "pp" + promptTokens, promptTokens, s));
        }
        if (genTokens > 0) {
            int[] one = {prompt.length > 0 ? prompt[0] : 1};
            double[] s = measure(reps, log, name + " tg" + genTokens, () -> {
                gen.generate(List.<int[]>of(one), GenerationConfig.greedy(genTokens + 1), TokenListener.NONE);
                var st = gen.lastStats();
                return (st.generatedTokens() - 1) / st.decodeSeconds();
            });
            rows.add(row(name, type, bytes, params, "tg" + genTokens, genTokens, s));
            checkAllocation(log, name + " tg" + genTokens, genTokens, () -> gen.generate(List.<int[]>of(one), GenerationConfig.greedy(genTokens + 1), TokenListener.NONE));
        }
        return rows;
    }

    /**
     * Bytes a decode step may allocate on the calling thread before the run is suspect. Decoding the llama-110m
     * shape allocates about 70 KB a token there (the thread pool's jobs and their lambdas, about 130 a token, and
     * the run's lists); a kernel whose Vector API calls C2 did not inline boxes every vector it makes, hundreds of
     * megabytes a token.
     */
    static final long ALLOCATION_WARNING_BYTES_PER_TOKEN = 1 << 20;

    /**
     * One more untimed decode run, counting what the calling thread allocates: a kernel compiled past C2's inlining
     * budget runs the Vector API's allocating Java fallback at a fraction of its speed (a Q4_0 decode once ran at
     * 22 tokens/s instead of 90 that way, with nothing else to tell), so such a run says so.
     */
    private static void checkAllocation(PrintStream log, String what, int tokens, Runnable decode) {
        if (!(ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean mx) || !mx.isThreadAllocatedMemoryEnabled()) return;
        long before = mx.getCurrentThreadAllocatedBytes();
        decode.run();
        long perToken = (mx.getCurrentThreadAllocatedBytes() - before) / Math.max(1, tokens);
        if (log != null) log.printf(Locale.ROOT, "%s: %d bytes allocated per token on the calling thread%n", what, perToken);
        if (perToken > ALLOCATION_WARNING_BYTES_PER_TOKEN) {
            (log != null ? log : System.err).printf(Locale.ROOT, "warning: %s allocated %d bytes per token: the JIT left a kernel's Vector API calls to their "
                    + "allocating Java fallback, so these rates are not the kernels' (look for it with -XX:+PrintCompilation or JFR)%n",
                    what, perToken);
        }
    }

    /** The type holding most of a model's weight bytes (a Q4_K_M file: Q4_K), to label its rows. */
    public static DType mainType(EarlyExitModel model) {
        var bytes = new java.util.EnumMap<DType, Long>(DType.class);
        for (Tensor t : model.parameters().all().values()) bytes.merge(t.dtype(), t.dtype().byteSize(t.numel()), Long::sum);
        return bytes.entrySet().stream().max(java.util.Map.Entry.comparingByValue()).orElseThrow().getKey();
    }

    private interface Trial {
        double run();
    }

    /** Untimed runs before each test at least: the JIT needs more than llama-bench's single warm-up run. */
    static final int WARMUPS = 2;
    /** Untimed runs at most: warm-up goes on while a run is more than 10% faster than the one before. */
    static final int MAX_WARMUPS = 8;

    private static double[] measure(int reps, PrintStream log, String what, Trial t) {
        // The first test in a process compiles most kernels; two fixed warm-ups left its prompt pass at a third of
        // its speed for the first timed runs, so warm-up lasts until the rate stops climbing.
        double prev = 0;
        for (int w = 0; w < MAX_WARMUPS; w++) {
            double warm = t.run();
            if (log != null) log.printf(Locale.ROOT, "%s: warm-up %.2f t/s%n", what, warm);
            if (w + 1 >= WARMUPS && warm <= 1.1 * prev) break;
            prev = Math.max(prev, warm);
        }
        double[] s = new double[reps];
        for (int i = 0; i < reps; i++) {
            s[i] = t.run();
            if (log != null) log.printf(Locale.ROOT, "%s: run %d %.2f t/s%n", what, i + 1, s[i]);
        }
        return s;
    }

    private static Row row(String name, DType type, long bytes, long params, String test, int tokens, double[] s) {
        double[] c = s.clone();
        Arrays.sort(c);
        double mean = Arrays.stream(s).average().orElse(0), var = 0;
        for (double x : s) var += (x - mean) * (x - mean);
        double sd = s.length > 1 ? Math.sqrt(var / (s.length - 1)) : 0;
        return new Row(name, type, bytes, params, CpuThreads.threads(), test, tokens, c[c.length / 2], sd, s);
    }

    /**
     * Writes the F32 random model of a Llama config ({@link #defaultConfig()} is the one {@code bench decode} measures)
     * as a GGUF file llama.cpp loads, with a vocabulary of SentencePiece byte pieces and made-up words: llama-quantize
     * turns it into the other types, and llama-bench and {@code bench decode --model} then run the same files.
     */
    public static GgufExporter.Summary writeGguf(ModelConfig config, Path file) throws java.io.IOException {
        if (config.vocabSize() < 259) throw new IllegalArgumentException("the vocabulary needs 259 pieces or more (3 specials, 256 bytes), got " + config.vocabSize());
        List<String> pieces = new ArrayList<>(List.of("<unk>", "<s>", "</s>"));
        for (int b = 0; b < 256; b++) pieces.add(String.format(Locale.ROOT, "<0x%02X>", b));
        for (int i = pieces.size(); i < config.vocabSize(); i++) pieces.add("\u2581w" + i);
        var tokenizer = new SpmTokenizer(pieces, null, null, 1, 2, 0, -1, true);
        try (EarlyExitModel model = randomModel(config, DType.F32, 1)) {
            return GgufExporter.export(model, tokenizer, "exeunt bench decode llama", GgufExporter.OutType.F32, false, file);
        }
    }

    /**
     * A randomly initialised model whose 2-D weights (projections, output head) are stored as
     * {@code type} (quantized in memory from the random F32 values); embedding and norms stay F32.
     */
    public static EarlyExitModel randomModel(ModelConfig config, DType type, long seed) {
        if (type == DType.F32) return EarlyExitModel.create(config, Device.CPU, seed);
        if (!type.isQuantized()) throw new IllegalArgumentException("weight type must be F32, Q8_0, Q4_0 or a k-quant, got " + type);
        SplittableRandom rng = new SplittableRandom(seed);
        Parameters.Source source = (name, shape) -> Ops.unowned(() -> {
            if (shape.length == 1) return Tensor.full(1f, Device.CPU, shape);
            if (type.isKQuant() && !name.contains("embed_tokens")) {
                // As llama-quantize's Q4_K_M / Q5_K_M keep the output head at Q6_K.
                return randomKQuant(name.contains("lm_head") ? DType.Q6_K : type, shape, rng.split());
            }
            Tensor f = Tensor.randn(rng.split(), 0.02f, shape);
            if (name.contains("embed_tokens")) return f;
            Tensor q = f.to(type);
            f.close();
            return q;
        });
        return EarlyExitModel.create(config, new Parameters(Device.CPU, source));
    }

    /**
     * Random super-blocks of k-quant type t: random bits (every pattern of the packed scales and quants is a
     * valid block) with small finite F16 scales, so the weights are within about +-0.02. Exeunt quantizes to
     * no k-quant type, and a speed test needs valid blocks, not particular values.
     */
    private static Tensor randomKQuant(DType t, int[] shape, SplittableRandom rng) {
        Tensor q = Tensor.empty(t, Device.CPU, shape);
        MemorySegment seg = q.segment();
        long base = t.byteSize(q.offset()), bytes = t.byteSize(q.numel()), block = CpuKQuant.blockBytes(t);
        for (long i = 0; i + 8 <= bytes; i += 8) seg.set(ValueLayout.JAVA_LONG_UNALIGNED, base + i, rng.nextLong());
        for (long b = 0; b < bytes / block; b++) {
            long o = base + b * block;
            if (t == DType.Q6_K) {
                seg.set(ValueLayout.JAVA_SHORT_UNALIGNED, o + block - 2, Float.floatToFloat16((float) (rng.nextDouble() * 2e-4)));
            } else if (t == DType.Q2_K) { // d and dmin last
                seg.set(ValueLayout.JAVA_SHORT_UNALIGNED, o + block - 4, Float.floatToFloat16((float) (rng.nextDouble() * 4e-4)));
                seg.set(ValueLayout.JAVA_SHORT_UNALIGNED, o + block - 2, Float.floatToFloat16((float) (rng.nextDouble() * 6e-4)));
            } else {
                seg.set(ValueLayout.JAVA_SHORT_UNALIGNED, o, Float.floatToFloat16((float) (rng.nextDouble() * 4e-5)));
                seg.set(ValueLayout.JAVA_SHORT_UNALIGNED, o + 2, Float.floatToFloat16((float) (rng.nextDouble() * 4e-4)));
            }
        }
        return q;
    }

    // ------------------------------------------------------------------ output

    private static String size(long bytes) {
        return bytes >= 1L << 30 ? String.format(Locale.ROOT, "%.2f GiB", bytes / (double) (1L << 30))
                : String.format(Locale.ROOT, "%.2f MiB", bytes / (double) (1L << 20));
    }

    /** A markdown table like llama-bench's. */
    public static String table(List<Row> rows) {
        String fmt = "| %-20s | %10s | %8s | %-10s | %7s | %6s | %18s |%n";
        var sb = new StringBuilder(String.format(Locale.ROOT, fmt, "model", "size", "params", "backend", "threads", "test", "t/s"));
        sb.append(String.format(Locale.ROOT, "| %s | %s: | %s: | %s | %s: | %s: | %s: |%n", "-".repeat(20), "-".repeat(9),
                "-".repeat(7), "-".repeat(10), "-".repeat(6), "-".repeat(5), "-".repeat(17)));
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, fmt, r.model(), size(r.sizeBytes()),
                    String.format(Locale.ROOT, "%.2f M", r.params() / 1e6), "CPU (JVM)", r.threads(), r.test(),
                    String.format(Locale.ROOT, "%.2f ± %.2f", r.medianTokensPerSecond(), r.stddevTokensPerSecond())));
        }
        return sb.toString();
    }

    /** JSON array, field names after llama-bench's {@code -o json}. */
    public static String toJson(List<Row> rows) {
        var sb = new StringBuilder("[");
        for (int i = 0; i < rows.size(); i++) {
            Row r = rows.get(i);
            boolean pp = r.test().startsWith("pp");
            StringBuilder samples = new StringBuilder("[");
            for (int k = 0; k < r.samples().length; k++) samples.append(k > 0 ? "," : "").append(String.format(Locale.ROOT, "%.3f", r.samples()[k]));
            samples.append(']');
            sb.append(i > 0 ? ",\n " : "").append(String.format(Locale.ROOT,
                    "{\"model_type\":\"%s\",\"weight_type\":\"%s\",\"model_size\":%d,\"model_n_params\":%d,\"backend\":\"CPU (JVM)\","
                            + "\"n_threads\":%d,\"test\":\"%s\",\"n_prompt\":%d,\"n_gen\":%d,\"avg_ts\":%.3f,\"median_ts\":%.3f,\"stddev_ts\":%.3f,\"samples_ts\":%s}",
                    r.model(), r.type(), r.sizeBytes(), r.params(), r.threads(), r.test(), pp ? r.tokens() : 0, pp ? 0 : r.tokens(),
                    Arrays.stream(r.samples()).average().orElse(0), r.medianTokensPerSecond(), r.stddevTokensPerSecond(), samples));
        }
        return sb.append(']').toString();
    }

    /**
     * {@code [-p 128] [-n 64] [-r 3] [-t 2] [--types f32,q8_0] [--json]}; the model is
     * {@link #defaultConfig()}. {@code -t} only takes effect when nothing has started the CPU backend yet.
     */
    public static void main(String[] args) {
        int pp = 128, tg = 64, reps = 3;
        String threads = "2";
        boolean json = false;
        List<DType> types = List.of(DType.F32, DType.Q8_0);
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "-p", "--prompt" -> pp = Integer.parseInt(args[++i]);
                case "-n", "--gen" -> tg = Integer.parseInt(args[++i]);
                case "-r", "--reps" -> reps = Integer.parseInt(args[++i]);
                case "-t", "--threads" -> threads = args[++i];
                case "--types" -> types = Arrays.stream(args[++i].split(",")).map(s -> DType.valueOf(s.trim().toUpperCase(Locale.ROOT))).toList();
                case "--json" -> json = true;
                default -> throw new IllegalArgumentException("unknown argument " + args[i]
                        + "; usage: [-p 128] [-n 64] [-r 3] [-t 2] [--types f32,q8_0,q4_0] [--json]");
            }
        }
        if (System.getProperty("exeunt.threads") == null) System.setProperty("exeunt.threads", threads);
        List<Row> rows = run(defaultConfig(), types, pp, tg, reps, System.err);
        System.out.print(json ? toJson(rows) + "\n" : table(rows));
    }
}
