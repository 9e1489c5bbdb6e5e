package dev.exeunt.parallel;

import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.io.SafetensorsDtype;
import dev.exeunt.model.io.SafetensorsWriter;
import dev.exeunt.model.io.TensorDataSource;
import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TrainingOptimizer;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.comm.ReduceOp;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.optim.AdamW;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;

/**
 * Megatron's distributed optimizer (ZeRO-1) over one data-parallel group: each rank holds the AdamW
 * moments of only its part of every parameter, and one step is a reduce-scatter of the gradients, the
 * update of the rank's parts, and an all-gather of the updated parameters: the same bytes as the one
 * all-reduce of plain data parallelism, with 1/D of the optimiser state per rank.
 *
 * <p>Partition: a parameter of {@code N} (tensor-parallel local) elements, flattened, is cut into D
 * ranges of {@code c = ceil(N/D)} elements; rank r owns {@code [r*c, min(N, (r+1)*c))}, so the last
 * ranks may own fewer elements, or none. Its moments are {@code c} elements (the unused tail of a short
 * part stays zero), so an all-gather of the moments over the group gives the whole flattened moment in
 * its first N elements. The step packs every gradient into one flat F32 buffer of D segments, segment r
 * holding rank r's range of every parameter (each in a slot of c elements) in the parameters' order, so a
 * single reduce-scatter hands every rank exactly its parts, and a single all-gather of the updated parts
 * refills the same buffer for unpacking into the parameters. Every rank thus ends a step with the same
 * parameter bits.
 *
 * <p>Clipping uses the global norm from the parts: each rank's sums of squares (tensor-parallel split and
 * replicated parameters apart) are summed over dp exactly (doubles, in rank order), and the split part
 * again over tp, as {@code TensorParallelGradients} does without ZeRO, then over the pipeline stages (each
 * stage's optimizer shards that stage's parameters over its own dp group; a tied head's copy on a later
 * stage is left out, stage 0 counts it). Weight decay is decided by the
 * original parameter's rank (>= 2), not by the flat part's.
 *
 * <p>Checkpoints stay whole: {@link #saveMoments} all-gathers each moment over dp (one tensor at a time),
 * then over tp as plain AdamW's save does; under pipeline parallelism a later stage streams its whole moments
 * to stage 0 in name order, as {@code TensorFiles} streams the weights, and stage 0 writes one file; {@link #load} takes this rank's range of each whole moment.
 * The flat buffer is allocated on first use and reused; it is limited to 2^31 elements (bucketing it,
 * and overlapping the reduce-scatter with the backward pass, is the next step).
 */
public final class DistributedOptimizer implements TrainingOptimizer {
    private final AdamW.Settings settings;
    private final Parameters params;
    private final ProcessGroup dp;
    /** Per parameter with state: its moments (c elements each). */
    private final Map<String, Moments> moments = new LinkedHashMap<>();
    /** D segments of {@code segment} elements: packed gradients, then the gathered parameters. */
    private Tensor flat;
    /** This rank's segment: its reduced gradient parts, and its updated parameter parts. */
    private Tensor gradPart, paramPart;
    private int step;

    private record Moments(Tensor param, Tensor m, Tensor v) {}

    /** Where one parameter's parts sit: slots of {@code chunk} elements at {@code at} in every segment. */
    private record Slot(String name, Tensor param, int numel, int chunk, int at) {}

    private DistributedOptimizer(AdamW.Settings settings, Parameters params, ProcessGroup dpGroup) {
        this.settings = settings;
        this.params = params;
        this.dp = dpGroup;
    }

