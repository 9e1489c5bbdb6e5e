package dev.exeunt.model.tune;

import dev.exeunt.model.checkpoint.CheckpointLayout;
import dev.exeunt.model.checkpoint.CheckpointStore;
import dev.exeunt.model.checkpoint.CrashPoints;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.EvalReport;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TensorParallelGradients;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.optim.AdamW;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * EE-Tuning (EARLY-EXIT.md section 4): adds exits to a pretrained model and trains only them. The
 * backbone is loaded up to the deepest exit only, frozen, and run without a backward graph; each
 * exit's loss trains that exit alone. The result is the original checkpoint with the backbone tensors
 * copied byte for byte and the exits added, in the same Hugging Face layout. The log and the
 * checkpoint are written into a staging directory that {@link CheckpointStore} publishes, so a crash
 * leaves either the previous contents of the output directory or the whole new checkpoint.
 *
 * <p>Under pipeline parallelism each stage holds its layers up to the deepest exit and the exits it owns;
 * the frozen forward flows down the stages ({@link FrozenBackbone}) and nothing flows back, so each
 * stage trains its exits on its own, the losses and the clipping norm summed over the stages.
 */
public final class ExitTuner implements AutoCloseable {
    /** How exits start: copies of the final norm/head (and the layer's MLP or the last layer), or random. */
    public enum Init { COPY, RANDOM }

    public record Result(int iterations, double[] exitLoss, EvalReport lastEval, double tokensPerSecond) {}

    /** One JSON line per tuning iteration; it becomes part of the checkpoint when {@link #save} publishes it. */
    public static final String LOG = "tune_log.jsonl";

    private final Path source;
    private final ModelConfig config;
    private final EarlyExitModel model;
    private final int depth;
    private final FrozenBackbone backbone;
    /** Null on a stage that holds no exit. */
    private final AdamW optimizer;
    private final GradientSync sync;
    /** Whether this rank logs and writes (data- and tensor-parallel rank 0 of pipeline stage 0). */
    private final boolean writes;
    /** The staging directory {@link #tune} logged into, which {@link #save} completes; null before tuning. */
    private Path staged;
    private int tunedIterations;

    /**
     * Loads the backbone prefix of the checkpoint in {@code source} and attaches {@code exits}.
     * The source must have no exits of its own.
     */
    public ExitTuner(Path source, List<ExitConfig> exits, Init init, boolean dynamicTokenWeights, long seed, TrainConfig tc)
            throws IOException {
        this(source, exits, init, dynamicTokenWeights, seed, tc, TensorParallel.NONE, GradientSync.SINGLE);
    }

    /**
     * One rank of tuning under a parallel layout: the backbone prefix and the exits sharded by {@code tp}
     * (loaded from the whole checkpoint by slicing), each data-parallel rank of {@code sync} reading its
     * rows of every batch; the exits' gradients are averaged over dp before the update. Every rank
     * calls {@link #tune} and {@link #save}; rank 0 logs and writes.
     */
    public ExitTuner(Path source, List<ExitConfig> exits, Init init, boolean dynamicTokenWeights, long seed, TrainConfig tc,
                     TensorParallel tp, GradientSync sync) throws IOException {
        this(source, exits, init, dynamicTokenWeights, seed, tc, tp, PipelineParallel.NONE, PipelineStage.whole(readBase(source).nLayers()), sync);
    }

