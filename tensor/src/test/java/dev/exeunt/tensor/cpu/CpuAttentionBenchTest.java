package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.tensor.cpu.CpuAttention.Dims;
import dev.exeunt.tensor.cpu.CpuAttention.View;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Timings, skipped unless {@code -Dexeunt.attn.bench=true}:
 * {@code ./mvnw -B -q -pl tensor -am test -Dtest='CpuAttentionBench*' -Dsurefire.failIfNoSpecifiedTests=false -Dexeunt.attn.bench=true}
 */
class CpuAttentionBenchTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static MemorySegment random(Arena arena, long n, Random rnd) {
        MemorySegment s = arena.allocate(n * 4, 64);
        for (long i = 0; i < n; i++) s.setAtIndex(F32, i, (float) (2 * rnd.nextDouble() - 1));
        return s;
    }

    interface Body {
        void run();
    }

    /** Best of reps, in ms: the machine is shared, so the minimum is the least noisy estimate. */
    static double bestMs(int reps, Body body) {
        double[] t = new double[reps];
        for (int i = 0; i < reps; i++) {
            long t0 = System.nanoTime();
            body.run();
            t[i] = (System.nanoTime() - t0) / 1e6;
        }
        Arrays.sort(t);
        return t[0];
    }

    @Test
    void bench() {
        assumeTrue(Boolean.getBoolean("exeunt.attn.bench"), "set -Dexeunt.attn.bench=true to run");
        System.out.printf("threads=%d species=%s blockKeys=%d%n", CpuThreads.threads(),
                jdk.incubator.vector.FloatVector.SPECIES_PREFERRED, CpuAttention.BLOCK_KEYS);
        Random rnd = new Random(1);
        try (Arena arena = Arena.ofShared()) {
            // Training: B=8, T=256, H=4 (MHA), D=64
            {
                int B = 8, T = 256, H = 4, D = 64;
                Dims d = Dims.of(B, T, 0, H, H, D);
                long n = (long) B * T * H * D;
                View q = View.contiguous(random(arena, n, rnd), 0, T, H, D);
                View k = View.contiguous(random(arena, n, rnd), 0, T, H, D);
                View v = View.contiguous(random(arena, n, rnd), 0, T, H, D);
                View o = View.contiguous(arena.allocate(n * 4, 64), 0, T, H, D);
                View dO = View.contiguous(random(arena, n, rnd), 0, T, H, D);
                View dQ = View.contiguous(arena.allocate(n * 4, 64), 0, T, H, D);
                View dK = View.contiguous(arena.allocate(n * 4, 64), 0, T, H, D);
                View dV = View.contiguous(arena.allocate(n * 4, 64), 0, T, H, D);
                MemorySegment lse = arena.allocate((long) B * H * T * 4, 64);
                for (int i = 0; i < 30; i++) {
                    CpuAttention.forward(d, q, k, v, o, lse, 0);
                    CpuAttention.backward(d, q, k, v, o, lse, 0, dO, dQ, dK, dV);
                }
                double fwd = bestMs(15, () -> CpuAttention.forward(d, q, k, v, o, lse, 0));
                double bwd = bestMs(15, () -> CpuAttention.backward(d, q, k, v, o, lse, 0, dO, dQ, dK, dV));
                double causalPairs = (double) B * H * T * (T + 1) / 2;
                System.out.printf("train B=%d T=%d H=%d D=%d: forward %.2f ms (%.1f GFLOP/s), backward %.2f ms (%.1f GFLOP/s), fwd+bwd %.2f ms%n",
                        B, T, H, D, fwd, 4 * causalPairs * D / fwd / 1e6, bwd, 10 * causalPairs * D / bwd / 1e6, fwd + bwd);
            }
            // Decode: T=1, S=1024, H=12, D=64, batch 1; MHA and GQA 12/4
            for (int hkv : new int[] {12, 4}) {
                int S = 1024, H = 12, D = 64;
                Dims d = Dims.of(1, 1, S - 1, H, hkv, D);
                View q = View.contiguous(random(arena, (long) H * D, rnd), 0, 1, H, D);
                View k = View.contiguous(random(arena, (long) S * hkv * D, rnd), 0, S, hkv, D);
                View v = View.contiguous(random(arena, (long) S * hkv * D, rnd), 0, S, hkv, D);
                View o = View.contiguous(arena.allocate((long) H * D * 4, 64), 0, 1, H, D);
                for (int i = 0; i < 2000; i++) CpuAttention.forward(d, q, k, v, o, null, 0);
                double ms = bestMs(201, () -> CpuAttention.forward(d, q, k, v, o, null, 0));
                System.out.printf("decode S=%d Hq=%d Hkv=%d D=%d: %.1f us (%.1f GB/s of K+V)%n", S, H, hkv, D, ms * 1e3,
                        2.0 * S * hkv * D * 4 / ms / 1e6);
            }
        }
    }
}
