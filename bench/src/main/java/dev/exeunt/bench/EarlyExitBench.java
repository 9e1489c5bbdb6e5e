package dev.exeunt.bench;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.generate.DecodeWarmUp;
import dev.exeunt.model.generate.ForcedExits;
import dev.exeunt.model.generate.GeneratedToken;
import dev.exeunt.model.generate.Generation;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.GenerationConfig.KvFill;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.WeightBytes;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The systems cost of early exit, apart from model quality: greedy decode of a Llama-shaped model with
 * random weights and two randomly initialised exits, with the exit decisions forced by a seeded pattern
 * ({@link ForcedExits}) at several exit rates, against the same model with early exit off, alternating
 * run by run, the median of the pairs' ratios. The ideal speedup is what the weights a token reads predict for a memory-bound
 * decode: the full model's layer and head bytes over the mean bytes per token (the layers it runs, the
 * exit heads it checks, the final head if it gets there); a skipped layer's later recomputation reads
 * no extra weights (it rides along with the next deep token), so {@link KvFill#RECOMPUTE} can only reach
 * the ideal where its extra arithmetic is free, when decode is memory-bound. With {@link KvFill#PROPAGATE}
 * an exited token also reads each skipped layer's norm and key / value projections, and its ideal counts them.
 */
public final class EarlyExitBench {
    /** One weight type at one forced exit rate. */
    public record Row(String model, DType type, KvFill kvFill, double exitRate, double tokensPerSecond, double fullTokensPerSecond,
                      double speedup, double idealSpeedup, double measuredExitRate) {}

    /** The longest warm-up per model before anything is timed. */
    private static final double WARM_UP_SECONDS = 20;

    private EarlyExitBench() {}

    /** llama-110m's shape (dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000, untied head) with norm exits after layers 3 and 6. */
    public static ModelConfig defaultConfig() {
        return shape(768, 12, 12, 2048, 32000);
    }

    /** A Llama shape with norm exits at a quarter and half depth. */
    public static ModelConfig shape(int dim, int layers, int heads, int ffn, int vocab) {
        List<ExitConfig> exits = new ArrayList<>();
        for (int l : new int[] {Math.max(1, layers / 4), Math.max(1, layers / 2)}) {
            if (exits.stream().noneMatch(e -> e.layer() == l)) exits.add(new ExitConfig(l, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1));
        }
        return ModelConfig.llama(vocab, dim, layers, heads, heads, ffn, 1024, exits);
    }

    public static List<Row> run(ModelConfig config, List<DType> types, List<KvFill> fills, double[] rates, int genTokens, int reps,
                                PrintStream log) {
        List<Row> rows = new ArrayList<>();
        for (DType type : types) {
            try (EarlyExitModel model = DecodeBench.randomModel(config, type, 1)) {
                String name = String.format(Locale.ROOT, "llama %dx%d %s, exits at %s", config.nLayers(), config.dModel(), type,
                        config.exits().stream().map(e -> Integer.toString(e.layer())).toList());
                rows.addAll(run(model, name, type, fills, rates, genTokens, reps, log));
            }
        }
        return rows;
    }

    /**
     * The same on a model you have ({@code bench early-exit --model DIR}): its own exits, forced at each rate,
     * so the systems cost of early exit on that shape is measured apart from how good its exits are; a row
     * per kv fill and rate. The prompt is token 1; genTokens + 1 must fit the model's context.
     */
    public static List<Row> run(EarlyExitModel model, String name, DType type, List<KvFill> fills, double[] rates, int genTokens, int reps,
                                PrintStream log) {
        ModelConfig config = model.config();
        if (config.exits().isEmpty()) throw new IllegalArgumentException(name + " has no exits to force");
        if (genTokens + 1 > config.maxSeqLen()) {
            throw new IllegalArgumentException("--generate " + genTokens + " does not fit " + name + "'s context of " + config.maxSeqLen() + " tokens");
        }
        List<Row> rows = new ArrayList<>();
        Bytes bytes = Bytes.of(model);
        Generator gen = new Generator(model);
        int[] prompt = {1};
        var full = GenerationConfig.greedy(genTokens + 1);
        var exiting = full.withThreshold(0.5); // any threshold below 1 checks every exit; the pattern decides
        List<GenerationConfig> warmUp = new ArrayList<>(List.of(full));
        for (KvFill fill : fills) warmUp.add(exiting.withKvFill(fill));
        // Until the JIT settles, not a fixed count: on the demo model two rounds left the first rate's row at
        // 0.61x where the same rate read 0.87x at the end of the run.
        gen.forceExits(new ForcedExits(0.5, 7));
        try {
            DecodeWarmUp.onModel(gen, List.of(prompt), warmUp, WARM_UP_SECONDS);
        } finally {
            gen.forceExits(null);
        }
        for (KvFill fill : fills) {
            for (double rate : rates) {
                double[] fullTps = new double[reps], tps = new double[reps], ratio = new double[reps];
                Generation last = null;
                for (int r = 0; r < reps; r++) {
                    fullTps[r] = decode(gen, prompt, full, null).tokensPerSecond();
                    var run = decode(gen, prompt, exiting.withKvFill(fill), new ForcedExits(rate, 7));
                    tps[r] = run.tokensPerSecond();
                    ratio[r] = tps[r] / fullTps[r];
                    last = run.generation();
                }
                // The speedup is the median of each adjacent pair's ratio: a neighbour slowing the machine for a
                // while slows both runs of a pair, where a ratio of medians mixed runs seconds apart.
                double f = TrainThroughput.median(fullTps), t = TrainThroughput.median(tps), speedup = TrainThroughput.median(ratio);
                double ideal = bytes.full() / bytes.meanPerToken(last, config, fill);
                double exited = last.tokens().stream().skip(1).filter(g -> g.exitLayer() < config.nLayers()).count() / (double) genTokens;
                if (log != null) {
                    log.printf(Locale.ROOT, "%s kv fill %s rate %.2f: %.2f t/s vs %.2f full (%.3fx, ideal %.3fx)%n", name, fillName(fill), rate, t, f,
                            speedup, ideal);
                }
                rows.add(new Row(name, type, fill, rate, t, f, speedup, ideal, exited));
            }
        }
        return rows;
    }

    private record Decode(Generation generation, double tokensPerSecond) {}

    /** One generation and its decode tokens/s after the first token (the prompt's), exits forced by {@code pattern} (null: none). */
    private static Decode decode(Generator gen, int[] prompt, GenerationConfig cfg, ForcedExits pattern) {
        gen.forceExits(pattern);
        try {
            Generation g = gen.generate(List.of(prompt), cfg, TokenListener.NONE).get(0);
            var st = gen.lastStats();
            return new Decode(g, (st.generatedTokens() - 1) / st.decodeSeconds());
        } finally {
            gen.forceExits(null);
        }
    }

    /**
     * Weight bytes of each layer, each exit and the final norm and head; and what propagating a token's keys
     * and values through each layer (and each layer exit) reads: its first norm and k / v projections.
     */
    private record Bytes(long[] layer, long[] exit, int[] exitLayer, long head, long[] layerKv, long[] exitKv, int[] exitKvDepth) {
        static Bytes of(EarlyExitModel model) {
            var c = model.config();
            long[] layer = new long[c.nLayers()], exit = new long[c.exits().size()];
            Tensor lmHead = model.lmHead();
            long head = WeightBytes.of(lmHead); // a tied head is the token embedding, read again
            for (Map.Entry<String, Tensor> e : model.parameters().all().entrySet()) {
                String n = e.getKey();
                String[] part = n.split("\\.");
                long b = WeightBytes.of(e.getValue());
                if (n.startsWith("model.layers.")) layer[Integer.parseInt(part[2])] += b; // Llama's names
                else if (n.startsWith("h.")) layer[Integer.parseInt(part[1])] += b; // GPT-2's
                else if (n.startsWith("exits.")) exit[Integer.parseInt(part[1])] += b;
                else if (n.startsWith("model.norm") || n.startsWith("ln_f")) head += b;
            }
            long[] layerKv = new long[c.nLayers()], exitKv = new long[c.exits().size()];
            int[] exitKvDepth = new int[c.exits().size()];
            for (int l = 0; l < c.nLayers(); l++) layerKv[l] = WeightBytes.keysValues(c, model.layers().get(l));
            for (int e = 0; e < exitKv.length; e++) {
                Exit x = model.exits().get(e);
                exitKv[e] = x.config().kind() == ExitKind.LAYER ? WeightBytes.keysValues(c, x.layer()) : 0;
                exitKvDepth[e] = x.config().inputDepth();
            }
            return new Bytes(layer, exit, c.exits().stream().mapToInt(ExitConfig::layer).toArray(), head, layerKv, exitKv, exitKvDepth);
        }

        /** The full model's bytes per token: every layer and the final head. */
        double full() {
            return Arrays.stream(layer).sum() + head;
        }

        /**
         * Mean bytes per generated token (after the prompt's): layers to its exit, the exit heads checked on the
         * way, the head; with propagation, the keys and values of the layers (and layer exits) it skipped.
         */
        double meanPerToken(Generation g, ModelConfig c, KvFill fill) {
            double sum = 0;
            List<GeneratedToken> tokens = g.tokens().subList(1, g.tokens().size());
            for (GeneratedToken t : tokens) {
                int depth = t.exitLayer();
                for (int l = 0; l < depth; l++) sum += layer[l];
                for (int e = 0; e < exit.length; e++) if (exitLayer[e] <= depth) sum += exit[e];
                if (depth == c.nLayers()) sum += head;
                if (fill == KvFill.PROPAGATE) {
                    for (int l = depth; l < c.nLayers(); l++) sum += layerKv[l];
                    for (int e = 0; e < exitKv.length; e++) if (exitKvDepth[e] > depth) sum += exitKv[e]; // 0 for other kinds
                }
            }
            return sum / tokens.size();
        }
    }

    private static String fillName(KvFill fill) {
        return fill.name().toLowerCase(Locale.ROOT);
    }

    public static String table(List<Row> rows) {
        var sb = new StringBuilder(String.format(Locale.ROOT, "%-40s %-9s %6s %10s %10s %8s %8s %8s%n", "model", "kv fill", "rate", "tokens/s",
                "full t/s", "speedup", "ideal", "of ideal"));
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, "%-40s %-9s %5.0f%% %10.2f %10.2f %7.3fx %7.3fx %7.2f%n", r.model(), fillName(r.kvFill()), 100 * r.exitRate(),
                    r.tokensPerSecond(), r.fullTokensPerSecond(), r.speedup(), r.idealSpeedup(), r.speedup() / r.idealSpeedup()));
        }
        return sb.toString();
    }

    public static String toJson(List<Row> rows) {
        var sb = new StringBuilder("[");
        for (int i = 0; i < rows.size(); i++) {
            Row r = rows.get(i);
            sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT,
                    "{\"model\":\"%s\",\"weight_type\":\"%s\",\"kv_fill\":\"%s\",\"exit_rate\":%.4f,\"measured_exit_rate\":%.4f,\"tokens_per_s\":%.3f,"
                            + "\"full_tokens_per_s\":%.3f,\"speedup\":%.4f,\"ideal_speedup\":%.4f}",
                    r.model(), r.type().name().toLowerCase(Locale.ROOT), fillName(r.kvFill()), r.exitRate(), r.measuredExitRate(), r.tokensPerSecond(),
                    r.fullTokensPerSecond(), r.speedup(), r.idealSpeedup()));
        }
        return sb.append(']').toString();
    }
}
