package dev.exeunt.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import org.openjdk.jmh.annotations.*;

/**
 * Why Exeunt's quantized kernels widen weights to floats instead of multiplying 8-bit activations as llama.cpp
 * does: the Vector API has no int8 dot product (x86's vpdpbusd / vpmaddubsw), so an int8 product has to widen
 * bytes to 16-bit lanes, multiply, and widen again to 32 bits to sum. Both variants here take 512 rows of 768
 * Q8_0-style int8 weights (one scale per 32) times one row, cache-resident, single-threaded: {@code float}
 * converts the weights to floats and multiply-adds float activations; {@code int8} multiplies them by int8
 * activations (quantized beforehand, not timed) and scales each block's integer sum. On an AMD Zen 5 (AVX-512)
 * the two were within 10% of each other, either way round (int8 14.2 against 15.5 us, -f 2; 1.19 against 1.10 ns
 * per block in a plain loop): no gain to pay for quantizing the activations. Uses 512-bit shapes, so it needs an
 * AVX-512 machine.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector"})
public class Int8DotBenchmark {
    private static final VectorSpecies<Float> FS = FloatVector.SPECIES_512;
    private static final VectorSpecies<Byte> B16 = ByteVector.SPECIES_128, B32 = ByteVector.SPECIES_256;
    private static final VectorSpecies<Short> S32 = ShortVector.SPECIES_512;
    private static final VectorSpecies<Integer> I16 = IntVector.SPECIES_512;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final int N = 768, ROWS = 512, NB = N / 32;

    @Param({"float", "int8"})
    public String variant;

    Arena arena;
    MemorySegment w, x, xq;
    float[] sw = new float[NB * ROWS], sx = new float[NB];

    @Setup(Level.Trial)
    public void setup() {
        arena = Arena.ofConfined();
        w = arena.allocate((long) ROWS * N, 64);
        x = arena.allocate(N * 4L, 64);
        xq = arena.allocate(N, 64);
        SplittableRandom r = new SplittableRandom(1);
        for (long i = 0; i < w.byteSize(); i++) w.set(ValueLayout.JAVA_BYTE, i, (byte) (r.nextInt(255) - 127));
        for (int i = 0; i < N; i++) {
            x.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) r.nextGaussian());
            xq.set(ValueLayout.JAVA_BYTE, i, (byte) (r.nextInt(255) - 127));
        }
        for (int b = 0; b < sw.length; b++) sw[b] = 0.01f + 1e-4f * (b % 7);
        for (int b = 0; b < NB; b++) sx[b] = 0.02f;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public float rows() {
        float s = 0;
        for (int row = 0; row < ROWS; row++) s += variant.equals("float") ? floatRow(row) : int8Row(row);
        return s;
    }

    private float floatRow(int row) {
        FloatVector acc = FloatVector.zero(FS);
        long wo = (long) row * N;
        for (int b = 0; b < NB; b++) {
            FloatVector t = FloatVector.zero(FS);
            for (int c = 0; c < 32; c += 16) {
                ByteVector q = ByteVector.fromMemorySegment(B16, w, wo + 32L * b + c, LE);
                t = ((FloatVector) q.convertShape(VectorOperators.B2F, FS, 0)).fma(FloatVector.fromMemorySegment(FS, x, (32L * b + c) * 4, LE), t);
            }
            acc = t.fma(FloatVector.broadcast(FS, sw[row * NB + b]), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    private float int8Row(int row) {
        FloatVector acc = FloatVector.zero(FS);
        long wo = (long) row * N;
        for (int b = 0; b < NB; b++) {
            ShortVector qw = (ShortVector) ByteVector.fromMemorySegment(B32, w, wo + 32L * b, LE).convertShape(VectorOperators.B2S, S32, 0);
            ShortVector qx = (ShortVector) ByteVector.fromMemorySegment(B32, xq, 32L * b, LE).convertShape(VectorOperators.B2S, S32, 0);
            ShortVector p = qw.mul(qx); // |127 * 127| fits 16 bits; a sum of two would not always
            IntVector s = ((IntVector) p.convertShape(VectorOperators.S2I, I16, 0)).add((IntVector) p.convertShape(VectorOperators.S2I, I16, 1));
            acc = ((FloatVector) s.convertShape(VectorOperators.I2F, FS, 0)).fma(FloatVector.broadcast(FS, sw[row * NB + b] * sx[b]), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }
}
