package dev.exeunt.model.nn;

import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;

/**
 * Causal self-attention. GPT-2 projects q, k and v with one fused input-major matrix (c_attn) and
 * reads the three as strided views; Llama has separate q/k/v projections, grouped KV heads and RoPE,
 * and its relatives' departures ({@link dev.exeunt.model.config.AttentionOptions}): heads of their own
 * size, q/k/v (and output) biases, an RMSNorm over each q and k head before RoPE, scaled RoPE, a
 * sliding window (Mistral).
 *
 * <p>Under tensor parallelism ({@link Heads}) each rank holds n_heads / tp query heads: the q/k/v
 * projections are column-parallel (c_attn regrouped so a rank's columns are whole q, k and v heads),
 * the output projection row-parallel. KV heads are split when tp divides them; when tp is a multiple
 * of n_kv_heads, k and v are replicated (their gradients summed over ranks) and each rank reads the one
 * kv head its query heads share.
 */
public record Attention(ModelConfig config, Heads heads, Linear qkv, Linear q, Linear k, Linear v, Linear out, Norm qNorm, Norm kNorm) {

    /**
     * The heads one rank computes: {@code q} query heads, {@code kv} kv heads starting at kv head
     * {@code kvStart} of what the k/v projections produce (0 unless they are replicated).
     */
    public record Heads(int q, int kv, int kvStart, boolean kvReplicated, TensorParallel tp) {
        static Heads of(ModelConfig c, TensorParallel tp) {
            int h = c.nHeads(), hkv = c.nKvHeads(), n = tp.size();
            if (h % n != 0 || (hkv % n != 0 && n % hkv != 0)) {
                throw new IllegalArgumentException("tensor parallel size " + n + " cannot split " + h + " heads and " + hkv + " kv heads");
            }
            if (hkv % n == 0) return new Heads(h / n, hkv / n, 0, false, tp);
            return new Heads(h / n, 1, tp.rank() * (h / n) / (h / hkv), true, tp);
        }
    }

    /** x [B, T, D] at positions [startPos, startPos+T); with a cache, attends over all cached positions too. */
    public Tensor forward(Tensor x, int startPos, KvCache cache) {
        Tensor in = TensorParallelRegions.enter(x, heads.tp());
        int b = in.dim(0), t = in.dim(1), h = heads.q(), hkv = heads.kv(), hd = config.headDim(), dl = h * hd;
        Tensor qh, kh, vh;
        if (config.family() == Family.GPT2) {
            Tensor fused = qkv.forward(in);
            qh = Ops.splitDim(fused.narrow(2, 0, dl), 2, h, hd);
            kh = Ops.splitDim(fused.narrow(2, dl, dl), 2, h, hd);
            vh = Ops.splitDim(fused.narrow(2, 2 * dl, dl), 2, h, hd);
        } else {
            qh = rope(headNorm(qNorm, Ops.splitDim(q.forward(in), 2, h, hd)), startPos);
            kh = rope(headNorm(kNorm, Ops.splitDim(kvHeads(k.forward(in)), 2, hkv, hd)), startPos);
            vh = Ops.splitDim(kvHeads(v.forward(in)), 2, hkv, hd);
        }
        float scale = (float) (1.0 / Math.sqrt(hd));
        Tensor o;
        int window = config.attention().slidingWindow();
        if (cache == null) {
            o = NN.attention(qh, kh, vh, 0, scale, window);
        } else {
            Tensor[] kv = cache.append(kh, vh, startPos);
            o = NN.attention(qh, kv[0], kv[1], startPos, scale, window);
        }
        return out.forward(o.reshape(b, t, dl));
    }

    /** Qwen3's q_norm / k_norm: an RMSNorm over each head's hd values (none: x as it is). */
    private static Tensor headNorm(Norm norm, Tensor heads) {
        return norm == null ? heads : norm.forward(heads);
    }

    private Tensor rope(Tensor heads, int startPos) {
        return NN.rope(heads, startPos, config.ropeTheta(), config.attention().ropeScaling());
    }

    /** The kv heads this rank reads of a k or v projection [.., kvFeatures] (all of them unless replicated). */
    private Tensor kvHeads(Tensor projected) {
        if (!heads.kvReplicated()) return projected;
        int hd = config.headDim();
        return projected.narrow(projected.rank() - 1, heads.kvStart() * hd, heads.kv() * hd);
    }

