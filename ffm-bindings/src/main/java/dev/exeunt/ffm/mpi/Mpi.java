package dev.exeunt.ffm.mpi;

import dev.exeunt.ffm.loader.NativeLibraries;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;

/**
 * Checked calls over {@link mpi_h} for Open MPI (libmpi.so.40). Communicators, datatypes, ops are the
 * {@link MpiHandles} addresses ({@link #COMM_WORLD()}, {@link #FLOAT()}, {@link #SUM()}, ...); buffers are native
 * segments (device addresses wrapped with {@link MemorySegment#ofAddress} work with a CUDA-aware Open MPI); counts are
 * in elements. {@link #init()} switches MPI_COMM_WORLD to MPI_ERRORS_RETURN so that failures become
 * {@link MpiException}s instead of aborting the JVM.
 *
 * <p>MPI can be initialised once per process: after {@link #finalizeMpi()} it cannot be initialised again.
 */
public final class Mpi {
    private Mpi() {
    }

    public static final String LIBRARY = "mpi";

    /** Whether Open MPI's libmpi can be opened and has Open MPI's ABI. Never throws. */
    public static boolean isAvailable() {
        return unavailableReason() == null;
    }

    /** Why MPI cannot be used, or null. Never throws. */
    public static String unavailableReason() {
        String reason = NativeLibraries.unavailableReason(LIBRARY);
        if (reason != null) {
            return reason;
        }
        try {
            if (NativeLibraries.load(LIBRARY).find("ompi_mpi_comm_world").isEmpty()) {
                return "libmpi does not export ompi_mpi_comm_world: not Open MPI (these bindings follow Open MPI's ABI)";
            }
            return null;
        } catch (RuntimeException | LinkageError e) {
            return e.toString();
        }
    }

    /** Throws {@link MpiException} with MPI_Error_string's text unless {@code status == MPI_SUCCESS}. */
    public static void check(int status, String call) {
        if (status != mpi_h.MPI_SUCCESS()) {
            throw new MpiException(call, status, errorString(status));
        }
    }

