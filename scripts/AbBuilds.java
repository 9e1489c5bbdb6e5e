import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Two builds of Exeunt side by side in one JVM, alternating, so a slow phase of the machine falls on
 * both: between processes these 2-core VMs swing by 10-40%, more than most kernel changes gain.
 * Each build has its own class loader (and its own CPU thread pool, idle while the other runs).
 *
 * <pre>
 * java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *      --add-opens=java.base/java.nio=ALL-UNNAMED scripts/AbBuilds.java OLD.jar NEW.jar gemm [transB]
 * java ... scripts/AbBuilds.java OLD.jar NEW.jar decode MODEL_DIR [THRESHOLD (0.4)]
 * java ... scripts/AbBuilds.java OLD.jar NEW.jar kquant
 * </pre>
 * The jars are cli/target/exeunt.jar of each build (e.g. a git worktree of the old commit, built with
 * {@code ./mvnw -B -q -o package -DskipTests}). gemm: SGEMM GFLOP/s on prompt-shaped and square
 * products, medians of 7 windows of 250 ms each. decode: decode tokens/s of the full model, thresholded
 * early exit and speculative decoding on MODEL_DIR (110 greedy tokens from a fixed prompt), medians of 30
 * generations after 10 warm-up ones. kquant: k-quant (and Q4_0, Q8_0) products of 1 and 4 tokens with
 * 2048 x 768 weights, cycling through 64 MiB of them so they stream from memory as in decode, medians of 7
 * windows of 250 ms.
 */
public class AbBuilds {
    public static void main(String[] a) throws Exception {
        if (a.length < 3) throw new IllegalArgumentException("usage: AbBuilds OLD.jar NEW.jar gemm [transB] | decode MODEL_DIR [THRESHOLD]");
        ClassLoader[] builds = {loader(a[0]), loader(a[1])};
        switch (a[2]) {
            case "gemm" -> gemm(builds, a.length > 3 && a[3].equals("transB"));
            case "decode" -> decode(builds, Path.of(a[3]), a.length > 4 ? Double.parseDouble(a[4]) : 0.4);
            case "kquant" -> kquant(builds);
            default -> throw new IllegalArgumentException("unknown mode " + a[2] + ": gemm, decode or kquant");
        }
        System.exit(0); // the builds' pool threads are daemons, but say so
    }

    private static ClassLoader loader(String jar) throws Exception {
        return new URLClassLoader(new URL[] {Path.of(jar).toUri().toURL()}, ClassLoader.getPlatformClassLoader());
    }

    private static void gemm(ClassLoader[] builds, boolean transB) throws Exception {
        Method[] sgemm = new Method[2];
        for (int i = 0; i < 2; i++) {
            sgemm[i] = builds[i].loadClass("dev.exeunt.tensor.cpu.CpuGemm").getMethod("sgemm", boolean.class, boolean.class, int.class,
                    int.class, int.class, float.class, MemorySegment.class, long.class, int.class, MemorySegment.class, long.class, int.class,
                    float.class, MemorySegment.class, long.class, int.class);
        }
        int[][] shapes = {{128, 2304, 768}, {128, 768, 768}, {128, 2048, 768}, {128, 768, 2048}, {256, 256, 256}, {512, 512, 512},
                {1024, 1024, 1024}, {2048, 2048, 2048}};
        try (Arena arena = Arena.ofShared()) {
            for (int[] s : shapes) {
                int m = s[0], n = s[1], k = s[2], ldb = transB ? k : n;
                MemorySegment x = filled(arena, (long) m * k), w = filled(arena, (long) n * k), y = arena.allocate(4L * m * n, 64);
                double[] rates = alternate(i -> {
                    sgemm[i].invoke(null, false, transB, m, n, k, 1f, x, 0L, k, w, 0L, ldb, 0f, y, 0L, n);
                    return 2.0 * m * n * k;
                });
                double old = rates[0], now = rates[1];
                System.out.printf("sgemm %4d x %4d x %4d%s  old %6.1f  new %6.1f GFLOP/s  new/old %.2f%n", m, n, k, transB ? " (B transposed)" : "",
                        old, now, now / old);
            }
        }
    }

