package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * One rank's handle on a group of the {@code local} engine (see {@link LocalWorld}). Collectives meet in
 * a {@link LocalRound}: the last rank to arrive reduces every rank's buffer in rank order into one
 * result, and each rank copies its part of that result at await(), so every rank gets the same bits.
 * The work is done inside the calls of the ranks themselves; there is no comm thread.
 */
public final class LocalProcessGroup implements ProcessGroup {
    private final LocalGroupState group;
    private final int rank;
    private long calls;
    private boolean closed;

    LocalProcessGroup(LocalGroupState group, int rank) {
        this.group = group;
        this.rank = rank;
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int size() {
        return group.size();
    }

    @Override
    public String engine() {
        return "local";
    }

    private int worldRank() {
        return group.worldRanks[rank];
    }

    // ---------------------------------------------------------------- collectives

    @Override
    public Work allReduceAsync(Tensor t, ReduceOp op) {
        String what = "allReduce";
        checkOp(what, op);
        LocalBuffer buf = buffer(what, t);
        return collective(what, what + "(" + op + ", " + buf.describe() + ")", buf,
                round -> LocalReduce.reduce(segments(round), buf.dtype, op, buf.numel, round.arena),
                result -> buf.copyFrom((MemorySegment) result, 0), buf);
    }

    @Override
    public Work reduceScatterAsync(Tensor input, Tensor output, ReduceOp op) {
        String what = "reduceScatter";
        checkOp(what, op);
        LocalBuffer[] io = wholeAndChunk(what, input, "input", output, "output");
        LocalBuffer in = io[0], out = io[1];
        long chunkBytes = out.bytes.byteSize();
        return collective(what, what + "(" + op + ", " + out.describe() + " per rank)", in,
                round -> LocalReduce.reduce(segments(round), in.dtype, op, in.numel, round.arena),
                result -> out.copyFrom((MemorySegment) result, rank * chunkBytes), in, out);
    }

    @Override
    public Work allGatherAsync(Tensor input, Tensor output) {
        String what = "allGather";
        LocalBuffer[] oi = wholeAndChunk(what, output, "output", input, "input");
        LocalBuffer out = oi[0], in = oi[1];
        return collective(what, what + "(" + in.describe() + " per rank)", in, round -> {
            long chunk = in.bytes.byteSize();
            MemorySegment all = round.arena.allocate(Math.max(1, chunk * size()), 64);
            List<MemorySegment> parts = segments(round);
            for (int q = 0; q < parts.size(); q++) MemorySegment.copy(parts.get(q), 0, all, q * chunk, chunk);
            return all;
        }, result -> out.copyFrom((MemorySegment) result, 0), in, out);
    }

    @Override
    public Work broadcastAsync(Tensor t, int root) {
        String what = "broadcast";
        checkRank(what, "root", root);
        LocalBuffer buf = buffer(what, t);
        return collective(what, what + "(root " + root + ", " + buf.describe() + ")", buf, round -> {
            MemorySegment src = segments(round).get(root);
            return round.arena.allocate(Math.max(1, src.byteSize()), 64).copyFrom(src);
        }, result -> {
            if (rank != root) buf.copyFrom((MemorySegment) result, 0);
        }, buf);
    }

    @Override
    public void barrier() {
        collective("barrier", "barrier", null, round -> null, result -> {}).await();
    }

    /** MPI_Comm_split: {@code color} must be >= 0 (there is no MPI_UNDEFINED: every rank joins a group). */
    @Override
    public ProcessGroup split(int color, int key) {
        String what = "split";
        if (color < 0) throw new CommException(what + " on rank " + worldRank() + ": color must be >= 0, got " + color);
        LocalCollectiveWork work = collective(what, what, new int[] {color, key, rank}, this::splitGroups, result -> {});
        work.await();
        LocalProcessGroup[] mine = (LocalProcessGroup[]) work.result();
        return mine[rank];
    }

    /** Every rank's new handle: groups by color, ordered by key then old rank. */
    private LocalProcessGroup[] splitGroups(LocalRound round) {
        TreeMap<Integer, List<int[]>> byColor = new TreeMap<>();
        for (Object c : round.contributions) {
            int[] ck = (int[]) c;
            byColor.computeIfAbsent(ck[0], k -> new ArrayList<>()).add(ck);
        }
        LocalProcessGroup[] handles = new LocalProcessGroup[size()];
        for (List<int[]> members : byColor.values()) {
            members.sort(Comparator.<int[]>comparingInt(m -> m[1]).thenComparingInt(m -> m[2]));
            int[] worldRanks = members.stream().mapToInt(m -> group.worldRanks[m[2]]).toArray();
            LocalGroupState state = new LocalGroupState(group.world, worldRanks);
            for (int i = 0; i < members.size(); i++) handles[members.get(i)[2]] = new LocalProcessGroup(state, i);
        }
        return handles;
    }

    /**
     * Arrives at this rank's next round of this group. The last to arrive runs {@code combine} (outside
     * the lock: nobody touches the inputs until the round completes).
     */
    private LocalCollectiveWork collective(String what, String descriptor, Object contribution,
                                           Function<LocalRound, Object> combine, Consumer<Object> finish,
                                           LocalBuffer... buffers) {
        LocalWorld w = group.world;
        LocalRound round;
        LocalCollectiveWork work;
        boolean last;
        w.lock();
        try {
            try {
                checkUsable(what);
                w.checkAlive(what, worldRank());
            } catch (CommException e) {
                closeAll(buffers);
                throw e;
            }
            long call = calls++;
            round = group.rounds.computeIfAbsent(call, c -> new LocalRound(c, size(), descriptor, worldRank()));
            round.arrive(rank, worldRank(), descriptor, contribution);
            work = new LocalCollectiveWork(group, round, what, rank, finish, buffers);
            last = round.arrivals == size();
            if (last) group.rounds.remove(call);
            w.signalAll();
        } finally {
            w.unlock();
        }
        if (last && round.error == null) combineRound(round, combine, what);
        return work;
    }

    private void combineRound(LocalRound round, Function<LocalRound, Object> combine, String what) {
        LocalWorld w = group.world;
        Object result = null;
        String error = null;
        w.lock();
        try {
            round.arena = java.lang.foreign.Arena.ofShared();
        } finally {
            w.unlock();
        }
        try {
            result = combine.apply(round);
        } catch (RuntimeException | OutOfMemoryError e) {
            error = what + " failed on rank " + worldRank() + " while combining the ranks' buffers: " + e;
        }
        w.lock();
        try {
            round.result = result;
            round.error = error;
            round.complete = error == null;
            w.signalAll();
        } finally {
            w.unlock();
        }
    }

    private static List<MemorySegment> segments(LocalRound round) {
        List<MemorySegment> s = new ArrayList<>(round.contributions.length);
        for (Object c : round.contributions) s.add(((LocalBuffer) c).bytes);
        return s;
    }

    // ---------------------------------------------------------------- point to point

    @Override
    public Work sendAsync(Tensor t, int dst, int tag) {
        return pointToPoint("send", true, t, dst, tag);
    }

    @Override
    public Work recvAsync(Tensor t, int src, int tag) {
        return pointToPoint("recv", false, t, src, tag);
    }

    private Work pointToPoint(String what, boolean isSend, Tensor t, int peer, int tag) {
        checkRank(what, isSend ? "destination" : "source", peer);
        if (tag < 0) throw new CommException(what + " on rank " + worldRank() + ": tag must be >= 0 (as in MPI), got " + tag);
        if (peer == rank) {
            throw new CommException(what + " on rank " + worldRank() + ": a rank cannot " + what + " to itself on the local engine"
                    + " (it would wait for itself); copy the tensor instead");
        }
        LocalBuffer buf = buffer(what, t);
        LocalWorld w = group.world;
        w.lock();
        try {
            checkUsable(what);
            w.checkAlive(what, worldRank());
            LocalP2pWork work = isSend ? new LocalP2pWork(group, true, rank, peer, tag, buf)
                    : new LocalP2pWork(group, false, peer, rank, tag, buf);
            work.post();
            return work;
        } catch (CommException e) {
            buf.close();
            throw e;
        } finally {
            w.unlock();
        }
    }

    // ---------------------------------------------------------------- lifetime and failure

    /** The job's first failure (another rank's exception or abort), or null: lets a GPU engine stop waiting. */
    String jobFailure() {
        return group.world.failureOrNull();
    }

    @Override
    public RuntimeException abort(String reason) {
        String message = "rank " + worldRank() + " aborted: " + reason;
        group.world.fail(message, null);
        throw new CommException(message);
    }

    /** Marks this handle closed; later calls on it fail. Work in flight still completes. */
    @Override
    public void close() {
        group.world.lock();
        try {
            closed = true;
        } finally {
            group.world.unlock();
        }
    }

    // ---------------------------------------------------------------- argument checks

    private static void closeAll(LocalBuffer... buffers) {
        for (LocalBuffer b : buffers) {
            if (b != null) b.close();
        }
    }

    private LocalBuffer buffer(String what, Tensor t) {
        checkUsable(what);
        return LocalBuffer.of(what, worldRank(), t);
    }

    private void checkUsable(String what) {
        if (closed) throw new CommException(what + " on rank " + worldRank() + ": this process group is closed");
    }

    private void checkOp(String what, ReduceOp op) {
        if (op == null) throw new CommException(what + " on rank " + worldRank() + ": the reduce op is null");
    }

    private void checkRank(String what, String role, int r) {
        if (r < 0 || r >= size()) {
            throw new CommException(what + " on rank " + worldRank() + ": " + role + " " + r + " is not a rank of this group (0.."
                    + (size() - 1) + ")");
        }
    }

    /**
     * The buffers of a reduce-scatter or an all-gather: {@code whole} must hold size() chunks of
     * {@code chunk}'s length, in the same dtype; if not, neither is retained.
     */
    private LocalBuffer[] wholeAndChunk(String what, Tensor wholeTensor, String wholeName, Tensor chunkTensor, String chunkName) {
        LocalBuffer whole = buffer(what, wholeTensor);
        LocalBuffer chunk = null;
        try {
            chunk = buffer(what, chunkTensor);
            String where = what + " on rank " + worldRank() + ": ";
            if (whole.dtype != chunk.dtype) {
                throw new CommException(where + "the " + wholeName + " is " + whole.dtype + " but the " + chunkName + " is " + chunk.dtype);
            }
            if (whole.numel != chunk.numel * size()) {
                throw new CommException(where + "the " + wholeName + " has " + whole.numel + " elements; with " + size() + " ranks and "
                        + chunk.numel + " elements in the " + chunkName + " it needs " + chunk.numel * size());
            }
            return new LocalBuffer[] {whole, chunk};
        } catch (RuntimeException e) {
            closeAll(whole, chunk);
            throw e;
        }
    }
}
