package dev.exeunt.tensor.cpu;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The persistent thread pool every CPU kernel splits its work on. One pool for the process, sized
 * by {@code -Dexeunt.threads=N} or {@code EXEUNT_THREADS}, else the number of available cores.
 *
 * <p>Decode runs hundreds of small kernels per token, so dispatch latency matters as much as
 * throughput: the calling thread takes chunks itself, and idle workers spin briefly on the job
 * slot before parking, so back-to-back kernels do not pay a wake-up each. Chunks are claimed from a
 * shared counter, so a descheduled worker does not hold the others up. Work submitted from inside
 * a chunk, or while another thread's job is running, runs inline on its caller.
 */
public final class CpuThreads {
    private static final int THREADS = configuredThreads();
    /** How long an idle worker spins on the job slot before parking. */
    private static final long SPIN_NANOS = Long.getLong("exeunt.threads.spinMicros", 2000) * 1000;
    private static final ReentrantLock SUBMIT = new ReentrantLock();
    private static final AtomicReference<Job> CURRENT = new AtomicReference<>();
    private static final ThreadLocal<Boolean> IN_CHUNK = ThreadLocal.withInitial(() -> false);
    private static final Thread[] WORKERS = startWorkers();

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
    public static boolean shareable(MemorySegment... segments) {
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
        if (chunks <= 1 || IN_CHUNK.get() || !SUBMIT.tryLock()) {
            body.run(0, n);
            return;
        }
        try {
            Job job = new Job(body, n, chunks);
            CURRENT.set(job);
            for (Thread w : WORKERS) LockSupport.unpark(w);
            job.work();
            job.awaitDone();
            CURRENT.compareAndSet(job, null);
            job.rethrow();
        } finally {
            SUBMIT.unlock();
        }
    }

    /** Runs body for each chunk index in [0, chunks) in parallel; chunks is usually threads(). */
    public static void parallelChunks(int chunks, RangeBody body) {
        parallelFor(chunks, 1, body);
    }

    /** One parallelFor call: chunks claimed from a counter by the caller and the workers. */
    private static final class Job {
        final RangeBody body;
        final int n, chunks;
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger done = new AtomicInteger();
        volatile Throwable failure;
        final Thread caller = Thread.currentThread();

        Job(RangeBody body, int n, int chunks) {
            this.body = body;
            this.n = n;
            this.chunks = chunks;
        }

        /** Claims and runs chunks until none are left. */
        void work() {
            boolean wasIn = IN_CHUNK.get();
            IN_CHUNK.set(true);
            try {
                for (int c; (c = next.getAndIncrement()) < chunks; ) {
                    try {
                        if (failure == null) body.run((int) ((long) n * c / chunks), (int) ((long) n * (c + 1) / chunks));
                    } catch (Throwable t) {
                        failure = t;
                    } finally {
                        if (done.incrementAndGet() == chunks) LockSupport.unpark(caller);
                    }
                }
            } finally {
                IN_CHUNK.set(wasIn);
            }
        }

        void awaitDone() {
            long spinUntil = System.nanoTime() + SPIN_NANOS;
            while (done.get() < chunks) {
                if (System.nanoTime() < spinUntil) Thread.onSpinWait();
                else LockSupport.parkNanos(this, 50_000);
            }
        }

        void rethrow() {
            Throwable t = failure;
            if (t instanceof RuntimeException r) throw r;
            if (t instanceof Error e) throw e;
            if (t != null) throw new RuntimeException(t);
        }
    }

    private static Thread[] startWorkers() {
        Thread[] ws = new Thread[Math.max(0, THREADS - 1)];
        for (int i = 0; i < ws.length; i++) {
            ws[i] = new Thread(CpuThreads::workerLoop, "exeunt-cpu-" + (i + 1));
            ws[i].setDaemon(true);
            ws[i].start();
        }
        return ws;
    }

    /** Workers take chunks of the current job; between jobs they spin a little, then park. */
    private static void workerLoop() {
        Job last = null;
        while (true) {
            Job job = CURRENT.get();
            if (job != null && job != last) {
                last = job;
                job.work();
                continue;
            }
            long spinUntil = System.nanoTime() + SPIN_NANOS;
            while ((job = CURRENT.get()) == null || job == last) {
                if (System.nanoTime() < spinUntil) Thread.onSpinWait();
                else {
                    LockSupport.park(CpuThreads.class);
                    spinUntil = System.nanoTime() + SPIN_NANOS;
                }
            }
        }
    }
}
