package dev.exeunt.parallel.pipeline;

import java.util.ArrayList;
import java.util.List;

/**
 * Megatron's 1F1B (PipeDream-flush) order of one stage's work in a step of {@code m} microbatches over
 * {@code p} stages: stage s runs min(p - s - 1, m) warm-up forwards, then alternates one forward and one
 * backward, then runs the remaining backwards (cool-down). At most p - s microbatches are in flight on
 * stage s, so activation memory is bounded by the pipeline depth, not by m.
 *
 * <p>With {@link BubbleFill bubble filling}, micro-batches m, m+1, ... are the fills (warm-up ones first):
 * a warm-up fill's forward and backward go right before the stage's first backward, where it would wait
 * for the gradient coming back from the last stage; cool-down fill c's forward goes after the stage's last
 * ordinary forward (or first backward, if later) and c further steps (into the gaps of the cool-down), and its backward after every
 * ordinary backward, into the idle tail of the deeper stages.
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
        return schedule(stage, stages, micros, List.of(), List.of());
    }

    /** The schedule with bubble-filling micro-batches (numbered from {@code micros}, warm-up fills first). */
    public static List<Action> schedule(int stage, int stages, int micros, List<BubbleFill.Route> warmupFills,
                                        List<BubbleFill.Route> cooldownFills) {
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

        int firstBackward = actions.indexOf(new Action(false, 0));
        List<Action> warm = new ArrayList<>();
        for (int j = 0; j < warmupFills.size(); j++) if (warmupFills.get(j).forwards(stage)) warm.add(new Action(true, micros + j));
        for (int j = warmupFills.size() - 1; j >= 0; j--) if (warmupFills.get(j).backwards(stage)) warm.add(new Action(false, micros + j));
        actions.addAll(firstBackward, warm);

        int cool = micros + warmupFills.size();
        // The cool-down starts after the last ordinary forward, or after the first backward when every forward is a warm-up one.
        int anchor = Math.max(actions.indexOf(new Action(true, micros - 1)), actions.indexOf(new Action(false, 0)));
        for (int c = cooldownFills.size() - 1; c >= 0; c--) {
            if (cooldownFills.get(c).forwards(stage)) actions.add(Math.min(actions.size(), anchor + 1 + c), new Action(true, cool + c));
        }
        for (int c = 0; c < cooldownFills.size(); c++) if (cooldownFills.get(c).backwards(stage)) actions.add(new Action(false, cool + c));
        return actions;
    }
}
