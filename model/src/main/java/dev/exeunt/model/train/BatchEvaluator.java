package dev.exeunt.model.train;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Tensor;

/**
 * How {@link Evaluator} evaluates one validation batch on this rank's model: the whole model on its own
 * ({@link #WHOLE_MODEL}), or one pipeline stage together with the others ({@code parallel}'s
 * PipelineEvaluator), the seam that keeps {@code model} free of any communication engine. Every stage
 * gets the same sums, those of the whole model.
 */
public interface BatchEvaluator {
    /** The per-head sums of ids/targets [B, T] (collective over the pipeline stages, in the same order on each). */
    EarlyExitModel.EvalSums evaluate(EarlyExitModel model, Tensor ids, Tensor targets);

    /** A model holding every layer evaluates alone. */
    BatchEvaluator WHOLE_MODEL = EarlyExitModel::evaluate;
}
