package dev.exeunt.model.tune;

import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;

/**
 * The frozen backbone forward of one tuning stage, without a graph: the first stage embeds the ids, a
 * later one receives the previous stage's output; the stage runs its layers, sends its output to the
 * next running stage and returns what each of its exits reads. Each exit trains on its own loss alone, so
 * nothing flows back and the stages form a one-way chain: stage s+1 works on a batch while stage s trains
 * its exits on it. With one stage it is the model's plain {@link EarlyExitModel#exitInputs(Tensor)}.
 */
final class FrozenBackbone {
    private final EarlyExitModel model;
    private final PipelineParallel pp;

    FrozenBackbone(EarlyExitModel model) {
        this.model = model;
        this.pp = model.parameters().pipeline();
    }

    /** What {@code model.exits().get(i)} reads for ids [B, T], at index i (in the current scope). */
    Tensor[][] exitInputs(Tensor ids) {
        try (var g = GradMode.noGrad()) {
            Tensor input = ids;
            if (pp.stage() > 0) {
                var tp = model.tensorParallel();
                int positions = tp.sequenceParallel() ? ids.dim(1) / tp.size() : ids.dim(1);
                input = Tensor.empty(DType.F32, model.device(), ids.dim(0), positions, model.config().dModel());
                pp.recv(input, pp.stage() - 1);
            }
            Tensor[][] inputs = new Tensor[model.exits().size()][];
            Tensor output = model.exitInputs(input, inputs);
            if (pp.stage() < pp.stages() - 1) pp.send(Ops.contiguous(output), pp.stage() + 1);
            return inputs;
        }
    }
}
