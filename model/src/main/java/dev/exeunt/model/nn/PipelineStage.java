package dev.exeunt.model.nn;

import dev.exeunt.model.config.ExitConfig;
import java.util.Arrays;

/**
 * Which part of the model one pipeline stage holds: layers [firstLayer, endLayer) (0-based) of stage
 * {@code index} of {@code count}. Stage 0 also holds the embedding, the last stage the final norm and
 * head, and an exit lives on the stage that owns its layer (the 1-based layer it is attached to, before
 * or after it; an embedding exit on stage 0).
 */
public record PipelineStage(int index, int count, int firstLayer, int endLayer) {
    public PipelineStage {
        if (count < 1 || index < 0 || index >= count || firstLayer < 0 || endLayer <= firstLayer) {
            throw new IllegalArgumentException("bad pipeline stage " + index + " of " + count + ": layers [" + firstLayer + ", " + endLayer + ")");
        }
    }

    /** The whole model as one stage. */
    public static PipelineStage whole(int layers) {
        return new PipelineStage(0, 1, 0, layers);
    }

    /** Stage {@code index} of {@code stages} with layers split as evenly as they go (earlier stages take the remainder). */
    public static PipelineStage balanced(int layers, int stages, int index) {
        if (stages < 1 || stages > layers) throw new IllegalArgumentException(stages + " pipeline stages cannot split " + layers + " layers");
        int[] per = new int[stages];
        for (int s = 0; s < stages; s++) per[s] = layers / stages + (s < layers % stages ? 1 : 0);
        return of(per, index);
    }

    /** Stage {@code index} of a split giving stage s {@code layersPerStage[s]} layers ({@code --pipeline-layers}). */
    public static PipelineStage of(int[] layersPerStage, int index) {
        int first = 0;
        for (int s = 0; s < layersPerStage.length; s++) {
            if (layersPerStage[s] < 1) {
                throw new IllegalArgumentException("every pipeline stage needs a layer: " + Arrays.toString(layersPerStage));
            }
            if (s < index) first += layersPerStage[s];
        }
        if (index < 0 || index >= layersPerStage.length) throw new IllegalArgumentException("no stage " + index + " in " + Arrays.toString(layersPerStage));
        return new PipelineStage(index, layersPerStage.length, first, first + layersPerStage[index]);
    }

    public boolean isFirst() {
        return index == 0;
    }

    public boolean isLast() {
        return index == count - 1;
    }

    /** Whether exit {@code e} lives on this stage. */
    public boolean owns(ExitConfig e) {
        int layer = e.layer() - 1;
        return layer >= firstLayer && layer < endLayer;
    }
}
