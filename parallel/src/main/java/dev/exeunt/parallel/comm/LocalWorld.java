package dev.exeunt.parallel.comm;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * The {@code local} engine's job: N ranks as N platform threads in this JVM, sharing one lock and one
 * condition. Every blocked call waits on that condition and re-checks, on each wake-up, whether its
 * operation is done, whether any rank has failed (then it throws a {@link CommException} naming that
 * rank and its message) and whether a rank it waits for has already returned from its body. A failure
 * or a finished rank signals the condition, so nothing waits forever and no timeout is involved.
 */
public final class LocalWorld {
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final boolean[] finished;
    private final Set<Completable> outstanding = Collections.newSetFromMap(new IdentityHashMap<>());
    private String failure;
    private Throwable failureCause;

    private LocalWorld(int size) {
        this.finished = new boolean[size];
    }

    /**
     * Runs {@code body} on {@code n} ranks, one thread each, and returns their results in rank order.
     * If any rank throws, the others' communication fails and this throws a {@link CommException} with
     * the first failing rank's message (its exception as the cause). Work a rank left without awaiting is
     * released when all threads have ended.
     */
    public static <T> List<T> run(int n, Function<ProcessGroup, T> body) {
        if (n < 1) throw new IllegalArgumentException("a local world needs at least 1 rank, got " + n);
        LocalWorld world = new LocalWorld(n);
        int[] ranks = new int[n];
        Arrays.setAll(ranks, r -> r);
        LocalGroupState everyone = new LocalGroupState(world, ranks);
        Object[] results = new Object[n];
        Thread[] threads = new Thread[n];
        for (int r = 0; r < n; r++) {
            int rank = r;
            threads[r] = Thread.ofPlatform().name("exeunt-local-rank-" + r).unstarted(() -> {
                try (LocalProcessGroup pg = new LocalProcessGroup(everyone, rank)) {
                    results[rank] = body.apply(pg);
                } catch (Throwable t) {
                    world.fail("rank " + rank + " failed: " + describe(t), t);
                } finally {
                    world.finish(rank);
                }
            });
        }
        for (Thread t : threads) t.start();
        boolean interrupted = false;
        for (Thread t : threads) {
            while (true) {
                try {
                    t.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                    world.fail("the thread running LocalWorld.run was interrupted", e);
                }
            }
        }
        world.releaseOutstanding();
        if (interrupted) Thread.currentThread().interrupt();
        if (world.failure != null) throw new CommException(world.failure, world.failureCause);
        @SuppressWarnings("unchecked")
        List<T> list = (List<T>) Collections.unmodifiableList(Arrays.asList(results));
        return list;
    }

    /** {@link #run} for bodies without a result. */
    public static void runEach(int n, Consumer<ProcessGroup> body) {
        run(n, pg -> {
            body.accept(pg);
            return null;
        });
    }

    private static String describe(Throwable t) {
        if (t instanceof CommException || t instanceof AssertionError) return String.valueOf(t.getMessage());
        return t.getClass().getSimpleName() + ": " + t.getMessage();
    }

    // ---------------------------------------------------------------- for the engine's classes

    /** Work in flight, released at the end of {@link #run} if its rank never awaited it. */
    interface Completable {
        void release();
    }

    void lock() {
        lock.lock();
    }

    void unlock() {
        lock.unlock();
    }

    /** Wakes every waiting rank to re-check its condition (call with the lock held). */
    void signalAll() {
        changed.signalAll();
    }

    /** Records the first failure of the job and wakes everyone; later failures are consequences of it. */
    void fail(String message, Throwable cause) {
        lock.lock();
        try {
            if (failure == null) {
                failure = message;
                failureCause = cause;
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Throws if the job has failed (lock held). */
    void checkAlive(String op, int worldRank) {
        if (failure != null) throw new CommException(op + " on rank " + worldRank + " ended: " + failure, failureCause);
    }

    /** Whether some rank has failed (lock held). */
    boolean hasFailed() {
        return failure != null;
    }

    /** Whether rank {@code worldRank} has returned from its body (lock held). */
    boolean finished(int worldRank) {
        return finished[worldRank];
    }

    /** Waits for the next change (lock held), then checks the job is still alive. */
    void awaitChange(String op, int worldRank) {
        try {
            changed.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CommException(op + " on rank " + worldRank + " was interrupted", e);
        }
        checkAlive(op, worldRank);
    }

    void track(Completable work) {
        outstanding.add(work);
    }

    void untrack(Completable work) {
        outstanding.remove(work);
    }

    private void finish(int rank) {
        lock.lock();
        try {
            finished[rank] = true;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void releaseOutstanding() {
        List<Completable> left;
        lock.lock();
        try {
            left = new ArrayList<>(outstanding);
        } finally {
            lock.unlock();
        }
        for (Completable w : left) w.release();
    }
}
