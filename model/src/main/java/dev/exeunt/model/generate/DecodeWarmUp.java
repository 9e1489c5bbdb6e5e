package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Device;
import java.util.List;

/**
 * Compiles the CPU decode path before anything is timed (llama.cpp's warmup run; --no-warmup skips it).
 * The JVM runs the vector kernels interpreted, about a hundred times slower, until the JIT has seen them
 * often enough: on a fresh JVM the first hundred tokens of a small model took over a second. So toy
 * models of both families, with every exit kind, decode in a background thread (while the real
 * checkpoint loads) in every mode the real run may take: full depth, exits firing, speculative.
 */
public final class DecodeWarmUp {
    private DecodeWarmUp() {}

    /** Starts the warm-up on a daemon thread; {@link Thread#join(long)} it before timing anything. */
    public static Thread inBackground(double seconds) {
        Thread t = new Thread(() -> run(seconds), "exeunt-decode-warmup");
        t.setDaemon(true);
        t.setPriority(Thread.MIN_PRIORITY);
        t.start();
        return t;
    }

    /** Decodes on toy models for about {@code seconds}. */
    public static void run(double seconds) {
        long end = System.nanoTime() + (long) (seconds * 1e9);
        List<ExitConfig> exits = List.of(exit(1, ExitKind.NORM, ExitConfig.Placement.POST), exit(2, ExitKind.MLP, ExitConfig.Placement.POST),
                exit(2, ExitKind.LAYER, ExitConfig.Placement.POST));
        List<ModelConfig> toys = List.of(ModelConfig.gpt2(64, 64, 3, 4, 256, exits), ModelConfig.llama(64, 64, 3, 4, 2, 128, 256, exits));
        var full = GenerationConfig.greedy(48);
        List<GenerationConfig> modes = List.of(full, full.withThreshold(0.05), full.withThreshold(0.05).withSpeculative(true),
                full.withThreshold(0.05).withSpeculative(true, 2));
        try {
            for (int round = 0; System.nanoTime() < end; round++) {
                for (ModelConfig toy : toys) {
                    try (var model = EarlyExitModel.create(toy, Device.CPU, round)) {
                        var gen = new Generator(model);
                        for (GenerationConfig mode : modes) {
                            if (System.nanoTime() >= end) return;
                            gen.generate(List.of(new int[] {1, 2, 3}, new int[] {4}), mode, TokenListener.NONE);
                        }
                    }
                }
            }
        } catch (RuntimeException e) {
            // A warm-up that fails only leaves the JIT colder; the real run reports real errors.
        }
    }

    private static ExitConfig exit(int layer, ExitKind kind, ExitConfig.Placement placement) {
        return new ExitConfig(layer, placement, kind, false, WeightSchedule.constant(1), 1);
    }
}
