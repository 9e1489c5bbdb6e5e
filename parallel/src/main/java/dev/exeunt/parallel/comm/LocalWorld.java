package dev.exeunt.parallel.comm;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * The {@code local} engine's job: N ranks as N platform threads in this JVM, sharing one lock and one
 * condition. Every blocked call waits on that condition and re-checks, on each wake-up, whether its
 * operation is done, whether any rank has failed (then it throws a {@link CommException} naming that
 * rank and its message) and whether a rank it waits for has already returned from its body. A failure
 * or a finished rank signals the condition, so nothing waits forever and no timeout is involved.
 *
 * <p>Deadlock: every change of the shared state signals the condition and counts as a new version. A
 * rank about to wait that finds every other unfinished rank waiting since the current version (each has
 * seen the latest state and still cannot go on) knows nobody can ever signal again, and fails the job
 * with what each rank waits for, instead of hanging.
 */
public final class LocalWorld {
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final boolean[] finished;
    private final Set<Completable> outstanding = Collections.newSetFromMap(new IdentityHashMap<>());
    /** The version each rank started waiting at, or -1 while it is not waiting in a call. */
    private final long[] waitingSince;
    private final String[] waitingFor;
    private long version;
    private String failure;
    private Throwable failureCause;

    private LocalWorld(int size) {
        this.finished = new boolean[size];
        this.waitingSince = new long[size];
        this.waitingFor = new String[size];
        Arrays.fill(waitingSince, -1);
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

    /**
     * {@link Work#test()} for local work: when {@code ready} (read under the lock) holds or the job failed,
     * finishes the work by {@code await()}; a failure is kept there for the caller's next await().
     */
    void finishIfReady(Work work, BooleanSupplier ready) {
        boolean r;
        lock();
        try {
            r = ready.getAsBoolean() || hasFailed();
        } finally {
            unlock();
        }
        if (r) {
            try {
                work.await();
            } catch (CommException e) {
                // recorded; the next await() rethrows it
            }
        }
    }

    void lock() {
        lock.lock();
    }

    void unlock() {
        lock.unlock();
    }

    /** Records a change of the shared state and wakes every waiting rank to re-check (lock held). */
    void signalAll() {
        version++;
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
            signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Throws if the job has failed (lock held). */
    void checkAlive(String op, int worldRank) {
        if (failure != null) throw new CommException(op + " on rank " + worldRank + " ended: " + failure, failureCause);
    }

    /** The job's first failure, or null; takes the lock (for engines that wait outside it, e.g. nccl). */
    String failureOrNull() {
        lock.lock();
        try {
            return failure;
        } finally {
            lock.unlock();
        }
    }

    /** Whether some rank has failed (lock held). */
    boolean hasFailed() {
        return failure != null;
    }

    /** Whether rank {@code worldRank} has returned from its body (lock held). */
    boolean finished(int worldRank) {
        return finished[worldRank];
    }

    /**
     * Waits for the next change (lock held), then checks the job is still alive. {@code op} says what
     * this rank waits for, for the deadlock report.
     */
    void awaitChange(String op, int worldRank) {
        waitingSince[worldRank] = version;
        waitingFor[worldRank] = op;
        try {
            String deadlock = deadlock();
            if (deadlock != null) {
                fail(deadlock, null);
                checkAlive(op, worldRank);
            }
            changed.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CommException(op + " on rank " + worldRank + " was interrupted", e);
        } finally {
            waitingSince[worldRank] = -1;
        }
        checkAlive(op, worldRank);
    }

    /** A description of the deadlock when every unfinished rank waits since the current version, else null. */
    private String deadlock() {
        StringBuilder sb = new StringBuilder("deadlock: every rank still running waits for another:");
        for (int r = 0; r < finished.length; r++) {
            if (finished[r]) continue;
            if (waitingSince[r] != version) return null;
            sb.append(" rank ").append(r).append(" in ").append(waitingFor[r]).append(';');
        }
        sb.setLength(sb.length() - 1);
        return sb.toString();
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
            signalAll();
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
