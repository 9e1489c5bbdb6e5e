package dev.exeunt.model.tune;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.train.TrainConfig;
import java.io.DataInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * One tiny EE-Tuning run as {@code exeunt tune} does it (recover the output directory, tune, save),
 * runnable in this JVM or as the main class of a child JVM that a test kills mid-save. The work
 * directory holds {@code pretrained/} (a model without exits) and {@code tokens.bin}.
 */
public final class TuningRun {
    private TuningRun() {}

    static TrainConfig config(int iters) {
        return new TrainConfig(16, 4, 1, iters, 1e-2, 1e-3, 1, 0.0, 0.9, 0.95, 1.0, 7, 0, 2, 0, 1000, 0.1);
    }

    public static void run(Path work, Path out, int iters) throws IOException {
        int[] tokens;
        try (var in = new DataInputStream(Files.newInputStream(work.resolve("tokens.bin")))) {
            tokens = new int[in.readInt()];
            for (int i = 0; i < tokens.length; i++) tokens[i] = in.readInt();
        }
        ExitTuner.recoverOutput(out);
        var exits = List.of(new ExitConfig(1, ExitConfig.Placement.POST, ExitKind.NORM, false, WeightSchedule.constant(1), 1));
        try (var tuner = new ExitTuner(work.resolve("pretrained"), exits, ExitTuner.Init.RANDOM, false, 3, config(iters))) {
            tuner.tune(TokenWindows.of(tokens, 16), config(iters), out, null);
            tuner.save(out);
        }
    }

    /** {@code TuningRun WORK OUT ITERS}. */
    public static void main(String[] args) throws IOException {
        run(Path.of(args[0]), Path.of(args[1]), Integer.parseInt(args[2]));
    }
}
