package dev.exeunt.tensor.cpu;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.RecursiveAction;

/**
 * The persistent thread pool every CPU kernel splits its work on. One pool for the process, sized
 * by {@code -Dexeunt.threads=N} or {@code EXEUNT_THREADS}, else the number of available cores.
 * Work is split into contiguous ranges; the calling thread runs one range itself.
 */
public final class CpuThreads {
    private static final int THREADS = configuredThreads();
    private static final ForkJoinPool POOL = new ForkJoinPool(THREADS, pool -> {
        var t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
        t.setName("exeunt-cpu-" + t.getPoolIndex());
        t.setDaemon(true);
        return t;
    }, null, false);

    /** A body that processes items [from, to). */
    @FunctionalInterface
    public interface RangeBody {
        void run(int from, int to);
    }

    private CpuThreads() {}

    /** An unstarted thread standing for "some pool worker" in confinement checks. */
    private static final Thread PROBE = new Thread(() -> {});

    /**
     * Whether pool workers may touch all these segments. Segments of a confined arena belong to one
     * thread; kernels given one run on the caller instead of the pool.
     */
    public static boolean shareable(java.lang.foreign.MemorySegment... segments) {
        for (var s : segments) if (!s.isAccessibleBy(PROBE)) return false;
        return true;
    }

    public static int threads() {
        return THREADS;
    }

    private static int configuredThreads() {
        String s = System.getProperty("exeunt.threads", System.getenv("EXEUNT_THREADS"));
        if (s != null && !s.isBlank()) {
            int n = Integer.parseInt(s.trim());
            if (n < 1) throw new IllegalArgumentException("exeunt.threads must be >= 1, got " + n);
            return n;
        }
        return Runtime.getRuntime().availableProcessors();
    }

    /**
     * Runs body over [0, n) split into at most {@code threads()} ranges of at least {@code grain} items.
     * Small jobs run inline on the caller.
     */
    public static void parallelFor(int n, int grain, RangeBody body) {
        if (n <= 0) return;
        int chunks = Math.min(THREADS, Math.max(1, n / Math.max(1, grain)));
        if (chunks <= 1) {
            body.run(0, n);
            return;
        }
        var task = new Split(body, 0, n, chunks);
        if (Thread.currentThread() instanceof java.util.concurrent.ForkJoinWorkerThread w && w.getPool() == POOL) task.invoke();
        else POOL.invoke(task);
    }

    /** Runs body for each chunk index in [0, chunks) in parallel; chunks is usually threads(). */
    public static void parallelChunks(int chunks, RangeBody body) {
        parallelFor(chunks, 1, body);
    }

    private static final class Split extends RecursiveAction {
        private final RangeBody body;
        private final int from, to, chunks;

        Split(RangeBody body, int from, int to, int chunks) {
            this.body = body;
            this.from = from;
            this.to = to;
            this.chunks = chunks;
        }

        @Override
        protected void compute() {
            if (chunks <= 1) {
                body.run(from, to);
                return;
            }
            int leftChunks = chunks / 2;
            int mid = from + (int) ((long) (to - from) * leftChunks / chunks);
            var right = new Split(body, mid, to, chunks - leftChunks);
            right.fork();
            new Split(body, from, mid, leftChunks).compute();
            right.join();
        }
    }
}
