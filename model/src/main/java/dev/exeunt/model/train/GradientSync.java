package dev.exeunt.model.train;

import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.Backprop;
import java.util.Map;

/**
 * How the {@link Trainer} of one data-parallel rank agrees with the others (the seam that keeps
 * {@code model} free of any communication engine). With {@code D} ranks each rank reads rows
 * {@code [r*B/D, (r+1)*B/D)} of every global micro-batch of {@code B} windows and computes the mean
 * loss over its own rows; because every row has the same number of counted tokens (the trainer uses
 * no mask, and window targets are never the ignore index), the mean over ranks of those means is the
 * one-rank mean, and so is the mean over ranks of the gradients.
 *
 * <p>{@link #SINGLE} is one rank alone: nothing to exchange, today's behaviour.
 */
public interface GradientSync {
    /** This rank's index in the data-parallel group, 0..ranks()-1. */
    int rank();

    /** Number of data-parallel ranks. */
    int ranks();

    /**
     * Replaces every trainable parameter's gradient by the mean over ranks of that gradient. Called
     * after the micro-batch loop and before clipping, so clipping sees the same gradient on every rank.
     */
    void reduceGradients(Map<String, Tensor> trainable);

    /**
     * Called before the backward of a step's last micro-batch: a listener to hear of each trainable
     * parameter as soon as its gradient for the step is final (so its all-reduce can start while the
     * backward goes on), or null when this sync does not overlap. {@link #reduceGradients} still follows.
     */
    default Backprop.LeafListener finalGradients(Map<String, Tensor> trainable) {
        return null;
    }

    /** How long the last {@link #reduceGradients} took, in nanoseconds (0 when nothing was exchanged). */
    default long lastReduceNanos() {
        return 0;
    }

    /** Replaces each value in place by its mean over ranks (for the logged losses); every rank gets the same doubles. */
    void averageScalars(double[] values);

    /** Whether this rank prints, writes the training log and saves checkpoints (rank 0). */
    default boolean logs() {
        return rank() == 0;
    }

    /** One rank, no communication. */
    GradientSync SINGLE = new GradientSync() {
        @Override
        public int rank() {
            return 0;
        }

        @Override
        public int ranks() {
            return 1;
        }

        @Override
        public void reduceGradients(Map<String, Tensor> trainable) {}

        @Override
        public void averageScalars(double[] values) {}

        @Override
        public String toString() {
            return "single rank";
        }
    };
}
