package dev.exeunt.model.generate;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.cpu.CpuQuant;
import dev.exeunt.tensor.cpu.CpuSkinnyGemm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

/**
 * Compiles the CPU decode path before anything is timed (llama.cpp's warmup run; --no-warmup skips it).
 * The JVM runs the vector kernels interpreted, about a hundred times slower, until the JIT has seen them
 * often enough: on a fresh JVM the first hundred tokens of a small model took over a second. So toy
 * models of both families, with every exit kind, decode in a background thread (while the real
 * checkpoint loads) in every mode the real run may take: full depth, exits firing, speculative.
 */
public final class DecodeWarmUp {
    /** The JIT's work outlives the call: one warm-up per JVM is enough. */
    private static final java.util.concurrent.atomic.AtomicBoolean STARTED = new java.util.concurrent.atomic.AtomicBoolean();

    private DecodeWarmUp() {}

    /**
     * Starts the warm-up on a daemon thread (only the first call in a JVM does anything; later ones get
     * a thread that ends at once); {@link Thread#join()} it before timing anything.
     */
    public static Thread inBackground(double seconds) {
        boolean first = STARTED.compareAndSet(false, true);
        Thread t = new Thread(() -> {
            if (first) run(seconds);
        }, "exeunt-decode-warmup");
        t.setDaemon(true);
        t.setPriority(Thread.MIN_PRIORITY);
        t.start();
        return t;
    }

    /** Decodes on toy models for about {@code seconds}. */
    public static void run(double seconds) {
        long end = System.nanoTime() + (long) (seconds * 1e9);
        kernels(end);
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

    /**
     * The skinny GEMMs for every row count in both layouts, F32 and quantized: a real run reaches some of
     * them (four drafts verified at once, say) only a few dozen times, too rarely for the JIT, and an
     * interpreted call on a real head costs milliseconds.
     */
    private static void kernels(long end) {
        int k = 128, n = 512; // n * k at the size where the kernels split over threads, as real layers do
        try (Arena arena = Arena.ofShared()) {
            MemorySegment a = arena.allocate(4L * CpuSkinnyGemm.MAX_ROWS * k, 64), c = arena.allocate(4L * CpuSkinnyGemm.MAX_ROWS * n, 64);
            MemorySegment b = arena.allocate(4L * n * k, 64), q8 = arena.allocate(CpuQuant.bytesQ8_0((long) n * k), 64),
                    q4 = arena.allocate(CpuQuant.bytesQ4_0((long) n * k), 64);
            for (long i = 0; i < (long) n * k; i++) b.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) Math.sin(i));
            CpuQuant.quantizeQ8_0(b, 0, q8, 0, (long) n * k);
            CpuQuant.quantizeQ4_0(b, 0, q4, 0, (long) n * k);
            for (int rep = 0; rep < 200 && System.nanoTime() < end; rep++) {
                for (int m = 1; m <= CpuSkinnyGemm.MAX_ROWS; m++) {
                    CpuSkinnyGemm.gemm(true, m, n, k, a, 0, k, b, 0, k, c, 0, n);
                    CpuSkinnyGemm.gemm(false, m, n, k, a, 0, k, b, 0, n, c, 0, n);
                    CpuQuant.gemvTokens(false, m, n, k, q8, 0, a, 0, k, c, 0, n);
                    CpuQuant.gemvTokens(true, m, n, k, q4, 0, a, 0, k, c, 0, n);
                }
            }
        }
    }

    private static ExitConfig exit(int layer, ExitKind kind, ExitConfig.Placement placement) {
        return new ExitConfig(layer, placement, kind, false, WeightSchedule.constant(1), 1);
    }
}
