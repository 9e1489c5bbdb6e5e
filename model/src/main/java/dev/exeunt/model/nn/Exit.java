package dev.exeunt.model.nn;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.Ops;

/**
 * One early exit: an optional structure (norm, split-MLP branch, or a whole extra layer) and an
 * output head [V, D], its own or the input embedding (shared). Parameters are named
 * {@code exits.<i>.norm.*}, {@code exits.<i>.mlp.*}, {@code exits.<i>.layer.*}, {@code exits.<i>.head.weight}.
 */
public record Exit(int index, ExitConfig config, Norm norm, Mlp branch, TransformerLayer layer, Tensor head, TensorParallel tp) {

    public static String prefix(int index) {
        return "exits." + index;
    }

    /**
     * The exit's hidden state from what it reads: for {@code mlp}, {h, norm2(h)} of its layer (exit =
     * h + branch(norm2(h))); for {@code layer}, the backbone hidden run through the extra layer;
     * otherwise the backbone hidden itself.
     */
    public Tensor hidden(Tensor[] input, int startPos, KvCache cache) {
        return switch (config.kind()) {
            case MLP -> Ops.add(input[0], branch.forward(input[1]));
            case LAYER -> layer.forward(input[0], startPos, cache);
            case EMBEDDING, NORM -> input[0];
        };
    }

    /** Logits [.., V] from the exit's hidden state (this rank's [.., V/tp] under tensor parallelism). */
    public Tensor logits(Tensor hidden) {
        return logits(hidden, head);
    }

    /** Logits through another copy of the exit's head (this rank's rows of it): a draft check's quantized copy. */
    public Tensor logits(Tensor hidden, Tensor head) {
        return VocabParallelHead.logits(norm == null ? hidden : norm.forward(hidden), head, tp);
    }

    /** Random initialisation (EARLY-EXIT.md section 4): N(0, 0.02), output projections scaled, norms 1, biases 0. */
    public static Exit create(Parameters p, ModelConfig c, int index, ExitConfig e, Tensor sharedEmbedding) {
        String pre = prefix(index);
        boolean rms = c.family() == Family.LLAMA;
        float eps = (float) c.normEps();
        float outStd = (float) (0.02 / Math.sqrt(2.0 * e.layer()));
        Mlp branch = e.kind() == ExitKind.MLP ? Mlp.create(p, pre + ".mlp", c, outStd) : null;
        TransformerLayer layer = e.kind() == ExitKind.LAYER ? TransformerLayer.create(p, pre + ".layer", c) : null;
        Norm norm = e.kind() == ExitKind.EMBEDDING ? null : Norm.create(p, pre + ".norm", c.dModel(), rms, eps);
        Tensor head = e.sharedHead() ? sharedEmbedding
                : p.normal(pre + ".head.weight", 0.02f, Shard.split(new int[] {c.vocabSize(), c.dModel()}, 0, 1, p.tensorParallel()));
        return new Exit(index, e, norm, branch, layer, head, p.tensorParallel());
    }
}
