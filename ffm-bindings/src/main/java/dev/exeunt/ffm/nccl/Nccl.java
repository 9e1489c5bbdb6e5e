package dev.exeunt.ffm.nccl;

import dev.exeunt.ffm.loader.NativeLibraries;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Checked calls over {@link nccl_h}. Communicators and streams are opaque {@link MemorySegment}s, buffers are device
 * pointers ({@code long}), counts are in elements, data types and ops are {@code nccl_h.ncclFloat32()} /
 * {@code nccl_h.ncclSum()} constants. Collectives are asynchronous on their stream.
 */
public final class Nccl {
    private Nccl() {
    }

    public static final String LIBRARY = "nccl";

    /** Whether libnccl can be opened. Never throws. */
    public static boolean isAvailable() {
        return unavailableReason() == null;
    }

    /** Why NCCL cannot be used, or null. Never throws. */
    public static String unavailableReason() {
        return NativeLibraries.unavailableReason(LIBRARY);
    }

    /** Throws {@link NcclException} with ncclGetErrorString's text unless {@code status == ncclSuccess}. */
    public static void check(int status, String call) {
        if (status != nccl_h.ncclSuccess()) {
            throw new NcclException(call, status, errorString(status));
        }
    }

    /** ncclGetErrorString; never throws. */
    public static String errorString(int status) {
        try {
            MemorySegment p = nccl_h.ncclGetErrorString(status);
            return p.equals(MemorySegment.NULL) ? "ncclResult_t " + status : p.reinterpret(Long.MAX_VALUE).getString(0);
        } catch (RuntimeException | LinkageError e) {
            return "ncclResult_t " + status;
        }
    }

    /** ncclGetVersion: e.g. 22105 for 2.21.5 (major * 10000 + minor * 100 + patch). */
    public static int version() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            check(nccl_h.ncclGetVersion(out), "ncclGetVersion");
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    /** ncclGetUniqueId, as the 128 bytes rank 0 sends to the others (e.g. with MPI_Bcast). */
    public static byte[] uniqueId() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment id = ncclUniqueId.allocate(arena);
            check(nccl_h.ncclGetUniqueId(id), "ncclGetUniqueId");
            return id.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    /** ncclCommInitRank (the unique id travels by value); the CUDA device must be set first (cudaSetDevice). */
    public static MemorySegment commInitRank(int nranks, byte[] uniqueId, int rank) {
        if (uniqueId.length != nccl_h.NCCL_UNIQUE_ID_BYTES()) {
            throw new IllegalArgumentException("an ncclUniqueId has " + nccl_h.NCCL_UNIQUE_ID_BYTES() + " bytes, got " + uniqueId.length);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment id = ncclUniqueId.allocate(arena);
            MemorySegment.copy(uniqueId, 0, id, ValueLayout.JAVA_BYTE, 0, uniqueId.length);
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            check(nccl_h.ncclCommInitRank(out, nranks, id, rank), "ncclCommInitRank(" + nranks + ", " + rank + ")");
            return out.get(ValueLayout.ADDRESS, 0);
        }
    }

