package dev.exeunt.model.nn;

import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;

/**
 * Causal self-attention. GPT-2 projects q, k and v with one fused input-major matrix (c_attn) and
 * reads the three as strided views; Llama has separate q/k/v projections, grouped KV heads and RoPE.
 */
public record Attention(ModelConfig config, Linear qkv, Linear q, Linear k, Linear v, Linear out) {

    /** x [B, T, D] at positions [startPos, startPos+T); with a cache, attends over all cached positions too. */
    public Tensor forward(Tensor x, int startPos, KvCache cache) {
        int b = x.dim(0), t = x.dim(1), d = config.dModel(), h = config.nHeads(), hkv = config.nKvHeads(), hd = config.headDim();
        Tensor qh, kh, vh;
        if (config.family() == Family.GPT2) {
            Tensor fused = qkv.forward(x);
            qh = Ops.splitDim(fused.narrow(2, 0, d), 2, h, hd);
            kh = Ops.splitDim(fused.narrow(2, d, d), 2, h, hd);
            vh = Ops.splitDim(fused.narrow(2, 2 * d, d), 2, h, hd);
        } else {
            float theta = (float) config.ropeTheta();
            qh = NN.rope(Ops.splitDim(q.forward(x), 2, h, hd), startPos, theta);
            kh = NN.rope(Ops.splitDim(k.forward(x), 2, hkv, hd), startPos, theta);
            vh = Ops.splitDim(v.forward(x), 2, hkv, hd);
        }
        float scale = (float) (1.0 / Math.sqrt(hd));
        Tensor o;
        if (cache == null) {
            o = NN.attention(qh, kh, vh, 0, scale);
        } else {
            Tensor[] kv = cache.append(kh, vh, startPos);
            o = NN.attention(qh, kv[0], kv[1], startPos, scale);
        }
        return out.forward(o.reshape(b, t, d));
    }

    public static Attention create(Parameters p, String prefix, ModelConfig c, float outStd) {
        int d = c.dModel(), kvDim = c.nKvHeads() * c.headDim();
        if (c.family() == Family.GPT2) {
            return new Attention(c, Linear.create(p, prefix + ".c_attn", d, 3 * d, true, true, 0.02f), null, null, null,
                    Linear.create(p, prefix + ".c_proj", d, d, true, true, outStd));
        }
        return new Attention(c, null, Linear.create(p, prefix + ".q_proj", d, d, false, false, 0.02f),
                Linear.create(p, prefix + ".k_proj", d, kvDim, false, false, 0.02f),
                Linear.create(p, prefix + ".v_proj", d, kvDim, false, false, 0.02f),
                Linear.create(p, prefix + ".o_proj", d, d, false, false, outStd));
    }
}
