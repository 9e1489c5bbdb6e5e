package dev.exeunt.parallel;

import dev.exeunt.model.train.GradientSync;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.comm.ReduceOp;
import dev.exeunt.parallel.comm.Work;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.autograd.Backprop;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Megatron's data-parallel gradient all-reduce for one rank of a dp group: every trainable gradient,
 * in the parameters' (name) order, is packed into flat F32 buckets of at most {@code bucketBytes}
 * (a gradient may span two buckets), one asynchronous SUM all-reduce is started per bucket, and each
 * bucket is scaled by 1/D and copied back as soon as its own all-reduce completes. Every rank thus ends
 * with the same bits, so clipping and the optimiser step stay in lockstep without further exchange.
 *
 * <p>The all-reduces overlap the backward of each step's last micro-batch ({@link #finalGradients}):
 * gradients are bucketed in reverse parameter order, the order the backward finishes them in, and a
 * bucket is sent as soon as its last gradient is final. Bucket by bucket, the sums are the same either way.
 *
 * <p>The buckets are allocated on first use and reused every step; {@link #close()} frees them.
 */
public final class DataParallelGradientSync implements GradientSync, AutoCloseable {
    /** Megatron's and PyTorch DDP's default bucket size. */
    public static final long DEFAULT_BUCKET_BYTES = 25L << 20;

    private final ProcessGroup group;
    private final int bucketElements;
    private final boolean logs;
    private final List<Tensor> buckets = new ArrayList<>();

    public DataParallelGradientSync(ProcessGroup dpGroup) {
        this(dpGroup, DEFAULT_BUCKET_BYTES);
    }

    public DataParallelGradientSync(ProcessGroup dpGroup, long bucketBytes) {
        this(dpGroup, bucketBytes, dpGroup.rank() == 0);
    }

    /**
     * {@code logs}: whether this rank prints, writes the log and saves (world rank 0 when the dp group is one
     * of several, as under tensor parallelism, where every tp rank is rank 0 of its own dp group).
     */
    public DataParallelGradientSync(ProcessGroup dpGroup, long bucketBytes, boolean logs) {
        if (bucketBytes < 4 || bucketBytes / 4 > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("bucket size must be 4 bytes to 8 GiB, got " + bucketBytes);
        }
        this.group = dpGroup;
        this.bucketElements = (int) (bucketBytes / 4);
        this.logs = logs;
    }

    @Override
    public int rank() {
        return group.rank();
    }

    @Override
    public int ranks() {
        return group.size();
    }

    @Override
    public boolean logs() {
        return logs;
    }

    /** Where elements [from, from+length) of one gradient go: bucket {@code bucket} at {@code at}. */
    private record Piece(Tensor grad, int from, int length, int bucket, int at) {}

    /** The bucket layout of the last step: which gradients, in which order, cut where. */
    private List<Tensor> layoutGrads = List.of();
    private List<Piece> pieces = List.of();
    /** The overlapped step in flight: each trainable parameter's index in the layout, buckets still waiting, started all-reduces. */
    private Map<Tensor, Integer> paramIndex, gradIndex;
    private int[][] bucketsOfParam;
    private int[] waiting;
    private Work[] started;
    private boolean[] ready;
    private boolean overlapBroken;
    private long startedDuringBackward;
    private long lastReduceNanos;

    /**
     * Overlap with the backward of the step's last micro-batch: the listener hears of each parameter whose
     * gradient is final, and a bucket's all-reduce starts as soon as all its gradients are, while the
     * backward goes on with earlier layers. It needs the layout, so the first step (and any step whose set
     * of gradients differs from the previous one's) reduces after the backward instead.
     */
    @Override
    public Backprop.LeafListener finalGradients(Map<String, Tensor> trainable) {
        abandonOverlap();
        if (group.size() == 1 || pieces.isEmpty()) return null;
        paramIndex = new IdentityHashMap<>();
        for (Tensor p : trainable.values()) {
            Integer i = p.grad() == null ? null : gradIndex.get(p.grad());
            if (i != null) paramIndex.put(p, i);
        }
        int nBuckets = buckets.size();
        waiting = new int[nBuckets];
        for (int[] bs : bucketsOfParam) for (int b : bs) waiting[b]++;
        started = new Work[nBuckets];
        ready = new boolean[layoutGrads.size()];
        overlapBroken = false;
        return leaf -> {
            Integer i = paramIndex.get(leaf);
            if (i == null) return;
            if (ready[i]) { // a second contribution after its bucket may have left: reduce this step after the backward
                overlapBroken = true;
                return;
            }
            ready[i] = true;
            for (int b : bucketsOfParam[i]) {
                if (--waiting[b] == 0 && !overlapBroken) {
                    start(b);
                    startedDuringBackward++;
                }
            }
            for (Work w : started) if (w != null) w.test(); // drives the engine's progress (MPI progresses inside its calls)
        };
    }

    /** How many bucket all-reduces so far started while the backward was still running. */
    public long bucketsStartedDuringBackward() {
        return startedDuringBackward;
    }

    /** Copies bucket b's gradients into it and starts its all-reduce. */
    private void start(int b) {
        try (var scope = Scope.open(); var noGrad = GradMode.noGrad()) {
            for (Piece p : pieces) if (p.bucket() == b) slot(p).copyFrom(part(p));
        }
        started[b] = group.allReduceAsync(buckets.get(b), ReduceOp.SUM);
    }

    /** Waits out (and discards) the all-reduces an overlapped step started, so none is left in flight. */
    private void abandonOverlap() {
        if (started != null) for (Work w : started) if (w != null) w.await();
        started = null;
    }

    @Override
    public long lastReduceNanos() {
        return lastReduceNanos;
    }

    @Override
    public void reduceGradients(Map<String, Tensor> trainable) {
        long t0 = System.nanoTime();
        try {
            reduce(trainable);
        } finally {
            lastReduceNanos = System.nanoTime() - t0;
        }
    }

    private void reduce(Map<String, Tensor> trainable) {
        List<String> names = new ArrayList<>();
        List<Tensor> grads = new ArrayList<>();
        long total = 0;
        for (var e : trainable.entrySet()) {
            Tensor g = e.getValue().grad();
            if (g == null) continue;
            if (g.dtype() != DType.F32 || !g.isContiguous()) {
                throw new IllegalStateException("gradient of " + e.getKey() + " is " + g.dtype() + (g.isContiguous() ? "" : " strided")
                        + "; the data-parallel all-reduce packs contiguous F32 gradients");
            }
            names.add(e.getKey());
            grads.add(g);
            total += g.numel();
        }
        checkSameGradients(names, total);
        if (group.size() == 1 || total == 0) return;
        // Reverse order: the backward makes the last layers' gradients final first, so buckets fill in turn.
        java.util.Collections.reverse(grads);
        boolean overlapped = started != null && !overlapBroken && sameTensors(grads, layoutGrads);
        if (!overlapped) {
            abandonOverlap();
            layoutGrads = grads;
            pieces = layout(grads);
            indexLayout();
            ensureBuckets((int) ((total + bucketElements - 1) / bucketElements), total, grads.get(0).device());
            started = new Work[buckets.size()];
        }
        // The buckets the backward did not start (all of them without overlap), in bucket order on every rank.
        for (int b = 0; b < buckets.size(); b++) if (started[b] == null) start(b);
        float inv = 1f / group.size();
        try (var scope = Scope.open(); var noGrad = GradMode.noGrad()) {
            int next = 0;
            for (int b = 0; b < buckets.size(); b++) {
                started[b].await();
                for (; next < pieces.size() && pieces.get(next).bucket() == b; next++) {
                    Piece p = pieces.get(next);
                    part(p).copyFrom(Ops.scale(slot(p), inv));
                }
            }
        }
        started = null;
    }

    /** Each gradient's index in the layout and the buckets it spans, computed once per layout. */
    private void indexLayout() {
        gradIndex = new IdentityHashMap<>();
        bucketsOfParam = new int[layoutGrads.size()][];
        for (int i = 0; i < layoutGrads.size(); i++) {
            Tensor g = layoutGrads.get(i);
            gradIndex.put(g, i);
            bucketsOfParam[i] = pieces.stream().filter(q -> q.grad() == g).mapToInt(Piece::bucket).distinct().toArray();
        }
    }

    private static boolean sameTensors(List<Tensor> a, List<Tensor> b) {
        if (a.size() != b.size()) return false;
        for (int i = 0; i < a.size(); i++) if (a.get(i) != b.get(i)) return false;
        return true;
    }

    /** Cuts the concatenation of all gradients into bucket-sized runs, in order. */
    private List<Piece> layout(List<Tensor> grads) {
        List<Piece> pieces = new ArrayList<>();
        int bucket = 0, at = 0;
        for (Tensor g : grads) {
            int n = (int) g.numel();
            for (int from = 0; from < n; ) {
                int len = Math.min(n - from, bucketElements - at);
                pieces.add(new Piece(g, from, len, bucket, at));
                from += len;
                at += len;
                if (at == bucketElements) {
                    bucket++;
                    at = 0;
                }
            }
        }
        return pieces;
    }

    private Tensor part(Piece p) {
        return p.grad().reshape(-1).narrow(0, p.from(), p.length());
    }

    private Tensor slot(Piece p) {
        return buckets.get(p.bucket()).narrow(0, p.at(), p.length());
    }

    /** Full buckets of bucketElements and a last one holding the rest; reallocated only when the total changes. */
    private void ensureBuckets(int n, long total, Device device) {
        long have = 0;
        for (Tensor b : buckets) have += b.numel();
        if (buckets.size() == n && have == total && buckets.get(0).device().equals(device)) return;
        freeBuckets();
        for (int b = 0; b < n; b++) {
            int size = (int) Math.min(bucketElements, total - (long) b * bucketElements);
            buckets.add(Scope.outside(() -> Tensor.empty(DType.F32, device, size)));
        }
    }

    /**
     * Fails on every rank, with the same message, when the ranks hold different sets of gradients (a
     * replica built differently, an exit that ran on one rank only): their buckets would not line up
     * and the sums would silently mix unrelated parameters.
     */
    private void checkSameGradients(List<String> names, long total) {
        int[] mine = {names.size(), (int) total, (int) (total >>> 32), String.join(",", names).hashCode()};
        int[] all = allGather(mine);
        for (int r = 1; r < group.size(); r++) {
            for (int k = 0; k < mine.length; k++) {
                if (all[r * mine.length + k] != all[k]) {
                    throw new IllegalStateException(String.format(
                            "data-parallel ranks hold different gradients: rank 0 has %d tensors of %d elements, rank %d has %d "
                                    + "tensors of %d elements (or other names); every rank must train the same parameters",
                            all[0], pack(all[1], all[2]), r, all[r * 4], pack(all[r * 4 + 1], all[r * 4 + 2])));
                }
            }
        }
    }

    /**
     * The mean over ranks in double precision: each rank's doubles travel bit for bit (as I32 pairs through
     * an all-gather) and every rank sums them in rank order, so all ranks get the same result.
     */
    /** The mean over ranks in double precision, the same bits on every rank ({@link ExactSums}). */
    @Override
    public void averageScalars(double[] values) {
        if (values.length == 0) return;
        double[] sums = ExactSums.overRanks(values, group.size(), group::allGather);
        for (int i = 0; i < values.length; i++) values[i] = sums[i] / group.size();
    }

    private static long pack(int lo, int hi) {
        return (lo & 0xFFFFFFFFL) | ((long) hi << 32);
    }

    private int[] allGather(int[] mine) {
        return ExactSums.allGatherInts(mine, group.size(), group::allGather);
    }

    /** Frees the buckets (the group belongs to the caller). */
    @Override
    public void close() {
        abandonOverlap();
        freeBuckets();
        layoutGrads = List.of();
        pieces = List.of();
    }

    private void freeBuckets() {
        buckets.forEach(Tensor::close);
        buckets.clear();
    }

    @Override
    public String toString() {
        return "data parallel rank " + rank() + " of " + ranks() + " (" + group.engine() + ", buckets of "
                + bucketElements * 4L + " bytes)";
    }
}
