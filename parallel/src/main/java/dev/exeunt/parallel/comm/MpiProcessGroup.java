package dev.exeunt.parallel.comm;

import dev.exeunt.ffm.mpi.Mpi;
import dev.exeunt.ffm.mpi.MpiHandles;
import dev.exeunt.ffm.mpi.mpi_h;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The {@code mpi} engine: Open MPI through the FFM bindings, one process per rank under {@code mpirun} (on one
 * machine or several with a hostfile: nothing here depends on the host). {@link #world()} initialises MPI.
 *
 * <p>Types: F32, I32 and I8 travel and reduce as MPI_FLOAT, MPI_INT and MPI_INT8_T. BF16 and F16 have no MPI
 * type: they travel as MPI_UINT16_T bit patterns (broadcast, all-gather, send/recv move bits unchanged), and a
 * reduction converts them to an F32 staging tensor, reduces that as MPI_FLOAT and rounds the result back once.
 * Chosen over an MPI user-defined op because a user op would be an upcall from MPI's progress engine into the
 * JVM, and because accumulating in F32 and rounding once is more exact than rounding after every pairwise add.
 *
 * <p>Sizes: MPI counts are C ints, so a message of more than {@code maxCount} (2^31-1) elements is split into
 * chunks, each its own nonblocking call. Reduce-scatter and all-gather whose whole buffer exceeds the limit
 * become, per chunk, one MPI_Ireduce (or MPI_Ibcast) per rank as root over that rank's contiguous block, so no
 * count or internal total ever overflows and no extra copy of the buffer is needed.
 *
 * <p>Failure: {@link #abort} prints its reason with the rank to stderr and calls MPI_Abort, which makes mpirun
 * end every process of the job; {@link #world()} installs an uncaught-exception handler that does the same, so
 * a rank that throws ends the job with its message instead of leaving the others blocked in a collective. The
 * other ranks do not see a {@link CommException}: mpirun kills them.
 */
public final class MpiProcessGroup implements ProcessGroup {
    /**
     * Every MPI call of the process runs under this lock, so the engine is correct when MPI provides only
     * MPI_THREAD_SERIALIZED; {@link MpiWork} polls with MPI_Test so that no thread holds it while waiting.
     */
    static final ReentrantLock MPI_LOCK = new ReentrantLock();

    /** MPI's count type is a C int. */
    static final long MAX_COUNT = Integer.MAX_VALUE;

    private static MpiProcessGroup world;

    private final MemorySegment comm;
    private final boolean ownsComm;
    private final int rank;
    private final int size;
    /** This process in MPI_COMM_WORLD, for messages: a split group's own rank alone is ambiguous. */
    private final String worldPlace;
    /** Host and process id, for the abort message: on several machines it says where to look. */
    private final String where;
    private final long maxCount;
    private volatile boolean closed;

    /** {@code maxCount}: the most elements one MPI call carries (tests make it small to exercise chunking). */
    MpiProcessGroup(MemorySegment comm, boolean ownsComm, long maxCount) {
        if (maxCount < 1 || maxCount > MAX_COUNT) {
            throw new IllegalArgumentException("maxCount must be in [1, " + MAX_COUNT + "]: " + maxCount);
        }
        this.comm = comm;
        this.ownsComm = ownsComm;
        this.maxCount = maxCount;
        MPI_LOCK.lock();
        try {
            this.rank = Mpi.rank(comm);
            this.size = Mpi.size(comm);
            this.worldPlace = comm.address() == Mpi.COMM_WORLD().address() ? ""
                    : " (world rank " + Mpi.rank(Mpi.COMM_WORLD()) + " of " + Mpi.size(Mpi.COMM_WORLD()) + ")";
            this.where = "host " + Mpi.processorName() + ", pid " + ProcessHandle.current().pid();
        } finally {
            MPI_LOCK.unlock();
        }
    }

    /** Whether this process was started by mpirun (or another PMI/PMIx launcher), from its environment. */
    public static boolean isUnderMpirun() {
        return System.getenv("OMPI_COMM_WORLD_SIZE") != null || System.getenv("PMIX_RANK") != null
                || System.getenv("PMI_RANK") != null;
    }

    /**
     * The group of all processes of the job (MPI_COMM_WORLD), initialising MPI on first call. Outside mpirun it
     * is a group of one (MPI's singleton mode). End a successful run with {@link #finish()}; an exit without it
     * finalises MPI when every rank exits within 15 s of each other, and otherwise ends the job with a message
     * (a rank leaving early must not leave the others blocked in a collective).
     *
     * @throws CommException when Open MPI is missing or does not initialise
     */
    public static synchronized MpiProcessGroup world() {
        if (world != null) {
            return world;
        }
        String missing = Mpi.unavailableReason();
        if (missing != null) {
            throw new CommException("the mpi engine needs Open MPI's libmpi: " + missing);
        }
        int provided;
        MPI_LOCK.lock();
        try {
            if (Mpi.isFinalized()) {
                throw new CommException("MPI was already finalised in this process; it cannot be initialised again");
            }
            provided = Mpi.initThread(mpi_h.MPI_THREAD_MULTIPLE());
        } catch (RuntimeException e) {
            throw e instanceof CommException c ? c : new CommException("MPI_Init_thread failed: " + e.getMessage(), e);
        } finally {
            MPI_LOCK.unlock();
        }
        if (provided < mpi_h.MPI_THREAD_SERIALIZED()) {
            throw new CommException("MPI provides thread level " + provided + "; the mpi engine needs at least"
                    + " MPI_THREAD_SERIALIZED (" + mpi_h.MPI_THREAD_SERIALIZED() + "): use an Open MPI built with threads");
        }
        world = new MpiProcessGroup(Mpi.COMM_WORLD(), false, MAX_COUNT);
        installFailureHandling(world);
        return world;
    }

    /**
     * Ends MPI for this process after every rank has called it: a barrier, then MPI_Finalize. Call it at the end
     * of a successful run (before System.exit). Without it the exit hook tries to finish for the program, see
     * {@link #world()}.
     */
    public static void finish() {
        MpiProcessGroup w;
        synchronized (MpiProcessGroup.class) {
            w = world;
        }
        if (w == null || finished) {
            return;
        }
        w.barrier();
        MPI_LOCK.lock();
        try {
            Mpi.finalizeMpi();
            finished = true;
        } catch (RuntimeException e) {
            throw new CommException("MPI_Finalize on " + w.describe() + " failed: " + e.getMessage(), e);
        } finally {
            MPI_LOCK.unlock();
        }
    }

    /** How long the exit hook waits for the other ranks to exit too before it ends the job instead. */
    private static final long EXIT_GRACE_NANOS = 15_000_000_000L;

    private static volatile boolean finished;

    private static void installFailureHandling(MpiProcessGroup world) {
        Thread.UncaughtExceptionHandler previous = Thread.getDefaultUncaughtExceptionHandler();
        Thread.setDefaultUncaughtExceptionHandler((thread, e) -> {
            System.err.println("uncaught exception in thread " + thread.getName() + " of " + world.describe() + ":");
            e.printStackTrace();
            if (previous != null) {
                previous.uncaughtException(thread, e);
            }
            world.abort(e.toString());
        });
        // Its own communicator, so that the exit hook's barrier can never match a barrier the program still runs.
        MemorySegment exitComm;
        MPI_LOCK.lock();
        try {
            exitComm = Mpi.split(Mpi.COMM_WORLD(), 0, world.rank());
        } finally {
            MPI_LOCK.unlock();
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> exitHook(world, exitComm), "mpi-exit"));
    }

    /**
     * The JVM exits without {@link #finish()} (the end of main, or System.exit on any path). MPI_Finalize would
     * wait for every rank, so if this rank exits while the others still compute (an error path that calls
     * System.exit), finalising here would hang the job forever. So: a barrier on a communicator of its own with a
     * time limit; when every rank arrives (they all exit) MPI is finalised, else the job is ended with a message.
     * (MPI_Abort and Runtime.halt run no hooks; mpirun's SIGTERM to survivors is followed by SIGKILL.)
     */
    private static void exitHook(MpiProcessGroup world, MemorySegment exitComm) {
        if (finished) {
            return;
        }
        MpiProcessGroup exitGroup = new MpiProcessGroup(exitComm, false, MAX_COUNT);
        MpiWork arrived = new MpiWork("exit barrier on " + world.describe());
        long deadline = System.nanoTime() + EXIT_GRACE_NANOS;
        try {
            post(arrived, () -> Mpi.ibarrier(exitGroup.comm, arrived.newRequest()));
            while (!arrived.test()) {
                if (System.nanoTime() > deadline) {
                    world.abort("exiting (System.exit or the end of main, without MpiProcessGroup.finish()) while"
                            + " other ranks still run; ending the job so that they do not wait for this rank forever");
                }
                LockSupport.parkNanos(1_000_000);
            }
            MPI_LOCK.lock();
            try {
                Mpi.finalizeMpi();
            } finally {
                MPI_LOCK.unlock();
            }
        } catch (RuntimeException e) {
            world.abort("could not finish MPI at exit: " + e);
        }
    }

    /** This group on the same communicator with a smaller per-call element limit (tests of the chunking). */
    MpiProcessGroup withMaxCount(long maxCount) {
        return new MpiProcessGroup(comm, false, maxCount);
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
        return "mpi";
    }

    // ------------------------------------------------------------------------------------------- collectives

    @Override
    public Work allReduceAsync(Tensor t, ReduceOp op) {
        MpiWork work = start("allReduce", op, t);
        return post(work, () -> {
            Tensor buf = reductionBuffer(work, t, true, true);
            MemorySegment type = reductionType(buf.dtype());
            long n = buf.numel();
            for (long off = 0; off < n; off += maxCount) {
                int len = (int) Math.min(maxCount, n - off);
                Mpi.iallreduce(MpiHandles.MPI_IN_PLACE(), data(buf, off), len, type, mpiOp(op), comm, work.newRequest());
            }
        });
    }

    @Override
    public Work reduceScatterAsync(Tensor input, Tensor output, ReduceOp op) {
        MpiWork work = start("reduceScatter", op, input, output);
        sameDtype(work, input, output);
        long n = output.numel();
        if (input.numel() != size * n) {
            throw new CommException(work.what() + ": input has " + input.numel() + " elements, expected size x output = "
                    + size + " x " + n + " = " + size * n);
        }
        return post(work, () -> {
            Tensor in = reductionBuffer(work, input, true, false);
            Tensor out = reductionBuffer(work, output, false, true);
            MemorySegment type = reductionType(in.dtype());
            if (size * n <= maxCount) {
                Mpi.ireduceScatterBlock(data(in, 0), data(out, 0), (int) n, type, mpiOp(op), comm, work.newRequest());
                return;
            }
            for (long off = 0; off < n; off += maxCount) {
                int len = (int) Math.min(maxCount, n - off);
                for (int root = 0; root < size; root++) {
                    MemorySegment recv = root == rank ? data(out, off) : MemorySegment.NULL;
                    Mpi.ireduce(data(in, root * n + off), recv, len, type, mpiOp(op), root, comm, work.newRequest());
                }
            }
        });
    }

    @Override
    public Work allGatherAsync(Tensor input, Tensor output) {
        MpiWork work = start("allGather", null, input, output);
        sameDtype(work, input, output);
        long n = input.numel();
        if (output.numel() != size * n) {
            throw new CommException(work.what() + ": output has " + output.numel() + " elements, expected size x input = "
                    + size + " x " + n + " = " + size * n);
        }
        return post(work, () -> {
            Tensor in = work.hold(retain(input));
            Tensor out = work.hold(retain(output));
            MemorySegment type = transferType(in.dtype());
            if (size * n <= maxCount) {
                Mpi.iallgather(data(in, 0), (int) n, type, data(out, 0), (int) n, type, comm, work.newRequest());
                return;
            }
            // Each rank's block is broadcast from its place in the output, so the own block goes there first.
            MemorySegment.copy(in.segment(), byteOffset(in, 0), out.segment(), byteOffset(out, rank * n),
                    n * in.dtype().elementBytes());
            for (long off = 0; off < n; off += maxCount) {
                int len = (int) Math.min(maxCount, n - off);
                for (int root = 0; root < size; root++) {
                    Mpi.ibcast(data(out, root * n + off), len, type, root, comm, work.newRequest());
                }
            }
        });
    }

    @Override
    public Work broadcastAsync(Tensor t, int root) {
        MpiWork work = start("broadcast from " + root, null, t);
        checkPeer(work, root, "root");
        return post(work, () -> {
            Tensor buf = work.hold(retain(t));
            MemorySegment type = transferType(buf.dtype());
            long n = buf.numel();
            for (long off = 0; off < n; off += maxCount) {
                int len = (int) Math.min(maxCount, n - off);
                Mpi.ibcast(data(buf, off), len, type, root, comm, work.newRequest());
            }
        });
    }

    /** Chunks of one message keep their order: MPI never lets messages with the same source, tag and communicator overtake. */
    @Override
    public Work sendAsync(Tensor t, int dst, int tag) {
        MpiWork work = start("send to " + dst + " tag " + tag, null, t);
        checkPeer(work, dst, "destination");
        checkTag(work, tag);
        return post(work, () -> {
            Tensor buf = work.hold(retain(t));
            MemorySegment type = transferType(buf.dtype());
            long n = buf.numel();
            for (long off = 0; off < n || off == 0; off += maxCount) {
                int len = (int) Math.min(maxCount, n - off);
                Mpi.check(mpi_h.MPI_Isend(data(buf, off), len, type, dst, tag, comm, work.newRequest()), "MPI_Isend");
            }
        });
    }

    @Override
    public Work recvAsync(Tensor t, int src, int tag) {
        MpiWork work = start("recv from " + src + " tag " + tag, null, t);
        checkPeer(work, src, "source");
        checkTag(work, tag);
        return post(work, () -> {
            Tensor buf = work.hold(retain(t));
            MemorySegment type = transferType(buf.dtype());
            long n = buf.numel();
            for (long off = 0; off < n || off == 0; off += maxCount) {
                int len = (int) Math.min(maxCount, n - off);
                Mpi.check(mpi_h.MPI_Irecv(data(buf, off), len, type, src, tag, comm, work.newReceive(len, type)), "MPI_Irecv");
            }
        });
    }

    @Override
    public void barrier() {
        MpiWork work = new MpiWork("barrier on " + describe());
        checkOpen(work);
        post(work, () -> Mpi.ibarrier(comm, work.newRequest())).await();
    }

    @Override
    public ProcessGroup split(int color, int key) {
        MpiWork work = new MpiWork("split(color " + color + ", key " + key + ") on " + describe());
        checkOpen(work);
        if (color < 0) {
            throw new CommException(work.what() + ": color must be >= 0");
        }
        MPI_LOCK.lock();
        try {
            return new MpiProcessGroup(Mpi.split(comm, color, key), true, maxCount);
        } catch (RuntimeException e) {
            throw new CommException(work.what() + " failed: " + e.getMessage(), e);
        } finally {
            MPI_LOCK.unlock();
        }
    }

    /** Prints {@code reason} with the rank to stderr, then MPI_Abort: mpirun ends every process of the job. */
    @Override
    public RuntimeException abort(String reason) {
        System.out.flush();
        System.err.println("exeunt: " + describe() + " aborts the job: " + reason + " (" + where + ")");
        System.err.flush();
        try {
            Mpi.abort(Mpi.COMM_WORLD(), 1); // not under MPI_LOCK: another thread may hold it while this one must end the job
        } finally {
            Runtime.getRuntime().halt(1); // MPI_Abort does not return; if it ever did, this process still ends
        }
        return new CommException(reason);
    }

    /** Frees a communicator made by {@link #split}; closing the world group leaves MPI_COMM_WORLD alone. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (ownsComm) {
            MPI_LOCK.lock();
            try {
                Mpi.commFree(comm);
            } catch (RuntimeException e) {
                throw new CommException("MPI_Comm_free on " + describe() + " failed: " + e.getMessage(), e);
            } finally {
                MPI_LOCK.unlock();
            }
        }
    }

    @Override
    public String toString() {
        return describe();
    }

    // ------------------------------------------------------------------------------------------- helpers

    String describe() {
        return "mpi rank " + rank + " of " + size + worldPlace;
    }

    /** Validates the tensors (open, on the CPU, contiguous, a supported dtype) and names the operation. */
    private MpiWork start(String op, ReduceOp reduce, Tensor... tensors) {
        Tensor first = tensors[0];
        MpiWork work = new MpiWork(op + (reduce == null ? "" : " " + reduce) + " of "
                + (first == null ? "null" : first.numel() + " " + first.dtype()) + " on " + describe());
        checkOpen(work);
        for (Tensor t : tensors) {
            if (t == null) {
                throw new CommException(work.what() + ": tensor is null");
            }
            if (t.isClosed()) {
                throw new CommException(work.what() + ": tensor " + t + " is closed");
            }
            if (t.device() != Device.CPU) {
                throw new CommException(work.what() + ": the mpi engine takes host tensors; " + t + " is on " + t.device());
            }
            if (!t.isContiguous()) {
                throw new CommException(work.what() + ": tensor " + t + " is not contiguous (call contiguous() first)");
            }
            switch (t.dtype()) {
                case F32, BF16, F16, I32, I8 -> { }
                default -> throw new CommException(work.what() + ": dtype " + t.dtype()
                        + " is not supported (F32, BF16, F16, I32, I8)");
            }
        }
        return work;
    }

    private void checkOpen(MpiWork work) {
        if (closed) {
            throw new CommException(work.what() + ": the group is closed");
        }
        if (finished) {
            throw new CommException(work.what() + ": MPI was finished (MpiProcessGroup.finish()) in this process");
        }
    }

    private static void sameDtype(MpiWork work, Tensor a, Tensor b) {
        if (a.dtype() != b.dtype()) {
            throw new CommException(work.what() + ": input is " + a.dtype() + " but output is " + b.dtype());
        }
    }

    private void checkPeer(MpiWork work, int peer, String role) {
        if (peer < 0 || peer >= size) {
            throw new CommException(work.what() + ": " + role + " rank " + peer + " is out of range [0, " + size + ")");
        }
    }

    private static void checkTag(MpiWork work, int tag) {
        // MPI guarantees tags up to 32767 (MPI_TAG_UB is at least that); Open MPI allows far more.
        if (tag < 0) {
            throw new CommException(work.what() + ": tag must be >= 0");
        }
    }

    @FunctionalInterface
    private interface Posting {
        void run();
    }

    /** Posts the operation's MPI calls under the lock; on failure the work is abandoned with the error. */
    private static MpiWork post(MpiWork work, Posting posting) {
        MPI_LOCK.lock();
        try {
            posting.run();
        } catch (RuntimeException e) {
            throw work.abandon(e);
        } finally {
            MPI_LOCK.unlock();
        }
        return work;
    }

    /** A view of {@code t} created outside every scope: it keeps the storage alive until the work closes it. */
    private static Tensor retain(Tensor t) {
        return Scope.outside(() -> t.view(t.shape(), t.strides(), t.offset()));
    }

    /**
     * The buffer a reduction runs on: {@code t} itself (retained) for F32/I32/I8; for BF16/F16 an F32 staging
     * tensor, filled from {@code t} when {@code fill}, whose result is rounded back into {@code t} on success when
     * {@code writeBack}.
     */
    private static Tensor reductionBuffer(MpiWork work, Tensor t, boolean fill, boolean writeBack) {
        if (t.dtype() != DType.BF16 && t.dtype() != DType.F16) {
            return work.hold(retain(t));
        }
        Tensor target = work.hold(retain(t));
        Tensor staging = work.hold(Scope.outside(() -> Tensor.empty(DType.F32, t.shape())));
        long n = t.numel();
        boolean bf16 = t.dtype() == DType.BF16;
        if (fill) {
            HalfStaging.widen(target.segment(), target.offset(), staging.segment(), n, bf16);
        }
        if (writeBack) {
            work.onSuccess(() -> writeBack(staging, target, bf16));
        }
        return staging;
    }

    private static void writeBack(Tensor staging, Tensor target, boolean bf16) {
        HalfStaging.narrow(staging.segment(), target.segment(), target.offset(), target.numel(), bf16);
    }

    private static MemorySegment reductionType(DType dtype) {
        return switch (dtype) {
            case F32 -> Mpi.FLOAT();
            case I32 -> Mpi.INT();
            case I8 -> Mpi.INT8();
            default -> throw new IllegalStateException("no MPI reduction type for " + dtype + " (staged as F32)");
        };
    }

    private static MemorySegment transferType(DType dtype) {
        return switch (dtype) {
            case F32 -> Mpi.FLOAT();
            case I32 -> Mpi.INT();
            case I8 -> Mpi.INT8();
            case BF16, F16 -> Mpi.UINT16();
            default -> throw new IllegalStateException("no MPI type for " + dtype);
        };
    }

    private static MemorySegment mpiOp(ReduceOp op) {
        return switch (op) {
            case SUM -> Mpi.SUM();
            case MAX -> Mpi.MAX();
        };
    }

    private static long byteOffset(Tensor t, long element) {
        return (t.offset() + element) * t.dtype().elementBytes();
    }

    /** The address of element {@code element} of contiguous {@code t}. */
    private static MemorySegment data(Tensor t, long element) {
        return t.segment().asSlice(byteOffset(t, element));
    }
}
