package dev.exeunt.bench;

import dev.exeunt.ffm.openblas.OpenBlas;
import dev.exeunt.tensor.cpu.CpuGemm;
import dev.exeunt.tensor.cpu.CpuThreads;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;
import jdk.incubator.vector.FloatVector;

/**
 * Exeunt's CPU SGEMM/SGEMV against OpenBLAS on the same inputs, in the same process: square GEMMs 256..2048,
 * a transformer projection (2048x768 times 768x3072) and a 4096x4096 GEMV. Runs of the two libraries alternate
 * (with a pause after each timed block so that neither library's idle threads disturb the other) and each figure
 * is the median, so machine noise hits both alike. Takes well under a minute.
 *
 * <pre>java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp bench/target/benchmarks.jar \
 *     dev.exeunt.bench.GemmComparison [--threads N] [--json]</pre>
 */
public final class GemmComparison {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    /** One measured shape. gemv: m x n matrix times a vector (k = 1). openblasGflops is NaN without OpenBLAS. */
    public record Row(String name, int m, int n, int k, boolean gemv, double exeuntGflops, double openblasGflops,
                      double maxRelDiff) {
        public double ratio() {
            return exeuntGflops / openblasGflops;
        }
    }

    private record Shape(String name, int m, int n, int k, boolean gemv) {}

    private static final List<Shape> SHAPES = List.of(
            new Shape("gemm 256", 256, 256, 256, false),
            new Shape("gemm 512", 512, 512, 512, false),
            new Shape("gemm 1024", 1024, 1024, 1024, false),
            new Shape("gemm 2048", 2048, 2048, 2048, false),
            new Shape("gemm 2048x768*768x3072", 2048, 3072, 768, false),
            new Shape("gemv 4096", 4096, 4096, 1, true));

    private GemmComparison() {}

    public static void main(String[] args) {
        int threads = -1;
        boolean json = false;
        double seconds = 3.0;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--json" -> json = true;
                case "--seconds" -> seconds = Double.parseDouble(args[++i]);
                case "-h", "--help" -> {
                    System.out.println("usage: GemmComparison [--threads N] [--json] [--seconds perShape]");
                    return;
                }
                default -> throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        // the pool is sized when CpuThreads loads; ask for enough threads before it does
        if (threads > 0 && System.getProperty("exeunt.threads") == null) System.setProperty("exeunt.threads", Integer.toString(threads));
        if (threads <= 0) threads = CpuThreads.threads();
        PrintStream log = json ? System.err : System.out;
        List<Row> rows = run(threads, seconds, log);
        if (json) System.out.println(toJson(rows));
        else System.out.print(table(rows));
    }

    /** Runs every shape with the default time budget (about 3 s per shape). */
    public static List<Row> run(int threads) {
        return run(threads, 3.0, System.err);
    }

    /**
     * Measures every shape on {@code threads} threads for both libraries (Exeunt is capped at the pool size),
     * spending about {@code secondsPerShape} on each; progress lines go to {@code log} (may be null).
     */
    public static List<Row> run(int threads, double secondsPerShape, PrintStream log) {
        boolean blas = OpenBlas.isAvailable();
        if (log != null) {
            log.println("threads " + threads + " (exeunt pool " + CpuThreads.threads() + "), microkernel "
                    + CpuGemm.microkernelRows() + "x" + CpuGemm.microkernelCols());
            log.println(blas ? "OpenBLAS: " + OpenBlas.libraryPath() + ", " + coreLine() : "OpenBLAS unavailable: " + OpenBlas.unavailableReason());
        }
        CpuGemm.setMaxThreads(threads);
        if (blas) OpenBlas.setNumThreads(threads);
        List<Row> rows = new ArrayList<>();
        try (Arena arena = Arena.ofShared()) {
            warmUp(arena);
            for (Shape s : SHAPES) {
                Row r = measure(arena, s, blas, secondsPerShape);
                rows.add(r);
                if (log != null) log.println(String.format(Locale.ROOT, "  %-26s exeunt %7.1f GFLOP/s  openblas %7.1f GFLOP/s  ratio %.2f",
                        s.name, r.exeuntGflops, r.openblasGflops, r.ratio()));
            }
        } finally {
            CpuGemm.setMaxThreads(0);
        }
        return rows;
    }

