package dev.exeunt.tensor.autograd;

import dev.exeunt.tensor.Tensor;

/**
 * One recorded operation on the tape: the inputs it read and how to turn the gradient of its output
 * into gradients of those inputs (null for inputs that need none).
 */
public record Node(String op, Tensor[] inputs, Backward backward) {
    @FunctionalInterface
    public interface Backward {
        Tensor[] apply(Tensor gradOutput);
    }
}
