package dev.exeunt.parallel;

import dev.exeunt.model.train.GradientSync;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.Backprop;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The real sync of one rank, remembering what the trainer asked of it: the averaged losses of each step,
 * how many gradient reductions ran, and how many steps overlapped their all-reduces with the backward.
 */
public final class RecordingSync implements GradientSync {
    private final GradientSync inner;
    public final List<double[]> steps = new ArrayList<>();
    public int gradientReductions;
    public int overlappedSteps;

    public RecordingSync(GradientSync inner) {
        this.inner = inner;
    }

    @Override
    public int rank() {
        return inner.rank();
    }

    @Override
    public int ranks() {
        return inner.ranks();
    }

    @Override
    public boolean logs() {
        return inner.logs();
    }

    @Override
    public void reduceGradients(Map<String, Tensor> trainable) {
        gradientReductions++;
        inner.reduceGradients(trainable);
    }

    @Override
    public Backprop.LeafListener finalGradients(Map<String, Tensor> trainable) {
        var listener = inner.finalGradients(trainable);
        if (listener != null) overlappedSteps++;
        return listener;
    }

    @Override
    public long lastReduceNanos() {
        return inner.lastReduceNanos();
    }

    @Override
    public void averageScalars(double[] values) {
        inner.averageScalars(values);
        steps.add(values.clone());
    }
}
