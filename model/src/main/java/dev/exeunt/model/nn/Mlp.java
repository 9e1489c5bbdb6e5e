package dev.exeunt.model.nn;

import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

/**
 * GPT-2: proj(gelu_tanh(fc(x))). Llama: down(silu(gate(x)) * up(x)). Under tensor parallelism each rank
 * holds ffn_hidden / tp of the hidden features: fc, gate and up are column-parallel, proj and down
 * row-parallel, so the only communication is one all-reduce forward and one backward.
 */
public record Mlp(Family family, Linear fc, Linear gate, Linear up, Linear proj, TensorParallel tp) {
    public Tensor forward(Tensor x) {
        Tensor in = TensorParallelRegions.enter(x, tp);
        if (family == Family.GPT2) return proj.forward(Ops.geluTanh(fc.forward(in)));
        return proj.forward(Ops.mul(Ops.silu(gate.forward(in)), up.forward(in)));
    }

    /** Parameters under {@code prefix} with the family's Hugging Face names (c_fc/c_proj or gate/up/down_proj). */
    public static Mlp create(Parameters p, String prefix, ModelConfig c, float outStd) {
        int d = c.dModel(), f = c.ffnHidden();
        TensorParallel tp = p.tensorParallel();
        if (c.family() == Family.GPT2) {
            return new Mlp(c.family(), Linear.column(p, prefix + ".c_fc", d, f, 1, true, true, 0.02f), null, null,
                    Linear.row(p, prefix + ".c_proj", f, d, true, true, outStd), tp);
        }
        return new Mlp(c.family(), null, Linear.column(p, prefix + ".gate_proj", d, f, 1, false, false, 0.02f),
                Linear.column(p, prefix + ".up_proj", d, f, 1, false, false, 0.02f),
                Linear.row(p, prefix + ".down_proj", f, d, false, false, outStd), tp);
    }
}
