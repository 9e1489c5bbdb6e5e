package dev.exeunt.model.nn;

import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

/** GPT-2: proj(gelu_tanh(fc(x))). Llama: down(silu(gate(x)) * up(x)). */
public record Mlp(Family family, Linear fc, Linear gate, Linear up, Linear proj) {
    public Tensor forward(Tensor x) {
        if (family == Family.GPT2) return proj.forward(Ops.geluTanh(fc.forward(x)));
        return proj.forward(Ops.mul(Ops.silu(gate.forward(x)), up.forward(x)));
    }

    /** Parameters under {@code prefix} with the family's Hugging Face names (c_fc/c_proj or gate/up/down_proj). */
    public static Mlp create(Parameters p, String prefix, ModelConfig c, float outStd) {
        int d = c.dModel(), f = c.ffnHidden();
        if (c.family() == Family.GPT2) {
            return new Mlp(c.family(), Linear.create(p, prefix + ".c_fc", d, f, true, true, 0.02f), null, null,
                    Linear.create(p, prefix + ".c_proj", f, d, true, true, outStd));
        }
        return new Mlp(c.family(), null, Linear.create(p, prefix + ".gate_proj", d, f, false, false, 0.02f),
                Linear.create(p, prefix + ".up_proj", d, f, false, false, 0.02f),
                Linear.create(p, prefix + ".down_proj", f, d, false, false, outStd));
    }
}
