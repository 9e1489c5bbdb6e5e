package dev.exeunt.parallel.comm;

import dev.exeunt.ffm.cuda.CudaRuntime;
import dev.exeunt.ffm.cuda.cuda_runtime_api_h;
import dev.exeunt.ffm.nccl.Nccl;
import dev.exeunt.ffm.nccl.nccl_h;
import dev.exeunt.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

/**
 * One {@link NcclProcessGroup} operation in flight: the NCCL calls it queued on the device's stream, the CUDA event
 * recorded right after them, and the tensor views that keep the caller's device storage alive until the event has
 * passed (closing a tensor hands its memory back to the CUDA allocator's cache, which would give it to the next
 * allocation while NCCL still reads or writes it).
 *
 * <p>Completion is the event's: {@link #test()} is cudaEventQuery. {@link #await()} polls the event rather than
 * calling cudaEventSynchronize, and checks ncclCommGetAsyncError between polls: NCCL reports a peer that vanished or a
 * broken connection only there, and a synchronize would wait forever for kernels that can no longer finish. On such
 * an error the communicator is aborted (NCCL's own advice: it cancels the kernels), and the group is broken.
 */
final class NcclWork implements Work {
    /** As {@link MpiWork}: busy polls, then sleeps that back off so waiting ranks do not take the CPU. */
    private static final int SPINS = 200;
    private static final long FIRST_PARK_NANOS = 5_000;
    private static final long MAX_PARK_NANOS = 1_000_000;

    private final String what;
    private final NcclProcessGroup group;
    private final List<Tensor> held = new ArrayList<>();
    /** Recorded on the stream after the last launch; null until then (a rejected call creates none). */
    private MemorySegment event;
    private boolean done;
    private CommException failure;

    NcclWork(String what, NcclProcessGroup group) {
        this.what = what;
        this.group = group;
    }

    String what() {
        return what;
    }

    /** Keeps {@code view} (a view retaining a tensor's storage) open until the operation completes. */
    Tensor hold(Tensor view) {
        held.add(view);
        return view;
    }

    /** Marks the end of the operation's launches on {@code stream}. */
    void recordEnd(MemorySegment stream) {
        event = CudaRuntime.eventCreate(cuda_runtime_api_h.cudaEventDisableTiming());
        CudaRuntime.eventRecord(event, stream);
    }

    /**
     * Launching failed. With nothing queued the held tensors are released; once some launch was queued it may still
     * read or write them, so they stay retained (a bounded leak on a path where NCCL reported the job broken) rather
     * than being handed back to the allocator under NCCL's feet.
     */
    synchronized CommException abandon(RuntimeException cause, boolean anythingQueued) {
        done = true;
        failure = cause instanceof CommException c ? c : new CommException(what + " failed: " + cause.getMessage(), cause);
        if (!anythingQueued) {
            release();
        }
        return failure;
    }

    @Override
    public synchronized boolean test() {
        if (done) {
            return true;
        }
        try {
            group.bindDevice();
            boolean passed = CudaRuntime.eventQuery(event);
            int async = Nccl.commGetAsyncError(group.comm());
            if (async != nccl_h.ncclSuccess() && async != nccl_h.ncclInProgress()) {
                String message = what + " failed: NCCL reports " + Nccl.errorString(async) + " (ncclCommGetAsyncError)";
                group.breakDown(message);
                finish(new CommException(message));
                return true;
            }
            if (!passed) {
                String peer = group.peerFailure();
                if (peer == null) {
                    return false;
                }
                group.breakDown(peer);
                finish(new CommException(what + " ended: " + peer));
                return true;
            }
            finish(null);
        } catch (RuntimeException e) {
            finish(new CommException(what + " failed while waiting: " + e.getMessage(), e));
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

    private void finish(CommException f) {
        done = true;
        failure = f;
        release();
    }

    private void release() {
        held.forEach(Tensor::close);
        held.clear();
        if (event != null) {
            MemorySegment e = event;
            event = null;
            try {
                CudaRuntime.eventDestroy(e);
            } catch (RuntimeException ex) {
                if (failure == null) {
                    failure = new CommException(what + ": cudaEventDestroy failed: " + ex.getMessage(), ex);
                }
            }
        }
    }
}