    /** ncclCommInitAll: one communicator per listed device, all in this process. */
    public static MemorySegment[] commInitAll(int... devices) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment comms = arena.allocate(ValueLayout.ADDRESS, Math.max(1, devices.length));
            check(nccl_h.ncclCommInitAll(comms, devices.length, arena.allocateFrom(ValueLayout.JAVA_INT, devices)), "ncclCommInitAll");
            MemorySegment[] out = new MemorySegment[devices.length];
            for (int i = 0; i < devices.length; i++) {
                out[i] = comms.getAtIndex(ValueLayout.ADDRESS, i);
            }
            return out;
        }
    }

    public static void commDestroy(MemorySegment comm) {
        check(nccl_h.ncclCommDestroy(comm), "ncclCommDestroy");
    }

    /** ncclCommAbort: frees the communicator without waiting for its pending operations (which are cancelled). */
    public static void commAbort(MemorySegment comm) {
        check(nccl_h.ncclCommAbort(comm), "ncclCommAbort");
    }

    /**
     * ncclCommGetAsyncError: ncclSuccess, ncclInProgress, or the error an operation of {@code comm} met after its
     * launch returned (a peer that vanished, a network failure): such an error is reported only here.
     */
    public static int commGetAsyncError(MemorySegment comm) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            check(nccl_h.ncclCommGetAsyncError(comm, out), "ncclCommGetAsyncError");
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    /** Whether the loaded libnccl has ncclCommSplit (NCCL 2.18 and later). Never throws. */
    public static boolean hasCommSplit() {
        try {
            return nccl_h.SYMBOL_LOOKUP.find("ncclCommSplit").isPresent();
        } catch (RuntimeException | LinkageError e) {
            return false;
        }
    }

    /**
     * ncclCommSplit with the parent's configuration (config NULL): collective over {@code comm}; ranks with the same
     * {@code color} (>= 0) form a new communicator ordered by {@code key}, then by rank in {@code comm}.
     */
    public static MemorySegment commSplit(MemorySegment comm, int color, int key) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            check(nccl_h.ncclCommSplit(comm, color, key, out, MemorySegment.NULL),
                    "ncclCommSplit(color " + color + ", key " + key + ")");
            return out.get(ValueLayout.ADDRESS, 0);
        }
    }

    public static int commCount(MemorySegment comm) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            check(nccl_h.ncclCommCount(comm, out), "ncclCommCount");
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    public static int commUserRank(MemorySegment comm) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            check(nccl_h.ncclCommUserRank(comm, out), "ncclCommUserRank");
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    public static void allReduce(long send, long recv, long count, int dataType, int op, MemorySegment comm, MemorySegment stream) {
        check(nccl_h.ncclAllReduce(MemorySegment.ofAddress(send), MemorySegment.ofAddress(recv), count, dataType, op, comm, stream),
                "ncclAllReduce");
    }

    /** ncclReduceScatter: {@code recvCount} elements land on each rank. */
    public static void reduceScatter(long send, long recv, long recvCount, int dataType, int op, MemorySegment comm, MemorySegment stream) {
        check(nccl_h.ncclReduceScatter(MemorySegment.ofAddress(send), MemorySegment.ofAddress(recv), recvCount, dataType, op, comm, stream),
                "ncclReduceScatter");
    }

    /** ncclAllGather: each rank contributes {@code sendCount} elements. */
    public static void allGather(long send, long recv, long sendCount, int dataType, MemorySegment comm, MemorySegment stream) {
        check(nccl_h.ncclAllGather(MemorySegment.ofAddress(send), MemorySegment.ofAddress(recv), sendCount, dataType, comm, stream),
                "ncclAllGather");
    }

    public static void broadcast(long send, long recv, long count, int dataType, int root, MemorySegment comm, MemorySegment stream) {
        check(nccl_h.ncclBroadcast(MemorySegment.ofAddress(send), MemorySegment.ofAddress(recv), count, dataType, root, comm, stream),
                "ncclBroadcast");
    }

    public static void send(long buffer, long count, int dataType, int peer, MemorySegment comm, MemorySegment stream) {
        check(nccl_h.ncclSend(MemorySegment.ofAddress(buffer), count, dataType, peer, comm, stream), "ncclSend");
    }

    public static void recv(long buffer, long count, int dataType, int peer, MemorySegment comm, MemorySegment stream) {
        check(nccl_h.ncclRecv(MemorySegment.ofAddress(buffer), count, dataType, peer, comm, stream), "ncclRecv");
    }

    public static void groupStart() {
        check(nccl_h.ncclGroupStart(), "ncclGroupStart");
    }

    public static void groupEnd() {
        check(nccl_h.ncclGroupEnd(), "ncclGroupEnd");
    }
}