    /**
     * The factory to hand the {@code Trainer}: the distributed optimizer over {@code dpGroup}, which must be
     * the group the Trainer's {@link GradientSync} reduces over (that sync then only splits the batch and
     * averages the logged losses; its gradient all-reduce is not used).
     */
    public static TrainingOptimizer.Factory over(ProcessGroup dpGroup) {
        return (settings, params, sync) -> {
            if (sync.ranks() != dpGroup.size() || sync.rank() != dpGroup.rank()) {
                throw new IllegalArgumentException("the distributed optimizer's group is rank " + dpGroup.rank() + " of " + dpGroup.size()
                        + " but the trainer's data-parallel sync is rank " + sync.rank() + " of " + sync.ranks()
                        + "; both must be the data-parallel group");
            }
            return new DistributedOptimizer(settings, params, dpGroup);
        };
    }

    /** Elements of each rank's part of a parameter of {@code n} elements over {@code ranks} ranks. */
    static int chunk(long n, int ranks) {
        return Math.toIntExact((n + ranks - 1) / ranks);
    }

    /** Elements rank {@code r} owns of a parameter of {@code n} elements cut into parts of {@code chunk}. */
    static int owned(long n, int chunk, int r) {
        return (int) Math.max(0, Math.min(chunk, n - (long) r * chunk));
    }

    @Override
    public double step(Map<String, Tensor> trainable, double maxNorm, float lr) {
        List<Slot> slots = layout(trainable);
        int segment = slots.isEmpty() ? 0 : slots.getLast().at() + slots.getLast().chunk();
        checkSameGradients(slots, segment);
        step++;
        if (slots.isEmpty()) return params.pipeline().stages() == 1 ? 0 : globalNorm(slots, dp.rank()); // the norm is collective over stages
        int ranks = dp.size(), me = dp.rank();
        ensureBuffers(segment, slots.getFirst().param().device());
        try (var scope = Scope.open(); var ng = GradMode.noGrad()) {
            for (Slot s : slots) {
                Tensor g = s.param().grad().reshape(-1);
                for (int r = 0; r < ranks; r++) {
                    int len = owned(s.numel(), s.chunk(), r);
                    if (len > 0) flat.narrow(0, r * segment + s.at(), len).copyFrom(g.narrow(0, r * s.chunk(), len));
                }
            }
            dp.reduceScatter(flat, gradPart, ReduceOp.SUM);
            gradPart.copyFrom(Ops.scale(gradPart, 1f / ranks));
        }
        double norm = globalNorm(slots, me);
        try (var scope = Scope.open(); var ng = GradMode.noGrad()) {
            if (maxNorm > 0 && norm > maxNorm) gradPart.copyFrom(Ops.scale(gradPart, (float) (maxNorm / (norm + 1e-6))));
            for (Slot s : slots) {
                // Every rank holds moments for every parameter, even one it owns nothing of: saving gathers them all.
                Moments mv = moments.computeIfAbsent(s.name(), k -> Scope.outside(() -> new Moments(s.param(),
                        Tensor.zeros(s.param().device(), s.chunk()), Tensor.zeros(s.param().device(), s.chunk()))));
                int len = owned(s.numel(), s.chunk(), me);
                if (len == 0) continue;
                Tensor p = paramPart.narrow(0, s.at(), len);
                p.copyFrom(s.param().reshape(-1).narrow(0, me * s.chunk(), len));
                float wd = s.param().rank() >= 2 ? settings.weightDecay() : 0f;
                p.backend().adamw(p, gradPart.narrow(0, s.at(), len), mv.m().narrow(0, 0, len), mv.v().narrow(0, 0, len), lr,
                        settings.beta1(), settings.beta2(), settings.eps(), wd, step);
            }
            dp.allGather(paramPart, flat);
            for (Slot s : slots) {
                Tensor p = s.param().reshape(-1);
                for (int r = 0; r < ranks; r++) {
                    int len = owned(s.numel(), s.chunk(), r);
                    if (len > 0) p.narrow(0, r * s.chunk(), len).copyFrom(flat.narrow(0, r * segment + s.at(), len));
                }
            }
        }
        return norm;
    }

