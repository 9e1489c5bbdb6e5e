package dev.exeunt.bench;

import dev.exeunt.ffm.openblas.OpenBlas;
import dev.exeunt.tensor.cpu.CpuGemm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * SGEMM C = A * B, Exeunt vs OpenBLAS (same thread count: {@code -p threads=N}, default all of Exeunt's pool).
 * shape: a square size, or MxKxN ("2048x768x3072" is a 2048x768 activation times a 768x3072 weight).
 * GFLOP/s = 2*M*N*K / time. OpenBLAS runs fail with a message when the library is absent.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class GemmBenchmark {
    @Param({"256", "512", "1024", "2048", "2048x768x3072"})
    public String shape;

    @Param({"exeunt", "openblas"})
    public String impl;

    @Param({"0"})
    public int threads;

    int m, n, k;
    Arena arena;
    MemorySegment a, b, c;

    @Setup(Level.Trial)
    public void setup() {
        String[] d = shape.split("x");
        m = Integer.parseInt(d[0]);
        k = d.length > 1 ? Integer.parseInt(d[1]) : m;
        n = d.length > 2 ? Integer.parseInt(d[2]) : m;
        int t = threads > 0 ? threads : CpuGemm.threads();
        if (impl.equals("openblas")) {
            if (!OpenBlas.isAvailable()) {
                System.out.println("OpenBLAS unavailable, skipping: " + OpenBlas.unavailableReason());
                throw new IllegalStateException("OpenBLAS unavailable (skipped): " + OpenBlas.unavailableReason());
            }
            OpenBlas.setNumThreads(t);
        } else {
            CpuGemm.setMaxThreads(t);
        }
        arena = Arena.ofShared();
        a = fill(arena, (long) m * k, 1);
        b = fill(arena, (long) k * n, 2);
        c = arena.allocate(4L * m * n, 64);
    }

    static MemorySegment fill(Arena arena, long n, long seed) {
        MemorySegment s = arena.allocate(n * 4, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) s.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, (float) (r.nextDouble() * 2 - 1));
        return s;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (arena != null) arena.close();
    }

    @Benchmark
    public void sgemm() {
        if (impl.equals("openblas")) OpenBlas.sgemm(false, false, m, n, k, 1f, a, 0, k, b, 0, n, 0f, c, 0, n);
        else CpuGemm.sgemm(false, false, m, n, k, 1f, a, 0, k, b, 0, n, 0f, c, 0, n);
    }
}
