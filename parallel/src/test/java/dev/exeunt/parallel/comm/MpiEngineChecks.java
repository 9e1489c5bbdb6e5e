package dev.exeunt.parallel.comm;

import static dev.exeunt.parallel.comm.MpiTestValues.expect;
import static dev.exeunt.parallel.comm.MpiTestValues.filled;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Checks of what is particular to the mpi engine, run on every rank of a real mpirun job by {@link MpiRankMain}:
 * the chunking of messages past MPI's int count (with an artificially small limit, so that every code path of it
 * runs on small buffers), asynchronous operations that outlive the caller's tensors, receive-size mismatches,
 * and the errors bad arguments get. The engine-neutral contract is {@link CollectiveChecks}.
 */
final class MpiEngineChecks {
    private MpiEngineChecks() {
    }

    static void runAll(MpiProcessGroup world) {
        for (long limit : new long[] {1, 3, MpiProcessGroup.MAX_COUNT}) {
            MpiProcessGroup pg = world.withMaxCount(limit);
            for (DType dtype : MpiTestValues.DTYPES) {
                for (int n : new int[] {1, 7, 10}) {
                    String where = "limit " + limit + ", " + dtype + ", n=" + n + ", " + pg;
                    allReduce(pg, dtype, n, where);
                    reduceScatter(pg, dtype, n, where);
                    allGather(pg, dtype, n, where);
                    broadcast(pg, dtype, n, where);
                    sendRecvRing(pg, dtype, n, where);
                }
            }
            pg.close();
        }
        asyncOutlivesCallersTensor(world);
        manyInFlight(world);
        twoThreadsOnTwoCommunicators(world);
        badArguments(world);
        receiveSizeMismatch(world);
        world.barrier();
    }

    /** Sum of (r+1) over the ranks. */
    private static int rankWeights(int size) {
        return size * (size + 1) / 2;
    }

    private static void allReduce(ProcessGroup pg, DType dtype, int n, String where) {
        int r = pg.rank();
        int size = pg.size();
        try (Tensor sum = filled(dtype, n, i -> (r + 1) * (int) (i % 5 - 2));
             Tensor max = filled(dtype, n, i -> (r + 1) * (int) (i % 5 - 2))) {
            pg.allReduce(sum, ReduceOp.SUM);
            pg.allReduce(max, ReduceOp.MAX);
            expect("allReduce SUM, " + where, sum, i -> (int) (i % 5 - 2) * rankWeights(size));
            // Negative bases peak at rank 0, positive ones at the last rank: MAX is told apart from SUM and from "last rank wins".
            expect("allReduce MAX, " + where, max, i -> (int) (i % 5 - 2) * (i % 5 - 2 >= 0 ? size : 1));
        }
    }

    private static void reduceScatter(ProcessGroup pg, DType dtype, int n, String where) {
        int r = pg.rank();
        int size = pg.size();
        try (Tensor in = filled(dtype, (long) size * n, j -> (r + 1) * (int) (j % 7 - 3));
             Tensor out = filled(dtype, n, i -> 99);
             Tensor maxOut = filled(dtype, n, i -> 99)) {
            pg.reduceScatter(in, out, ReduceOp.SUM);
            expect("reduceScatter SUM, " + where, out, i -> (int) ((r * (long) n + i) % 7 - 3) * rankWeights(size));
            pg.reduceScatter(in, maxOut, ReduceOp.MAX);
            expect("reduceScatter MAX, " + where, maxOut, i -> {
                int base = (int) ((r * (long) n + i) % 7 - 3);
                return base * (base >= 0 ? size : 1);
            });
            expect("reduceScatter leaves its input alone, " + where, in, j -> (r + 1) * (int) (j % 7 - 3));
        }
    }

    private static void allGather(ProcessGroup pg, DType dtype, int n, String where) {
        int r = pg.rank();
        int size = pg.size();
        try (Tensor in = filled(dtype, n, i -> r * 10 + (int) (i % 10) - 50);
             Tensor out = filled(dtype, (long) size * n, j -> 99)) {
            pg.allGather(in, out);
            expect("allGather, " + where, out, j -> (int) (j / n) * 10 + (int) (j % n % 10) - 50);
        }
    }

    private static void broadcast(ProcessGroup pg, DType dtype, int n, String where) {
        int root = pg.size() - 1;
        try (Tensor t = filled(dtype, n, i -> pg.rank() == root ? (int) (i % 9) - 4 + root : 0)) {
            pg.broadcast(t, root);
            expect("broadcast from " + root + ", " + where, t, i -> (int) (i % 9) - 4 + root);
        }
    }

    private static void sendRecvRing(ProcessGroup pg, DType dtype, int n, String where) {
        int r = pg.rank();
        int size = pg.size();
        int next = (r + 1) % size;
        int prev = (r - 1 + size) % size;
        try (Tensor out = filled(dtype, n, i -> r * 3 + (int) (i % 11) - 5);
             Tensor in = filled(dtype, n, i -> 99)) {
            Work recv = pg.recvAsync(in, prev, 5);
            Work send = pg.sendAsync(out, next, 5);
            send.await();
            recv.await();
            expect("recv from " + prev + ", " + where, in, i -> prev * 3 + (int) (i % 11) - 5);
        }
    }

