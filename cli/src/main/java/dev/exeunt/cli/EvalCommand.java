package dev.exeunt.cli;

import dev.exeunt.model.io.TokenDataset;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.train.BatchEvaluator;
import dev.exeunt.model.train.EvalReport;
import dev.exeunt.model.train.Evaluator;
import dev.exeunt.model.util.ProgressBar;
import dev.exeunt.model.ModelLoader;
import dev.exeunt.tensor.Device;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Set;

final class EvalCommand implements Main.Command {
    public String summary() {
        return "validation loss and perplexity per exit and the final head, and top-1 agreement with the final head";
    }

    public String usage() {
        return """
                usage: exeunt eval --model DIR --data FILE.arrow [--split validation|all (validation)] [--val-fraction X (0.05)]
                                   [--seq-len N (model context, max 256)] [--batch N (8)] [--batches N (all)]
                                   [--device cpu|cuda[:N]] [--force] [--json]
                  Evaluates the held-out windows: the last --val-fraction of the dataset, which train (with the same
                  --val-fraction) never trains on; --split all evaluates every window. --batches stops after that many
                  batches. Progress goes to stderr.
                  --force: use a dataset or tokenizer.json made with another tokenizer than the model's.""";
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, Set.of("json", "force"));
        boolean json = a.getBool("json", false), force = a.getBool("force", false);
        Path dir = Path.of(a.require("model", "a checkpoint directory"));
        Path data = Path.of(a.require("data", "an .arrow dataset"));
        int batch = a.getInt("batch", 8), batches = a.getInt("batches", 0);
        String split = a.get("split", "validation");
        if (!split.equals("validation") && !split.equals("all")) throw new Args.UsageException("--split must be validation or all, got " + split);
        double valFraction = a.getDouble("val-fraction", dev.exeunt.model.train.TrainConfig.defaults().valFraction());
        if (!(valFraction > 0 && valFraction < 1)) throw new Args.UsageException("--val-fraction must be in (0, 1), got " + valFraction);
        Integer seqLen = a.has("seq-len") ? a.getInt("seq-len", 0) : null;
        Device device = Device.parse(a.get("device", "cpu"));
        a.checkAllUsed();
        try (var loaded = ModelLoader.load(dir, device, force)) {
            var model = loaded.model();
            int t = seqLen != null ? seqLen : Math.min(256, model.config().maxSeqLen());
            if (t > model.config().maxSeqLen()) throw new IllegalArgumentException("--seq-len " + t + " exceeds the model context " + model.config().maxSeqLen());
            // memory-mapped, not loaded: the same windows as the whole array gave, read as evaluated
            try (var tokens = TokenDataset.open(data)) {
                tokens.checkTokenizer(loaded.tokenizerHash(), "the model " + dir + " uses", force);
                int maxId = tokens.maxTokenId();
                if (maxId >= model.config().vocabSize()) {
                    throw new IOException("dataset " + data + " holds token id " + maxId + " but the model's vocabulary has "
                            + model.config().vocabSize() + " tokens: it was prepared with another tokenizer");
                }
                var windows = TokenWindows.of(tokens, t);
                int[] which = split.equals("all") ? windows.all() : windows.split(valFraction).validation();
                int total = Evaluator.batchCount(windows, which, batch, batches);
                System.err.printf(java.util.Locale.ROOT, "evaluating %d %s windows of %d tokens in %d batches of %d%n", which.length,
                        split.equals("all") ? "" : "held-out", t, total, batch);
                EvalReport report;
                try (var bar = ProgressBar.builder("eval").total(total).itemName("batches").build()) {
                    report = Evaluator.evaluate(model, windows, which, batch, batches, BatchEvaluator.WHOLE_MODEL, done -> bar.set(done));
                }
                out.print(json ? report.toJson() + "\n" : report.toTable());
            }
        }
        return 0;
    }
}
