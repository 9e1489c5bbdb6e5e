package dev.exeunt.parallel.comm;

import dev.exeunt.ffm.mpi.MPI_Status;
import dev.exeunt.ffm.mpi.Mpi;
import dev.exeunt.ffm.mpi.MpiException;
import dev.exeunt.ffm.mpi.MpiHandles;
import dev.exeunt.ffm.mpi.mpi_h;
import dev.exeunt.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

/**
 * One {@link MpiProcessGroup} operation in flight: the MPI requests it posted (one per chunk, or per chunk and
 * root), the tensor views that keep the caller's storage alive until they complete, and what to do once they
 * have (copy a float staging buffer back to BF16/F16, check a receive's element count).
 *
 * <p>Completion is polled with MPI_Test rather than waited for with MPI_Wait so that MPI is only ever entered
 * under {@link MpiProcessGroup#MPI_LOCK} for a moment: a rank's other threads can post and test their own
 * operations meanwhile (needs only MPI_THREAD_SERIALIZED). Open MPI progresses nonblocking operations inside
 * those calls, so an operation advances while some thread tests or awaits any operation of the process.
 */
final class MpiWork implements Work {
    /**
     * Busy polls before {@link #await()} starts sleeping between polls, the first sleep, and the longest: a rank
     * waiting for a slower one backs off exponentially so that, when ranks share cores (mpirun --oversubscribe, or
     * other work on the machine), the waiting ones do not take the CPU from the ranks the operation waits for.
     */
    private static final int SPINS = 200;
    private static final long FIRST_PARK_NANOS = 5_000;
    private static final long MAX_PARK_NANOS = 1_000_000;

    private record Request(MemorySegment slot, MemorySegment status, int expectedCount, MemorySegment datatype) {
    }

    private final String what;
    /** Request slots, statuses and MPI_Test's flag; made on the first request so a rejected call allocates nothing. */
    private Arena arena;
    private MemorySegment flag;
    private final List<Request> requests = new ArrayList<>();
    private final List<Tensor> held = new ArrayList<>();
    private final List<Runnable> onSuccess = new ArrayList<>();
    private int completed;
    private boolean done;
    private CommException failure;

    /** {@code what} names the operation, its dtype, size and the rank, for error messages. */
    MpiWork(String what) {
        this.what = what;
    }

    String what() {
        return what;
    }

    /** Keeps {@code view} (a view retaining a tensor's storage, or a staging tensor) open until completion. */
    Tensor hold(Tensor view) {
        held.add(view);
        return view;
    }

    /** Runs after every request completed successfully, before the held tensors are closed. */
    void onSuccess(Runnable action) {
        onSuccess.add(action);
    }

    /** A request slot for the next MPI call; if the call fails, this work must be {@link #abandon}ed. */
    MemorySegment newRequest() {
        MemorySegment slot = newSlot();
        requests.add(new Request(slot, MpiHandles.MPI_STATUS_IGNORE(), -1, null));
        return slot;
    }

    /** A request slot for a receive of {@code count} elements of {@code datatype}; the count received is checked. */
    MemorySegment newReceive(int count, MemorySegment datatype) {
        MemorySegment slot = newSlot();
        requests.add(new Request(slot, MPI_Status.allocate(arena), count, datatype));
        return slot;
    }

    private MemorySegment newSlot() {
        if (arena == null) {
            arena = Arena.ofShared();
            flag = arena.allocate(ValueLayout.JAVA_INT);
        }
        return arena.allocate(ValueLayout.ADDRESS);
    }

    /**
     * Posting or completing failed. If no request is still outstanding the held buffers are released; otherwise
     * requests already posted may still read or write them, so they stay retained (a bounded leak on a path where
     * MPI itself reported the job broken) rather than being freed under MPI's feet. A slot whose call failed counts
     * as outstanding, since it cannot be told apart here.
     */
    CommException abandon(RuntimeException cause) {
        synchronized (this) {
            done = true;
            failure = cause instanceof CommException c ? c : new CommException(what + " failed: " + cause.getMessage(), cause);
            if (completed == requests.size()) {
                release();
            }
            return failure;
        }
    }

    @Override
    public synchronized boolean test() {
        if (done) {
            return true;
        }
        MpiProcessGroup.MPI_LOCK.lock();
        try {
            while (completed < requests.size()) {
                Request r = requests.get(completed);
                if (!Mpi.test(r.slot(), flag, r.status())) {
                    return false;
                }
                completed++;
                if (r.expectedCount() >= 0) {
                    checkReceivedCount(r);
                }
            }
        } catch (MpiException | CommException e) {
            // A failed request is complete (MPI freed it); later ones may still run, see abandon().
            if (e instanceof MpiException) {
                completed++;
            }
            abandon(e);
            return true;
        } finally {
            MpiProcessGroup.MPI_LOCK.unlock();
        }
        done = true;
        try {
            onSuccess.forEach(Runnable::run);
        } catch (RuntimeException e) {
            failure = new CommException(what + " failed after MPI completed: " + e.getMessage(), e);
        } finally {
            release();
        }
        return true;
    }

    @Override
    public void await() {
        long park = FIRST_PARK_NANOS;
        for (int polls = 0; !test(); polls++) {
            if (polls < SPINS) {
                Thread.onSpinWait();
            } else {
                LockSupport.parkNanos(park);
                park = Math.min(MAX_PARK_NANOS, park * 2);
            }
        }
        CommException f;
        synchronized (this) {
            f = failure;
        }
        if (f != null) {
            throw new CommException(f.getMessage(), f);
        }
    }

    private void checkReceivedCount(Request r) {
        MemorySegment count = arena.allocate(ValueLayout.JAVA_INT);
        Mpi.check(mpi_h.MPI_Get_count(r.status(), r.datatype(), count), "MPI_Get_count");
        int got = count.get(ValueLayout.JAVA_INT, 0);
        if (got != r.expectedCount()) {
            throw new CommException(what + ": received " + got + " elements where the receive expects "
                    + r.expectedCount() + " (the matching send has a different size)");
        }
    }

    private void release() {
        held.forEach(Tensor::close);
        held.clear();
        if (arena != null) {
            arena.close();
        }
    }
}
