package dev.exeunt.parallel.pipeline;

import java.util.ArrayList;
import java.util.List;

/**
 * Megatron's 1F1B (PipeDream-flush) order of one stage's work in a step of {@code m} microbatches over
 * {@code p} stages: stage s runs min(p - s - 1, m) warm-up forwards, then alternates one forward and one
 * backward, then runs the remaining backwards (cool-down). At most p - s microbatches are in flight on
 * stage s, so activation memory is bounded by the pipeline depth, not by m.
 */
public final class OneFOneB {
    private OneFOneB() {}

    /** One unit of work: the forward or the backward of microbatch {@code micro}. */
    public record Action(boolean forward, int micro) {
        @Override
        public String toString() {
            return (forward ? "F" : "B") + micro;
        }
    }

    public static List<Action> schedule(int stage, int stages, int micros) {
        if (stages < 1 || stage < 0 || stage >= stages || micros < 1) {
            throw new IllegalArgumentException("1F1B needs 0 <= stage < stages and microbatches >= 1: stage " + stage + " of " + stages
                    + ", " + micros + " microbatches");
        }
        int warmup = Math.min(stages - stage - 1, micros);
        List<Action> actions = new ArrayList<>();
        int nextForward = 0, nextBackward = 0;
        for (int i = 0; i < warmup; i++) actions.add(new Action(true, nextForward++));
        while (nextForward < micros) {
            actions.add(new Action(true, nextForward++));
            actions.add(new Action(false, nextBackward++));
        }
        while (nextBackward < micros) actions.add(new Action(false, nextBackward++));
        return actions;
    }
}
