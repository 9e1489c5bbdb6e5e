package dev.exeunt.bench;

import dev.exeunt.ffm.openblas.OpenBlas;
import dev.exeunt.tensor.cpu.CpuGemm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/** SGEMV y = A x (4096x4096, the decode-path shape), Exeunt vs OpenBLAS, both transposes. GFLOP/s = 2*M*N / time. */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class GemvBenchmark {
    @Param({"4096"})
    public int size;

    @Param({"false", "true"})
    public boolean trans;

    @Param({"exeunt", "openblas"})
    public String impl;

    @Param({"0"})
    public int threads;

    Arena arena;
    MemorySegment a, x, y;

    @Setup(Level.Trial)
    public void setup() {
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
        a = GemmBenchmark.fill(arena, (long) size * size, 1);
        x = GemmBenchmark.fill(arena, size, 2);
        y = arena.allocate(4L * size, 64);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (arena != null) arena.close();
    }

    @Benchmark
    public void sgemv() {
        if (impl.equals("openblas")) OpenBlas.sgemv(trans, size, size, 1f, a, 0, size, x, 0, 0f, y, 0);
        else CpuGemm.sgemv(trans, size, size, 1f, a, 0, size, x, 0, 0f, y, 0);
    }
}
