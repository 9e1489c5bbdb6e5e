package dev.exeunt.bench;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.generate.EeMethod;
import dev.exeunt.model.generate.ForcedExits;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.StageWork;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.pipeline.ProcessGroupPipelineParallel;
import dev.exeunt.tensor.Device;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * Pipeline-based early exit against KV recomputation under pipeline parallelism (stages as threads of
 * this process over the local engine), on {@link EarlyExitBench}'s Llama shape with random weights and
 * exit decisions forced at each rate: decode tokens/s of both methods, alternating run by run, medians;
 * and for the pipeline method how much of the cache-filling work of exited tokens (stages whose rows all
 * had their token already) ran while stage 0 was computing a later token: the overlap the method exists for.
 */
public final class PipelineExitBench {
    /**
     * One pipeline size at one forced exit rate: tokens/s with recomputation and with the pipeline method,
     * the fill-only work per token (ms) and the fraction of it that overlapped stage 0's next tokens.
     */
    public record Row(int stages, double exitRate, double recomputeTokensPerSecond, double pipelineTokensPerSecond, double speedup,
                      double fillMillisPerToken, double overlap) {}

    private static final int WARMUPS = 6;

    private PipelineExitBench() {}

    public static List<Row> run(ModelConfig config, int[] stageCounts, double[] rates, int genTokens, int reps, PrintStream log) {
        List<Row> rows = new ArrayList<>();
        for (int pp : stageCounts) {
            var work = new ConcurrentLinkedQueue<StageWork>(); // every stage's stretches, one clock
            List<List<Row>> perRank = LocalWorld.run(pp, pg -> {
                try (var state = ParallelState.create(pg, 1, 1, pp);
                     var model = EarlyExitModel.createStage(config, Device.CPU, 1, TensorParallel.NONE, ProcessGroupPipelineParallel.of(state),
                             PipelineStage.balanced(config.nLayers(), pp, state.ppRank()))) {
                    return measure(model, pp, rates, genTokens, reps, state.ppRank() == 0 ? log : null, work, pg);
                }
            });
            rows.addAll(perRank.get(0));
        }
        return rows;
    }

    /** Every stage runs the same calls; stage 0's timings and every stage's work stretches make the rows. */
    private static List<Row> measure(EarlyExitModel model, int pp, double[] rates, int genTokens, int reps, PrintStream log,
                                     ConcurrentLinkedQueue<StageWork> work, ProcessGroup pg) {
        var gen = new Generator(model);
        int[] prompt = {1};
        var cfg = GenerationConfig.greedy(genTokens + 1).withThreshold(0.5); // below 1 checks every exit; the pattern decides
        boolean lead = pg.rank() == 0;
        // A fixed count (every stage must make the same calls): the tensor-op path needs more runs than the lean one to compile.
        for (int w = 0; w < WARMUPS; w++) {
            for (EeMethod m : EeMethod.values()) decode(gen, m, prompt, cfg, new ForcedExits(0.5, 7), null);
        }
        List<Row> rows = new ArrayList<>();
        for (double rate : rates) {
            double[] recompute = new double[reps], pipeline = new double[reps], fill = new double[reps], overlap = new double[reps];
            for (int r = 0; r < reps; r++) {
                recompute[r] = decode(gen, EeMethod.RECOMPUTE, prompt, cfg, new ForcedExits(rate, 7), null);
                if (lead) work.clear();
                pg.barrier();
                pipeline[r] = decode(gen, EeMethod.PIPELINE, prompt, cfg, new ForcedExits(rate, 7), work);
                pg.barrier(); // every stage has recorded its stretches
                double[] f = overlap(new ArrayList<>(work));
                fill[r] = f[0] / 1e6 / genTokens;
                overlap[r] = f[1];
            }
            double rt = TrainThroughput.median(recompute), pt = TrainThroughput.median(pipeline);
            var row = new Row(pp, rate, rt, pt, pt / rt, TrainThroughput.median(fill), TrainThroughput.median(overlap));
            if (log != null) {
                log.printf(Locale.ROOT, "pp %d rate %.2f: recompute %.2f t/s, pipeline %.2f t/s (%.3fx); fill %.2f ms/token, %.0f%% overlapped%n",
                        pp, rate, rt, pt, pt / rt, row.fillMillisPerToken(), 100 * row.overlap());
            }
            rows.add(row);
        }
        return rows;
    }

    /** Decode tokens/s after the prompt's token, the method and pattern set for this run only. */
    private static double decode(Generator gen, EeMethod method, int[] prompt, GenerationConfig cfg, ForcedExits pattern,
                                 ConcurrentLinkedQueue<StageWork> work) {
        gen.useMethod(method);
        gen.forceExits(pattern);
        gen.recordStageWork(work == null ? null : work::add);
        try {
            gen.generate(List.of(prompt), cfg, TokenListener.NONE);
            var st = gen.lastStats();
            return (st.generatedTokens() - 1) / st.decodeSeconds();
        } finally {
            gen.forceExits(null);
            gen.recordStageWork(null);
            gen.useMethod(EeMethod.RECOMPUTE);
        }
    }

    /**
     * Total fill-only nanoseconds on the later stages, and the fraction of them during which stage 0 was
     * computing a later step (a step it could start only because the exited token came back early).
     * Valid because every stage is a thread of this process: one clock.
     */
    static double[] overlap(List<StageWork> all) {
        List<StageWork> lead = all.stream().filter(w -> w.stage() == 0).sorted(Comparator.comparingLong(StageWork::startNanos)).toList();
        double fill = 0, covered = 0;
        for (StageWork w : all) {
            if (w.stage() == 0 || !w.fillOnly()) continue;
            fill += w.endNanos() - w.startNanos();
            for (StageWork s : lead) {
                if (s.step() <= w.step()) continue;
                covered += Math.max(0, Math.min(w.endNanos(), s.endNanos()) - Math.max(w.startNanos(), s.startNanos()));
            }
        }
        return new double[] {fill, fill == 0 ? 0 : covered / fill};
    }

    public static String table(List<Row> rows) {
        var sb = new StringBuilder(String.format(Locale.ROOT, "%6s %6s %14s %14s %8s %12s %10s%n", "stages", "rate", "recompute t/s",
                "pipeline t/s", "speedup", "fill ms/tok", "overlap"));
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, "%6d %6.2f %14.2f %14.2f %7.3fx %12.2f %9.0f%%%n", r.stages(), r.exitRate(),
                    r.recomputeTokensPerSecond(), r.pipelineTokensPerSecond(), r.speedup(), r.fillMillisPerToken(), 100 * r.overlap()));
        }
        return sb.toString();
    }

    /** One object per row: stages, exit_rate, recompute_tokens_per_s, pipeline_tokens_per_s, speedup, fill_ms_per_token, overlap. */
    public static String toJson(List<Row> rows) {
        var sb = new StringBuilder("[");
        for (Row r : rows) {
            if (sb.length() > 1) sb.append(',');
            sb.append(String.format(Locale.ROOT, "{\"stages\":%d,\"exit_rate\":%.4f,\"recompute_tokens_per_s\":%.3f,\"pipeline_tokens_per_s\":%.3f,"
                            + "\"speedup\":%.4f,\"fill_ms_per_token\":%.4f,\"overlap\":%.4f}", r.stages(), r.exitRate(), r.recomputeTokensPerSecond(),
                    r.pipelineTokensPerSecond(), r.speedup(), r.fillMillisPerToken(), r.overlap()));
        }
        return sb.append(']').toString();
    }
}
