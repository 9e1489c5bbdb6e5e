package dev.exeunt.parallel.comm;

import dev.exeunt.ffm.cuda.CudaRuntime;
import dev.exeunt.ffm.cuda.cuda_runtime_api_h;
import dev.exeunt.ffm.nccl.Nccl;
import dev.exeunt.ffm.nccl.nccl_h;
import dev.exeunt.ffm.nvrtc.Nvrtc;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cuda.CudaBackend;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The {@code nccl} engine: NCCL collectives on device tensors, one rank per GPU, queued on the {@link CudaBackend}'s
 * stream of that GPU so that they run in order with the kernels that produce and consume their buffers (nothing is
 * synchronised with the host except by {@link Work#await()}). The communicator is made from a bootstrap group
 * ({@code local} threads or {@code mpi} processes, same ranks): rank 0's ncclGetUniqueId travels over it as I8 bytes.
 *
 * <p>Types: F32, BF16, F16, I32 and I8 map to NCCL's own types, and BF16/F16 reduce in NCCL's kernels (every rank
 * still ends with the same bits: each element is reduced once and the result copied). Sizes: counts over
 * {@code maxCount} (2^31-1) elements are split into chunks inside one NCCL group, as the {@code mpi} engine does, so
 * no count handed to NCCL exceeds a C int (NCCL's own limits on channels and buffer offsets are int-sized).
 *
 * <p>Point to point: NCCL has no tags. Messages between two ranks match in the order they are issued, and the
 * receive must have the element count of its send (NCCL cannot check it); the tag is validated (>= 0) but not used.
 * Every operation of a rank runs on the one stream in issue order, so a rank's later send cannot overtake its
 * pending collective: a program must issue them in an order every rank agrees with (as NCCL requires in general).
 * A send to the rank itself is refused: NCCL pairs it only with a receive inside the same group call.
 *
 * <p>Failure: {@link #abort} calls ncclCommAbort and then the bootstrap's abort, which ends the job with the reason.
 * An error NCCL reports asynchronously (ncclCommGetAsyncError) fails the Work that sees it and breaks this group.
 */
public final class NcclProcessGroup implements ProcessGroup {
    /** The most elements one NCCL call carries: NCCL's counts are size_t, but its internals are int-sized. */
    static final long MAX_COUNT = Integer.MAX_VALUE;

    private final ProcessGroup bootstrap;
    private final boolean ownsBootstrap;
    private final CudaBackend backend;
    private final Device device;
    private final MemorySegment comm;
    private final boolean ownsComm;
    private final int rank;
    private final int size;
    private final long maxCount;
    private volatile boolean closed;
    /** Set when NCCL reported an asynchronous error: the communicator was aborted and every call now fails. */
    private volatile String broken;

    private NcclProcessGroup(ProcessGroup bootstrap, boolean ownsBootstrap, CudaBackend backend, MemorySegment comm,
                             boolean ownsComm, long maxCount) {
        this.bootstrap = bootstrap;
        this.ownsBootstrap = ownsBootstrap;
        this.backend = backend;
        this.device = backend.device();
        this.comm = comm;
        this.ownsComm = ownsComm;
        this.maxCount = maxCount;
        this.rank = bootstrap.rank();
        this.size = bootstrap.size();
    }

    /**
     * Why the nccl engine cannot run here (no CUDA runtime or device, no NVRTC for the CUDA backend, no libnccl), or
     * null. Never throws.
     */
    public static String unavailableReason() {
        String cuda = CudaRuntime.noDeviceReason();
        if (cuda != null) {
            return "no usable CUDA device (" + cuda + ")";
        }
        if (!Nvrtc.isAvailable()) {
            return "the CUDA backend needs NVRTC (" + Nvrtc.unavailableReason() + ")";
        }
        String nccl = Nccl.unavailableReason();
        return nccl == null ? null : "libnccl cannot be loaded (" + nccl + ")";
    }

    /**
     * The NCCL group of {@code bootstrap}'s ranks, this rank on CUDA device {@code device}: collective over
     * {@code bootstrap} (every rank calls it; each with its own device). The bootstrap stays the caller's and must
     * outlive the returned group; {@link #split} makes groups that own their bootstrap.
     *
     * @throws CommException when CUDA or NCCL is missing, the device does not exist, or NCCL fails to initialise
     */
    public static NcclProcessGroup create(ProcessGroup bootstrap, int device) {
        Objects.requireNonNull(bootstrap, "bootstrap");
        String place = "nccl rank " + bootstrap.rank() + " of " + bootstrap.size() + " (cuda:" + device + ")";
        String missing = unavailableReason();
        if (missing != null) {
            throw new CommException("the nccl engine cannot start on " + place + ": " + missing);
        }
        int count = CudaRuntime.deviceCount();
        if (device < 0 || device >= count) {
            throw new CommException("the nccl engine cannot start on " + place + ": device " + device
                    + " is out of range [0, " + count + ") (" + count + " CUDA device(s) visible)");
        }
        CudaBackend backend = CudaBackend.of(Device.cuda(device));
        byte[] id = sharedUniqueId(bootstrap, place);
        return new NcclProcessGroup(bootstrap, false, backend, initRank(backend, bootstrap, id, place), true, MAX_COUNT);
    }

    /** Rank 0's ncclGetUniqueId on every rank of {@code bootstrap}, broadcast as 128 I8 bytes. */
    private static byte[] sharedUniqueId(ProcessGroup bootstrap, String place) {
        int bytes = nccl_h.NCCL_UNIQUE_ID_BYTES();
        byte[] id = new byte[bytes];
        if (bootstrap.rank() == 0) {
            try {
                id = Nccl.uniqueId();
            } catch (RuntimeException e) {
                // the other ranks already wait in the broadcast: end the job rather than leave them there
                throw bootstrap.abort("ncclGetUniqueId failed on " + place + ": " + e.getMessage());
            }
        }
        try (Tensor t = Scope.outside(() -> Tensor.empty(DType.I8, bytes))) {
            MemorySegment.copy(id, 0, t.segment(), ValueLayout.JAVA_BYTE, t.offset(), bytes);
            bootstrap.broadcast(t, 0);
            MemorySegment.copy(t.segment(), ValueLayout.JAVA_BYTE, t.offset(), id, 0, bytes);
        }
        return id;
    }

    private static MemorySegment initRank(CudaBackend backend, ProcessGroup bootstrap, byte[] id, String place) {
        backend.stream(); // makes the device current: ncclCommInitRank binds the communicator to it
        try {
            MemorySegment comm = Nccl.commInitRank(bootstrap.size(), id, bootstrap.rank());
            checkPlace(comm, bootstrap, place);
            return comm;
        } catch (RuntimeException e) {
            throw new CommException("ncclCommInitRank on " + place + " failed: " + e.getMessage(), e);
        }
    }

    /** NCCL's idea of rank and size must be the bootstrap's, or results would land on the wrong ranks. */
    private static void checkPlace(MemorySegment comm, ProcessGroup bootstrap, String place) {
        int n = Nccl.commCount(comm), r = Nccl.commUserRank(comm);
        if (n != bootstrap.size() || r != bootstrap.rank()) {
            throw new CommException(place + ": NCCL made rank " + r + " of " + n + " where the bootstrap group has rank "
                    + bootstrap.rank() + " of " + bootstrap.size());
        }
    }

    /** This group on the same communicator with a smaller per-call element limit (tests of the chunking). */
    NcclProcessGroup withMaxCount(long maxCount) {
        if (maxCount < 1 || maxCount > MAX_COUNT) {
            throw new IllegalArgumentException("maxCount must be in [1, " + MAX_COUNT + "]: " + maxCount);
        }
        return new NcclProcessGroup(bootstrap, false, backend, comm, false, maxCount);
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public String engine() {
        return "nccl";
    }

    /** The GPU this rank's tensors must be on. */
    public Device device() {
        return device;
    }

    MemorySegment comm() {
        return comm;
    }

    /** Makes this rank's device current on the calling thread; returns its stream. */
    MemorySegment bindDevice() {
        return backend.stream();
    }

    /**
     * Another rank's failure that the bootstrap knows of, or null. A local-thread job records it (an exception or an
     * abort on some rank), while NCCL kernels would wait for that rank forever; under mpirun the launcher ends the job.
     */
    String peerFailure() {
        return bootstrap instanceof LocalProcessGroup local ? local.jobFailure() : null;
    }

    /** NCCL reported an asynchronous error: abort the communicator (cancelling its kernels) and refuse later calls. */
    void breakDown(String message) {
        if (broken != null) {
            return;
        }
        broken = message;
        try {
            Nccl.commAbort(comm);
        } catch (RuntimeException ignored) {
            // the communicator is already unusable; the message that matters is the asynchronous error's
        }
    }

    // ------------------------------------------------------------------------------------------- collectives

    @Override
    public Work allReduceAsync(Tensor t, ReduceOp op) {
        NcclWork work = start("allReduce", op, t);
        int type = ncclType(t.dtype());
        return launch(work, chunks(t.numel(), maxCount).size() > 1, stream -> {
            long p = address(work.hold(retain(t)), 0);
            int eb = t.dtype().elementBytes();
            for (long[] c : chunks(t.numel(), maxCount)) {
                Nccl.allReduce(p + c[0] * eb, p + c[0] * eb, c[1], type, ncclOp(op), comm, stream);
            }
        });
    }

    @Override
    public Work reduceScatterAsync(Tensor input, Tensor output, ReduceOp op) {
        NcclWork work = start("reduceScatter", op, input, output);
        sameDtype(work, input, output);
        long n = output.numel();
        if (input.numel() != size * n) {
            throw new CommException(work.what() + ": input has " + input.numel() + " elements, expected size x output = "
                    + size + " x " + n + " = " + size * n);
        }
        int type = ncclType(input.dtype());
        int eb = input.dtype().elementBytes();
        boolean whole = size * n <= maxCount;
        return launch(work, !whole, stream -> {
            long in = address(work.hold(retain(input)), 0), out = address(work.hold(retain(output)), 0);
            if (whole) {
                Nccl.reduceScatter(in, out, n, type, ncclOp(op), comm, stream);
                return;
            }
            // Rank q's block is input[q*n, (q+1)*n): reduced onto q, chunk by chunk, with no count over maxCount.
            for (long[] c : chunks(n, maxCount)) {
                for (int root = 0; root < size; root++) {
                    check(nccl_h.ncclReduce(MemorySegment.ofAddress(in + (root * n + c[0]) * eb),
                            MemorySegment.ofAddress(out + c[0] * eb), c[1], type, ncclOp(op), root, comm, stream), "ncclReduce");
                }
            }
        });
    }

    @Override
    public Work allGatherAsync(Tensor input, Tensor output) {
        NcclWork work = start("allGather", null, input, output);
        sameDtype(work, input, output);
        long n = input.numel();
        if (output.numel() != size * n) {
            throw new CommException(work.what() + ": output has " + output.numel() + " elements, expected size x input = "
                    + size + " x " + n + " = " + size * n);
        }
        int type = ncclType(input.dtype());
        int eb = input.dtype().elementBytes();
        boolean whole = size * n <= maxCount;
        return launch(work, !whole, stream -> {
            long in = address(work.hold(retain(input)), 0), out = address(work.hold(retain(output)), 0);
            if (whole) {
                Nccl.allGather(in, out, n, type, comm, stream);
                return;
            }
            // Each rank's block is broadcast in place from its slot of the output, so the own block goes there first.
            CudaRuntime.memcpyAsync(out + rank * n * eb, in, n * eb, cuda_runtime_api_h.cudaMemcpyDeviceToDevice(), stream);
            for (long[] c : chunks(n, maxCount)) {
                for (int root = 0; root < size; root++) {
                    long p = out + (root * n + c[0]) * eb;
                    Nccl.broadcast(p, p, c[1], type, root, comm, stream);
                }
            }
        });
    }

    @Override
    public Work broadcastAsync(Tensor t, int root) {
        NcclWork work = start("broadcast from " + root, null, t);
        checkPeer(work, root, "root");
        int type = ncclType(t.dtype());
        return launch(work, chunks(t.numel(), maxCount).size() > 1, stream -> {
            long p = address(work.hold(retain(t)), 0);
            int eb = t.dtype().elementBytes();
            for (long[] c : chunks(t.numel(), maxCount)) {
                Nccl.broadcast(p + c[0] * eb, p + c[0] * eb, c[1], type, root, comm, stream);
            }
        });
    }

    @Override
    public Work sendAsync(Tensor t, int dst, int tag) {
        return pointToPoint(true, t, dst, tag);
    }

    @Override
    public Work recvAsync(Tensor t, int src, int tag) {
        return pointToPoint(false, t, src, tag);
    }

    /** A send to or receive from {@code peer}, chunked like the collectives; NCCL matches them in issue order (no tags). */
    private Work pointToPoint(boolean send, Tensor t, int peer, int tag) {
        NcclWork work = start((send ? "send to " : "recv from ") + peer + " tag " + tag, null, t);
        checkPeer(work, peer, send ? "destination" : "source");
        checkTag(work, tag);
        checkNotSelf(work, peer);
        int type = ncclType(t.dtype());
        return launch(work, chunks(t.numel(), maxCount).size() > 1, stream -> {
            long p = address(work.hold(retain(t)), 0);
            int eb = t.dtype().elementBytes();
            for (long[] c : chunks(t.numel(), maxCount)) {
                if (send) Nccl.send(p + c[0] * eb, c[1], type, peer, comm, stream);
                else Nccl.recv(p + c[0] * eb, c[1], type, peer, comm, stream);
            }
        });
    }

    /** A one-element all-reduce, awaited: it completes only once every rank has launched it. */
    @Override
    public void barrier() {
        NcclWork work = new NcclWork("barrier on " + describe(), this);
        checkUsable(work);
        Tensor token = Scope.outside(() -> Tensor.empty(DType.I32, device, 1));
        try {
            launch(work, false, stream -> {
                long p = address(work.hold(retain(token)), 0);
                Nccl.allReduce(p, p, 1, nccl_h.ncclInt32(), nccl_h.ncclMax(), comm, stream);
            }).await();
        } finally {
            token.close();
        }
    }

    /**
     * Splits as MPI_Comm_split: the bootstrap group is split the same way (the new group's own bootstrap), and the
     * communicator with ncclCommSplit where the library has it (NCCL 2.18+), else from a new unique id shared over
     * the new bootstrap group. Either way NCCL's ranks are checked against the bootstrap's.
     */
    @Override
    public ProcessGroup split(int color, int key) {
        NcclWork work = new NcclWork("split(color " + color + ", key " + key + ") on " + describe(), this);
        checkUsable(work);
        if (color < 0) {
            throw new CommException(work.what() + ": color must be >= 0");
        }
        ProcessGroup sub = bootstrap.split(color, key);
        String place = "nccl rank " + sub.rank() + " of " + sub.size() + " (cuda:" + device.index() + ", split of "
                + describe() + ")";
        try {
            MemorySegment newComm;
            if (Nccl.hasCommSplit()) {
                bindDevice();
                newComm = Nccl.commSplit(comm, color, key);
                checkPlace(newComm, sub, place);
            } else {
                newComm = initRank(backend, sub, sharedUniqueId(sub, place), place);
            }
            return new NcclProcessGroup(sub, true, backend, newComm, true, maxCount);
        } catch (RuntimeException e) {
            sub.close();
            throw e instanceof CommException c ? c : new CommException(work.what() + " failed: " + e.getMessage(), e);
        }
    }

    /** ncclCommAbort (cancelling this rank's NCCL kernels), then the bootstrap's abort, which ends the job. */
    @Override
    public RuntimeException abort(String reason) {
        closed = true;
        if (ownsComm) {
            try {
                bindDevice();
                Nccl.commAbort(comm);
            } catch (RuntimeException ignored) {
                // ending the job matters more than freeing this communicator cleanly
            }
        }
        return bootstrap.abort(reason);
    }

    /**
     * Waits for this rank's queued work, then ncclCommDestroy (ncclCommAbort instead when another rank of a local job
     * has failed, since the queued work may wait for it forever); a group made by {@link #split} also closes its own
     * bootstrap group.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            String peer = peerFailure();
            if (ownsComm && broken == null && peer != null) {
                breakDown(peer); // queued work may wait for the failed rank forever: cancel it rather than wait
            } else if (ownsComm && broken == null) {
                CudaRuntime.streamSynchronize(bindDevice());
                Nccl.commDestroy(comm);
            }
        } catch (RuntimeException e) {
            throw new CommException("ncclCommDestroy on " + describe() + " failed: " + e.getMessage(), e);
        } finally {
            if (ownsBootstrap) {
                bootstrap.close();
            }
        }
    }

    @Override
    public String toString() {
        return describe();
    }

    // ------------------------------------------------------------------------------------------- helpers

    String describe() {
        return "nccl rank " + rank + " of " + size + " (" + device + ")";
    }

    /** Validates the tensors (open, on this rank's GPU, contiguous, a supported dtype) and names the operation. */
    private NcclWork start(String op, ReduceOp reduce, Tensor... tensors) {
        Tensor first = tensors[0];
        NcclWork work = new NcclWork(op + (reduce == null ? "" : " " + reduce) + " of "
                + (first == null ? "null" : first.numel() + " " + first.dtype()) + " on " + describe(), this);
        checkUsable(work);
        for (Tensor t : tensors) {
            checkTensor(work.what(), device, t);
        }
        return work;
    }

    /** The argument checks of every operation, without a GPU (package-private for the CPU unit test). */
    static void checkTensor(String what, Device device, Tensor t) {
        if (t == null) {
            throw new CommException(what + ": tensor is null");
        }
        if (t.isClosed()) {
            throw new CommException(what + ": tensor " + t + " is closed");
        }
        if (!t.device().equals(device)) {
            throw new CommException(what + ": the nccl engine takes tensors on this rank's GPU " + device + "; " + t
                    + " is on " + t.device() + (t.device().kind() == Device.Kind.CPU ? " (move it with to(" + device + "))" : ""));
        }
        if (!t.isContiguous()) {
            throw new CommException(what + ": tensor " + t + " is not contiguous (call contiguous() first)");
        }
        ncclTypeOrRefuse(what, t.dtype());
    }

    private void checkUsable(NcclWork work) {
        if (closed) {
            throw new CommException(work.what() + ": the group is closed");
        }
        String b = broken;
        if (b != null) {
            throw new CommException(work.what() + ": the group is broken by an earlier error: " + b);
        }
    }

    private static void sameDtype(NcclWork work, Tensor a, Tensor b) {
        if (a.dtype() != b.dtype()) {
            throw new CommException(work.what() + ": input is " + a.dtype() + " but output is " + b.dtype());
        }
    }

    private void checkPeer(NcclWork work, int peer, String role) {
        if (peer < 0 || peer >= size) {
            throw new CommException(work.what() + ": " + role + " rank " + peer + " is out of range [0, " + size + ")");
        }
    }

    private void checkNotSelf(NcclWork work, int peer) {
        if (peer == rank) {
            throw new CommException(work.what() + ": the nccl engine cannot send to or receive from the rank itself ("
                    + rank + "): NCCL matches that only inside one group call, and a lone one would hang");
        }
    }

    private static void checkTag(NcclWork work, int tag) {
        if (tag < 0) {
            throw new CommException(work.what() + ": tag must be >= 0");
        }
    }

    @FunctionalInterface
    private interface Launches {
        void queue(MemorySegment stream);
    }

    /**
     * Queues the operation's NCCL calls on the device's stream (inside ncclGroupStart/End when it takes several) and
     * records the work's end event after them. On failure the work is abandoned with the error.
     */
    private NcclWork launch(NcclWork work, boolean grouped, Launches launches) {
        // A single call that fails queued nothing; in a group some calls may have been queued before one failed.
        boolean mayBeQueued = false;
        try {
            MemorySegment stream = bindDevice();
            if (grouped) {
                Nccl.groupStart();
            }
            try {
                mayBeQueued = grouped;
                launches.queue(stream);
                mayBeQueued = true;
            } finally {
                if (grouped) {
                    Nccl.groupEnd();
                }
            }
            work.recordEnd(stream);
        } catch (RuntimeException e) {
            throw work.abandon(e, mayBeQueued);
        }
        return work;
    }

    private static void check(int status, String call) {
        Nccl.check(status, call);
    }

    /** [offset, length] pairs covering {@code n} elements with no length over {@code max}; one empty chunk for n = 0. */
    static List<long[]> chunks(long n, long max) {
        if (n < 0 || max < 1) {
            throw new IllegalArgumentException("chunks of " + n + " elements, at most " + max + " each");
        }
        List<long[]> out = new ArrayList<>();
        long off = 0;
        do {
            long len = Math.min(max, n - off);
            out.add(new long[] {off, len});
            off += len;
        } while (off < n);
        return out;
    }

    /** A view of {@code t} created outside every scope: it keeps the storage alive until the work closes it. */
    private static Tensor retain(Tensor t) {
        return Scope.outside(() -> t.view(t.shape(), t.strides(), t.offset()));
    }

    /** The device address of element {@code element} of contiguous {@code t}. */
    private static long address(Tensor t, long element) {
        return t.storage().segment().address() + t.dtype().byteSize(t.offset() + element);
    }

    /** NCCL's data type for {@code dtype}; the dtypes every engine takes (F32, BF16, F16, I32, I8). */
    static int ncclType(DType dtype) {
        return ncclTypeOrRefuse("nccl", dtype);
    }

    private static int ncclTypeOrRefuse(String what, DType dtype) {
        return switch (dtype) {
            case F32 -> nccl_h.ncclFloat32();
            case BF16 -> nccl_h.ncclBfloat16();
            case F16 -> nccl_h.ncclFloat16();
            case I32 -> nccl_h.ncclInt32();
            case I8 -> nccl_h.ncclInt8();
            default -> throw new CommException(what + ": dtype " + dtype + " is not supported (F32, BF16, F16, I32, I8)");
        };
    }

    static int ncclOp(ReduceOp op) {
        return switch (op) {
            case SUM -> nccl_h.ncclSum();
            case MAX -> nccl_h.ncclMax();
        };
    }
}
