package dev.exeunt.model.generate;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.CpuQuant;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;

/**
 * The heads speculative decoding checks its exits with: each F32 exit head as a Q8_0 copy, which reads a
 * quarter of the bytes. A draft only proposes a token and the full model's own head decides, so the
 * output stays exactly the full model's; what the copy changes is only which tokens get drafted (the
 * argmax and top probability of a Q8_0 head are the F32 head's but for near-ties). The check is the
 * price of every token that does not exit, so its bytes decide whether speculation pays on a model
 * whose decode is bound by weight reads. Heads already quantized, or whose rows do not split into
 * 32-weight blocks, are checked as they are. Thresholded early exit emits the exit's token itself and
 * keeps the model's heads.
 */
final class DraftHeads implements AutoCloseable {
    private final Tensor[] heads;
    private final List<Tensor> owned = new ArrayList<>();

    /** The model's exit heads as they are (thresholded decoding). */
    static Tensor[] asIs(EarlyExitModel model) {
        return model.exits().stream().map(e -> e.head()).toArray(Tensor[]::new);
    }

    DraftHeads(EarlyExitModel model) {
        heads = asIs(model);
        int d = model.config().dModel();
        try {
            for (int e = 0; e < heads.length; e++) {
                Tensor h = heads[e];
                if (h.dtype() != DType.F32 || h.rank() != 2 || h.dim(1) != d || d % CpuQuant.QK != 0 || !h.isContiguous()) continue;
                Tensor q = Ops.unowned(() -> Tensor.empty(DType.Q8_0, Device.CPU, h.dim(0), d));
                owned.add(q);
                CpuQuant.quantizeQ8_0(h.segment(), h.offset(), q.segment(), q.dtype().byteSize(q.offset()), h.numel());
                heads[e] = q;
            }
        } catch (RuntimeException ex) {
            close();
            throw ex;
        }
    }

    /** Per exit (as in {@code model.exits()}), the head its checks read. */
    Tensor[] heads() {
        return heads;
    }

    @Override
    public void close() {
        owned.forEach(Tensor::close);
        owned.clear();
    }
}
