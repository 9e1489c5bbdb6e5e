package dev.exeunt.model.generate;

import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.model.nn.VocabParallelCrossEntropy;
import dev.exeunt.model.nn.VocabParallelHead;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.ops.NN;
import dev.exeunt.tensor.ops.Ops;

/**
 * One head's logits over some rows on the tensor-op path, as this rank holds them (its slice of the
 * vocabulary under tensor parallelism): each row's top token and probability over the usable vocabulary,
 * found vocabulary-parallel (a max, a sum of exponentials and an index reduced over the ranks: no rank
 * holds a whole row), and a whole row gathered only when a choice needs it (sampling, a ban). Every rank
 * asks for the same rows, so the gathers are collective.
 */
final class HeadRows {
    final float[] maxProb;
    final int[] argmax;
    private final DecodeCall call;
    private final Tensor slice;

    private HeadRows(DecodeCall call, Tensor slice, Tensor[] top) {
        this.call = call;
        this.slice = slice;
        this.maxProb = top[0].toFloatArray();
        this.argmax = top[1].toIntArray();
    }

    /** {@code slice}: [rows, V / tp] logits, as the head gives them. */
    static HeadRows of(DecodeCall call, Tensor slice) {
        TensorParallel tp = call.model.tensorParallel();
        if (tp.size() == 1) return new HeadRows(call, slice, NN.topProbability(usable(call, slice)));
        return new HeadRows(call, slice, VocabParallelCrossEntropy.topProbability(withoutPadding(call, slice, tp), tp));
    }

    /** Row i's usable logits, whole, on the host. */
    DecodeCall.Row row(int i) {
        return () -> usable(call, slice.narrow(0, i, 1)).toFloatArray();
    }

    /**
     * The logits of ids the tokenizer can decode: a head padded past the tokenizer's vocabulary has rows no
     * text maps to, so they are cut off before the exit decision and sampling see them. Gathered whole.
     */
    static Tensor usable(DecodeCall call, Tensor slice) {
        Tensor logits = VocabParallelHead.gather(slice, call.model.tensorParallel());
        int limit = call.usableVocab;
        return limit < logits.dim(1) ? logits.narrow(1, 0, limit).contiguous() : logits;
    }

    /** This rank's slice with the padding ids (>= the usable vocabulary) at -inf, so no reduction picks them. */
    private static Tensor withoutPadding(DecodeCall call, Tensor slice, TensorParallel tp) {
        int width = slice.dim(1), start = tp.rank() * width, limit = call.usableVocab;
        if (limit >= start + width) return slice;
        float[] mask = new float[width];
        for (int j = Math.max(0, limit - start); j < width; j++) mask[j] = Float.NEGATIVE_INFINITY;
        Tensor m = Tensor.of(mask, 1, width);
        return Ops.add(slice, slice.device().kind() == Device.Kind.CPU ? m : m.to(slice.device()));
    }
}
