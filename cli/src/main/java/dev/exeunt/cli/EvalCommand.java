package dev.exeunt.cli;

import dev.exeunt.model.io.TokenDataset;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.train.Evaluator;
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
                usage: exeunt eval --model DIR --data FILE.arrow [--seq-len N (model context, max 256)] [--batch N (8)]
                                   [--batches N (all)] [--device cpu|cuda[:N]] [--force] [--json]
                  Evaluates every window of the dataset (or the first --batches batches), in order.
                  --force: use a dataset or tokenizer.json made with another tokenizer than the model's.""";
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, Set.of("json", "force"));
        boolean json = a.getBool("json", false), force = a.getBool("force", false);
        Path dir = Path.of(a.require("model", "a checkpoint directory"));
        Path data = Path.of(a.require("data", "an .arrow dataset"));
        int batch = a.getInt("batch", 8), batches = a.getInt("batches", 0);
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
                var report = Evaluator.evaluate(model, windows, windows.all(), batch, batches);
                out.print(json ? report.toJson() + "\n" : report.toTable());
            }
        }
        return 0;
    }
}
