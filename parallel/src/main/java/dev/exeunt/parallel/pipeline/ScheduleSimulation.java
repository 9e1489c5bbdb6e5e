package dev.exeunt.parallel.pipeline;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The length of one step of the {@link OneFOneB} schedule (with bubble fills) when stage s takes
 * {@code forward[s]} per forward and {@code backward[s]} per backward and each action waits only for the
 * message it needs: what fits in the bubbles, without running it.
 */
public final class ScheduleSimulation {
    private ScheduleSimulation() {}

    /** The simulated step length; throws if the schedules deadlock (a bug, never a layout's fault). */
    public static double makespan(int stages, int micros, List<BubbleFill.Route> warm, List<BubbleFill.Route> cool, double[] forward,
                                  double[] backward) {
        List<BubbleFill.Route> routes = new ArrayList<>();
        for (int i = 0; i < micros; i++) routes.add(BubbleFill.Route.whole(stages));
        routes.addAll(warm);
        routes.addAll(cool);
        List<List<OneFOneB.Action>> plans = new ArrayList<>();
        for (int s = 0; s < stages; s++) plans.add(OneFOneB.schedule(s, stages, micros, warm, cool));
        Map<Long, Double> done = new HashMap<>(); // (kind, stage, micro) -> end time
        double[] clock = new double[stages];
        int[] next = new int[stages];
        boolean progress = true;
        while (progress) {
            progress = false;
            for (int s = 0; s < stages; s++) {
                while (next[s] < plans.get(s).size()) {
                    OneFOneB.Action a = plans.get(s).get(next[s]);
                    BubbleFill.Route route = routes.get(a.micro());
                    Long need = a.forward() ? (s > 0 ? key(true, s - 1, a.micro()) : null)
                            : (s < route.lastStage() ? key(false, s + 1, a.micro()) : null);
                    if (need != null && !done.containsKey(need)) break;
                    double start = Math.max(clock[s], need == null ? 0 : done.get(need));
                    clock[s] = start + (a.forward() ? forward[s] : backward[s]);
                    done.put(key(a.forward(), s, a.micro()), clock[s]);
                    next[s]++;
                    progress = true;
                }
            }
        }
        double end = 0;
        for (int s = 0; s < stages; s++) {
            if (next[s] != plans.get(s).size()) throw new IllegalStateException("1F1B schedules deadlock on stage " + s + ": " + plans.get(s));
            end = Math.max(end, clock[s]);
        }
        return end;
    }

    private static long key(boolean forward, int stage, int micro) {
        return ((long) micro << 32) | ((long) stage << 1) | (forward ? 1 : 0);
    }
}