    /** MPI_Error_string; never throws. */
    public static String errorString(int code) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(mpi_h.MPI_MAX_ERROR_STRING() + 1);
            MemorySegment len = arena.allocate(ValueLayout.JAVA_INT);
            if (mpi_h.MPI_Error_string(code, buf, len) != 0) {
                return "MPI error " + code;
            }
            return buf.getString(0);
        } catch (RuntimeException | LinkageError e) {
            return "MPI error " + code;
        }
    }

    // ------------------------------------------------------------------------------------------- lifecycle

    /** MPI_Init(NULL, NULL) unless already initialised; then MPI_ERRORS_RETURN on MPI_COMM_WORLD. */
    public static synchronized void init() {
        if (isInitialized()) {
            return;
        }
        check(mpi_h.MPI_Init(MemorySegment.NULL, MemorySegment.NULL), "MPI_Init");
        check(mpi_h.MPI_Comm_set_errhandler(COMM_WORLD(), MpiHandles.MPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler");
    }

    /** {@code MPI_Init_thread(NULL, NULL, required, &provided)}; returns the provided level (an {@code MPI_THREAD_*} constant). */
    public static synchronized int initThread(int required) {
        if (isInitialized()) {
            return queryThread();
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment provided = arena.allocate(ValueLayout.JAVA_INT);
            check(mpi_h.MPI_Init_thread(MemorySegment.NULL, MemorySegment.NULL, required, provided), "MPI_Init_thread");
            check(mpi_h.MPI_Comm_set_errhandler(COMM_WORLD(), MpiHandles.MPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler");
            return provided.get(ValueLayout.JAVA_INT, 0);
        }
    }

    public static int queryThread() {
        return intOut(p -> mpi_h.MPI_Query_thread(p), "MPI_Query_thread");
    }

    public static boolean isInitialized() {
        return intOut(p -> mpi_h.MPI_Initialized(p), "MPI_Initialized") != 0;
    }

    public static boolean isFinalized() {
        return intOut(p -> mpi_h.MPI_Finalized(p), "MPI_Finalized") != 0;
    }

    /** MPI_Finalize (named so because a static {@code finalize()} would clash with Object's). */
    public static synchronized void finalizeMpi() {
        if (isInitialized() && !isFinalized()) {
            check(mpi_h.MPI_Finalize(), "MPI_Finalize");
        }
    }

    public static void abort(MemorySegment comm, int errorCode) {
        mpi_h.MPI_Abort(comm, errorCode);
    }

    /** {version, subversion} of the MPI standard, e.g. {3, 1}. Callable before MPI_Init. */
    public static int[] version() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(ValueLayout.JAVA_INT);
            MemorySegment s = arena.allocate(ValueLayout.JAVA_INT);
            check(mpi_h.MPI_Get_version(v, s), "MPI_Get_version");
            return new int[] {v.get(ValueLayout.JAVA_INT, 0), s.get(ValueLayout.JAVA_INT, 0)};
        }
    }

    public static String processorName() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(mpi_h.MPI_MAX_PROCESSOR_NAME() + 1);
            MemorySegment len = arena.allocate(ValueLayout.JAVA_INT);
            check(mpi_h.MPI_Get_processor_name(buf, len), "MPI_Get_processor_name");
            return buf.getString(0);
        }
    }

    public static double wtime() {
        return mpi_h.MPI_Wtime();
    }

    // ------------------------------------------------------------------------------------------- handles

    public static MemorySegment COMM_WORLD() {
        return MpiHandles.MPI_COMM_WORLD();
    }

    public static MemorySegment COMM_SELF() {
        return MpiHandles.MPI_COMM_SELF();
    }

    public static MemorySegment FLOAT() {
        return MpiHandles.MPI_FLOAT();
    }

    public static MemorySegment DOUBLE() {
        return MpiHandles.MPI_DOUBLE();
    }

    public static MemorySegment INT() {
        return MpiHandles.MPI_INT();
    }

    public static MemorySegment LONG_LONG() {
        return MpiHandles.MPI_LONG_LONG();
    }

    public static MemorySegment INT8() {
        return MpiHandles.MPI_INT8_T();
    }

    public static MemorySegment UINT16() {
        return MpiHandles.MPI_UINT16_T();
    }

    public static MemorySegment BYTE() {
        return MpiHandles.MPI_BYTE();
    }

    public static MemorySegment SUM() {
        return MpiHandles.MPI_SUM();
    }

    public static MemorySegment MAX() {
        return MpiHandles.MPI_MAX();
    }

    public static MemorySegment MIN() {
        return MpiHandles.MPI_MIN();
    }

    // ------------------------------------------------------------------------------------------- communicators

    public static int rank(MemorySegment comm) {
        return intOut(p -> mpi_h.MPI_Comm_rank(comm, p), "MPI_Comm_rank");
    }

    public static int size(MemorySegment comm) {
        return intOut(p -> mpi_h.MPI_Comm_size(comm, p), "MPI_Comm_size");
    }

    /** MPI_Comm_split; {@code color} {@code MPI_UNDEFINED} gives MPI_COMM_NULL. Free the result with {@link #commFree}. */
    public static MemorySegment split(MemorySegment comm, int color, int key) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            check(mpi_h.MPI_Comm_split(comm, color, key, out), "MPI_Comm_split");
            MemorySegment newComm = out.get(ValueLayout.ADDRESS, 0);
            if (newComm.address() != MpiHandles.MPI_COMM_NULL().address()) {
                check(mpi_h.MPI_Comm_set_errhandler(newComm, MpiHandles.MPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler");
            }
            return newComm;
        }
    }

    public static void commFree(MemorySegment comm) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment slot = arena.allocateFrom(ValueLayout.ADDRESS, comm);
            check(mpi_h.MPI_Comm_free(slot), "MPI_Comm_free");
        }
    }

    // ------------------------------------------------------------------------------------------- collectives

    public static void barrier(MemorySegment comm) {
        check(mpi_h.MPI_Barrier(comm), "MPI_Barrier");
    }

    public static void bcast(MemorySegment buffer, int count, MemorySegment datatype, int root, MemorySegment comm) {
        check(mpi_h.MPI_Bcast(buffer, count, datatype, root, comm), "MPI_Bcast");
    }

    /** MPI_Allreduce; pass {@link MpiHandles#MPI_IN_PLACE()} as {@code send} to reduce {@code recv} in place. */
    public static void allreduce(MemorySegment send, MemorySegment recv, int count, MemorySegment datatype, MemorySegment op,
                                 MemorySegment comm) {
        check(mpi_h.MPI_Allreduce(send, recv, count, datatype, op, comm), "MPI_Allreduce");
    }

    /** Sums {@code values} over all ranks of {@code comm} (through native memory). */
    public static float[] allreduceSum(float[] values, MemorySegment comm) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment send = arena.allocateFrom(ValueLayout.JAVA_FLOAT, values);
            MemorySegment recv = arena.allocate(ValueLayout.JAVA_FLOAT, Math.max(1, values.length));
            allreduce(send, recv, values.length, FLOAT(), SUM(), comm);
            return recv.asSlice(0, 4L * values.length).toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    public static void reduceScatterBlock(MemorySegment send, MemorySegment recv, int recvCount, MemorySegment datatype,
                                          MemorySegment op, MemorySegment comm) {
        check(mpi_h.MPI_Reduce_scatter_block(send, recv, recvCount, datatype, op, comm), "MPI_Reduce_scatter_block");
    }

    public static void allgather(MemorySegment send, int sendCount, MemorySegment sendType, MemorySegment recv, int recvCount,
                                 MemorySegment recvType, MemorySegment comm) {
        check(mpi_h.MPI_Allgather(send, sendCount, sendType, recv, recvCount, recvType, comm), "MPI_Allgather");
    }

    // ------------------------------------------------------------------------------------------- point to point

    public static void send(MemorySegment buffer, int count, MemorySegment datatype, int dest, int tag, MemorySegment comm) {
        check(mpi_h.MPI_Send(buffer, count, datatype, dest, tag, comm), "MPI_Send");
    }

    /** MPI_Recv; {@code status} may be {@link MpiHandles#MPI_STATUS_IGNORE()} or an {@link MPI_Status#allocate} segment. */
    public static void recv(MemorySegment buffer, int count, MemorySegment datatype, int source, int tag, MemorySegment comm,
                            MemorySegment status) {
        check(mpi_h.MPI_Recv(buffer, count, datatype, source, tag, comm, status), "MPI_Recv");
    }

    public static void sendrecv(MemorySegment send, int sendCount, MemorySegment sendType, int dest, int sendTag,
                                MemorySegment recv, int recvCount, MemorySegment recvType, int source, int recvTag,
                                MemorySegment comm, MemorySegment status) {
        check(mpi_h.MPI_Sendrecv(send, sendCount, sendType, dest, sendTag, recv, recvCount, recvType, source, recvTag, comm, status),
                "MPI_Sendrecv");
    }

    /**
     * MPI_Isend. Returns the {@code MPI_Request} slot (allocated from {@code allocator}, which must outlive the
     * request) to pass to {@link #await}.
     */
    public static MemorySegment isend(MemorySegment buffer, int count, MemorySegment datatype, int dest, int tag, MemorySegment comm,
                                      SegmentAllocator allocator) {
        MemorySegment request = allocator.allocate(ValueLayout.ADDRESS);
        check(mpi_h.MPI_Isend(buffer, count, datatype, dest, tag, comm, request), "MPI_Isend");
        return request;
    }

    /** MPI_Irecv; see {@link #isend}. */
    public static MemorySegment irecv(MemorySegment buffer, int count, MemorySegment datatype, int source, int tag, MemorySegment comm,
                                      SegmentAllocator allocator) {
        MemorySegment request = allocator.allocate(ValueLayout.ADDRESS);
        check(mpi_h.MPI_Irecv(buffer, count, datatype, source, tag, comm, request), "MPI_Irecv");
        return request;
    }

    /** MPI_Wait on a request slot from {@link #isend}/{@link #irecv} (MPI sets it to MPI_REQUEST_NULL). */
    public static void await(MemorySegment requestSlot, MemorySegment status) {
        check(mpi_h.MPI_Wait(requestSlot, status), "MPI_Wait");
    }

    // ------------------------------------------------------------------------------------------- nonblocking collectives

    /*
     * Each returns nothing and writes its MPI_Request into {@code requestSlot} (an ADDRESS-sized segment that must
     * outlive the request); complete it with {@link #test} or {@link #await}. Buffers must stay valid until then.
     */

    /** MPI_Iallreduce; {@link MpiHandles#MPI_IN_PLACE()} as {@code send} reduces {@code recv} in place. */
    public static void iallreduce(MemorySegment send, MemorySegment recv, int count, MemorySegment datatype, MemorySegment op,
                                  MemorySegment comm, MemorySegment requestSlot) {
        check(mpi_h.MPI_Iallreduce(send, recv, count, datatype, op, comm, requestSlot), "MPI_Iallreduce");
    }

    /** MPI_Ireduce to {@code root}; {@code recv} is only written (and may be NULL) elsewhere than on the root. */
    public static void ireduce(MemorySegment send, MemorySegment recv, int count, MemorySegment datatype, MemorySegment op, int root,
                               MemorySegment comm, MemorySegment requestSlot) {
        check(mpi_h.MPI_Ireduce(send, recv, count, datatype, op, root, comm, requestSlot), "MPI_Ireduce");
    }

    public static void ireduceScatterBlock(MemorySegment send, MemorySegment recv, int recvCount, MemorySegment datatype,
                                           MemorySegment op, MemorySegment comm, MemorySegment requestSlot) {
        check(mpi_h.MPI_Ireduce_scatter_block(send, recv, recvCount, datatype, op, comm, requestSlot), "MPI_Ireduce_scatter_block");
    }

    public static void iallgather(MemorySegment send, int sendCount, MemorySegment sendType, MemorySegment recv, int recvCount,
                                  MemorySegment recvType, MemorySegment comm, MemorySegment requestSlot) {
        check(mpi_h.MPI_Iallgather(send, sendCount, sendType, recv, recvCount, recvType, comm, requestSlot), "MPI_Iallgather");
    }

    public static void ibcast(MemorySegment buffer, int count, MemorySegment datatype, int root, MemorySegment comm,
                              MemorySegment requestSlot) {
        check(mpi_h.MPI_Ibcast(buffer, count, datatype, root, comm, requestSlot), "MPI_Ibcast");
    }

    public static void ibarrier(MemorySegment comm, MemorySegment requestSlot) {
        check(mpi_h.MPI_Ibarrier(comm, requestSlot), "MPI_Ibarrier");
    }

    /**
     * MPI_Test on a request slot; {@code flag} is a JAVA_INT scratch segment. Returns whether the request completed
     * (MPI then sets the slot to MPI_REQUEST_NULL, and testing it again returns true).
     */
    public static boolean test(MemorySegment requestSlot, MemorySegment flag, MemorySegment status) {
        check(mpi_h.MPI_Test(requestSlot, flag, status), "MPI_Test");
        return flag.get(ValueLayout.JAVA_INT, 0) != 0;
    }

    // ------------------------------------------------------------------------------------------- helpers

    @FunctionalInterface
    private interface OutCall {
        int call(MemorySegment out);
    }

    private static int intOut(OutCall c, String call) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            check(c.call(out), call);
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }
}
