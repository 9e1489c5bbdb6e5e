package dev.exeunt.parallel.comm;

import static dev.exeunt.parallel.comm.TypedValues.get;
import static dev.exeunt.parallel.comm.TypedValues.rounded;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongToDoubleFunction;

/**
 * The contract every {@link ProcessGroup} engine must meet, as plain static methods: each is called by
 * every rank of {@code pg} at the same point (SPMD) and throws an {@link AssertionError} naming the
 * rank, the operation, the dtype, the size and the first wrong element. The same methods run on the
 * {@code local} engine under JUnit and on {@code mpi} from a main() under mpirun.
 *
 * <p>Values tell the ranks apart and SUM from MAX: rank r holds {@code ±((r+1)*1000 + i mod 997)} at
 * element i (F32, I32) or {@code ±((r+1)*4 + i mod 3)} (BF16, F16, I8, whose sums must stay exact),
 * the sign depending on {@code (i + r) mod 3}. Those sums are exact in every dtype for up to 5 ranks
 * (I8) or 7 (BF16), so any summation order must give exactly the expected value.
 */
public final class CollectiveChecks {
    public static final DType[] DTYPES = {DType.F32, DType.BF16, DType.F16, DType.I32, DType.I8};
    /** Element counts: one, a few, odd, and just over 2^20 (over a cache line, over any one-block path). */
    public static final long[] SIZES = {1, 3, 1023, (1L << 20) + 7};
    /** Per-rank chunk sizes for reduce-scatter and all-gather (times the group size in the big buffer). */
    public static final long[] CHUNKS = {1, 3, 1023, (1L << 18) + 5};
    /** The tens-of-MB case: 32 MiB of F32 plus a few elements. */
    public static final long LARGE = (8L << 20) + 5;

    private CollectiveChecks() {}

    /** Every check but {@link #abortFromLastRank}, in order; every rank calls it. */
    public static void runAll(ProcessGroup pg) {
        rejectsBadArguments(pg);
        allReduceSumAndMax(pg);
        allReduceBitIdenticalOnEveryRank(pg);
        reduceScatter(pg);
        allGather(pg);
        broadcastFromEveryRoot(pg);
        sendRecvEveryPair(pg);
        sendRecvMatchesBySourceAndTag(pg);
        barrierKeepsCollectivesInStep(pg);
        splitUnevenColors(pg);
        asyncWithTensorsClosedBeforeAwait(pg);
        testIsFalseUntilEveryRankHasCalled(pg);
        largeAllReduce(pg);
    }

    /** Rank r's value at element i. */
    public static double value(DType d, int r, long i) {
        double sign = (i + r) % 3 == 0 ? -1 : 1;
        boolean narrow = d == DType.BF16 || d == DType.F16 || d == DType.I8;
        return narrow ? sign * ((r + 1) * 4 + i % 3) : sign * ((r + 1) * 1000 + i % 997);
    }

    /** The reduction over ranks 0..size-1 of {@link #value}, as stored in {@code d}. */
    static double reduced(DType d, ReduceOp op, int size, long i) {
        double acc = op == ReduceOp.SUM ? 0 : Double.NEGATIVE_INFINITY;
        for (int q = 0; q < size; q++) {
            double v = value(d, q, i);
            acc = op == ReduceOp.SUM ? acc + v : Math.max(acc, v);
        }
        return rounded(d, acc);
    }

    // ---------------------------------------------------------------- collectives

    public static void allReduceSumAndMax(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        for (DType d : DTYPES) {
            for (long n : SIZES) {
                for (ReduceOp op : ReduceOp.values()) {
                    try (Tensor t = EngineTensors.filled(pg, d, n, i -> value(d, r, i))) {
                        pg.allReduce(t, op);
                        expect(pg, "allReduce " + op + " " + d + " n=" + n, t, i -> reduced(d, op, s, i));
                    }
                }
            }
        }
    }

