package dev.exeunt.model.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Sweep's agreement measures and its table and JSON columns. */
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
        var p = new Sweep.Point(0.5, 120, 100, 1.2, 0.75, 0.5, new double[] {0.3, 0.7});
        String table = Sweep.table(List.of(p), new int[] {2});
        assertTrue(table.contains("full tok/s") && table.contains("100.0") && table.contains("75.0%") && table.contains("50.0%"), table);
        String json = Sweep.toJson(List.of(p), new int[] {2});
        assertTrue(json.contains("\"full_tokens_per_s\":100.00") && json.contains("\"prefix_agreement\":0.5000"), json);
    }
}
