package dev.exeunt.model.generate;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cpu.CpuQuant;
import dev.exeunt.tensor.ops.Ops;

/**
 * The heads speculative decoding checks its exits with on the CPU: each F32 exit head as a Q8_0 copy,
 * a quarter of the bytes, made once per model ({@link EarlyExitModel#derived}). The lean path and the
 * tensor ops (a tensor-parallel rank's vocabulary rows) read the same copy, so a rank's rows are the
 * one-rank copy's rows and every layout drafts the same tokens. A draft only proposes a
 * token and the full model's own head decides, so the output stays exactly the full model's; the copy
 * changes only which tokens get drafted (a Q8_0 head's argmax is the F32 head's but for near-ties), and
 * sampling weighs each draft by the distribution it was drawn from, the copy's. A check is paid by every
 * token that does not exit, so its bytes decide whether speculation pays where decode streams its
 * weights: the demo model (1024 x 192 head, 17 MB in all, just past the last-level cache a 2-core VM gets)
 * decoded 3-9% faster with it, and a llama-110m-shaped exit head is 98 MB in F32. Heads already quantized,
 * or whose rows do not split into 32-weight blocks, are checked as they are; thresholded early exit
 * emits the exit's token itself and keeps the model's heads.
 */
final class DraftHeads {
    private DraftHeads() {}

    /** Per exit (as in {@code model.exits()}), the head its checks read: its own, or with {@code speculative} on the CPU its Q8_0 copy. */
    static Tensor[] of(EarlyExitModel model, boolean speculative) {
        int d = model.config().dModel();
        boolean copies = speculative && model.device() == Device.CPU;
        Tensor[] heads = new Tensor[model.exits().size()];
        for (int e = 0; e < heads.length; e++) {
            Tensor h = model.exits().get(e).head();
            boolean blocks = h.dtype() == DType.F32 && h.rank() == 2 && h.dim(1) == d && d % CpuQuant.QK == 0 && h.isContiguous();
            heads[e] = copies && blocks ? model.derived(h, DraftHeads::q8) : h;
        }
        return heads;
    }

    private static Tensor q8(Tensor h) {
        Tensor q = Ops.unowned(() -> Tensor.empty(DType.Q8_0, Device.CPU, h.dim(0), h.dim(1)));
        CpuQuant.quantizeQ8_0(h.segment(), h.offset(), q.segment(), q.dtype().byteSize(q.offset()), h.numel());
        return q;
    }
}
