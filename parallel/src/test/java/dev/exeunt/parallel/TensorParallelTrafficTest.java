package dev.exeunt.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.parallel.comm.LocalWorld;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * What tensor parallelism communicates in one forward and backward equals Megatron's analytical count
 * (Narayanan et al. 2021, section 3.2; Korthikanti et al. 2022 for sequence parallelism), counted in
 * elements per rank at the {@link TensorParallel} seam: per layer two all-reduces of the [B, T, D]
 * activations forward (after the row-parallel attention and MLP outputs) and two backward (the
 * column-parallel inputs' gradients); one forward for the vocab-parallel embedding; one backward per
 * vocab-parallel head; and per loss two [B, T] sums and one [B, T] max. An mlp exit adds one MLP's two,
 * and every exit its head's one. Under sequence parallelism each all-reduce becomes a reduce-scatter
 * plus an all-gather of the same tensor (the same bytes on a ring). Together with the ring's cost per
 * element, 2 (tp-1)/tp for an all-reduce and (tp-1)/tp for the other two, this gives the bytes per step.
 */
@ExtendWith(LeakCheck.class)
class TensorParallelTrafficTest {
    static final int B = 2, T = 8, D = 32, L = 3, V = 96;

    /** Counts the elements passed to each collective, then runs it. */
    static final class Counting implements TensorParallel {
        final TensorParallel inner;
        final AtomicLong sum = new AtomicLong(), max = new AtomicLong(), gathered = new AtomicLong(), scattered = new AtomicLong();

        Counting(TensorParallel inner) {
            this.inner = inner;
        }

        public int rank() {
            return inner.rank();
        }

        public int size() {
            return inner.size();
        }

        public boolean sequenceParallel() {
            return inner.sequenceParallel();
        }

        public void allReduceSum(Tensor t) {
            sum.addAndGet(t.numel());
            inner.allReduceSum(t);
        }

        public void allReduceMax(Tensor t) {
            max.addAndGet(t.numel());
            inner.allReduceMax(t);
        }

        public void allGather(Tensor in, Tensor out) {
            gathered.addAndGet(out.numel());
            inner.allGather(in, out);
        }

        public void reduceScatter(Tensor in, Tensor out) {
            scattered.addAndGet(in.numel());
            inner.reduceScatter(in, out);
        }
    }

    /** One forward and backward of [B, T] on each of 2 tensor-parallel ranks; rank 0's counts. */
    static Counting count(ModelConfig mc, boolean sp) {
        Random r = new Random(3);
        int[] ids = new int[B * T], tgt = new int[B * T];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(V);
            tgt[i] = r.nextInt(V);
        }
        return LocalWorld.run(2, pg -> {
            var counting = new Counting(new ProcessGroupTensorParallel(pg, sp));
            try (var model = EarlyExitModel.create(mc, Device.CPU, 1, counting); var s = Scope.open()) {
                model.forwardBackward(Tensor.ofInts(ids, B, T), Tensor.ofInts(tgt, B, T), null, 0, 1f);
                model.parameters().all().values().forEach(Tensor::clearGrad);
            }
            return counting;
        }).get(0);
    }

    @Test
    void withoutExitsItIsMegatronsCount() {
        Counting c = count(ModelConfig.gpt2(V, D, L, 4, T, List.of()), false);
        long act = (long) B * T * D, rows = (long) B * T;
        assertEquals((4L * L + 2) * act + 2 * rows, c.sum.get()); // layers, embedding, head input; loss sums
        assertEquals(rows, c.max.get());
        assertEquals(0, c.gathered.get() + c.scattered.get());
    }

    @Test
    void exitsAddTheirHeadsAndBranches() {
        var exits = List.of(ExitConfig.post(1, ExitKind.NORM, 0.5), ExitConfig.post(2, ExitKind.MLP, 0.5));
        Counting c = count(ModelConfig.gpt2(V, D, L, 4, T, exits), false);
        long act = (long) B * T * D, rows = (long) B * T;
        // + norm exit's head, + mlp exit's branch (2) and head; 3 losses
        assertEquals((4L * L + 2 + 1 + 3) * act + 3 * 2 * rows, c.sum.get());
        assertEquals(3 * rows, c.max.get());
    }

    @Test
    void sequenceParallelTradesEachAllReduceForAReduceScatterAndAnAllGather() {
        Counting c = count(ModelConfig.llama(V, D, L, 4, 2, 48, T, List.of()), true);
        long act = (long) B * T * D, rows = (long) B * T;
        // per layer 2 regions x (gather in + scatter out, forward and backward); the embedding scatters (its
        // gradient is gathered back); the head gathers (its input gradient is scattered back)
        assertEquals((4L * L + 2) * act, c.gathered.get());
        assertEquals((4L * L + 2) * act, c.scattered.get());
        assertEquals(2 * rows, c.sum.get()); // only the loss: the replicated norms' gradients are summed by the trainer, not here
        assertEquals(rows, c.max.get());
    }
}
