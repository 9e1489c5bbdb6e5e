package dev.exeunt.cli.serve;

import dev.exeunt.model.nn.EarlyExitModel;

/** Test models whose heads prefer chosen token rows. */
public final class TestRows {
    private TestRows() {}

    /**
     * Makes every head of a GPT-2 model (final, and exits with a norm) favour the given rows: the norms
     * output a constant vector b (weight 0, bias 1) and the favoured rows of each head are 50 b, so their
     * logit is 50 d while the others stay near 0.
     */
    public static void favour(EarlyExitModel m, int... rows) {
        favour(m, rows, rows);
    }

    /**
     * As {@link #favour}, but the exits' heads favour {@code exitRow} and the final head {@code finalRow}:
     * every token an exit is sure of is one the full model would not produce.
     */
    public static void disagree(EarlyExitModel m, int exitRow, int finalRow) {
        favour(m, new int[] {exitRow}, new int[] {finalRow});
    }

    private static void favour(EarlyExitModel m, int[] exitRows, int[] finalRows) {
        int d = m.config().dModel();
        float[] zeros = new float[d], ones = new float[d];
        java.util.Arrays.fill(ones, 1f);
        for (var e : m.parameters().all().entrySet()) {
            String name = e.getKey();
            if (name.equals("ln_f.weight") || name.matches("exits\\.\\d+\\.norm\\.weight")) set(e.getValue(), zeros);
            if (name.equals("ln_f.bias") || name.matches("exits\\.\\d+\\.norm\\.bias")) set(e.getValue(), ones);
            if (name.equals("wte.weight") || name.endsWith(".head.weight")) {
                float[] w = e.getValue().toFloatArray();
                for (int r : name.equals("wte.weight") ? finalRows : exitRows) java.util.Arrays.fill(w, r * d, (r + 1) * d, 50f);
                set(e.getValue(), w);
            }
        }
    }

    private static void set(dev.exeunt.tensor.Tensor t, float[] values) {
        try (var s = dev.exeunt.tensor.Scope.open(); var g = dev.exeunt.tensor.autograd.GradMode.noGrad()) {
            t.copyFrom(dev.exeunt.tensor.Tensor.of(values, t.shape()));
        }
    }

}
