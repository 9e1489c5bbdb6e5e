package dev.exeunt.model.nn;

import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Tensor;

/** Bytes of weights a part of the model holds (each read once per token that runs it); null parts hold none. */
public final class WeightBytes {
    private WeightBytes() {}

    public static long of(Tensor t) {
        return t == null ? 0 : t.dtype().byteSize(t.numel());
    }

    public static long of(Norm n) {
        return n == null ? 0 : of(n.weight()) + of(n.bias());
    }

    public static long of(Linear l) {
        return l == null ? 0 : of(l.weight()) + of(l.bias());
    }

    public static long of(Mlp m) {
        return m == null ? 0 : of(m.fc()) + of(m.gate()) + of(m.up()) + of(m.proj());
    }

    public static long of(TransformerLayer t) {
        var a = t.attn();
        return of(t.norm1()) + of(t.norm2()) + of(a.qkv()) + of(a.q()) + of(a.k()) + of(a.v()) + of(a.out()) + of(t.mlp());
    }

    /**
     * What computing one position's keys and values reads: the layer's first norm, its k / v projections and
     * k norm (of GPT-2's fused qkv, the k and v share).
     */
    public static long keysValues(ModelConfig c, TransformerLayer layer) {
        var a = layer.attn();
        long kv;
        if (a.qkv() != null) {
            long kvd = (long) c.nKvHeads() * c.headDim(), qd = (long) c.nHeads() * c.headDim();
            kv = of(a.qkv()) * 2 * kvd / (qd + 2 * kvd);
        } else {
            kv = of(a.k()) + of(a.v());
        }
        return of(layer.norm1()) + kv + of(a.kNorm());
    }
}