    /** The parameters with a gradient, in the trainable (name) order, each with its slot in a segment. */
    private List<Slot> layout(Map<String, Tensor> trainable) {
        List<Slot> slots = new ArrayList<>();
        long at = 0;
        for (var e : trainable.entrySet()) {
            Tensor p = e.getValue(), g = p.grad();
            if (g == null) continue;
            if (g.dtype() != DType.F32 || !g.isContiguous() || p.dtype() != DType.F32 || !p.isContiguous()) {
                throw new IllegalStateException("parameter " + e.getKey() + " or its gradient is not a contiguous F32 tensor; "
                        + "the distributed optimizer packs contiguous F32 parameters and gradients");
            }
            int chunk = chunk(p.numel(), dp.size());
            if ((at + chunk) * dp.size() > Integer.MAX_VALUE) {
                throw new IllegalStateException("the distributed optimizer's flat gradient buffer would exceed 2^31 elements at "
                        + e.getKey() + " (" + dp.size() + " ranks); more than ~2^31 trainable elements per tensor-parallel rank "
                        + "need a bucketed buffer");
            }
            slots.add(new Slot(e.getKey(), p, (int) p.numel(), chunk, (int) at));
            at += chunk;
        }
        return slots;
    }

    /** The L2 norm of the whole model's reduced gradient, from every rank's parts (the same double on every rank). */
    private double globalNorm(List<Slot> slots, int me) {
        double split = 0, replicated = 0;
        try (var scope = Scope.open()) {
            for (Slot s : slots) {
                int len = owned(s.numel(), s.chunk(), me);
                if (len == 0 || params.isStageCopy(s.name())) continue; // stage 0's copy counts it
                double sq = gradPart.backend().sumOfSquares(gradPart.narrow(0, s.at(), len));
                if (params.shard(s.name()).isSplit()) split += sq;
                else replicated += sq;
            }
        }
        double[] sums = ExactSums.overRanks(new double[] {split, replicated}, dp.size(), dp::allGather);
        TensorParallel tp = params.tensorParallel();
        double splitTotal = tp.size() == 1 ? sums[0] : ExactSums.overRanks(new double[] {sums[0]}, tp.size(), tp::allGather)[0];
        double[] stage = {splitTotal + sums[1]};
        params.pipeline().sumOverStages(stage); // every stage's share (a tied head's copy was left out above)
        return Math.sqrt(stage[0]);
    }

    private void ensureBuffers(int segment, Device device) {
        if (paramPart != null && paramPart.numel() == segment && paramPart.device().equals(device)) return;
        closeBuffers();
        int ranks = dp.size();
        flat = Scope.outside(() -> Tensor.zeros(device, ranks * segment));
        gradPart = Scope.outside(() -> Tensor.zeros(device, segment));
        paramPart = Scope.outside(() -> Tensor.zeros(device, segment));
    }

    /**
     * Fails on every rank, with the same message, when the ranks would pack different gradients (a replica
     * built differently, an exit that ran on one rank only): the segments would not line up.
     */
    private void checkSameGradients(List<Slot> slots, int segment) {
        StringBuilder names = new StringBuilder();
        for (Slot s : slots) names.append(s.name()).append(':').append(s.numel()).append(',');
        int[] mine = {slots.size(), segment, names.toString().hashCode()};
        int[] all = ExactSums.allGatherInts(mine, dp.size(), dp::allGather);
        for (int r = 1; r < dp.size(); r++) {
            for (int k = 0; k < mine.length; k++) {
                if (all[r * mine.length + k] != all[k]) {
                    throw new IllegalStateException(String.format("data-parallel ranks hold different gradients: rank 0 has %d "
                            + "tensors (%d elements per part), rank %d has %d (%d), or other names or sizes; every rank must "
                            + "train the same parameters", all[0], all[1], r, all[r * 3], all[r * 3 + 1]));
                }
            }
        }
    }

    @Override
    public int stepCount() {
        return step;
    }