    /**
     * The caller closes its tensor (inside a scope, then the scope) before awaiting: the operation's own view keeps
     * the storage, so a new tensor of the same size (which HostMemory's cache would hand the freed buffer) cannot
     * receive the result, and the result lands where the caller's other view sees it.
     */
    private static void asyncOutlivesCallersTensor(ProcessGroup pg) {
        int r = pg.rank();
        int n = 1000;
        Tensor keep;
        Work work;
        try (Scope scope = Scope.open()) {
            Tensor t = filled(DType.BF16, n, i -> (r + 1) * (int) (i % 5 - 2));
            keep = Scope.outside(() -> t.view(t.shape(), t.strides(), t.offset()));
            work = pg.allReduceAsync(t, ReduceOp.SUM);
            t.close();
        }
        try (Tensor reuse = filled(DType.BF16, n, i -> 77)) {
            work.await();
            if (!work.test()) {
                throw new IllegalStateException("test() is false after await()");
            }
            expect("async allReduce after the caller closed its tensor", keep, i -> (int) (i % 5 - 2) * rankWeights(pg.size()));
            expect("an unrelated tensor of the same size is untouched", reuse, i -> 77);
        } finally {
            keep.close();
        }
    }

    /** Several operations in flight at once, completed by polling test() and then in reverse order. */
    private static void manyInFlight(ProcessGroup pg) {
        int r = pg.rank();
        List<Tensor> tensors = new ArrayList<>();
        List<Work> works = new ArrayList<>();
        try {
            for (int k = 0; k < 6; k++) {
                int kk = k;
                Tensor t = filled(DType.I32, 100 + k * 37, i -> (r + 1) * (kk + 1));
                tensors.add(t);
                works.add(pg.allReduceAsync(t, k % 2 == 0 ? ReduceOp.SUM : ReduceOp.MAX));
            }
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (!works.getFirst().test()) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("the first of 6 async allReduces did not complete in 30 s of test()");
                }
                Thread.onSpinWait();
            }
            for (int k = works.size() - 1; k >= 0; k--) {
                works.get(k).await();
            }
            for (int k = 0; k < tensors.size(); k++) {
                int kk = k;
                int expected = k % 2 == 0 ? (kk + 1) * rankWeights(pg.size()) : (kk + 1) * pg.size();
                expect("async allReduce #" + k + " of 6 in flight", tensors.get(k), i -> expected);
            }
        } finally {
            tensors.forEach(Tensor::close);
        }
    }

    /**
     * Two threads of each rank run collectives at the same time, each on its own communicator (two splits with the
     * same members: on one communicator the order of two threads' collectives would be undefined). Exercises the
     * engine's locking: every MPI call of the process goes through one lock, and awaiting never holds it.
     */
    private static void twoThreadsOnTwoCommunicators(ProcessGroup world) {
        int r = world.rank();
        try (ProcessGroup a = world.split(0, r); ProcessGroup b = world.split(0, r)) {
            Throwable[] failure = new Throwable[2];
            Thread[] threads = new Thread[2];
            ProcessGroup[] groups = {a, b};
            for (int k = 0; k < 2; k++) {
                int kk = k;
                threads[k] = new Thread(() -> {
                    try {
                        for (int it = 0; it < 40; it++) {
                            int step = it;
                            try (Tensor t = filled(DType.F32, 257 + kk * 100, i -> (r + 1) * (kk + 1) + step % 3)) {
                                groups[kk].allReduce(t, ReduceOp.SUM);
                                int size = groups[kk].size();
                                expect("thread " + kk + " allReduce #" + step, t,
                                        i -> (kk + 1) * rankWeights(size) + size * (step % 3));
                            }
                        }
                    } catch (Throwable e) {
                        failure[kk] = e;
                    }
                }, "collectives-" + k);
                threads[k].start();
            }
            for (Thread t : threads) {
                try {
                    t.join(60_000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException("interrupted", e);
                }
                if (t.isAlive()) {
                    throw new IllegalStateException(t.getName() + " did not finish 40 allReduces in 60 s");
                }
            }
            for (Throwable f : failure) {
                if (f != null) {
                    throw new IllegalStateException("a concurrent thread failed: " + f, f);
                }
            }
        }
    }

    private static void badArguments(ProcessGroup pg) {
        int size = pg.size();
        try (Tensor a = filled(DType.F32, size * 4L + 1, i -> 0);
             Tensor b = filled(DType.F32, 4, i -> 0);
             Tensor c = filled(DType.I32, 4, i -> 0);
             Tensor q = Tensor.empty(DType.Q8_0, 32)) {
            // Sizes, ranks and closed tensors are CollectiveChecks' (rejectsBadArguments); these are the engine's own.
            expectFailure("reduceScatter of uneven sizes", () -> pg.reduceScatter(a, b, ReduceOp.SUM), "expected size x output");
            expectFailure("mixed dtypes", () -> pg.allGather(b, c), "input is F32 but output is I32");
            expectFailure("quantized dtype", () -> pg.allReduce(q, ReduceOp.SUM), "dtype Q8_0 is not supported");
        }
    }

    /** Rank 0 sends 3 elements, rank 1 expects 5: the receive fails with both counts instead of reading garbage. */
    private static void receiveSizeMismatch(ProcessGroup pg) {
        if (pg.size() < 2) {
            return;
        }
        if (pg.rank() == 0) {
            try (Tensor t = filled(DType.F32, 3, i -> 1)) {
                pg.send(t, 1, 9);
            }
        } else if (pg.rank() == 1) {
            try (Tensor t = filled(DType.F32, 5, i -> 0)) {
                expectFailure("short message", () -> pg.recv(t, 0, 9), "received 3 elements where the receive expects 5");
            }
        }
        pg.barrier();
    }

    private static void expectFailure(String what, Runnable call, String messagePart) {
        try {
            call.run();
        } catch (CommException e) {
            if (e.getMessage() == null || !e.getMessage().contains(messagePart)) {
                throw new IllegalStateException(what + ": message '" + e.getMessage() + "' lacks '" + messagePart + "'", e);
            }
            return;
        }
        throw new IllegalStateException(what + ": no CommException");
    }
}
