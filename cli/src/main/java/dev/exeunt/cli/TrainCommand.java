package dev.exeunt.cli;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ConfigJson;
import dev.exeunt.model.io.TokenDataset;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.model.tokenizer.TokenizerHash;
import dev.exeunt.model.tokenizer.TokenizerMismatchException;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.model.train.Trainer;
import dev.exeunt.parallel.DataParallelGradientSync;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Set;

final class TrainCommand implements Main.Command {
    public String summary() {
        return "train an early-exit model on an Arrow dataset (resumes when --out holds a checkpoint)";
    }

    public String usage() {
        return "usage: exeunt train --data FILE.arrow --out DIR [--tokenizer tokenizer.json] [--config FILE.json|yaml]\n"
                + "                   [--device cpu|cuda[:N]] [--dp D] [--force] [--json]\n"
                + "  The tokenizer defaults to tokenizer.json beside the data file. --force: train on data (or resume\n"
                + "  a checkpoint) made with another tokenizer than --tokenizer. --dp D: D data-parallel ranks as\n"
                + "  threads of this process, each reading --batch/D rows of every batch (same results as --dp 1).\n"
                + ModelOptions.HELP;
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, Set.of("json", "untied", "shared-exit-heads", "dynamic-token-weights", "force"));
        boolean json = a.getBool("json", false), force = a.getBool("force", false);
        Path data = Path.of(a.require("data", "an .arrow file made by 'exeunt prepare'"));
        Path outDir = Path.of(a.require("out", "the checkpoint directory"));
        Path tokPath = Path.of(a.get("tokenizer", data.toAbsolutePath().getParent().resolve("tokenizer.json").toString()));
        TrainConfig tc = ModelOptions.train(a);
        Device device = Device.parse(a.get("device", "cpu"));
        int dp = a.getInt("dp", 1);
        if (dp < 1) throw new IllegalArgumentException("--dp must be >= 1, got " + dp);
        if (tc.batchSize() % dp != 0) {
            throw new IllegalArgumentException("--batch " + tc.batchSize() + " is not divisible by --dp " + dp
                    + ": every data-parallel rank reads batch/dp rows of each batch");
        }
        a.allow(ModelOptions.MODEL_KEYS);
        a.checkAllUsed();
        BpeTokenizer tokenizer = loadTokenizer(tokPath);
        var mc = ModelOptions.model(a, tokenizer.vocabSize(), tc.seqLen());
        var result = train(mc, tc, tokenizer, data, outDir, System.err, device, force, dp);
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

    static BpeTokenizer loadTokenizer(Path p) throws IOException {
        if (!Files.exists(p)) throw new IOException("tokenizer " + p + " not found (give --tokenizer)");
        Tokenizer t = HfTokenizerJson.load(p);
        if (!(t instanceof BpeTokenizer b)) throw new IOException("tokenizer " + p + " is not a BPE tokenizer");
        return b;
    }

    /** Trains (or resumes, when outDir holds a training checkpoint) and returns the result. */
    static Trainer.Result train(dev.exeunt.model.config.ModelConfig mc, TrainConfig tc, BpeTokenizer tokenizer, Path data,
                                Path outDir, PrintStream console) throws IOException {
        return train(mc, tc, tokenizer, data, outDir, console, Device.CPU, false);
    }

    /** {@code force}: accept data, or a checkpoint to resume, made with another tokenizer than {@code tokenizer}. */
    static Trainer.Result train(dev.exeunt.model.config.ModelConfig mc, TrainConfig tc, BpeTokenizer tokenizer, Path data,
                                Path outDir, PrintStream console, Device device, boolean force) throws IOException {
        return train(mc, tc, tokenizer, data, outDir, console, device, force, 1);
    }

    /** {@code dp}: data-parallel ranks, run as threads of this JVM over the local engine. */
    static Trainer.Result train(dev.exeunt.model.config.ModelConfig mc, TrainConfig tc, BpeTokenizer tokenizer, Path data,
                                Path outDir, PrintStream console, Device device, boolean force, int dp) throws IOException {
        String tokenizerHash = TokenizerHash.of(tokenizer);
        // memory-mapped, not loaded: the data may be larger than the heap; each step reads its windows
        try (var tokens = TokenDataset.open(data)) {
            tokens.checkTokenizer(tokenizerHash, "the tokenizer given to train uses", force);
            return train(mc, tc, tokenizer, tokenizerHash, data, tokens, outDir, console, device, force, dp);
        }
    }

    private static Trainer.Result train(dev.exeunt.model.config.ModelConfig mc, TrainConfig tc, BpeTokenizer tokenizer, String tokenizerHash,
                                        Path data, TokenDataset tokens, Path outDir, PrintStream console, Device device, boolean force,
                                        int dp) throws IOException {
        int maxId = tokens.maxTokenId();
        if (maxId >= tokenizer.vocabSize()) {
            throw new IOException("dataset " + data + " holds token id " + maxId + " but the tokenizer has only "
                    + tokenizer.vocabSize() + " tokens: the data was prepared with a different tokenizer");
        }
        // Recovery first: an interrupted save may have left the newest checkpoint in <out>.saving or <out>.old.
        boolean resume = Trainer.recoverOutput(outDir, console);
        if (resume) {
            var saved = ConfigJson.read(outDir.resolve(ModelCheckpoint.CONFIG));
            if (TokenizerMismatchException.check("checkpoint in " + outDir + " was trained with tokenizer %s but the tokenizer given "
                    + "to train now is %s", ConfigJson.readTokenizerHash(outDir.resolve(ModelCheckpoint.CONFIG)), tokenizerHash, force)) {
                System.err.println("warning: --force: resuming " + outDir + " with another tokenizer than it was trained with");
            }
            if (!saved.equals(mc.withSpecialTokens(saved.bosId(), saved.eosId()).withCarriedKeys(saved.carriedKeys()))) {
                throw new IOException("checkpoint in " + outDir + " was trained with a different model config; "
                        + "use a new --out or the same options");
            }
            mc = mc.withCarriedKeys(saved.carriedKeys()); // the saved config.json's harmless keys survive the resume
        }
        var windows = TokenWindows.of(tokens, tc.seqLen());
        var eos = tokenizer.eosId();
        var config = mc.withSpecialTokens(tokenizer.bosId().orElse(-1), eos.orElse(-1));
        if (dp == 1) return trainRank(config, tc, tokenizer, windows, tokens, outDir, console, device, resume, GradientSync.SINGLE);
        // Every rank builds its own replica (initialisation depends only on the seed, so all start equal);
        // rank 0's result is the run's. A failure on any rank ends all of them with its message.
        return LocalWorld.run(dp, pg -> {
            try (var sync = new DataParallelGradientSync(pg)) {
                return trainRank(config, tc, tokenizer, windows, tokens, outDir, console, device, resume, sync);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }).get(0);
    }

    private static Trainer.Result trainRank(dev.exeunt.model.config.ModelConfig config, TrainConfig tc, BpeTokenizer tokenizer,
                                            TokenWindows windows, TokenDataset tokens, Path outDir, PrintStream console,
                                            Device device, boolean resume, GradientSync sync) throws IOException {
        if (!sync.logs()) console = null;
        try (var model = EarlyExitModel.create(config, device, tc.seed());
             var trainer = new Trainer(model, tokenizer, windows, tc, outDir, console, sync)) {
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
