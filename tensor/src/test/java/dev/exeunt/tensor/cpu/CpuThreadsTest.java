package dev.exeunt.tensor.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.junit.jupiter.api.Test;

/** The pool covers every index exactly once, from many threads at once, nested, and through failures. */
class CpuThreadsTest {
    @Test
    void everyIndexOnceForManyShapes() {
        for (int n = 1; n < 300; n += 7) {
            for (int grain = 1; grain < 40; grain += 13) {
                var hits = new AtomicLongArray(n);
                CpuThreads.parallelFor(n, grain, (from, to) -> {
                    for (int i = from; i < to; i++) hits.incrementAndGet(i);
                });
                for (int i = 0; i < n; i++) assertEquals(1, hits.get(i), "n=" + n + " grain=" + grain + " i=" + i);
            }
        }
    }

    @Test
    void concurrentCallersAndNestedCallsAllComplete() throws Exception {
        var total = new AtomicLong();
        Thread[] ts = new Thread[4];
        for (int t = 0; t < ts.length; t++) {
            ts[t] = new Thread(() -> {
                for (int rep = 0; rep < 2000; rep++) {
                    CpuThreads.parallelFor(64, 1, (a, b) -> CpuThreads.parallelFor(b - a, 1, (c, d) -> total.addAndGet(d - c)));
                }
            });
            ts[t].start();
        }
        for (Thread t : ts) t.join(60_000);
        assertEquals(4L * 2000 * 64, total.get());
    }

    @Test
    void aFailingChunkFailsTheCallAndThePoolKeepsWorking() {
        var e = assertThrows(IllegalStateException.class, () -> CpuThreads.parallelFor(100, 1, (a, b) -> {
            if (a == 0) throw new IllegalStateException("boom");
        }));
        assertEquals("boom", e.getMessage());
        var sum = new AtomicLong();
        CpuThreads.parallelFor(100, 1, (a, b) -> sum.addAndGet(b - a));
        assertEquals(100, sum.get());
    }
}
