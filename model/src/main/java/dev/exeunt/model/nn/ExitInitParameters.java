package dev.exeunt.model.nn;

import dev.exeunt.tensor.Device;

/**
 * Parameters for EE-Tuning with random exit initialisation: backbone tensors start at zero (they are
 * loaded next), exit tensors ({@code exits.*}) get their seeded initial values, the same ones a fresh
 * model with this seed gives them (initial values depend only on seed, name and shape).
 */
final class ExitInitParameters extends Parameters {
    ExitInitParameters(Device device, long seed, TensorParallel tp) {
        this(device, seed, tp, PipelineParallel.NONE);
    }

    ExitInitParameters(Device device, long seed, TensorParallel tp, PipelineParallel pp) {
        super(device, seed, false, tp, pp);
    }

    @Override
    protected boolean initialises(String name) {
        return name.startsWith("exits.");
    }
}
