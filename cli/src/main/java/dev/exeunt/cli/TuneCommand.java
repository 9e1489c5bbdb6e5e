package dev.exeunt.cli;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.io.TokenDataset;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.PipelineStage;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.tune.ExitTuner;
import dev.exeunt.model.tune.TuningStages;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.ProcessGroupTensorParallel;
import dev.exeunt.parallel.pipeline.ProcessGroupPipelineParallel;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

final class TuneCommand implements Main.Command {
    public String summary() {
        return "EE-Tuning: add early exits to a model you have and train only them (backbone frozen)";
    }

    public String usage() {
        return """
                usage: exeunt tune --model DIR --data FILE.arrow --exits 8,16 --out DIR [--exit-kind embedding|norm|mlp|layer (norm)]
                                   [--init copy|random (copy)] [--exit-placement pre|post] [--exit-weight W] [--exit-temperature T]
                                   [--dynamic-token-weights] [--seq-len N] [--batch N] [--grad-accum N] [--iters N] [--lr X]
                                   [--min-lr X] [--warmup N] [--seed N] [--tp T] [--dp D] [--pp P] [--pipeline-layers L,L,..]
                                   [--engine local|mpi]
                                   [--sequence-parallel] [--force] [--json]
                  DIR is a Hugging Face layout model (config.json, *.safetensors, tokenizer.json) without exits;
                  the data must be prepared with that model's tokenizer. Only the layers up to the deepest exit
                  are loaded. The output is the same checkpoint with the exits added (backbone tensors copied
                  byte for byte), ready for generate, sweep, serve and eval. --force: tune on data (or with a tokenizer.json)
                  made with another tokenizer than the model's. Layouts as for train (each data-parallel rank reads
                  --batch/D rows of every batch; world rank 0 logs and writes). Under --pp the frozen activations
                  flow down the stages and each stage trains its own exits; the stages past the one holding the
                  last exit are not started (under mpirun their processes say so and wait for the others):
                """ + RankLayout.HELP;
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, RankLayout.withFlags(Set.of("json", "dynamic-token-weights", "force")));
        boolean json = a.getBool("json", false);
        Path model = Path.of(a.require("model", "the pretrained model directory"));
        Path data = Path.of(a.require("data", "an .arrow dataset made with the model's tokenizer"));
        Path outDir = Path.of(a.require("out", "where to write the early-exit checkpoint"));
        int[] layers = a.getInts("exits", null);
        if (layers == null || layers.length == 0) throw new Args.UsageException("give --exits with at least one layer");
        ExitKind kind = ExitKind.parse(a.get("exit-kind", "norm"));
        var init = ExitTuner.Init.valueOf(a.get("init", "copy").toUpperCase(Locale.ROOT));
        var placement = ExitConfig.Placement.valueOf(a.get("exit-placement", "post").toUpperCase(Locale.ROOT));
        double w = a.getDouble("exit-weight", 1.0), temp = a.getDouble("exit-temperature", 1.0);
        boolean dynamic = a.getBool("dynamic-token-weights", false), force = a.getBool("force", false);
        var tc = ModelOptions.train(a);
        RankLayout layout = RankLayout.parse(a);
        if (layout.distributedOptimizer()) {
            throw new Args.UsageException("--distributed-optimizer is for train: tune's optimizer state is its exits' alone, kept on every rank");
        }
        a.checkAllUsed();
        List<ExitConfig> exits = new ArrayList<>();
        for (int l : layers) exits.add(new ExitConfig(l, placement, kind, false, WeightSchedule.constant(w), temp));
        String modelTokenizer = ModelCheckpoint.tokenizerHash(model, force);
        // memory-mapped, not loaded: only the windows tuning reads are touched
        try (var tokens = TokenDataset.open(data)) {
            tokens.checkTokenizer(modelTokenizer, "the model " + model + " uses", force);
            ModelConfig base = ConfigJson.read(model.resolve(ModelCheckpoint.CONFIG));
            base.withExits(exits); // refuses an exit past the model's layers before any rank starts
            List<PipelineStage> stages = new ArrayList<>();
            for (int s = 0; s < layout.pp(); s++) stages.add(layout.pipelineStage(base.nLayers(), s));
            int running = TuningStages.running(exits, stages); // the stages past the last exit are not started
            var ran = RankLauncher.run(layout, running, base, dp -> TrainCommand.checkBatch(tc, dp), System.err,
                    state -> tuneRank(model, exits, init, dynamic, tc, tokens, outDir, state, layout));
            if (ran.isPresent()) report(ran.get(), outDir, layers, json, out);
        }
        return 0;
    }

    /** One rank's tuning; world rank 0 recovers --out first, prints progress and writes the checkpoint. */
    private static ExitTuner.Result tuneRank(Path model, List<ExitConfig> exits, ExitTuner.Init init, boolean dynamic, TrainConfig tc,
                                             TokenDataset tokens, Path outDir, ParallelState state, RankLayout layout)
            throws IOException {
        boolean reports = state.worldRank() == 0;
        // Before reading anything: --out may be --model, and an interrupted save leaves it under <out>.saving or <out>.old.
        if (reports) ExitTuner.recoverOutput(outDir).actions().forEach(x -> System.err.println(outDir + ": " + x));
        state.world().barrier();
        var tp = ProcessGroupTensorParallel.of(state, layout.sequenceParallel());
        var stage = layout.pipelineStage(ConfigJson.read(model.resolve(ModelCheckpoint.CONFIG)).nLayers(), state.ppRank());
        try (var sync = new DataParallelGradientSync(state.dpGroup(), DataParallelGradientSync.DEFAULT_BUCKET_BYTES, reports);
             var tuner = new ExitTuner(model, exits, init, dynamic, tc.seed(), tc, tp, ProcessGroupPipelineParallel.of(state), stage, sync)) {
            int vocab = tuner.model().config().vocabSize();
            int maxId = tokens.maxTokenId();
            if (maxId >= vocab) throw new IOException("dataset holds token id " + maxId + " but the model's vocabulary has " + vocab
                    + " tokens: prepare the data with the model's tokenizer.json");
            PrintStream console = reports ? System.err : null; // progress on stderr; stdout stays clean for --json
            if (console != null) {
                console.printf(Locale.ROOT, "tuning %d exit(s) on %s: loaded %d of %d layers, %,d trainable parameters%s%n",
                        exits.size(), model, tuner.loadedLayers(), tuner.model().config().nLayers(),
                        tuner.model().parameters().trainable().values().stream().mapToLong(t -> t.numel()).sum(),
                        tp.size() > 1 || state.ppSize() > 1 ? " on this rank" : "");
            }
            var result = tuner.tune(TokenWindows.of(tokens, tc.seqLen()), tc, outDir, console);
            tuner.save(outDir);
            return result;
        }
    }

    private static void report(ExitTuner.Result result, Path outDir, int[] layers, boolean json, PrintStream out) {
        if (json) {
            out.printf(Locale.ROOT, "{\"iterations\":%d,\"tokens_per_s\":%.1f,\"eval\":%s,\"checkpoint\":%s}%n", result.iterations(),
                    result.tokensPerSecond(), result.lastEval() == null ? "null" : result.lastEval().toJson(),
                    Json.quote(outDir.toString()));
            return;
        }
        if (result.lastEval() != null) {
            for (int i = 0; i < layers.length; i++) {
                out.printf(Locale.ROOT, "exit@%d validation loss %.4f (perplexity %.2f)%n", result.lastEval().exitLayers()[i],
                        result.lastEval().exitLoss()[i], result.lastEval().exitPerplexity(i));
            }
        }
        out.printf(Locale.ROOT, "tuned %d iterations at %.0f tokens/s; early-exit checkpoint in %s%n", result.iterations(),
                result.tokensPerSecond(), outDir);
    }
}
