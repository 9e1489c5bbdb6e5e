package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Sweep's agreement measures and its table and JSON columns, speculative acceptance included. */
class SweepTest {
    @Test
    void agreementCountsPositionsAndThePrefixBeforeTheFirstDivergence() {
        // Diverges at position 2 and agrees again by chance at 3: 3 of 4 positions, but a prefix of 2.
        var a = Sweep.Agreement.of(List.of(new int[] {1, 2, 9, 4}), List.of(new int[] {1, 2, 3, 4}));
        assertEquals(0.75, a.positional(), 1e-12);
        assertEquals(0.5, a.prefix(), 1e-12);
        // Lengths differ (an early end of sequence): counted over the longer; identical outputs agree fully.
        var b = Sweep.Agreement.of(List.of(new int[] {5, 6}, new int[] {7}), List.of(new int[] {5, 6, 7, 8}, new int[] {7}));
        assertEquals(3 / 5.0, b.positional(), 1e-12);
        assertEquals(3 / 5.0, b.prefix(), 1e-12);
        assertEquals(new Sweep.Agreement(1, 1), Sweep.Agreement.of(List.of(new int[] {3}), List.of(new int[] {3})));
    }

    @Test
    void tableAndJsonShowTheFullModelRateAndBothAgreements() {
        var p = new Sweep.Point(0.5, 120, 100, 1.2, 0.75, 0.5, new double[] {0.3, 0.7}, false, List.of(new Acceptance(2, 0, 0)));
        String table = Sweep.table(List.of(p));
        assertTrue(table.contains("full tok/s") && table.contains("100.0") && table.contains("75.0%") && table.contains("50.0%"), table);
        assertTrue(table.contains("exit@2") && !table.contains("accepted"), table);
        String json = Sweep.toJson(List.of(p));
        assertTrue(json.contains("\"full_tokens_per_s\":100.00") && json.contains("\"prefix_agreement\":0.5000"), json);
        assertTrue(json.contains("\"speculative\":false") && json.contains("\"exit@2\":0.3000"), json);
    }

    @Test
    void aSpeculativeRowShowsTheShareOfDraftsAcceptedOverAllExits() {
        var acc = List.of(new Acceptance(2, 30, 27), new Acceptance(4, 10, 5));
        var drafting = new Sweep.Point(0.4, 150, 100, 1.5, 1, 1, new double[] {0.5, 0.2, 0.3}, true, acc);
        var none = new Sweep.Point(1, 100, 100, 1, 1, 1, new double[] {0, 0, 1}, true, List.of(new Acceptance(2, 0, 0), new Acceptance(4, 0, 0)));
        String[] rows = Sweep.table(List.of(drafting, none)).split("\n");
        assertTrue(rows[0].contains("accepted"), rows[0]);
        assertTrue(rows[1].contains(" 80.0%"), rows[1]); // (27 + 5) / (30 + 10)
        assertTrue(rows[2].matches(".*\\s-\\s.*"), rows[2]); // nothing drafted: no rate, not NaN
        assertTrue(rows[3].startsWith("speedup = tokens/s / full tok/s"), rows[3]);
        var slower = new Sweep.Point(0.8, 90, 90, 1, 1, 1, new double[] {0, 0, 1}, true, List.of());
        assertTrue(Sweep.table(List.of(drafting, none, slower)).contains("varies by 10.0%"), "full rates 100, 100, 90: 10% from the median");
        String json = Sweep.toJson(List.of(drafting));
        assertTrue(json.contains("\"speculative\":true,\"acceptance\":[{\"layer\":2,\"drafted\":30,\"accepted\":27},"
                + "{\"layer\":4,\"drafted\":10,\"accepted\":5}]"), json);
        assertEquals("exit@2: 30 drafts, 27 accepted (90.0%)", acc.get(0).line());
        assertEquals("exit@2: 0 drafts, 0 accepted", new Acceptance(2, 0, 0).line());
    }

    @Test
    void countsThatCannotBeAreRefused() {
        var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> new Acceptance(3, 4, 5));
        assertTrue(e.getMessage().contains("exit@3"), e.getMessage());
    }
}