    /** Non-integer values: every rank must end with the same bits (the reduction order is the engine's). */
    public static void allReduceBitIdenticalOnEveryRank(ProcessGroup pg) {
        int r = pg.rank();
        for (DType d : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            try (Tensor t = EngineTensors.filled(pg, d, 4099, i -> Math.sin(r * 1.7 + i * 0.31) * 100)) {
                pg.allReduce(t, ReduceOp.SUM);
                long h;
                try (Tensor host = EngineTensors.onHost(t)) {
                    for (long i = 0; i < host.numel(); i++) {
                        double want = 0;
                        for (int q = 0; q < pg.size(); q++) want += rounded(d, Math.sin(q * 1.7 + i * 0.31) * 100);
                        double tol = (d == DType.F32 ? 1e-4 : 0.05) * pg.size() * Math.max(1, Math.abs(want));
                        if (Math.abs(get(host, i) - want) > tol) {
                            fail(pg, "allReduce SUM " + d + " of fractions: element " + i + " is " + get(host, i) + ", expected about " + want);
                        }
                    }
                    h = TypedValues.bitsHash(host);
                }
                try (Tensor mine = EngineTensors.ints(pg, (int) h, (int) (h >>> 32));
                     Tensor all = EngineTensors.filled(pg, DType.I32, 2 * pg.size(), i -> 0)) {
                    pg.allGather(mine, all);
                    int[] hs = EngineTensors.toInts(all);
                    for (int q = 0; q < pg.size(); q++) {
                        if (hs[2 * q] != hs[0] || hs[2 * q + 1] != hs[1]) {
                            fail(pg, "allReduce SUM " + d + " of fractions: rank " + q + "'s result differs in its bits from rank 0's");
                        }
                    }
                }
            }
        }
    }

    public static void reduceScatter(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        for (DType d : DTYPES) {
            for (long n : CHUNKS) {
                for (ReduceOp op : ReduceOp.values()) {
                    try (Tensor in = EngineTensors.filled(pg, d, s * n, j -> value(d, r, j));
                         Tensor out = EngineTensors.filled(pg, d, n, i -> 99)) {
                        pg.reduceScatter(in, out, op);
                        expect(pg, "reduceScatter " + op + " " + d + " n=" + n, out, i -> reduced(d, op, s, r * n + i));
                    }
                }
            }
        }
    }

    public static void allGather(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        for (DType d : DTYPES) {
            for (long n : CHUNKS) {
                try (Tensor in = EngineTensors.filled(pg, d, n, i -> value(d, r, i));
                     Tensor out = EngineTensors.filled(pg, d, s * n, i -> 99)) {
                    pg.allGather(in, out);
                    expect(pg, "allGather " + d + " n=" + n, out, j -> value(d, (int) (j / n), j % n));
                }
            }
        }
    }

    public static void broadcastFromEveryRoot(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        for (int root = 0; root < s; root++) {
            int from = root;
            for (DType d : DTYPES) {
                for (long n : new long[] {1, 1023}) {
                    broadcastOnce(pg, d, n, from, r);
                }
            }
        }
        broadcastOnce(pg, DType.F32, (1L << 20) + 7, s - 1, r);
    }

    private static void broadcastOnce(ProcessGroup pg, DType d, long n, int root, int r) {
        try (Tensor t = EngineTensors.filled(pg, d, n, i -> value(d, r, i))) {
            pg.broadcast(t, root);
            expect(pg, "broadcast from root " + root + " " + d + " n=" + n, t, i -> value(d, root, i));
        }
    }

    // ---------------------------------------------------------------- point to point

    /** Every ordered pair (a, b) in one global order, so blocking sends and receives cannot deadlock. */
    public static void sendRecvEveryPair(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        for (int a = 0; a < s; a++) {
            for (int b = 0; b < s; b++) {
                if (a == b || (r != a && r != b)) continue;
                int pair = a * s + b;
                DType d = DTYPES[pair % DTYPES.length];
                long n = pair % 2 == 0 ? 1023 : 3;
                if (a == 0 && b == s - 1) n = (1L << 20) + 7;
                int src = a;
                if (r == a) {
                    try (Tensor t = EngineTensors.filled(pg, d, n, i -> value(d, src, i))) {
                        pg.send(t, b, pair);
                    }
                } else {
                    try (Tensor t = EngineTensors.filled(pg, d, n, i -> 99)) {
                        pg.recv(t, a, pair);
                        expect(pg, "recv from " + a + " tag " + pair + " " + d + " n=" + n, t, i -> value(d, src, i));
                    }
                }
            }
        }
    }

    /** Receives match the (source, tag) asked for, in send order among equal (source, tag) messages. */
    public static void sendRecvMatchesBySourceAndTag(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        if (s < 2) return;
        int n = 17;
        if (r == 0 || (r == 2 && s > 2)) {
            int[][] messages = r == 0 ? new int[][] {{7, 1}, {5, 2}, {7, 3}} : new int[][] {{5, 4}};
            List<Tensor> bufs = new ArrayList<>();
            List<Work> works = new ArrayList<>();
            for (int[] m : messages) {
                Tensor t = EngineTensors.filled(pg, DType.I32, n, i -> m[1] * 100_000 + i);
                bufs.add(t);
                works.add(pg.sendAsync(t, 1, m[0]));
            }
            works.forEach(Work::await);
            bufs.forEach(Tensor::close);
        } else if (r == 1) {
            if (s > 2) recvExpect(pg, 2, 5, n, 4);
            recvExpect(pg, 0, 5, n, 2);
            recvExpect(pg, 0, 7, n, 1);
            recvExpect(pg, 0, 7, n, 3);
        }
    }

