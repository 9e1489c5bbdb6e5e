package dev.exeunt.model.train;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.tensor.Device;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * One tiny training run as {@code exeunt train} does it (recover the output directory, resume if it
 * holds a training checkpoint, train to the end), runnable in this JVM or as the main class of a child
 * JVM that a test kills mid-save. Three iterations, a checkpoint after each.
 */
public final class TrainingRun {
    public static final int ITERS = 3;
    public static final int SAVE_EVERY = 1;

    private TrainingRun() {}

    /** Writes the tokenizer and the token stream the runs read into {@code work}. */
    public static void prepare(Path work, BpeTokenizer tokenizer, int[] tokens) throws IOException {
        HfTokenizerJson.save(tokenizer, work.resolve("tokenizer.json"));
        try (var out = new DataOutputStream(Files.newOutputStream(work.resolve("tokens.bin")))) {
            out.writeInt(tokens.length);
            for (int t : tokens) out.writeInt(t);
        }
    }

    static TrainConfig config() {
        return new TrainConfig(16, 4, 2, ITERS, 1e-2, 1e-3, 3, 0.0, 0.9, 0.95, 1.0, 42, 3, 2, SAVE_EVERY, 1000, 0.1);
    }

    /** Runs (or resumes) training into {@code out}; returns the iteration it started at. */
    public static int run(Path work, Path out) throws IOException {
        BpeTokenizer tokenizer = HfTokenizerJson.load(work.resolve("tokenizer.json"));
        int[] tokens;
        try (var in = new DataInputStream(Files.newInputStream(work.resolve("tokens.bin")))) {
            tokens = new int[in.readInt()];
            for (int i = 0; i < tokens.length; i++) tokens[i] = in.readInt();
        }
        var config = ModelConfig.gpt2(tokenizer.vocabSize(), 32, 2, 2, 32, List.of(ExitConfig.post(1, ExitKind.NORM, 0.5)));
        boolean resume = Trainer.recoverOutput(out, null);
        try (var model = EarlyExitModel.create(config, Device.CPU, 1);
             var trainer = new Trainer(model, tokenizer, TokenWindows.of(tokens, 16), config(), out, null)) {
            if (resume) trainer.resumeFrom(out);
            trainer.train();
            return trainer.startIteration();
        }
    }

    /** {@code TrainingRun WORK OUT}: prints the iteration it started at. */
    public static void main(String[] args) throws IOException {
        System.out.println("started at " + run(Path.of(args[0]), Path.of(args[1])));
    }
}