    private static void kquant(ClassLoader[] builds) throws Exception {
        int m = 2048, n = 768;
        String[] types = {"Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};
        Method[] kq = new Method[2], q = new Method[2];
        for (int i = 0; i < 2; i++) {
            Class<?> dtype = builds[i].loadClass("dev.exeunt.tensor.DType");
            kq[i] = builds[i].loadClass("dev.exeunt.tensor.cpu.CpuKQuant").getMethod("gemm", dtype, int.class, int.class, int.class,
                    MemorySegment.class, long.class, MemorySegment.class, long.class, int.class, MemorySegment.class, long.class, int.class);
            q[i] = builds[i].loadClass("dev.exeunt.tensor.cpu.CpuQuant").getMethod("gemvTokens", boolean.class, int.class, int.class,
                    int.class, MemorySegment.class, long.class, MemorySegment.class, long.class, int.class, MemorySegment.class, long.class, int.class);
        }
        java.util.SplittableRandom rng = new java.util.SplittableRandom(7);
        try (Arena arena = Arena.ofShared()) {
            MemorySegment x = filled(arena, 4L * n), y = arena.allocate(16L * m, 64);
            for (String type : types) {
                // bytes per 256 weights; random bits with F16 scales kept small and finite (every bit pattern of a block is valid)
                int block = switch (type) { case "Q4_0" -> 144; case "Q8_0" -> 272; case "Q4_K" -> 144; case "Q5_K" -> 176; default -> 210; };
                long matrix = (long) m * n / 256 * block;
                int copies = (int) Math.max(1, (64L << 20) / matrix);
                MemorySegment w = arena.allocate(matrix * copies, 64);
                for (long o = 0; o + 8 <= w.byteSize(); o += 8) w.set(ValueLayout.JAVA_LONG_UNALIGNED, o, rng.nextLong() & 0x3BFF3BFF3BFF3BFFL);
                for (int rows : new int[] {1, 4}) {
                    long[] calls = new long[2];
                    Object[] dt = new Object[2];
                    for (int i = 0; i < 2; i++) {
                        dt[i] = type.endsWith("_K") ? builds[i].loadClass("dev.exeunt.tensor.DType").getField(type).get(null) : null;
                    }
                    double[] rates = alternate(i -> {
                        long off = matrix * (calls[i]++ % copies);
                        if (dt[i] != null) kq[i].invoke(null, dt[i], rows, m, n, w, off, x, 0L, n, y, 0L, m);
                        else q[i].invoke(null, type.equals("Q4_0"), rows, m, n, w, off, x, 0L, n, y, 0L, m);
                        return (double) m * n;
                    });
                    double old = rates[0], now = rates[1];
                    System.out.printf("%s %d x %d, %d token(s)  old %6.2f  new %6.2f G weights/s  new/old %.2f%n", type, m, n, rows, old, now, now / old);
                }
            }
        }
    }

    /** One call of build i; returns the work it did (flops, weights). */
    private interface Call {
        double run(int build) throws Exception;
    }

    /**
     * Each build's work per nanosecond, the median of 7 windows of 250 ms per build, the two builds alternating
     * and taking turns at going first.
     */
    private static double[] alternate(Call call) throws Exception {
        double[][] rates = new double[2][7];
        for (int rep = 0; rep < 7; rep++) {
            for (int j = 0; j < 2; j++) {
                int i = rep % 2 == 0 ? j : 1 - j;
                long t0 = System.nanoTime();
                double work = 0;
                while (System.nanoTime() - t0 < 250_000_000L) work += call.run(i);
                rates[i][rep] = work / (System.nanoTime() - t0);
            }
        }
        return new double[] {median(rates[0]), median(rates[1])};
    }

    private static MemorySegment filled(Arena arena, long n) {
        MemorySegment s = arena.allocate(4 * n, 64);
        for (long i = 0; i < n; i++) s.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, (float) Math.sin(i * 0.7));
        return s;
    }

    private static void decode(ClassLoader[] builds, Path model, double threshold) throws Exception {
        String[] modes = {"full model", "thresholded " + threshold, "speculative " + threshold};
        Object[] gen = new Object[2], none = new Object[2];
        Object[][] cfg = new Object[2][3];
        Method[] generate = new Method[2], stats = new Method[2];
        List<int[]> prompt = null;
        for (int i = 0; i < 2; i++) {
            ClassLoader cl = builds[i];
            Class<?> device = cl.loadClass("dev.exeunt.tensor.Device"), gc = cl.loadClass("dev.exeunt.model.generate.GenerationConfig");
            Class<?> g = cl.loadClass("dev.exeunt.model.generate.Generator"), listener = cl.loadClass("dev.exeunt.model.generate.TokenListener");
            Object loaded = cl.loadClass("dev.exeunt.model.ModelLoader").getMethod("load", Path.class, device).invoke(null, model,
                    device.getField("CPU").get(null));
            Object tokenizer = loaded.getClass().getMethod("tokenizer").invoke(loaded);
            Method encode = tokenizer.getClass().getMethod("encode", String.class);
            encode.setAccessible(true);
            prompt = List.of((int[]) encode.invoke(tokenizer, "public static void main(String[] args) {"));
            gen[i] = g.getConstructor(cl.loadClass("dev.exeunt.model.nn.EarlyExitModel")).newInstance(loaded.getClass().getMethod("model").invoke(loaded));
            generate[i] = g.getMethod("generate", List.class, gc, listener);
            stats[i] = g.getMethod("lastStats");
            none[i] = listener.getField("NONE").get(null);
            Object full = gc.getMethod("greedy", int.class).invoke(null, 110);
            cfg[i][0] = full;
            cfg[i][1] = gc.getMethod("withThreshold", double.class).invoke(full, threshold);
            cfg[i][2] = gc.getMethod("withSpeculative", boolean.class).invoke(cfg[i][1], true);
        }
        List<List<List<Double>>> rates = List.of(List.of(new ArrayList<>(), new ArrayList<>(), new ArrayList<>()),
                List.of(new ArrayList<>(), new ArrayList<>(), new ArrayList<>()));
        for (int rep = 0; rep < 40; rep++) {
            for (int mode = 0; mode < 3; mode++) {
                for (int j = 0; j < 2; j++) {
                    int i = rep % 2 == 0 ? j : 1 - j;
                    generate[i].invoke(gen[i], prompt, cfg[i][mode], none[i]);
                    Object st = stats[i].invoke(gen[i]);
                    double tps = (double) st.getClass().getMethod("decodeTokensPerSecond").invoke(st);
                    if (rep >= 10) rates.get(i).get(mode).add(tps);
                }
            }
        }
        for (int mode = 0; mode < 3; mode++) {
            double old = median(rates.get(0).get(mode).stream().mapToDouble(Double::doubleValue).toArray());
            double now = median(rates.get(1).get(mode).stream().mapToDouble(Double::doubleValue).toArray());
            System.out.printf("%-18s old %7.1f  new %7.1f tokens/s  new/old %.2f%n", modes[mode], old, now, now / old);
        }
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }
}