    @Override
    public boolean shardedOverDataParallel() {
        return true;
    }

    @Override
    public void saveMoments(Function<String, Shard> shardOf, TensorParallel tp, Path file) throws IOException {
        // Every rank walks the same names in the same (name) order, the writer's order. A pipeline stage
        // saves the moments of the parameters it owns (a tied head's copy is stage 0's), as the weights are saved.
        Map<String, Moment> owned = new TreeMap<>();
        moments.forEach((name, mv) -> {
            if (params.isStageCopy(name)) return;
            owned.put(name + ".exp_avg", new Moment(mv.param(), mv.m()));
            owned.put(name + ".exp_avg_sq", new Moment(mv.param(), mv.v()));
        });
        PipelineParallel pp = params.pipeline();
        if (pp.stage() != 0) {
            streamToFirstStage(owned, shardOf, tp, pp);
            return;
        }
        if (file == null) {
            for (var e : owned.entrySet()) {
                try (var scope = Scope.open()) {
                    whole(e.getValue(), shardOf.apply(e.getKey()), tp);
                }
            }
            return;
        }
        // Later stages' moments are received when the writer reaches their names (TensorFiles.save's protocol).
        Map<String, long[]> remoteShape = new TreeMap<>();
        Map<String, Integer> owner = new TreeMap<>();
        for (int st = 1; st < pp.stages(); st++) {
            for (var e : TensorFiles.receiveManifest(pp, st).entrySet()) {
                if (owned.containsKey(e.getKey()) || owner.put(e.getKey(), st) != null) {
                    throw new IllegalStateException("moment " + e.getKey() + " is saved by two pipeline stages");
                }
                remoteShape.put(e.getKey(), e.getValue());
            }
        }
        Map<String, Moment> all = new TreeMap<>(owned);
        for (String name : owner.keySet()) all.put(name, null);
        var writer = new SafetensorsWriter();
        for (var e : all.entrySet()) {
            String name = e.getKey();
            Moment local = e.getValue();
            if (local == null) {
                TensorFiles.addReceived(writer, name, remoteShape.get(name), pp, owner.get(name));
                continue;
            }
            Shard shard = shardOf.apply(name);
            int[] shape = shard != null && shard.isSplit() ? shard.fullShape() : local.param().shape();
            writer.add(name, SafetensorsDtype.F32, java.util.Arrays.stream(shape).asLongStream().toArray(), out -> {
                try (var scope = Scope.open(); var ng = GradMode.noGrad()) {
                    Tensor whole = whole(local, shard, tp);
                    long bytes = whole.dtype().byteSize(whole.numel());
                    TensorDataSource.of(whole.segment().asSlice(whole.dtype().byteSize(whole.offset()), bytes)).writeTo(out);
                }
            });
        }
        writer.write(file);
    }

    /** One moment: the parameter it belongs to and this rank's part of it. */
    private record Moment(Tensor param, Tensor part) {}

    /**
     * A later pipeline stage's save: the manifest, then each whole moment in name order sent to stage 0 by
     * this stage's data- and tensor-parallel rank 0 (every rank of the stage joins the gathers).
     */
    private void streamToFirstStage(Map<String, Moment> owned, Function<String, Shard> shardOf, TensorParallel tp, PipelineParallel pp) {
        boolean sends = dp.rank() == 0 && tp.rank() == 0;
        if (sends) {
            Map<String, Tensor> params = new TreeMap<>();
            owned.forEach((name, mv) -> params.put(name, mv.param()));
            TensorFiles.sendManifest(params, shardOf, pp);
        }
        for (var e : owned.entrySet()) {
            try (var scope = Scope.open(); var ng = GradMode.noGrad()) {
                Tensor whole = whole(e.getValue(), shardOf.apply(e.getKey()), tp);
                if (sends) pp.send(whole, 0);
            }
        }
    }

