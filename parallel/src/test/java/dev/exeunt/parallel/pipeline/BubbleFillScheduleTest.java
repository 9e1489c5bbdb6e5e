package dev.exeunt.parallel.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The bubble-filling schedules, run in a simulation where a forward takes 1 and a backward r time units
 * and a stage waits for the message its next action needs: no layout deadlocks, every micro-batch runs
 * exactly where its route says (and never past the last stage holding an exit), warm-up fills never
 * lengthen the step, and cool-down fills lengthen it by at most one forward each (their forward on the
 * first stage, which has no idle tail), whenever there are at least twice as many micro-batches as stages.
 */
class BubbleFillScheduleTest {

    /** The simulated makespan of a step; fails on a deadlock or a route violation. */
    static double simulate(int p, int m, List<BubbleFill.Route> warm, List<BubbleFill.Route> cool, double r) {
        List<BubbleFill.Route> routes = new ArrayList<>();
        for (int i = 0; i < m; i++) routes.add(BubbleFill.Route.whole(p));
        routes.addAll(warm);
        routes.addAll(cool);
        List<List<OneFOneB.Action>> plans = new ArrayList<>();
        for (int s = 0; s < p; s++) plans.add(OneFOneB.schedule(s, p, m, warm, cool));
        for (int s = 0; s < p; s++) {
            for (int i = 0; i < routes.size(); i++) {
                BubbleFill.Route route = routes.get(i);
                List<OneFOneB.Action> plan = plans.get(s);
                int f = plan.indexOf(new OneFOneB.Action(true, i)), b = plan.indexOf(new OneFOneB.Action(false, i));
                assertEquals(route.forwards(s), f >= 0, "stage " + s + " forward of " + i);
                assertEquals(route.backwards(s), b >= 0, "stage " + s + " backward of " + i);
                if (b >= 0) assertTrue(f < b, "stage " + s + ": backward of " + i + " before its forward");
            }
            assertEquals(plans.get(s).size(), new java.util.HashSet<>(plans.get(s)).size(), "stage " + s + " repeats an action");
        }
        double[] forward = new double[p], backward = new double[p];
        java.util.Arrays.fill(forward, 1);
        java.util.Arrays.fill(backward, r);
        return ScheduleSimulation.makespan(p, m, warm, cool, forward, backward);
    }

    @Test
    void everyLayoutRunsWithoutDeadlockAndFillsCostAtMostTheirFirstStageForwards() {
        int layouts = 0;
        double[] worst = new double[2];
        for (int p = 1; p <= 6; p++) {
            for (double r : new double[] {1, 2, 3}) {
                for (int m : new int[] {1, Math.max(1, p - 1), p, 2 * p}) {
                    for (int mask = 1; mask < 1 << p; mask++) {
                        boolean[] holds = new boolean[p];
                        int last = 0;
                        for (int s = 0; s < p; s++) if (holds[s] = (mask >> s & 1) == 1) last = s;
                        double plain = simulate(p, m, List.of(), List.of(), r);
                        for (int n : new int[] {1, BubbleFill.defaultCount(p, r), BubbleFill.defaultCount(p, r) + 2}) {
                            var fill = new BubbleFill(n, r);
                            var warm = fill.warmup(holds);
                            var cool = fill.cooldown(holds);
                            for (var route : warm) {
                                assertTrue(holds[route.lastStage()] && route.firstBackward() == 0, "warm-up fill " + route);
                            }
                            for (var route : cool) assertTrue(route.lastStage() == last && route.firstBackward() > 0, "cool-down fill " + route);
                            String where = "pp " + p + " r " + r + " m " + m + " exits on " + Integer.toBinaryString(mask) + " fills " + n;
                            double warmOnly = simulate(p, m, warm, List.of(), r);
                            if (m >= p) assertEquals(plain, warmOnly, 1e-9, where + ": warm-up fills lengthen the step");
                            double both = simulate(p, m, warm, cool, r);
                            if (m >= p) worst[m >= 2 * p ? 1 : 0] = Math.max(worst[m >= 2 * p ? 1 : 0], (both - warmOnly) / Math.max(1, cool.size()));
                            if (m >= 2 * p) assertTrue(both <= warmOnly + cool.size() + 1e-9, where + ": cool-down fills cost " + (both - warmOnly));
                            layouts++;
                        }
                    }
                }
            }
        }
        System.out.printf("cool-down fills cost at most %.2f (m >= pp) and %.2f (m >= 2 pp) forwards each%n", worst[0], worst[1]);
        assertTrue(layouts > 1000);
    }