    private static void recvExpect(ProcessGroup pg, int src, int tag, int n, int message) {
        try (Tensor t = EngineTensors.filled(pg, DType.I32, n, i -> -1)) {
            pg.recv(t, src, tag);
            expect(pg, "recv(src " + src + ", tag " + tag + ") should get message " + message, t, i -> message * 100_000 + i);
        }
    }

    // ---------------------------------------------------------------- barrier, split

    public static void barrierKeepsCollectivesInStep(ProcessGroup pg) {
        for (int k = 0; k < 3; k++) {
            pg.barrier();
            int step = k;
            try (Tensor t = EngineTensors.ints(pg, k * (pg.rank() + 1))) {
                pg.allReduce(t, ReduceOp.SUM);
                expect(pg, "allReduce after barrier " + k, t, i -> step * pg.size() * (pg.size() + 1) / 2);
            }
        }
    }

    /** Colors of unequal sizes, keys that reverse the order, a nested split, and the parent still usable. */
    public static void splitUnevenColors(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        // {0} and {1..s-1}, the second ordered by descending rank
        try (ProcessGroup sub = pg.split(r == 0 ? 0 : 1, -r)) {
            List<Integer> members = new ArrayList<>();
            if (r == 0) members.add(0);
            else for (int q = s - 1; q >= 1; q--) members.add(q);
            expectGroup(pg, "split(rank==0 ? 0 : 1, -rank)", sub, members);
            // by parity of the rank there (uneven for an odd size), keys equal: ordered by rank
            try (ProcessGroup nested = sub.split(sub.rank() % 2, 0)) {
                List<Integer> nestedMembers = new ArrayList<>();
                for (int k = sub.rank() % 2; k < members.size(); k += 2) nestedMembers.add(members.get(k));
                expectGroup(pg, "nested split(rank % 2, 0)", nested, nestedMembers);
            }
        }
        try (ProcessGroup all = pg.split(7, 0)) {
            List<Integer> members = new ArrayList<>();
            for (int q = 0; q < s; q++) members.add(q);
            expectGroup(pg, "split(7, 0) of everyone", all, members);
        }
        barrierKeepsCollectivesInStep(pg);
    }

    /** {@code g}'s size, this rank's place in it, and (through an all-gather there) its members' ranks in pg. */
    private static void expectGroup(ProcessGroup pg, String what, ProcessGroup g, List<Integer> members) {
        int r = pg.rank();
        if (g.size() != members.size() || g.rank() != members.indexOf(r)) {
            fail(pg, what + ": got rank " + g.rank() + " of " + g.size() + ", expected rank " + members.indexOf(r)
                    + " of " + members.size() + " (members " + members + ")");
        }
        try (Tensor mine = EngineTensors.ints(pg, r); Tensor ranks = EngineTensors.filled(pg, DType.I32, g.size(), i -> 0)) {
            g.allGather(mine, ranks);
            expect(pg, what + ": members in group order", ranks, k -> members.get((int) k));
        }
        try (Tensor t = EngineTensors.ints(pg, r)) {
            g.allReduce(t, ReduceOp.SUM);
            expect(pg, what + ": sum of member ranks", t, k -> members.stream().mapToInt(Integer::intValue).sum());
        }
    }

    // ---------------------------------------------------------------- async and lifetime

    /**
     * Each asynchronous form with the caller's tensor closed before await(), then a tensor of the same size
     * allocated and filled with garbage (were the storage freed, the allocator's cache would hand that
     * memory straight back): the data must still be right and no tensor memory may stay allocated.
     */
    public static void asyncWithTensorsClosedBeforeAwait(ProcessGroup pg) {
        leavesNoTensorMemory(pg, "async forms", () -> asyncClosedBeforeAwait(pg));
    }