    /** Generic kernel families OpenBLAS falls back to on a CPU newer than the build. */
    private static final Set<String> GENERIC_CORES = Set.of("Prescott", "Core2", "Katmai", "Northwood", "Penryn", "Dunnington");
    /** OpenBLAS's AVX2 kernel families: slower than its SkylakeX ones where the CPU has AVX-512. */
    private static final Set<String> AVX2_CORES = Set.of("Haswell", "Zen");

    /**
     * The kernels OpenBLAS runs, with a warning when it fell back to generic ones on a machine with wide vectors:
     * OpenBLAS 0.3.21 does not know recent Xeons and ran its SSE3 "Prescott" kernels at 35 GFLOP/s on one, where
     * {@code OPENBLAS_CORETYPE=SkylakeX} gave 250. The launcher sets that variable from the CPU's flags for bench.
     */
    private static String coreLine() {
        String core = OpenBlas.coreName();
        if (core == null) return "kernels not reported";
        String line = "kernels " + core + (System.getenv("OPENBLAS_CORETYPE") == null ? "" : " (OPENBLAS_CORETYPE=" + System.getenv("OPENBLAS_CORETYPE") + ")");
        int bits = FloatVector.SPECIES_PREFERRED.vectorBitSize();
        if (GENERIC_CORES.contains(core) && bits >= 256) {
            line += "\nwarning: OpenBLAS runs generic " + core + " kernels on this " + bits
                    + "-bit vector CPU (it does not recognise it): set OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) for a fair reference";
        } else if (bits >= 512 && AVX2_CORES.contains(core)) {
            // An OPENBLAS_CORETYPE inherited from the environment (one machine here had Haswell set for every
            // process) made Exeunt's AVX-512 SGEMM read 1.47x OpenBLAS where its SkylakeX kernels gave 0.77-0.95x.
            line += "\nwarning: OpenBLAS runs its AVX2 " + core + " kernels on this AVX-512 CPU: set OPENBLAS_CORETYPE=SkylakeX"
                    + " for its fastest, the fair reference";
        }
        return line;
    }

    private static MemorySegment random(Arena arena, long n, long seed) {
        MemorySegment s = arena.allocate(n * 4, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) s.setAtIndex(F, i, (float) (r.nextDouble() * 2 - 1));
        return s;
    }

    private static void warmUp(Arena arena) {
        int n = 384;
        MemorySegment a = random(arena, (long) n * n, 1), b = random(arena, (long) n * n, 2), c = arena.allocate(4L * n * n);
        long end = System.nanoTime() + 1_500_000_000L;
        for (int it = 0; it < 20 || System.nanoTime() < end && it < 200; it++) {
            CpuGemm.sgemm(false, false, n, n, n, 1f, a, 0, n, b, 0, n, 0f, c, 0, n);
            CpuGemm.sgemv(false, n, n, 1f, a, 0, n, b, 0, 0f, c, 0);
        }
    }