    /**
     * One rank of pipeline stage {@code stage} (of the split over {@code stage.count()} stages) under
     * tp x dp x pp: it loads only its layers up to the deepest exit's input and its exits. {@code pp} is the
     * group of the stages that run, those up to the last one holding an exit ({@link TuningStages#running});
     * a stage with no exit only forwards the frozen activations and holds no optimizer. Stage 0 logs and
     * writes the checkpoint as the other stages stream their exits to it.
     */
    public ExitTuner(Path source, List<ExitConfig> exits, Init init, boolean dynamicTokenWeights, long seed, TrainConfig tc,
                     TensorParallel tp, PipelineParallel pp, PipelineStage stage, GradientSync sync) throws IOException {
        this.source = source;
        this.sync = sync;
        this.writes = sync.logs() && tp.rank() == 0 && pp.stage() == 0;
        ModelConfig base = readBase(source);
        if (!base.exits().isEmpty()) {
            throw new IllegalArgumentException(source + " already has exits at layers "
                    + base.exits().stream().map(e -> String.valueOf(e.layer())).toList() + "; tune a model without exits");
        }
        if (exits.isEmpty()) throw new IllegalArgumentException("give at least one exit layer to tune");
        this.config = base.withExits(exits).withDynamicTokenWeights(dynamicTokenWeights);
        this.depth = TuningStages.depth(config.exits());
        checkStage(stage, pp);
        try (SafetensorsCheckpoint ckpt = SafetensorsCheckpoint.open(source)) {
            CheckpointLayout.check(base, ckpt); // the whole backbone agrees with config.json before anything is allocated
            this.model = EarlyExitModel.allocateTuningStage(config, Device.CPU, depth, tp, pp, stage, init == Init.RANDOM ? seed : null);
            try {
                loadBackbone(ckpt);
                if (init == Init.COPY) ExitCopyInit.apply(model, ckpt);
            } catch (IOException | RuntimeException e) {
                model.close();
                throw e;
            }
        }
        for (var e : model.parameters().all().entrySet()) e.getValue().requiresGrad(e.getKey().startsWith("exits."));
        this.backbone = new FrozenBackbone(model);
        // A stage without exits has nothing to train: no optimizer (an empty one is what crashes the reference system).
        this.optimizer = model.exits().isEmpty() ? null
                : new AdamW(new AdamW.Settings((float) tc.beta1(), (float) tc.beta2(), 1e-8f, (float) tc.weightDecay()));
    }

    private static ModelConfig readBase(Path source) throws IOException {
        return ConfigJson.read(source.resolve(ModelCheckpoint.CONFIG));
    }

    /**
     * Refuses a stage past the last exit's stage (it is not to be started), and a pipeline group other than
     * the running stages': stage s on its rank s, the group ending at the last stage holding an exit.
     */
    private void checkStage(PipelineStage stage, PipelineParallel pp) {
        boolean holdsExit = config.exits().stream().anyMatch(stage::owns);
        boolean laterHoldsExit = config.exits().stream().anyMatch(e -> e.layer() - 1 >= stage.endLayer());
        if (!holdsExit && !laterHoldsExit) {
            throw new IllegalArgumentException(stage + " lies past the last exit (layer " + config.exits().stream()
                    .mapToInt(ExitConfig::layer).max().orElse(0) + "): tune does not start the stages past it");
        }
        boolean groupFits = pp.stage() == stage.index() && (laterHoldsExit ? pp.stages() > stage.index() + 1 : pp.stages() == stage.index() + 1);
        if (!groupFits) {
            throw new IllegalArgumentException(stage + " built on pipeline rank " + pp.stage() + " of " + pp.stages()
                    + "; tune's pipeline group holds the stages up to the last one with an exit");
        }
    }

    public EarlyExitModel model() {
        return model;
    }

    /** Layers of the backbone loaded, over every stage (the rest are never read). */
    public int loadedLayers() {
        return depth;
    }

    private void loadBackbone(SafetensorsCheckpoint ckpt) throws IOException {
        List<String> missing = new ArrayList<>();
        for (String name : model.parameters().all().keySet()) {
            if (!name.startsWith("exits.") && CheckpointLayout.resolve(ckpt, name) == null) missing.add(name);
        }
        if (!missing.isEmpty()) {
            throw new dev.exeunt.model.io.CheckpointFormatException(ckpt.location(), "checkpoint lacks " + String.join(", ", missing));
        }
        for (String name : model.parameters().all().keySet()) {
            if (name.startsWith("exits.")) continue;
            try (Tensor t = TensorFiles.load(ckpt, CheckpointLayout.resolve(ckpt, name), Device.CPU)) {
                ModelCheckpoint.loadShard(model.parameters(), name, t);
            }
        }
    }