    /**
     * Packed form for generation: x [N, D] holds several sequences' rows; each attends over its own
     * cache. The projections run once over all rows.
     */
    public Tensor forwardPacked(Tensor x, java.util.List<Packed> seqs) {
        int h = heads.q(), hkv = heads.kv(), hd = config.headDim(), d = h * hd;
        float scale = (float) (1.0 / Math.sqrt(hd));
        boolean gpt2 = config.family() == Family.GPT2;
        Tensor in = TensorParallelRegions.copyToRegion(x, heads.tp());
        Tensor fused = gpt2 ? qkv.forward(in) : null;
        Tensor qAll = gpt2 ? fused.narrow(1, 0, d) : q.forward(in);
        Tensor kAll = gpt2 ? fused.narrow(1, d, d) : kvHeads(k.forward(in));
        Tensor vAll = gpt2 ? fused.narrow(1, 2 * d, d) : kvHeads(v.forward(in));
        Tensor[] outs = new Tensor[seqs.size()];
        for (int i = 0; i < outs.length; i++) {
            Packed p = seqs.get(i);
            Tensor qs = rows(qAll, p, h, hd), ks = rows(kAll, p, hkv, hd), vs = rows(vAll, p, hkv, hd);
            if (!gpt2) {
                qs = rope(headNorm(qNorm, qs), p.startPos());
                ks = rope(headNorm(kNorm, ks), p.startPos());
            }
            Tensor[] kv = p.cache().append(ks, vs, p.startPos());
            outs[i] = NN.attention(qs, kv[0], kv[1], p.startPos(), scale, config.attention().slidingWindow()).reshape(p.count(), d);
        }
        return out.forward(outs.length == 1 ? outs[0] : Ops.cat(0, outs));
    }

    /** Rows of one packed sequence as a [1, n, heads, headDim] view. */
    private static Tensor rows(Tensor all, Packed p, int heads, int hd) {
        Tensor r = all.narrow(0, p.row(), p.count());
        return Ops.splitDim(Ops.splitDim(r, 1, heads, hd), 0, 1, p.count());
    }

    public static Attention create(Parameters p, String prefix, ModelConfig c, float outStd) {
        int d = c.dModel(), hd = c.headDim(), qDim = c.nHeads() * hd, kvDim = c.nKvHeads() * hd;
        Heads heads = Heads.of(c, p.tensorParallel());
        if (c.family() == Family.GPT2) {
            return new Attention(c, heads, Linear.column(p, prefix + ".c_attn", d, 3 * d, 3, true, true, 0.02f), null, null, null,
                    Linear.row(p, prefix + ".c_proj", d, d, true, true, outStd), null, null);
        }
        var o = c.attention();
        Norm qNorm = null, kNorm = null;
        if (o.qkNorm()) {
            // one hd-wide weight shared by every head: whole on each tensor-parallel rank, its gradient summed over them
            float eps = (float) c.normEps();
            qNorm = new Norm(p.constant(prefix + ".q_norm.weight", 1f, Shard.whole(new int[] {hd}).withPartialGrad()), null, eps, true);
            kNorm = new Norm(p.constant(prefix + ".k_norm.weight", 1f, Shard.whole(new int[] {hd}).withPartialGrad()), null, eps, true);
        }
        return new Attention(c, heads, null, Linear.column(p, prefix + ".q_proj", d, qDim, 1, o.qkvBias(), false, 0.02f),
                kvProjection(p, prefix + ".k_proj", d, kvDim, heads, o.qkvBias()), kvProjection(p, prefix + ".v_proj", d, kvDim, heads, o.qkvBias()),
                Linear.row(p, prefix + ".o_proj", qDim, d, o.outputBias(), false, outStd), qNorm, kNorm);
    }

    /** k_proj or v_proj: column-parallel when tp divides the kv heads, else whole on every rank with a partial gradient. */
    private static Linear kvProjection(Parameters p, String name, int d, int kvDim, Heads heads, boolean bias) {
        if (!heads.kvReplicated()) return Linear.column(p, name, d, kvDim, 1, bias, false, 0.02f);
        Tensor w = p.normal(name + ".weight", 0.02f, Shard.whole(new int[] {kvDim, d}).withPartialGrad());
        Tensor b = bias ? p.constant(name + ".bias", 0f, Shard.whole(new int[] {kvDim}).withPartialGrad()) : null;
        return new Linear(w, b, false);
    }
}