    private static void asyncClosedBeforeAwait(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        long n = (1L << 16) + 3;

        Tensor t = EngineTensors.filled(pg, DType.F32, n, i -> value(DType.F32, r, i));
        Work w = pg.allReduceAsync(t, ReduceOp.SUM);
        Tensor garbage = null;
        if (r == 0) {
            t.close();
            garbage = EngineTensors.filled(pg, DType.F32, n, i -> -7);
        }
        w.await();
        if (!w.test()) fail(pg, "allReduceAsync: test() is false after await()");
        if (r != 0) expect(pg, "allReduceAsync with rank 0's tensor closed before await", t, i -> reduced(DType.F32, ReduceOp.SUM, s, i));
        t.close();
        if (garbage != null) garbage.close();

        int root = s - 1;
        t = EngineTensors.filled(pg, DType.BF16, n, i -> value(DType.BF16, r, i));
        w = pg.broadcastAsync(t, root);
        garbage = null;
        if (r == root) {
            t.close();
            garbage = EngineTensors.filled(pg, DType.BF16, n, i -> -7);
        }
        w.await();
        if (r != root) expect(pg, "broadcastAsync with the root's tensor closed before await", t, i -> value(DType.BF16, root, i));
        t.close();
        if (garbage != null) garbage.close();

        try (Tensor out = EngineTensors.filled(pg, DType.I32, s * n, i -> 99)) {
            Tensor in = EngineTensors.filled(pg, DType.I32, n, i -> value(DType.I32, r, i));
            w = pg.allGatherAsync(in, out);
            in.close();
            try (Tensor g = EngineTensors.filled(pg, DType.I32, n, i -> -7)) {
                w.await();
            }
            expect(pg, "allGatherAsync with every input closed before await", out, j -> value(DType.I32, (int) (j / n), j % n));
        }

        try (Tensor out = EngineTensors.filled(pg, DType.F16, n, i -> 99)) {
            Tensor in = EngineTensors.filled(pg, DType.F16, s * n, j -> value(DType.F16, r, j));
            w = pg.reduceScatterAsync(in, out, ReduceOp.MAX);
            in.close();
            try (Tensor g = EngineTensors.filled(pg, DType.F16, s * n, i -> -7)) {
                w.await();
            }
            expect(pg, "reduceScatterAsync with every input closed before await", out, i -> reduced(DType.F16, ReduceOp.MAX, s, r * n + i));
        }

        if (s >= 2 && (r == 0 || r == 1)) {
            if (r == 0) {
                Tensor msg = EngineTensors.filled(pg, DType.I8, n, i -> value(DType.I8, 0, i));
                w = pg.sendAsync(msg, 1, 11);
                msg.close();
                try (Tensor g = EngineTensors.filled(pg, DType.I8, n, i -> -7)) {
                    w.await();
                }
            } else {
                try (Tensor got = EngineTensors.filled(pg, DType.I8, n, i -> 99)) {
                    pg.recv(got, 0, 11);
                    expect(pg, "recv of a sendAsync whose tensor was closed before await", got, i -> value(DType.I8, 0, i));
                }
                Tensor dropped = EngineTensors.filled(pg, DType.I8, n, i -> 99);
                w = pg.recvAsync(dropped, 0, 12);
                dropped.close();
                w.await();
            }
            if (r == 0) {
                try (Tensor msg = EngineTensors.filled(pg, DType.I8, n, i -> 1)) {
                    pg.send(msg, 1, 12);
                }
            }
        }
    }

    /**
     * Rank 0 starts an all-reduce and polls it with test(): false while rank 1 has provably not called
     * it yet (rank 1 first waits for a message that rank 0 sends only after that test), then polled until
     * true, which must complete it without await().
     */
    public static void testIsFalseUntilEveryRankHasCalled(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        if (s < 2) return;
        try (Tensor t = EngineTensors.filled(pg, DType.I32, 5, i -> value(DType.I32, r, i)); Tensor token = EngineTensors.filled(pg, DType.I8, 1, i -> 1)) {
            if (r == 0) {
                Work w = pg.allReduceAsync(t, ReduceOp.MAX);
                if (w.test()) fail(pg, "test() of an allReduce is true before rank 1 has called it");
                pg.send(token, 1, 21);
                while (!w.test()) Thread.onSpinWait();
                w.await();
            } else {
                if (r == 1) pg.recv(token, 0, 21);
                pg.allReduce(t, ReduceOp.MAX);
            }
            expect(pg, "allReduce MAX I32 completed by polling test()", t, i -> reduced(DType.I32, ReduceOp.MAX, s, i));
        }
    }

    public static void largeAllReduce(ProcessGroup pg) {
        int r = pg.rank(), s = pg.size();
        try (Tensor t = EngineTensors.filled(pg, DType.F32, LARGE, i -> value(DType.F32, r, i))) {
            pg.allReduce(t, ReduceOp.SUM);
            expect(pg, "allReduce SUM F32 n=" + LARGE + " (32 MiB)", t, i -> reduced(DType.F32, ReduceOp.SUM, s, i));
        }
    }

