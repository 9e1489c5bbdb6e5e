package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.Tensor;

/**
 * A group of ranks that communicate, in the terms of torch.distributed and Megatron: every rank of
 * the group calls the same collectives in the same order. Buffers are contiguous host tensors
 * (device tensors for an engine on a GPU) of F32, BF16, F16, I32 or I8; sizes are in elements and any
 * size works (no multiple of the group size is needed except where stated). Every rank ends a
 * reduction with the same bits. Integer sums wrap in two's complement (I32 modulo 2^32, I8 modulo
 * 2^8), as MPI's and NCCL's do. Tags are >= 0, as in MPI.
 *
 * <p>Engines: {@code local} (one thread per rank in one JVM), {@code mpi} (one process per rank under
 * mpirun), {@code nccl} (GPU). Each blocking call has an asynchronous form returning a {@link Work};
 * the blocking form is the asynchronous one followed by {@link Work#await()}.
 *
 * <p>Failure: when any rank fails, every rank's pending and later calls end in a
 * {@link CommException} carrying the failing rank's message; nothing hangs.
 */
public interface ProcessGroup extends AutoCloseable {
    /** This process's (or thread's) rank in the group, 0..size-1. */
    int rank();

    int size();

    /** "local", "mpi" or "nccl". */
    String engine();

    /** In place: every rank's {@code t} becomes the element-wise reduction of all ranks' {@code t}. */
    Work allReduceAsync(Tensor t, ReduceOp op);

    /**
     * {@code output} (n elements) on rank r becomes the reduction over ranks of elements [r*n, (r+1)*n) of
     * {@code input} (size*n elements).
     */
    Work reduceScatterAsync(Tensor input, Tensor output, ReduceOp op);

    /** {@code output} (size*n elements) becomes the concatenation, in rank order, of every rank's {@code input} (n elements). */
    Work allGatherAsync(Tensor input, Tensor output);

    /** Every rank's {@code t} becomes {@code root}'s. */
    Work broadcastAsync(Tensor t, int root);

    /** Sends {@code t} to rank {@code dst}; matched by a {@link #recvAsync} with the same tag on {@code dst}. */
    Work sendAsync(Tensor t, int dst, int tag);

    /** Receives into {@code t} (same dtype and element count as the matching send) from rank {@code src}. */
    Work recvAsync(Tensor t, int src, int tag);

    /** Returns when every rank of the group has called it. */
    void barrier();

    /**
     * Splits this group, as MPI_Comm_split: ranks passing the same {@code color} form a new group, ordered
     * by {@code key} then by rank here. Collective over this group; every rank gets its own new group.
     */
    ProcessGroup split(int color, int key);

    /** Ends the whole job from this rank: every other rank's calls fail with {@code reason}. Never returns normally. */
    RuntimeException abort(String reason);

    /** Frees this group's resources (not the engine's world). */
    @Override
    void close();

    default void allReduce(Tensor t, ReduceOp op) {
        allReduceAsync(t, op).await();
    }

    default void reduceScatter(Tensor input, Tensor output, ReduceOp op) {
        reduceScatterAsync(input, output, op).await();
    }

    default void allGather(Tensor input, Tensor output) {
        allGatherAsync(input, output).await();
    }

    default void broadcast(Tensor t, int root) {
        broadcastAsync(t, root).await();
    }

    default void send(Tensor t, int dst, int tag) {
        sendAsync(t, dst, tag).await();
    }

    default void recv(Tensor t, int src, int tag) {
        recvAsync(t, src, tag).await();
    }
}
