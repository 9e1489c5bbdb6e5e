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

    /**
     * Packed form for generation: x [N, D] holds several sequences' rows; each attends over its own
     * cache. The projections run once over all rows.
     */
    public Tensor forwardPacked(Tensor x, java.util.List<Packed> seqs) {
        int d = config.dModel(), h = config.nHeads(), hkv = config.nKvHeads(), hd = config.headDim();
        float scale = (float) (1.0 / Math.sqrt(hd));
        boolean gpt2 = config.family() == Family.GPT2;
        Tensor fused = gpt2 ? qkv.forward(x) : null;
        Tensor qAll = gpt2 ? fused.narrow(1, 0, d) : q.forward(x);
        Tensor kAll = gpt2 ? fused.narrow(1, d, d) : k.forward(x);
        Tensor vAll = gpt2 ? fused.narrow(1, 2 * d, d) : v.forward(x);
        Tensor[] outs = new Tensor[seqs.size()];
        for (int i = 0; i < outs.length; i++) {
            Packed p = seqs.get(i);
            Tensor qs = rows(qAll, p, h, hd), ks = rows(kAll, p, hkv, hd), vs = rows(vAll, p, hkv, hd);
            if (!gpt2) {
                float theta = (float) config.ropeTheta();
                qs = NN.rope(qs, p.startPos(), theta);
                ks = NN.rope(ks, p.startPos(), theta);
            }
            Tensor[] kv = p.cache().append(ks, vs, p.startPos());
            outs[i] = NN.attention(qs, kv[0], kv[1], p.startPos(), scale).reshape(p.count(), d);
        }
        return out.forward(outs.length == 1 ? outs[0] : Ops.cat(0, outs));
    }

    /** Rows of one packed sequence as a [1, n, heads, headDim] view. */
    private static Tensor rows(Tensor all, Packed p, int heads, int hd) {
        Tensor r = all.narrow(0, p.row(), p.count());
        return Ops.splitDim(Ops.splitDim(r, 1, heads, hd), 0, 1, p.count());
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
