package dev.exeunt.model.generate;

import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.util.List;

/**
 * Gets the JIT to compile the decode path before anything is timed (llama.cpp's warmup run;
 * {@code --no-warmup} skips it).
 *
 * <p>Until C2 has compiled them the Vector API kernels run interpreted or at C1, a hundred times slower:
 * on a fresh JVM on two cores the first 96 tokens of the demo model took 2.5 s, then 0.07 s once
 * compiled, and C2 spent over 3 s of CPU on the path. Toy models compiled the wrong code (other shapes,
 * other branches), so the warm-up decodes the loaded model itself, on the caller's prompts and in the
 * caller's modes, until a whole round of them compiles almost nothing new.
 */
public final class DecodeWarmUp {
    /** A round that spends at most this fraction of its time compiling leaves the JIT settled. */
    private static final double SETTLED = 0.1;
    /** Rounds at most: on a tiny model (tests) a round takes milliseconds, and the JIT busy with other code never looks settled. */
    private static final int MAX_ROUNDS = 20;

    private DecodeWarmUp() {}

    /**
     * Generates each mode in turn on {@code prompts} (output discarded) until the JIT settles or
     * {@code maxSeconds} pass, stopping a generation mid-way at the deadline. At least two rounds (the
     * first one compiles the most), at most {@value #MAX_ROUNDS}. Returns the seconds spent.
     */
    public static double onModel(Generator gen, List<int[]> prompts, List<GenerationConfig> modes, double maxSeconds) {
        long end = System.nanoTime() + (long) (maxSeconds * 1e9);
        TokenListener untilDeadline = (s, t) -> System.nanoTime() < end;
        return untilSettled(() -> {
            for (GenerationConfig mode : modes) gen.generate(prompts, mode, untilDeadline);
        }, maxSeconds);
    }

    /**
     * Runs {@code round} until a round spends at most a tenth of its time compiling (at least two rounds,
     * at most {@value #MAX_ROUNDS}, none started after {@code maxSeconds}); returns the seconds spent.
     */
    static double untilSettled(Runnable round, double maxSeconds) {
        long start = System.nanoTime(), end = start + (long) (maxSeconds * 1e9);
        CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        boolean timed = jit != null && jit.isCompilationTimeMonitoringSupported();
        for (int r = 0; r < MAX_ROUNDS && System.nanoTime() < end; r++) {
            long compiled = timed ? jit.getTotalCompilationTime() : 0, t0 = System.nanoTime();
            round.run();
            double roundMillis = (System.nanoTime() - t0) / 1e6;
            // Without compile times: a fixed three rounds, by which the measured runs are near their steady rate.
            if (r >= 1 && (timed ? jit.getTotalCompilationTime() - compiled <= SETTLED * roundMillis : r >= 2)) break;
        }
        return (System.nanoTime() - start) / 1e9;
    }
}
