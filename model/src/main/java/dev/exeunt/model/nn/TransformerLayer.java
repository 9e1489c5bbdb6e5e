package dev.exeunt.model.nn;

import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

/** Pre-norm block: h = x + attn(norm1(x)); out = h + mlp(norm2(h)). */
public record TransformerLayer(Norm norm1, Attention attn, Norm norm2, Mlp mlp) {

    public Tensor forward(Tensor x, int startPos, KvCache cache) {
        return forwardSplit(x, startPos, cache)[0];
    }

    /**
     * The block, also returning what an mlp exit branches from: {out, h, norm2(h)} where h is the
     * post-attention residual the trunk and the exit branch share.
     */
    public Tensor[] forwardSplit(Tensor x, int startPos, KvCache cache) {
        Tensor h = Ops.add(x, attn.forward(norm1.forward(x), startPos, cache));
        Tensor n2 = norm2.forward(h);
        return new Tensor[] {Ops.add(h, mlp.forward(n2)), h, n2};
    }

    /** Packed form for generation ({@link Packed}): x [N, D]; returns {out, h, norm2(h)} like {@link #forwardSplit}. */
    public Tensor[] forwardPacked(Tensor x, java.util.List<Packed> seqs) {
        Tensor h = Ops.add(x, attn.forwardPacked(norm1.forward(x), seqs));
        Tensor n2 = norm2.forward(h);
        return new Tensor[] {Ops.add(h, mlp.forward(n2)), h, n2};
    }

    /** Names as in Hugging Face: GPT-2 {@code ln_1, attn, ln_2, mlp}; Llama {@code input_layernorm, self_attn, ...}. */
    public static TransformerLayer create(Parameters p, String prefix, ModelConfig c) {
        float outStd = (float) (0.02 / Math.sqrt(2.0 * c.nLayers()));
        boolean rms = c.family() == Family.LLAMA;
        float eps = (float) c.normEps();
        if (c.family() == Family.GPT2) {
            return new TransformerLayer(Norm.create(p, prefix + ".ln_1", c.dModel(), false, eps),
                    Attention.create(p, prefix + ".attn", c, outStd), Norm.create(p, prefix + ".ln_2", c.dModel(), false, eps),
                    Mlp.create(p, prefix + ".mlp", c, outStd));
        }
        return new TransformerLayer(Norm.create(p, prefix + ".input_layernorm", c.dModel(), rms, eps),
                Attention.create(p, prefix + ".self_attn", c, outStd),
                Norm.create(p, prefix + ".post_attention_layernorm", c.dModel(), rms, eps),
                Mlp.create(p, prefix + ".mlp", c, outStd));
    }
}
