package dev.exeunt.model.nn;

import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;

/**
 * Parameters for EE-Tuning with random exit initialisation: backbone tensors start at zero (they are
 * loaded next), exit tensors ({@code exits.*}) are drawn from the seeded generator.
 */
final class ExitInitParameters extends Parameters {
    private final Parameters random;

    ExitInitParameters(Device device, long seed) {
        super(device, seed, false);
        this.random = new Parameters(device, seed, true);
    }

    @Override
    public Tensor normal(String name, float std, int... shape) {
        if (!name.startsWith("exits.")) return super.normal(name, std, shape);
        return add(name, random.detachNormal(std, shape));
    }
}