    /**
     * The whole moment (in the current scope): gathered over dp, then over tp when the parameter is split.
     * Collective: a replicated moment is gathered by tensor-parallel rank 0's data-parallel group alone, a
     * split one over tp by data-parallel rank 0's tensor-parallel group; only data- and tensor-parallel
     * rank 0's result is the whole moment (null on a rank that joins no gather).
     */
    private Tensor whole(Moment m, Shard shard, TensorParallel tp) {
        boolean split = shard != null && shard.isSplit();
        if (!split && tp.rank() != 0) return null;
        try (var ng = GradMode.noGrad()) {
            Tensor local = gatherOverDp(m.param(), m.part());
            if (!split) return local.to(Device.CPU).contiguous();
            return dp.rank() == 0 ? TensorFiles.gather(local, shard, tp) : local;
        }
    }

    /** This tensor-parallel rank's whole moment of {@code param}, gathered from every data-parallel rank's part (in the current scope). */
    private Tensor gatherOverDp(Tensor param, Tensor part) {
        Tensor all = Tensor.empty(DType.F32, part.device(), Math.toIntExact(part.numel() * dp.size()));
        dp.allGather(part, all);
        return all.narrow(0, 0, Math.toIntExact(param.numel())).reshape(param.shape());
    }

    @Override
    public void load(Map<String, Tensor> saved, int stepCount, Map<String, Tensor> trainable) {
        closeMoments();
        int me = dp.rank();
        for (var e : trainable.entrySet()) {
            Tensor m = saved.get(e.getKey() + ".exp_avg"), v = saved.get(e.getKey() + ".exp_avg_sq");
            if (m == null || v == null) continue;
            Tensor p = e.getValue();
            for (Tensor t : new Tensor[] {m, v}) {
                if (t.numel() != p.numel()) {
                    throw new IllegalArgumentException("saved moment of " + e.getKey() + " is " + Shape.str(t.shape())
                            + " but the parameter is " + Shape.str(p.shape()));
                }
            }
            int chunk = chunk(p.numel(), dp.size()), len = owned(p.numel(), chunk, me);
            Moments mv = Scope.outside(() -> new Moments(p, Tensor.zeros(p.device(), chunk), Tensor.zeros(p.device(), chunk)));
            moments.put(e.getKey(), mv);
            if (len == 0) continue;
            try (var scope = Scope.open(); var ng = GradMode.noGrad()) {
                mv.m().narrow(0, 0, len).copyFrom(m.contiguous().reshape(-1).narrow(0, me * chunk, len));
                mv.v().narrow(0, 0, len).copyFrom(v.contiguous().reshape(-1).narrow(0, me * chunk, len));
            }
        }
        this.step = stepCount;
    }

    @Override
    public Memory memory(Map<String, Tensor> trainable) {
        long elements = 0;
        for (Tensor p : trainable.values()) elements += chunk(p.numel(), dp.size());
        return new Memory(2 * 4 * elements, TrainingOptimizer.replicatedBytes(trainable),
                "distributed optimizer: sharded over " + dp.size() + " data-parallel ranks");
    }

    /** Bytes of the moments this rank holds now. */
    long heldBytes() {
        long n = 0;
        for (Moments mv : moments.values()) n += mv.m().numel() + mv.v().numel();
        return 4 * n;
    }

    private void closeMoments() {
        for (Moments mv : moments.values()) {
            mv.m().close();
            mv.v().close();
        }
        moments.clear();
    }

    private void closeBuffers() {
        for (Tensor t : new Tensor[] {flat, gradPart, paramPart}) if (t != null) t.close();
        flat = gradPart = paramPart = null;
    }

    /** Frees the moments and the buffers (the group belongs to the caller). */
    @Override
    public void close() {
        closeMoments();
        closeBuffers();
    }

    @Override
    public String toString() {
        return "distributed optimizer, data parallel rank " + dp.rank() + " of " + dp.size() + " (" + dp.engine() + ")";
    }
}