    private static CheckpointStore store(Path outDir) {
        return new CheckpointStore(outDir, Set.of(LOG));
    }

    /** Finishes or undoes an interrupted save in {@code outDir} (tuning never resumes: it restarts). */
    public static CheckpointStore.Recovery recoverOutput(Path outDir) throws IOException {
        return store(outDir).recover();
    }

    /**
     * Tunes for {@code tc.iters()} iterations; logs like training (console, and {@value #LOG} in the
     * staging directory of {@code outDir}, published with the checkpoint by {@link #save}).
     */
    public Result tune(TokenWindows windows, TrainConfig tc, Path outDir, PrintStream console) throws IOException {
        if (tc.batchSize() % sync.ranks() != 0) {
            throw new IllegalArgumentException("batch size " + tc.batchSize() + " is not divisible by the " + sync.ranks() + " data-parallel ranks");
        }
        staged = writes ? store(outDir).beginStaging() : null;
        var split = tc.valFraction() > 0 ? windows.split(tc.valFraction()) : new TokenWindows.Split(windows.all(), new int[0]);
        var batches = windows.batches(split.train(), tc.batchSize(), tc.seed(), true, true);
        Map<String, Tensor> trainable = model.parameters().trainable();
        int n = config.exits().size();
        double[] last = new double[n];
        long t0 = System.nanoTime();
        long tokensPerIter = (long) tc.batchSize() * tc.gradAccum() * tc.seqLen();
        EvalReport eval = null;
        Path log = writes ? staged.resolve(LOG) : null;
        if (!writes) console = null;
        dev.exeunt.model.util.LogCadence cadence = dev.exeunt.model.util.LogCadence.of(tc.logEvery());
        for (int it = 0; it < tc.iters(); it++) {
            model.parameters().zeroGrads();
            double[] losses = new double[n], weights = new double[n];
            for (int i = 0; i < n; i++) weights[i] = config.exits().get(i).weight().at(it);
            for (int micro = 0; micro < tc.gradAccum(); micro++) {
                var b = batches.next(sync.rank(), sync.ranks());
                try (var s = Scope.open()) {
                    Tensor ids = Tensor.ofInts(b.inputs(), b.size(), tc.seqLen());
                    Tensor tgt = Tensor.ofInts(b.targets(), b.size(), tc.seqLen());
                    Tensor[][] in = backbone.exitInputs(ids);
                    for (int k = 0; k < model.exits().size(); k++) {
                        Exit e = model.exits().get(k);
                        try (var inner = Scope.open()) {
                            Tensor l = model.exitLoss(e, in[k], tgt, null, true);
                            losses[e.index()] += l.item() / tc.gradAccum();
                            l.scale((float) (weights[e.index()] / tc.gradAccum())).backward();
                        }
                    }
                }
            }
            sync.averageScalars(losses);
            model.parameters().pipeline().sumOverStages(losses); // each exit's loss is on its stage alone; before the check, so every rank stops alike
            for (double l : losses) {
                if (!Double.isFinite(l)) {
                    throw new dev.exeunt.model.train.TrainingDivergedException("exit loss became " + l + " at iteration " + it
                            + "; nothing was saved. Try a lower learning rate.");
                }
            }
            TensorParallelGradients.reducePartial(model.parameters(), trainable);
            sync.reduceGradients(trainable);
            TensorParallelGradients.clip(model.parameters(), trainable, tc.gradClip()); // the norm over every stage's exits
            double lr = tc.lrAt(it);
            if (optimizer != null) optimizer.step(trainable, (float) lr);
            last = losses;
            double elapsed = (System.nanoTime() - t0) / 1e9;
            double tps = tokensPerIter * (it + 1) / elapsed;
            if (writes) {
                Files.writeString(log, TuneLog.jsonLine(it, losses, weights, lr, tps, elapsed), StandardCharsets.UTF_8,
                        StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            }
            if (console != null && cadence.due(it, tc.iters())) {
                console.println(TuneLog.consoleLine(it, tc.iters(), config.exits(), losses, lr, tps, elapsed));
            }
        }
        tunedIterations = tc.iters();
        if (split.validation().length > 0) eval = evaluate(windows, split.validation(), tc.batchSize(), tc.evalBatches());
        double secs = (System.nanoTime() - t0) / 1e9;
        return new Result(tc.iters(), last, eval, tokensPerIter * tc.iters() / secs);
    }

    /** Validation loss per exit (the final head is not loaded while tuning; its loss is reported as NaN). */
    public EvalReport evaluate(TokenWindows windows, int[] indices, int batchSize, int maxBatches) {
        int n = config.exits().size();
        double[] sum = new double[n];
        long tokens = 0;
        var batches = windows.batches(indices, batchSize, 0, false, false);
        int count = Math.min(maxBatches <= 0 ? Integer.MAX_VALUE : maxBatches, batches.batchesPerEpoch());
        for (int b = 0; b < count; b++) {
            var batch = batches.next();
            try (var s = Scope.open(); var g = GradMode.noGrad()) {
                Tensor ids = Tensor.ofInts(batch.inputs(), batch.size(), windows.seqLen());
                Tensor tgt = Tensor.ofInts(batch.targets(), batch.size(), windows.seqLen());
                Tensor[][] in = backbone.exitInputs(ids);
                for (int k = 0; k < model.exits().size(); k++) {
                    sum[model.exits().get(k).index()] += model.exitLoss(model.exits().get(k), in[k], tgt, null, false).item() * tgt.numel();
                }
                tokens += tgt.numel();
            }
        }
        model.parameters().pipeline().sumOverStages(sum); // each exit's sum is on its stage alone
        double[] loss = new double[n];
        for (int i = 0; i < n; i++) loss[i] = sum[i] / tokens;
        int[] layers = config.exits().stream().mapToInt(ExitConfig::layer).toArray();
        double[] agreement = new double[n];
        java.util.Arrays.fill(agreement, Double.NaN); // the final head is not loaded while tuning
        return new EvalReport(layers, Double.NaN, loss, agreement, tokens);
    }

    /**
     * Publishes the early-exit checkpoint to {@code outDir}: every tensor of the source copied byte for
     * byte (same dtype), the exit tensors added ({@link TunedWeights}), config.json with the exits, the
     * source's tokenizer.json and its other Hugging Face files ({@link ModelCheckpoint#COMPANIONS}), and
     * the tuning log. Every rank calls it.
     */
    public void save(Path outDir) throws IOException {
        if (sync.rank() != 0) return; // a data-parallel replica has nothing to add
        if (!writes) { // another tensor-parallel rank or pipeline stage: contributes its exits
            TunedWeights.save(model.parameters(), source, null);
            return;
        }
        CheckpointStore store = store(outDir);
        Path dir = staged != null && staged.equals(store.staging()) && Files.isDirectory(staged) ? staged : store.beginStaging();
        staged = null;
        TunedWeights.save(model.parameters(), source, dir.resolve(ModelCheckpoint.WEIGHTS));
        CrashPoints.reach(CrashPoints.STAGING_PARTIAL);
        Path tok = source.resolve(ModelCheckpoint.TOKENIZER);
        if (Files.exists(tok)) Files.copy(tok, dir.resolve(ModelCheckpoint.TOKENIZER));
        for (String f : ModelCheckpoint.COMPANIONS) {
            if (Files.isRegularFile(source.resolve(f))) Files.copy(source.resolve(f), dir.resolve(f));
        }
        // the command checked the source's tokenizer already (and may have been told --force)
        ConfigJson.write(config, ModelCheckpoint.tokenizerHash(source, true), dir.resolve(ModelCheckpoint.CONFIG));
        store.publish(tunedIterations);
    }

    @Override
    public void close() {
        if (optimizer != null) optimizer.close();
        model.close();
    }
}
