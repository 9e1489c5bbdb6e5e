package dev.exeunt.model.train;

import dev.exeunt.model.checkpoint.CheckpointManifest;
import dev.exeunt.model.checkpoint.CheckpointStore;
import dev.exeunt.model.checkpoint.CrashPoints;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.optim.AdamW;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The training loop: gradient accumulation over micro-batches, global-norm clipping, AdamW with
 * warm-up and cosine decay, a log line per step (console and {@code train_log.jsonl}), periodic
 * validation and checkpoints. A NaN or infinite loss stops training before any update or save, so
 * the last checkpoint stays good. Checkpoints hold everything a resume needs to continue the same
 * loss curve bit for bit, and are published by {@link CheckpointStore}, so a crash at any point leaves
 * the newest complete one to resume from; the log keeps exactly the lines up to it.
 *
 * <p>Each log line's {@code sync_ms} is the time this rank spent exchanging losses and gradients after
 * the backward (the data-parallel all-reduces, including waiting for slower ranks; not the distributed
 * optimizer's reduce-scatter and all-gather, which run inside its step).
 *
 * <p>Under data parallelism (a {@link GradientSync} over several ranks, one Trainer per rank, each with
 * its own replica of the model) each rank reads only its rows of every global batch, gradients and the
 * logged losses are averaged over the ranks, and only rank 0 prints, writes the log and saves.
 * Reducing, clipping and the update go through a {@link TrainingOptimizer}: plain AdamW by default, or
 * one whose state is sharded over the data-parallel ranks (then every rank joins the save of the moments).
 */
public final class Trainer implements AutoCloseable {
    /** What a run produced. */
    public record Result(int iterations, double lastLoss, EvalReport lastEval, double tokensPerSecond) {}

    /** One JSON line per iteration, in the output directory. */
    public static final String LOG = "train_log.jsonl";
    /** One JSON line per validation ({@code {"iter":N,"eval":{...}}}), beside {@link #LOG}. */
    public static final String EVAL_LOG = "eval_log.jsonl";

    private final EarlyExitModel model;
    private final BpeTokenizer tokenizer;
    private final TokenWindows windows;
    private final TrainConfig cfg;
    private final Path outDir;
    private final CheckpointStore store;
    private final PrintStream console;
    private final TrainingOptimizer optimizer;
    private final TokenWindows.Split split;
    private final TokenWindows.Batches batches;
    private final GradientSync sync;
    private MicroBatchRunner runner = MicroBatchRunner.SEQUENTIAL;
    private BatchEvaluator evaluator = BatchEvaluator.WHOLE_MODEL;
    /** Whether this rank prints and writes: data-parallel, tensor-parallel rank 0 of pipeline stage 0. */
    private final boolean logs;
    private int startIter;
    private int stopAfter = Integer.MAX_VALUE;

    public Trainer(EarlyExitModel model, BpeTokenizer tokenizer, TokenWindows windows, TrainConfig cfg, Path outDir,
                   PrintStream console) {
        this(model, tokenizer, windows, cfg, outDir, console, GradientSync.SINGLE);
    }

    /**
     * One data-parallel rank's trainer: {@code cfg.batchSize()} is the global micro-batch, split evenly
     * over {@code sync.ranks()}; {@code console} and {@code outDir} are used by rank 0 only.
     */
    public Trainer(EarlyExitModel model, BpeTokenizer tokenizer, TokenWindows windows, TrainConfig cfg, Path outDir,
                   PrintStream console, GradientSync sync) {
        this(model, tokenizer, windows, cfg, outDir, console, sync, TrainingOptimizer.REPLICATED);
    }

    /**
     * As above, with the optimiser {@code optimizer} makes: {@link TrainingOptimizer#REPLICATED} (plain AdamW)
     * or one that shards its state over the data-parallel ranks (ZeRO-1).
     */
    public Trainer(EarlyExitModel model, BpeTokenizer tokenizer, TokenWindows windows, TrainConfig cfg, Path outDir,
                   PrintStream console, GradientSync sync, TrainingOptimizer.Factory optimizer) {
        if (cfg.batchSize() % sync.ranks() != 0) {
            throw new IllegalArgumentException("batch size " + cfg.batchSize() + " is not divisible by the " + sync.ranks()
                    + " data-parallel ranks; every rank needs the same number of rows for the averaged gradient to equal "
                    + "the one-rank gradient");
        }
        this.sync = sync;
        this.logs = sync.logs() && model.tensorParallel().rank() == 0 && model.parameters().pipeline().stage() == 0;
        this.model = model;
        this.tokenizer = tokenizer;
        this.windows = windows;
        this.cfg = cfg;
        this.outDir = outDir;
        this.store = store(outDir);
        this.console = logs ? console : null;
        this.optimizer = optimizer.create(new AdamW.Settings((float) cfg.beta1(), (float) cfg.beta2(), 1e-8f, (float) cfg.weightDecay()),
                model.parameters(), sync);
        this.split = cfg.valFraction() > 0 ? windows.split(cfg.valFraction()) : new TokenWindows.Split(windows.all(), new int[0]);
        this.batches = windows.batches(split.train(), cfg.batchSize(), cfg.seed(), true, true);
    }

    private static CheckpointStore store(Path outDir) {
        return new CheckpointStore(outDir, Set.of(LOG, EVAL_LOG));
    }

    /**
     * What a run does first, before deciding anything about {@code outDir}: finishes or undoes an
     * interrupted save there ({@link CheckpointStore#recover()}), then says whether a training checkpoint
     * is there to {@link #resumeFrom} (false for an empty directory or one holding only a log).
     */
    public static boolean recoverOutput(Path outDir, PrintStream console) throws IOException {
        var recovery = store(outDir).recover();
        if (console != null) recovery.actions().forEach(a -> console.println(outDir + ": " + a));
        return TrainingState.exists(outDir);
    }

    /**
     * Continues from the checkpoint in {@code dir} (recovered first, its checksums verified): weights,
     * optimiser moments, step counts and data cursor.
     */
    public void resumeFrom(Path dir) throws IOException {
        // Other ranks only read: the caller recovers the directory (recoverOutput) before any rank starts.
        if (logs) store(dir).recover();
        Optional<CheckpointManifest> manifest = CheckpointManifest.read(dir);
        if (manifest.isPresent()) manifest.get().verify(dir);
        TrainingState state = TrainingState.read(dir);
        try (var ckpt = SafetensorsCheckpoint.open(dir.resolve(ModelCheckpoint.WEIGHTS))) {
            ModelCheckpoint.loadWeights(model, ckpt);
        }
        // Moments are stored whole, like the weights; a tensor-parallel rank keeps its slice of each.
        Map<String, Tensor> saved = new LinkedHashMap<>();
        try (var opt = SafetensorsCheckpoint.open(dir.resolve(TrainingState.OPTIMIZER))) {
            for (String name : opt.names()) {
                int dot = name.lastIndexOf('.');
                if (dot > 0 && !model.parameters().has(name.substring(0, dot))) continue; // another pipeline stage's
                Tensor full = TensorFiles.load(opt, name, Device.CPU);
                Shard shard = momentShard(name);
                if (shard == null || !shard.isSplit()) {
                    saved.put(name, full);
                    continue;
                }
                try (full) {
                    saved.put(name, Ops.unowned(() -> shard.sliceOf(full)));
                }
            }
            optimizer.load(saved, state.optimizerSteps(), model.parameters().trainable());
        } finally {
            saved.values().forEach(Tensor::close);
        }
        batches.seek(state.epoch(), state.step());
        startIter = state.nextIter();
    }

    /** The optimiser state this rank holds, against plain AdamW's (for the console at start). */
    public TrainingOptimizer.Memory optimizerMemory() {
        return optimizer.memory(model.parameters().trainable());
    }

    /**
     * Runs each step's micro-batches with {@code runner} instead of one after another (a pipeline stage's
     * trainer runs them through the 1F1B schedule); returns this trainer.
     */
    public Trainer runMicroBatchesWith(MicroBatchRunner runner) {
        this.runner = java.util.Objects.requireNonNull(runner);
        return this;
    }

    /**
     * Evaluates each validation batch with {@code evaluator} instead of on this rank's model alone (a
     * pipeline stage's trainer evaluates with the other stages); returns this trainer.
     */
    public Trainer validateWith(BatchEvaluator evaluator) {
        this.evaluator = java.util.Objects.requireNonNull(evaluator);
        return this;
    }

    /** Ends this run (with a checkpoint) after {@code n} iterations, as an interrupted job would; the schedule is unchanged. */
    public void stopAfter(int n) {
        this.stopAfter = n;
    }

    public int startIteration() {
        return startIter;
    }

    public TokenWindows.Split split() {
        return split;
    }

    public Result train() throws IOException {
        if (evaluator == BatchEvaluator.WHOLE_MODEL && model.stage().count() > 1 && cfg.evalEvery() > 0
                && split.validation().length > 0) { // fails now, not at the first validation
            throw new IllegalStateException("validation of a pipeline stage needs the stages' evaluator (validateWith)");
        }
        if (logs) {
            store.recover();
            store.requireReplaceable();
            Files.createDirectories(outDir);
            // A fresh start owns the log; lines of an earlier, unsaved or abandoned run would look like this one's.
            if (startIter == 0) {
                Files.deleteIfExists(outDir.resolve(LOG));
                Files.deleteIfExists(outDir.resolve(EVAL_LOG));
            }
        }
        Map<String, Tensor> trainable = model.parameters().trainable();
        long tokensPerIter = (long) cfg.batchSize() * cfg.gradAccum() * cfg.seqLen();
        long t0 = System.nanoTime();
        double lastLoss = Double.NaN;
        EvalReport lastEval = null;
        int done = 0;
        {
            dev.exeunt.model.util.LogCadence cadence = dev.exeunt.model.util.LogCadence.of(cfg.logEvery());
            for (int it = startIter; it < cfg.iters(); it++) {
                long ts = System.nanoTime();
                model.parameters().zeroGrads();
                int nExits = model.config().exits().size();
                double[] exitW = new double[nExits];
                for (int i = 0; i < nExits; i++) exitW[i] = model.config().exits().get(i).weight().at(it);
                List<TokenWindows.Batch> micro = new ArrayList<>();
                for (int m = 0; m < cfg.gradAccum(); m++) micro.add(batches.next(sync.rank(), sync.ranks()));
                List<TokenWindows.Batch> fill = new ArrayList<>(); // bubble fills: the samples after the global batch
                for (int m = 0; m < runner.fillMicroBatches(); m++) fill.add(batches.next(sync.rank(), sync.ranks()));
                // The last micro-batch's backward may start the gradient all-reduce (not under ZeRO, which reduce-scatters after it).
                var finals = optimizer.shardedOverDataParallel() ? null : sync.finalGradients(trainable);
                var losses = runner.run(model, micro, fill, cfg.seqLen(), it, finals);
                // Averaged over data-parallel ranks before the finiteness check, so a NaN on any rank stops every rank at the same iteration.
                double[] logged = losses.means().clone();
                long syncStart = System.nanoTime();
                sync.averageScalars(logged);
                double[] fillLosses = losses.fill() == null ? null : losses.fill().exitLosses().clone();
                if (fillLosses != null) sync.averageScalars(fillLosses);
                long syncNanos = System.nanoTime() - syncStart;
                double total = logged[0], fin = logged[1];
                double[] exitLoss = new double[nExits];
                System.arraycopy(logged, 2, exitLoss, 0, exitLoss.length);
                if (!Double.isFinite(total)) {
                    throw new TrainingDivergedException(String.format(Locale.ROOT,
                            "loss became %s at iteration %d (final head %s); stopped before updating or saving, so the "
                                    + "last checkpoint in %s is intact. Try a lower learning rate or stronger clipping.",
                            total, it, fin, outDir));
                }
                syncStart = System.nanoTime();
                TensorParallelGradients.reducePartial(model.parameters(), trainable);
                syncNanos += System.nanoTime() - syncStart;
                double lr = cfg.lrAt(it);
                double norm = optimizer.step(trainable, cfg.gradClip(), (float) lr);
                syncNanos += sync.lastReduceNanos();
                lastLoss = total;
                done++;
                double elapsed = (System.nanoTime() - t0) / 1e9;
                double tps = tokensPerIter * done / elapsed;
                double eta = (cfg.iters() - it - 1) * elapsed / done;
                String line = logLine(it, total, fin, exitLoss, exitW, lr, norm, tps, elapsed, eta,
                        (System.nanoTime() - ts) / 1e6, syncNanos / 1e6, losses.fill() == null ? 0 : losses.fill().microBatches(), fillLosses,
                        losses.stagePeakBytes());
                if (logs) appendLog(LOG, line);
                if (console != null && cadence.due(it, cfg.iters())) {
                    console.println(consoleLine(it, total, fin, exitLoss, lr, tps, eta));
                }
                boolean last = it == cfg.iters() - 1 || done == stopAfter;
                if (cfg.evalEvery() > 0 && split.validation().length > 0 && ((it + 1) % cfg.evalEvery() == 0 || last)) {
                    lastEval = Evaluator.evaluate(model, windows, split.validation(), cfg.batchSize(), cfg.evalBatches(), evaluator);
                    if (logs) appendLog(EVAL_LOG, "{\"iter\":" + it + ",\"eval\":" + lastEval.toJson() + "}");
                    if (console != null) console.printf(Locale.ROOT, "validation after %d iterations:%n%s", it + 1, lastEval.toTable());
                }
                // Every tensor-parallel rank of data-parallel rank 0 takes part in the save (the shards are gathered),
                // and every data-parallel rank when each holds part of the moments.
                boolean saves = sync.rank() == 0 || optimizer.shardedOverDataParallel();
                if (((cfg.saveEvery() > 0 && (it + 1) % cfg.saveEvery() == 0) || last) && saves) save(it + 1, total);
                if (done == stopAfter) break;
            }
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        return new Result(done, lastLoss, lastEval, done == 0 ? 0 : tokensPerIter * done / secs);
    }

    /** Frees the optimiser state (the model belongs to the caller). */
    @Override
    public void close() {
        optimizer.close();
    }

    /** One JSON line to a log; reopened per line because checkpoints swap the directory. */
    private void appendLog(String file, String line) throws IOException {
        Files.writeString(outDir.resolve(file), line + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                StandardOpenOption.APPEND);
    }

    /** Writes the checkpoint, training state and log so far into a staging directory, then publishes it. */
    private void save(int nextIter, double loss) throws IOException {
        var params = model.parameters();
        if (sync.rank() != 0) { // a data-parallel rank holding part of the moments: it joins their gathers
            optimizer.saveMoments(this::momentShard, params.tensorParallel(), null);
            return;
        }
        if (!logs) { // another tensor-parallel rank: contribute the shards, rank 0 writes
            ModelCheckpoint.save(model, tokenizer, null);
            optimizer.saveMoments(this::momentShard, params.tensorParallel(), null);
            return;
        }
        Path staged = store.beginStaging();
        ModelCheckpoint.save(model, tokenizer, staged);
        CrashPoints.reach(CrashPoints.STAGING_PARTIAL);
        optimizer.saveMoments(this::momentShard, params.tensorParallel(), staged.resolve(TrainingState.OPTIMIZER));
        new TrainingState(nextIter, batches.epoch(), batches.step(), optimizer.stepCount(), loss).write(staged);
        for (String name : new String[] {LOG, EVAL_LOG}) {
            Path log = outDir.resolve(name);
            if (Files.exists(log)) Files.copy(log, staged.resolve(name));
        }
        store.publish(nextIter);
    }

    /**
     * The shard of an optimiser moment ({@code <param>.exp_avg}, {@code <param>.exp_avg_sq}): its
     * parameter's; null (whole) for a name that belongs to no parameter (the optimiser ignores it).
     */
    private Shard momentShard(String momentName) {
        int dot = momentName.lastIndexOf('.');
        String param = dot < 0 ? momentName : momentName.substring(0, dot);
        return model.parameters().has(param) ? model.parameters().shard(param) : null;
    }

    /**
     * One JSON log line; with bubble filling, {@code fill_micro_batches} (extra micro-batches, not counted in
     * {@code tokens_per_s}) and {@code fill_exit_losses} (each exit's mean loss over the fills that trained
     * it, null for none); under pipeline parallelism {@code stage_peak_mb}, each stage's peak host memory in
     * the step (its process's: under the local engine every stage shares one process, and one number).
     */
    private static String logLine(int it, double total, double fin, double[] exitLoss, double[] exitW, double lr, double norm,
                                  double tps, double elapsed, double eta, double stepMs, double syncMs, int fills, double[] fillLosses,
                                  long[] stagePeaks) {
        var sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "{\"iter\":%d,\"loss\":%.6f,\"final_loss\":%.6f,\"exit_losses\":[", it, total, fin));
        for (int i = 0; i < exitLoss.length; i++) sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT, "%.6f", exitLoss[i]));
        sb.append("],\"exit_weights\":[");
        for (int i = 0; i < exitW.length; i++) sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT, "%.6f", exitW[i]));
        sb.append(']');
        if (fillLosses != null) {
            sb.append(",\"fill_micro_batches\":").append(fills).append(",\"fill_exit_losses\":[");
            for (int i = 0; i < fillLosses.length; i++) {
                sb.append(i > 0 ? "," : "").append(Double.isFinite(fillLosses[i]) ? String.format(Locale.ROOT, "%.6f", fillLosses[i]) : "null");
            }
            sb.append(']');
        }
        if (stagePeaks != null) {
            sb.append(",\"stage_peak_mb\":[");
            for (int i = 0; i < stagePeaks.length; i++) sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT, "%.1f", stagePeaks[i] / 1048576.0));
            sb.append(']');
        }
        sb.append(String.format(Locale.ROOT,
                ",\"lr\":%.6g,\"grad_norm\":%.6f,\"tokens_per_s\":%.1f,\"step_ms\":%.1f,\"sync_ms\":%.1f,\"elapsed_s\":%.2f,"
                        + "\"eta_s\":%.1f}", lr, norm, tps, stepMs, syncMs, elapsed, eta));
        return sb.toString();
    }

    private String consoleLine(int it, double total, double fin, double[] exitLoss, double lr, double tps, double eta) {
        int width = 24;
        int filled = (int) ((long) width * (it + 1) / cfg.iters());
        var sb = new StringBuilder();
        sb.append('[').append("#".repeat(filled)).append(".".repeat(width - filled)).append(']');
        // Each head's loss first; the objective is their weighted sum, which reads like divergence if labelled "loss".
        sb.append(String.format(Locale.ROOT, " %d/%d final %.4f", it + 1, cfg.iters(), fin));
        List<String> ex = new ArrayList<>();
        for (int i = 0; i < exitLoss.length; i++) {
            ex.add(String.format(Locale.ROOT, "exit@%d %.3f", model.config().exits().get(i).layer(), exitLoss[i]));
        }
        if (!ex.isEmpty()) sb.append(" ").append(String.join(" ", ex)).append(String.format(Locale.ROOT, " | weighted sum %.4f", total));
        sb.append(String.format(Locale.ROOT, " | lr %.2e %.0f tok/s ETA %s", lr, tps, formatSeconds(eta)));
        return sb.toString();
    }

    static String formatSeconds(double s) {
        long t = Math.round(s);
        return t >= 3600 ? String.format("%dh%02dm", t / 3600, t % 3600 / 60) : String.format("%dm%02ds", t / 60, t % 60);
    }
}
