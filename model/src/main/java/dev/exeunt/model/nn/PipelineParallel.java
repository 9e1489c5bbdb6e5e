package dev.exeunt.model.nn;

import dev.exeunt.tensor.Tensor;

/**
 * This rank's place among the pipeline stages and the exchanges the trainer and checkpoints need across
 * them (the seam that keeps {@code model} free of any communication engine; {@code parallel} implements
 * it over the pipeline group). The ranks of one group hold the same tensor-parallel and data-parallel
 * place on every stage. Every call is collective over the group, in the same order on every stage,
 * except the point-to-point {@link #send} and {@link #recv}.
 *
 * <p>{@link #NONE} is a model on one stage.
 */
public interface PipelineParallel {
    /** This rank's stage, 0..stages()-1. */
    int stage();

    int stages();

    /** Replaces each value by its sum over the stages, in double precision; every stage gets the same doubles. */
    void sumOverStages(double[] values);

    /** Sends {@code t} (contiguous) to the same-placed rank of stage {@code to}; blocks until it may be reused. */
    void send(Tensor t, int to);

    /** Receives into {@code t} (contiguous, the sender's dtype and size) from stage {@code from}. */
    void recv(Tensor t, int from);

    PipelineParallel NONE = new PipelineParallel() {
        @Override
        public int stage() {
            return 0;
        }

        @Override
        public int stages() {
            return 1;
        }

        @Override
        public void sumOverStages(double[] values) {}

        @Override
        public void send(Tensor t, int to) {
            throw new IllegalStateException("a single-stage model sends nothing");
        }

        @Override
        public void recv(Tensor t, int from) {
            throw new IllegalStateException("a single-stage model receives nothing");
        }
    };
}
