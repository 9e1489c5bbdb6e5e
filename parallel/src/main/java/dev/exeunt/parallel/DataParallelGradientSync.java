package dev.exeunt.parallel;

import dev.exeunt.model.train.GradientSync;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.comm.ReduceOp;
import dev.exeunt.parallel.comm.Work;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Megatron's data-parallel gradient all-reduce for one rank of a dp group: every trainable gradient,
 * in the parameters' (name) order, is packed into flat F32 buckets of at most {@code bucketBytes}
 * (a gradient may span two buckets), one asynchronous SUM all-reduce is started per bucket, and each
 * bucket is scaled by 1/D and copied back as soon as its own all-reduce completes. Every rank thus ends
 * with the same bits, so clipping and the optimiser step stay in lockstep without further exchange.
 *
 * <p>This step reduces after the whole backward pass; overlapping the bucket all-reduces with the
 * backward (launching a bucket when its last gradient is final) is the next step.
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

    @Override
    public void reduceGradients(Map<String, Tensor> trainable) {
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
        List<Piece> pieces = layout(grads);
        int nBuckets = (int) ((total + bucketElements - 1) / bucketElements);
        ensureBuckets(nBuckets, total, grads.get(0).device());
        float inv = 1f / group.size();
        try (var scope = Scope.open(); var noGrad = GradMode.noGrad()) {
            for (Piece p : pieces) slot(p).copyFrom(part(p));
            Work[] works = new Work[nBuckets];
            for (int b = 0; b < nBuckets; b++) works[b] = group.allReduceAsync(buckets.get(b), ReduceOp.SUM);
            int next = 0;
            for (int b = 0; b < nBuckets; b++) {
                works[b].await();
                for (; next < pieces.size() && pieces.get(next).bucket() == b; next++) {
                    Piece p = pieces.get(next);
                    part(p).copyFrom(Ops.scale(slot(p), inv));
                }
            }
        }
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
        close();
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
    @Override
    public void averageScalars(double[] values) {
        if (values.length == 0) return;
        int[] mine = new int[2 * values.length];
        for (int i = 0; i < values.length; i++) {
            long bits = Double.doubleToRawLongBits(values[i]);
            mine[2 * i] = (int) bits;
            mine[2 * i + 1] = (int) (bits >>> 32);
        }
        int[] all = allGather(mine);
        for (int i = 0; i < values.length; i++) {
            double sum = 0;
            for (int r = 0; r < group.size(); r++) {
                int o = r * mine.length + 2 * i;
                sum += Double.longBitsToDouble(pack(all[o], all[o + 1]));
            }
            values[i] = sum / group.size();
        }
    }

    private static long pack(int lo, int hi) {
        return (lo & 0xFFFFFFFFL) | ((long) hi << 32);
    }

    private int[] allGather(int[] mine) {
        try (var scope = Scope.open()) {
            Tensor in = Tensor.ofInts(mine, mine.length);
            Tensor out = Tensor.empty(DType.I32, Device.CPU, mine.length * group.size());
            group.allGather(in, out);
            return out.toIntArray();
        }
    }

    /** Frees the buckets (the group belongs to the caller). */
    @Override
    public void close() {
        buckets.forEach(Tensor::close);
        buckets.clear();
    }

    @Override
    public String toString() {
        return "data parallel rank " + rank() + " of " + ranks() + " (" + group.engine() + ", buckets of "
                + bucketElements * 4L + " bytes)";
    }
}
