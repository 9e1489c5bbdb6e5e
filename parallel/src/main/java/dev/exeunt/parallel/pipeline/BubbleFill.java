package dev.exeunt.parallel.pipeline;

import java.util.ArrayList;
import java.util.List;

/**
 * EE-LLM's pipeline bubble filling ({@code --fill-bubbles}): extra micro-batches, drawn from the data stream
 * after the step's global batch, that train the early stages and their exits in the idle slots 1F1B
 * leaves. Their losses are the exits' only (never the final head's), so stages past the last stage holding
 * an exit never see them and get exactly the gradients of the global batch.
 *
 * <ul>
 * <li>Warm-up fills run in the wait of each early stage for the first backward: fill j goes forward
 *     through stages 0..d and backward d..0 (the exact gradient of the weighted losses of the exits on
 *     stages 0..d). Stage s has room for {@code int((r (P-1-s) - s) / (1 + r))} such round trips (r the
 *     backward:forward time ratio), so d is the deepest stage holding an exit that still has room for
 *     fill j; a fill with no such stage is not run.
 * <li>Cool-down fills run in the idle tail of the deeper stages: fill c goes forward (without gradients
 *     where it will not come back) through stages 0..K (K the last stage holding an exit) and backward from
 *     K down to the shallowest stage j with room for it ({@code int(r j / (1 + r)) > c}), which does not
 *     send it further upstream. It trains the exits on stages j..K and the parameters of those stages
 *     with their losses; stages before j would have had to stretch the step to take it.
 * </ul>
 * Both phases take {@code count} fills (by default {@code int((P-1) r / (1 + r))}, EE-LLM's), fewer when
 * the bubbles have no room for them. Those counts assume every stage takes the same time; {@link #fitted}
 * keeps only the fills that fit the bubbles of measured per-stage times.
 */
public record BubbleFill(int count, double backwardForwardRatio) {
    public static final double DEFAULT_RATIO = 2.0;

    public BubbleFill {
        if (count < 0) throw new IllegalArgumentException("--fill-bubbles needs a count >= 0, got " + count);
        if (!(backwardForwardRatio > 0) || !Double.isFinite(backwardForwardRatio)) {
            throw new IllegalArgumentException("--backward-forward-ratio must be a positive number, got " + backwardForwardRatio);
        }
    }

    /** EE-LLM's default count per phase for {@code stages} stages: {@code int((P-1) r / (1 + r))}. */
    public static int defaultCount(int stages, double backwardForwardRatio) {
        return floor((stages - 1) * backwardForwardRatio / (1 + backwardForwardRatio));
    }

    /** Where one micro-batch goes: forward on stages 0..lastStage, backward on firstBackward..lastStage. */
    public record Route(int lastStage, int firstBackward) {
        /** An ordinary micro-batch: every stage, both ways. */
        public static Route whole(int stages) {
            return new Route(stages - 1, 0);
        }

        public boolean forwards(int stage) {
            return stage <= lastStage;
        }

        public boolean backwards(int stage) {
            return stage >= firstBackward && stage <= lastStage;
        }
    }

    /** The warm-up fills that run, given which stages hold an exit. */
    public List<Route> warmup(boolean[] holdsExit) {
        int p = holdsExit.length;
        List<Route> routes = new ArrayList<>();
        for (int j = 0; j < count; j++) {
            int last = -1;
            for (int s = 0; s < p; s++) {
                int room = Math.min(count, Math.max(0, floor((backwardForwardRatio * (p - 1 - s) - s) / (1 + backwardForwardRatio))));
                if (room <= j) break; // room shrinks with depth
                if (holdsExit[s]) last = s;
            }
            if (last >= 0) routes.add(new Route(last, 0));
        }
        return routes;
    }

    /** The cool-down fills that run, given which stages hold an exit. */
    public List<Route> cooldown(boolean[] holdsExit) {
        int last = -1;
        for (int s = 0; s < holdsExit.length; s++) if (holdsExit[s]) last = s;
        List<Route> routes = new ArrayList<>();
        for (int c = 0; c < count && last >= 0; c++) {
            for (int s = 0; s <= last; s++) {
                if (floor(backwardForwardRatio * s / (1 + backwardForwardRatio)) > c) { // room grows with depth
                    routes.add(new Route(last, s));
                    break;
                }
            }
        }
        return routes;
    }

    /** The fills of both phases. */
    public record Fills(List<Route> warmup, List<Route> cooldown) {}

    /**
     * The fills of {@link #warmup} and {@link #cooldown} that fit the measured bubbles: each in turn is
     * kept, at the deepest exit stage of its route that does not lengthen the simulated step
     * ({@link ScheduleSimulation}, stage s taking {@code forward[s]} and {@code backward[s]}, a fill's
     * backward costed like an ordinary one, exits and all), or dropped. What the bubble-fit counts above
     * cannot see: stages that differ (exit heads on some, the final head on the last).
     */
    public Fills fitted(boolean[] holdsExit, int micros, double[] forward, double[] backward) {
        int p = holdsExit.length;
        double base = ScheduleSimulation.makespan(p, micros, List.of(), List.of(), forward, backward);
        double slack = base * 1e-3;
        List<Route> warm = new ArrayList<>(), cool = new ArrayList<>();
        for (Route r : warmup(holdsExit)) {
            for (int last = r.lastStage(); last >= 0; last--) {
                if (!holdsExit[last]) continue;
                warm.add(new Route(last, 0));
                if (ScheduleSimulation.makespan(p, micros, warm, cool, forward, backward) <= base + slack) break;
                warm.removeLast();
            }
        }
        for (Route r : cooldown(holdsExit)) {
            cool.add(r);
            if (ScheduleSimulation.makespan(p, micros, warm, cool, forward, backward) > base + slack) cool.removeLast();
        }
        return new Fills(warm, cool);
    }

    /** Floor with a little slack, so that ratios like 2 / 3 * 3 count as the whole number they are. */
    private static int floor(double x) {
        return (int) Math.floor(x + 1e-9);
    }
}
