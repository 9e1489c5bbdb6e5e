package dev.exeunt.model.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Which steps print: every N, every step on a terminal, else the first, one per 5 s, and the last. */
class LogCadenceTest {
    /** Steps that print over 100 steps of 1.1 s each. */
    private static List<Integer> printed(int every, boolean terminal) {
        long[] now = {0};
        var c = new LogCadence(every, terminal, () -> now[0]);
        List<Integer> out = new ArrayList<>();
        for (int it = 0; it < 100; it++) {
            if (c.due(it, 100)) out.add(it);
            now[0] += 1_100_000_000L;
        }
        return out;
    }

    @Test
    void plainLogsGetALineEveryFiveSeconds() {
        List<Integer> p = printed(0, false);
        assertEquals(List.of(0, 5, 10), p.subList(0, 3), "the first step, then every 5 s (5 steps of 1.1 s)");
        assertEquals(99, p.get(p.size() - 1), "the last step always prints");
        assertEquals(21, p.size());
        assertEquals(100, printed(0, true).size(), "a terminal sees every step");
        assertEquals(List.of(0, 30, 60, 90, 99), printed(30, false), "--log-every N is every N steps, terminal or not");
        assertThrows(IllegalArgumentException.class, () -> new LogCadence(-1, false, System::nanoTime));
    }
}
