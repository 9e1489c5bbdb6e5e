package dev.exeunt.cli;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenDataset;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.model.tokenizer.TokenizerHash;
import dev.exeunt.model.tokenizer.TokenizerMismatchException;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.model.train.TrainingOptimizer;
import dev.exeunt.model.train.TrainingState;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.DistributedOptimizer;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.pipeline.OneFOneBRunner;
import dev.exeunt.parallel.pipeline.PipelineEvaluator;
import dev.exeunt.parallel.pipeline.ProcessGroupPipelineParallel;
import dev.exeunt.tensor.Device;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;

final class TrainCommand implements Main.Command {
    public String summary() {
        return "train an early-exit model on an Arrow dataset (resumes when --out holds a checkpoint)";
    }

    public String usage() {
        return "usage: exeunt train --data FILE.arrow --out DIR [--tokenizer tokenizer.json] [--config FILE.json|yaml]\n"
                + "                   [--device cpu|cuda[:N]] [--tp T] [--dp D] [--engine local|mpi] [--force] [--json]\n"
                + "  The tokenizer defaults to tokenizer.json beside the data file. --force: train on data (or resume\n"
                + "  a checkpoint) made with another tokenizer than --tokenizer. Every data-parallel rank reads --batch/D\n"
                + "  rows of every batch (same results as one rank); world rank 0 prints, logs and saves.\n"
                + RankLayout.HELP
                + PipelineSchedule.HELP
                + ModelOptions.HELP;
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, RankLayout.withFlags(Set.of("json", "untied", "shared-exit-heads", "dynamic-token-weights", "force", "fill-bubbles", "defer-exits")));
        boolean json = a.getBool("json", false), force = a.getBool("force", false);
        Path data = Path.of(a.require("data", "an .arrow file made by 'exeunt prepare'"));
        Path outDir = Path.of(a.require("out", "the checkpoint directory"));
        Path tokPath = Path.of(a.get("tokenizer", data.toAbsolutePath().getParent().resolve("tokenizer.json").toString()));
        TrainConfig tc = ModelOptions.train(a);
        Device device = Device.parse(a.get("device", "cpu"));
        RankLayout layout = RankLayout.parse(a);
        int micro = a.getInt("micro-batch-size", 0);
        PipelineSchedule schedule = PipelineSchedule.parse(a, layout.pp());
        a.allow(ModelOptions.MODEL_KEYS);
        a.checkAllUsed();
        if (!a.positional().isEmpty()) throw new Args.UsageException("train takes no argument '" + a.positional().get(0) + "' (options start with --)");
        BpeTokenizer tokenizer = loadTokenizer(tokPath);
        var mc = ModelOptions.model(a, tokenizer.vocabSize(), tc.seqLen());
        var ran = train(mc, tc, tokenizer, data, outDir, System.err, device, force, layout, micro, schedule);
        if (ran.isEmpty()) return 0; // another process of the mpi job holds world rank 0, which reports
        var result = ran.get();
        if (json) {
            out.printf(Locale.ROOT, "{\"iterations\":%d,\"loss\":%.6f,\"tokens_per_s\":%.1f,\"eval\":%s,\"checkpoint\":%s}%n",
                    result.iterations(), result.lastLoss(), result.tokensPerSecond(),
                    result.lastEval() == null ? "null" : result.lastEval().toJson(), Json.quote(outDir.toString()));
        } else {
            out.printf(Locale.ROOT, "trained %d iterations, %.0f tokens/s; checkpoint in %s%n", result.iterations(),
                    result.tokensPerSecond(), outDir);
        }
        return 0;
    }

    static void checkBatch(TrainConfig tc, int dp) {
        if (tc.batchSize() % dp != 0) {
            throw new IllegalArgumentException("--batch " + tc.batchSize() + " is not divisible by --dp " + dp
                    + ": every data-parallel rank reads batch/dp rows of each batch");
        }
    }

    static BpeTokenizer loadTokenizer(Path p) throws IOException {
        if (!Files.exists(p)) throw new IOException("tokenizer " + p + " not found (give --tokenizer)");
        Tokenizer t = HfTokenizerJson.load(p);
        if (!(t instanceof BpeTokenizer b)) throw new IOException("tokenizer " + p + " is not a BPE tokenizer");
        return b;
    }

    /** Trains (or resumes, when outDir holds a training checkpoint) on one rank and returns the result. */
    static Trainer.Result train(ModelConfig mc, TrainConfig tc, BpeTokenizer tokenizer, Path data, Path outDir, PrintStream console)
            throws Exception {
        return train(mc, tc, tokenizer, data, outDir, console, Device.CPU, false, new RankLayout(RankLayout.Engine.LOCAL, 1, 1))
                .orElseThrow();
    }

    /**
     * Trains on every rank of {@code layout}; world rank 0's result, empty in the other processes of an mpi job.
     * {@code force}: accept data, or a checkpoint to resume, made with another tokenizer than {@code tokenizer}.
     */
    static Optional<Trainer.Result> train(ModelConfig mc, TrainConfig tc, BpeTokenizer tokenizer, Path data, Path outDir,
                                          PrintStream console, Device device, boolean force, RankLayout layout) throws Exception {
        return train(mc, tc, tokenizer, data, outDir, console, device, force, layout, 0, PipelineSchedule.DEFAULT);
    }

    /** {@code micro}: Megatron's {@code --micro-batch-size} (0: --batch is the micro-batch), see {@link ModelOptions#withMicroBatches}. */
    static Optional<Trainer.Result> train(ModelConfig mc, TrainConfig tc, BpeTokenizer tokenizer, Path data, Path outDir,
                                          PrintStream console, Device device, boolean force, RankLayout layout, int micro,
                                          PipelineSchedule schedule) throws Exception {
        String tokenizerHash = TokenizerHash.of(tokenizer);
        // memory-mapped, not loaded: the data may be larger than the heap; each step reads its windows
        try (var tokens = TokenDataset.open(data)) {
            tokens.checkTokenizer(tokenizerHash, "the tokenizer given to train uses", force);
            int maxId = tokens.maxTokenId();
            if (maxId >= tokenizer.vocabSize()) {
                throw new IOException("dataset " + data + " holds token id " + maxId + " but the tokenizer has only "
                        + tokenizer.vocabSize() + " tokens: the data was prepared with a different tokenizer");
            }
            var windows = TokenWindows.of(tokens, tc.seqLen());
            var config = mc.withSpecialTokens(tokenizer.bosId().orElse(-1), tokenizer.eosId().orElse(-1));
            return RankLauncher.run(layout, config, dp -> checkBatch(ModelOptions.withMicroBatches(tc, micro, dp), dp), console, state -> {
                TrainConfig rankTc = ModelOptions.withMicroBatches(tc, micro, state.dpSize());
                boolean resume = prepareOutput(state, outDir, console);
                ModelConfig resumed = resume ? checkResumable(config, outDir, tokenizerHash, force) : config;
                return trainRank(resumed, rankTc, tokenizer, windows, tokens, outDir, console, device, resume, state, layout, schedule);
            });
        }
    }

    /**
     * World rank 0 finishes or undoes an interrupted save in {@code outDir} while the others wait (they only
     * read it, later); then every rank says whether a training checkpoint is there to resume.
     */
    private static boolean prepareOutput(ParallelState state, Path outDir, PrintStream console) throws IOException {
        if (state.worldRank() == 0) Trainer.recoverOutput(outDir, console);
        state.world().barrier();
        return TrainingState.exists(outDir);
    }

    /** The config to resume with, after refusing a checkpoint of another model or (without --force) tokenizer. */
    private static ModelConfig checkResumable(ModelConfig mc, Path outDir, String tokenizerHash, boolean force) throws IOException {
        var saved = ConfigJson.read(outDir.resolve(ModelCheckpoint.CONFIG));
        if (TokenizerMismatchException.check("checkpoint in " + outDir + " was trained with tokenizer %s but the tokenizer given "
                + "to train now is %s", ConfigJson.readTokenizerHash(outDir.resolve(ModelCheckpoint.CONFIG)), tokenizerHash, force)) {
            System.err.println("warning: --force: resuming " + outDir + " with another tokenizer than it was trained with");
        }
        if (!saved.equals(mc.withSpecialTokens(saved.bosId(), saved.eosId()).withCarriedKeys(saved.carriedKeys()))) {
            throw new IOException("checkpoint in " + outDir + " was trained with a different model config; "
                    + "use a new --out or the same options");
        }
        return mc.withCarriedKeys(saved.carriedKeys()); // the saved config.json's harmless keys survive the resume
    }

    /**
     * The one place a rank's model is built. Every rank builds its own replica from the seed (initialisation
     * depends only on it), so all data-parallel replicas start equal.
     */
    static EarlyExitModel buildModel(ModelConfig c, Device d, long seed, ParallelState s, RankLayout layout) {
        if (layout.sequenceParallel() && c.maxSeqLen() % s.tpSize() != 0) {
            throw new IllegalArgumentException("--sequence-parallel: --seq-len " + c.maxSeqLen() + " is not divisible by --tp " + s.tpSize());
        }
        var tp = ProcessGroupTensorParallel.of(s, layout.sequenceParallel());
        if (s.ppSize() == 1) return EarlyExitModel.create(c, d, seed, tp);
        return EarlyExitModel.createStage(c, d, seed, tp, ProcessGroupPipelineParallel.of(s), layout.pipelineStage(c.nLayers(), s.ppRank()));
    }

    /** One rank's training: its replica, a gradient sync over its dp group; world rank 0 prints, logs and saves. */
    private static Trainer.Result trainRank(ModelConfig config, TrainConfig tc, BpeTokenizer tokenizer, TokenWindows windows,
                                            TokenDataset tokens, Path outDir, PrintStream console, Device device, boolean resume,
                                            ParallelState state, RankLayout layout, PipelineSchedule schedule) throws IOException {
        boolean reports = state.worldRank() == 0;
        if (!reports) console = null;
        try (var sync = new DataParallelGradientSync(state.dpGroup(), DataParallelGradientSync.DEFAULT_BUCKET_BYTES, reports);
             var model = buildModel(config, device, tc.seed(), state, layout);
             var pipeline = state.ppSize() > 1 ? new OneFOneBRunner(model, (ProcessGroupPipelineParallel) model.parameters().pipeline()) : null;
             var trainer = new Trainer(model, tokenizer, windows, tc, outDir, console, sync,
                     layout.distributedOptimizer() ? DistributedOptimizer.over(state.dpGroup()) : TrainingOptimizer.REPLICATED)) {
            if (pipeline != null) {
                schedule.apply(pipeline, model, tc.iters() - 1);
                var stages = (ProcessGroupPipelineParallel) model.parameters().pipeline();
                trainer.runMicroBatchesWith(pipeline).validateWith(new PipelineEvaluator(stages));
                if (console != null) {
                    console.printf("pipeline: %d stages, 1F1B over %d micro-batches per step%s%n", state.ppSize(), tc.gradAccum(),
                            schedule.describe(pipeline));
                }
            }
            if (console != null && state.dpSize() > 1) console.println(trainer.optimizerMemory());
            if (console != null) {
                console.printf(Locale.ROOT, "%s%ndata: %,d tokens, %d training windows of %d, %d validation%n", model, tokens.tokenCount(),
                        trainer.split().train().length, tc.seqLen(), trainer.split().validation().length);
            }
            if (resume) {
                trainer.resumeFrom(outDir);
                if (console != null) console.println("resuming from " + outDir + " at iteration " + trainer.startIteration());
            }
            return trainer.train();
        }
    }
}