    // ---------------------------------------------------------------- errors

    /** Arguments that cannot work are refused on the calling rank, before any communication, naming the problem. */
    public static void rejectsBadArguments(ProcessGroup pg) {
        leavesNoTensorMemory(pg, "refused calls", () -> refuseBadArguments(pg));
        barrierKeepsCollectivesInStep(pg);
    }

    private static void refuseBadArguments(ProcessGroup pg) {
        int s = pg.size();
        try (Tensor t = EngineTensors.filled(pg, DType.F32, 4, i -> i); Tensor small = EngineTensors.filled(pg, DType.F32, 3, i -> i)) {
            expectRefused(pg, "broadcast from root " + s, () -> pg.broadcast(t, s), "root", String.valueOf(s));
            expectRefused(pg, "broadcast from root -1", () -> pg.broadcast(t, -1), "root", "-1");
            expectRefused(pg, "send to rank " + s, () -> pg.send(t, s, 0), String.valueOf(s));
            expectRefused(pg, "recv from rank -1", () -> pg.recv(t, -1, 0), "-1");
            if (s > 1) expectRefused(pg, "send with tag -1", () -> pg.send(t, (pg.rank() + 1) % s, -1), "tag", "-1");
            expectRefused(pg, "reduceScatter of " + 3 + " into 4 x " + s, () -> pg.reduceScatter(small, t, ReduceOp.SUM), "3");
            expectRefused(pg, "allGather of 4 into 3", () -> pg.allGather(t, small), "3");
        }
        Tensor closed = EngineTensors.filled(pg, DType.F32, 4, i -> i);
        closed.close();
        expectRefused(pg, "allReduce of a closed tensor", () -> pg.allReduce(closed, ReduceOp.SUM), "closed");
    }

    /**
     * Runs {@code body} on every rank between barriers and checks the process holds as much tensor memory
     * afterwards as before (under the local engine all ranks share the count, hence the barriers).
     */
    private static void leavesNoTensorMemory(ProcessGroup pg, String what, Runnable body) {
        pg.barrier();
        long before = EngineTensors.allocatedBytes(pg);
        pg.barrier();
        body.run();
        pg.barrier();
        long after = EngineTensors.allocatedBytes(pg);
        pg.barrier();
        if (after != before) {
            fail(pg, what + " left " + (after - before) + " bytes of tensor memory allocated (" + before + " before, " + after + " after)");
        }
    }

    private static void expectRefused(ProcessGroup pg, String what, Runnable call, String... mustMention) {
        try {
            call.run();
        } catch (CommException e) {
            String m = String.valueOf(e.getMessage());
            for (String word : mustMention) {
                if (!m.contains(word)) fail(pg, what + ": the error \"" + m + "\" does not mention \"" + word + "\"");
            }
            return;
        }
        fail(pg, what + " was accepted; it should fail with a CommException");
    }

    /**
     * The last rank aborts; every other rank, blocked in a barrier, must get a CommException naming that
     * rank and its reason. Not in {@link #runAll}: it ends the job (under mpirun the launcher sees it end).
     */
    public static void abortFromLastRank(ProcessGroup pg) {
        int last = pg.size() - 1;
        String reason = "abort check from rank " + last;
        if (pg.rank() == last) throw pg.abort(reason);
        try {
            pg.barrier();
        } catch (CommException e) {
            String m = String.valueOf(e.getMessage());
            if (!m.contains("rank " + last) || !m.contains(reason)) {
                fail(pg, "after rank " + last + " aborted, barrier failed with \"" + m + "\", which does not name the rank and its reason");
            }
            return;
        }
        fail(pg, "barrier returned normally although rank " + last + " aborted");
    }

    // ---------------------------------------------------------------- helpers

    private static void expect(ProcessGroup pg, String what, Tensor t, LongToDoubleFunction want) {
        try (Tensor host = EngineTensors.onHost(t)) {
            for (long i = 0; i < host.numel(); i++) {
                double got = get(host, i), w = rounded(host.dtype(), want.applyAsDouble(i));
                if (Double.compare(got, w) != 0) fail(pg, what + ": element " + i + " is " + got + ", expected " + w);
            }
        }
    }

    private static void fail(ProcessGroup pg, String message) {
        throw new AssertionError(pg.engine() + " rank " + pg.rank() + " of " + pg.size() + ": " + message);
    }
}