    private static Row measure(Arena arena, Shape s, boolean blas, double seconds) {
        int m = s.m, n = s.n, k = s.k;
        MemorySegment a, b, c1, c2;
        if (s.gemv) {
            a = random(arena, (long) m * n, 3);
            b = random(arena, n, 4);
            c1 = arena.allocate(4L * m, 64);
            c2 = arena.allocate(4L * m, 64);
        } else {
            a = random(arena, (long) m * k, 3);
            b = random(arena, (long) k * n, 4);
            c1 = arena.allocate(4L * m * n, 64);
            c2 = arena.allocate(4L * m * n, 64);
        }
        Runnable ours = s.gemv
                ? () -> CpuGemm.sgemv(false, m, n, 1f, a, 0, n, b, 0, 0f, c1, 0)
                : () -> CpuGemm.sgemm(false, false, m, n, k, 1f, a, 0, k, b, 0, n, 0f, c1, 0, n);
        Runnable theirs = !blas ? null : s.gemv
                ? () -> OpenBlas.sgemv(false, m, n, 1f, a, 0, n, b, 0, 0f, c2, 0)
                : () -> OpenBlas.sgemm(false, false, m, n, k, 1f, a, 0, k, b, 0, n, 0f, c2, 0, n);
        // Warm-up per shape: each shape has its own edge tiles and split, which the JIT compiles on first use (the
        // first 256 call took 170 ms). Calibrating on that cold call gave one-call samples after each pause, which
        // measured a parked pool's wake-up rather than the GEMM (256 read 12-19 GFLOP/s instead of ~130).
        warm(ours);
        if (theirs != null) warm(theirs);
        long t0 = System.nanoTime();
        ours.run();
        ours.run();
        ours.run();
        long one = Math.max(1, System.nanoTime() - t0) / 3;
        int reps = (int) Math.max(1, Math.min(10_000, 20_000_000L / one));
        int samples = (int) Math.max(5, Math.min(15, seconds * 1e9 / ((one * reps + QUIET_NS) * (theirs != null ? 2 : 1))));
        double[] tOurs = new double[samples], tTheirs = new double[samples];
        for (int i = 0; i < samples; i++) {
            tOurs[i] = time(ours, reps);
            quiesce();
            if (theirs != null) {
                tTheirs[i] = time(theirs, reps);
                quiesce();
            }
        }
        double flops = 2.0 * m * n * k;
        double ourG = flops / median(tOurs) / 1e9;
        double theirG = theirs == null ? Double.NaN : flops / median(tTheirs) / 1e9;
        double diff = Double.NaN;
        if (theirs != null) {
            diff = 0;
            long len = c1.byteSize() / 4;
            for (long i = 0; i < len; i++) {
                double x = c1.getAtIndex(F, i), y = c2.getAtIndex(F, i);
                diff = Math.max(diff, Math.abs(x - y) / Math.max(1, Math.abs(y)));
            }
        }
        return new Row(s.name, m, n, k, s.gemv, ourG, theirG, diff);
    }

    /**
     * Pause after every timed block. OpenBLAS's idle worker threads keep spinning for a while (THREAD_TIMEOUT,
     * about 2^28 cycles) after each call; on a machine with few cores they would otherwise steal CPU from the
     * Exeunt run that follows. Exeunt's pool threads park quickly; the pause is applied to both sides alike.
     */
    private static final long QUIET_NS = 150_000_000L;

    private static void quiesce() {
        try {
            Thread.sleep(QUIET_NS / 1_000_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Runs r for at least 300 ms and 3 calls. */
    private static void warm(Runnable r) {
        long end = System.nanoTime() + 300_000_000L;
        for (int i = 0; i < 3 || System.nanoTime() < end; i++) r.run();
    }

    private static double time(Runnable r, int reps) {
        long t = System.nanoTime();
        for (int i = 0; i < reps; i++) r.run();
        return (System.nanoTime() - t) / 1e9 / reps;
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }

    /** The human-readable table. */
    public static String table(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "%-26s %6s %6s %6s %12s %12s %7s %10s%n", "shape", "m", "n", "k",
                "exeunt GF/s", "openblas GF/s", "ratio", "max diff"));
        for (Row r : rows)
            sb.append(String.format(Locale.ROOT, "%-26s %6d %6d %6d %12.1f %12s %7s %10s%n", r.name, r.m, r.n, r.k,
                    r.exeuntGflops, Double.isNaN(r.openblasGflops) ? "n/a" : String.format(Locale.ROOT, "%.1f", r.openblasGflops),
                    Double.isNaN(r.ratio()) ? "n/a" : String.format(Locale.ROOT, "%.2f", r.ratio()),
                    Double.isNaN(r.maxRelDiff) ? "n/a" : String.format(Locale.ROOT, "%.1e", r.maxRelDiff)));
        return sb.toString();
    }

    /** One JSON array; missing OpenBLAS figures are null. */
    public static String toJson(List<Row> rows) {
        StringBuilder sb = new StringBuilder("[");
        for (int i = 0; i < rows.size(); i++) {
            Row r = rows.get(i);
            if (i > 0) sb.append(',');
            sb.append("{\"shape\":\"").append(r.name).append('"')
              .append(",\"m\":").append(r.m).append(",\"n\":").append(r.n).append(",\"k\":").append(r.k)
              .append(",\"gemv\":").append(r.gemv)
              .append(",\"exeunt_gflops\":").append(num(r.exeuntGflops))
              .append(",\"openblas_gflops\":").append(num(r.openblasGflops))
              .append(",\"ratio\":").append(num(r.ratio()))
              .append('}');
        }
        return sb.append(']').toString();
    }

    private static String num(double v) {
        return Double.isFinite(v) ? String.format(Locale.ROOT, "%.3f", v) : "null";
    }
}