    /**
     * Measured stage times where the exit stages are heavier than the rest (their heads in the backward):
     * the bubble-fit counts overfill and lengthen the step; {@link BubbleFill#fitted} keeps what fits (shallower
     * routes or fewer fills) and never lengthens it; with uniform stages it keeps every free fill.
     */
    @Test
    void fittedFillsNeverLengthenTheMeasuredStep() {
        var fill = new BubbleFill(2, 2.0);
        boolean[] early = {true, true, false, false};
        double[] uniformF = {1, 1, 1, 1}, uniformB = {2, 2, 2, 2};
        assertEquals(new BubbleFill.Fills(fill.warmup(early), fill.cooldown(early)), fill.fitted(early, 8, uniformF, uniformB));
        double[] f = {1, 1, 1, 0.2}, b = {3.5, 3.5, 2, 2.6}; // exits on stages 0 and 1; the last stage's head in its backward
        double base = ScheduleSimulation.makespan(4, 8, List.of(), List.of(), f, b);
        assertTrue(ScheduleSimulation.makespan(4, 8, fill.warmup(early), List.of(), f, b) > base * 1.01, "the counts alone would fit here");
        var fitted = fill.fitted(early, 8, f, b);
        assertTrue(ScheduleSimulation.makespan(4, 8, fitted.warmup(), fitted.cooldown(), f, b) <= base * 1.001);
        assertFalse(fitted.warmup().isEmpty(), "no fill fits: " + fitted);
        boolean[] ends = {true, false, false, true};
        for (int m : new int[] {8, 16}) {
            var both = fill.fitted(ends, m, f, b);
            assertTrue(ScheduleSimulation.makespan(4, m, both.warmup(), both.cooldown(), f, b)
                    <= ScheduleSimulation.makespan(4, m, List.of(), List.of(), f, b) * 1.001);
        }
    }

    @Test
    void defaultCountsAndRoutesFollowTheBubbles() {
        assertEquals(2, BubbleFill.defaultCount(4, 2.0)); // int(3 * 2 / 3)
        assertEquals(0, BubbleFill.defaultCount(2, 2.0));
        assertEquals(4, BubbleFill.defaultCount(8, 2.0));
        var fill = new BubbleFill(2, 2.0);
        // Exits on stages 0 and 1 of 4: the first fill reaches stage 1, the second only stage 0; no cool-down fill has room there.
        boolean[] early = {true, true, false, false};
        assertEquals(List.of(new BubbleFill.Route(1, 0), new BubbleFill.Route(0, 0)), fill.warmup(early));
        assertEquals(List.of(), fill.cooldown(early));
        // Exits on stages 0 and 3: warm-up fills stay on stage 0; cool-down fills come back from stage 3 to stages 2 and 3.
        boolean[] ends = {true, false, false, true};
        assertEquals(List.of(new BubbleFill.Route(0, 0), new BubbleFill.Route(0, 0)), fill.warmup(ends));
        assertEquals(List.of(new BubbleFill.Route(3, 2), new BubbleFill.Route(3, 3)), fill.cooldown(ends));
        assertEquals(List.of(), fill.warmup(new boolean[] {false, false, false, true}));
        assertFalse(new BubbleFill(0, 2.0).cooldown(ends).iterator().hasNext());
        assertEquals("[F0, F1, F2, F3, F4, F5, B5, B4, B0, F6, B1, F7, B2, B3]",
                OneFOneB.schedule(0, 4, 4, fill.warmup(ends), fill.cooldown(ends)).toString());
        assertEquals("[F0, B0, F1, B1, F2, B2, F3, F6, B3, F7, B6, B7]",
                OneFOneB.schedule(3, 4, 4, fill.warmup(ends), fill.cooldown(ends)).toString());
    }
}
