import dev.exeunt.tensor.cpu.CpuSkinnyGemm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Where this machine's last-level cache ends for decode: one-token products of 576 x 192 F32 weights
 * (a demo-model layer's c_attn) cycling through a growing set of copies, GB/s per working set. Decode
 * streams every weight once per token, so a model a little larger than the cache the machine really
 * gives (on a shared VM: less than lscpu says) reads at memory speed, and every extra byte a token
 * touches (an exit head) slows the layers too.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Dexeunt.threads=1 \
 *      -cp cli/target/exeunt.jar scripts/CacheCliff.java
 * </pre>
 */
public class CacheCliff {
    public static void main(String[] args) {
        int n = 576, k = 192;
        long bytes = 4L * n * k;
        int[] sets = {8, 16, 24, 30, 34, 38, 42, 46, 50, 60, 80};
        try (Arena arena = Arena.ofShared()) {
            MemorySegment[] w = new MemorySegment[sets[sets.length - 1]];
            for (int i = 0; i < w.length; i++) {
                w[i] = arena.allocate(bytes, 64);
                w[i].fill((byte) 1);
            }
            MemorySegment x = arena.allocate(4L * k, 64), y = arena.allocate(4L * n, 64);
            for (int copies : sets) {
                double best = Double.MAX_VALUE;
                for (int rep = 0; rep < 7; rep++) {
                    int iters = 20 * copies;
                    long t0 = System.nanoTime();
                    for (int it = 0; it < iters; it++) CpuSkinnyGemm.gemm(false, 1, n, k, x, 0, k, w[it % copies], 0, n, y, 0, n);
                    best = Math.min(best, (System.nanoTime() - t0) / 1e3 / iters);
                }
                System.out.printf("working set %5.1f MB: %6.2f us a product, %5.1f GB/s%n", copies * bytes / 1e6, best, bytes / best / 1e3);
            }
        }
    }
}
