package dev.exeunt.model.tune;

import dev.exeunt.model.config.ExitConfig;
import java.util.List;
import java.util.Locale;

/** The lines EE-Tuning logs per iteration: one JSON line in {@value ExitTuner#LOG}, and the console's. */
final class TuneLog {
    private TuneLog() {}

    /** {@code {"iter":..,"exit_losses":[..],"exit_weights":[..],"lr":..,"tokens_per_s":..,"elapsed_s":..}} and a newline. */
    static String jsonLine(int it, double[] losses, double[] weights, double lr, double tokensPerSecond, double elapsed) {
        var sb = new StringBuilder(String.format(Locale.ROOT, "{\"iter\":%d,\"exit_losses\":[", it));
        for (int i = 0; i < losses.length; i++) sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT, "%.6f", losses[i]));
        sb.append("],\"exit_weights\":[");
        for (int i = 0; i < weights.length; i++) sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT, "%.4f", weights[i]));
        sb.append(String.format(Locale.ROOT, "],\"lr\":%.6g,\"tokens_per_s\":%.1f,\"elapsed_s\":%.2f}%n", lr, tokensPerSecond, elapsed));
        return sb.toString();
    }

    /** {@code tune 3/100 exit@8 3.1234 ... | lr 1.00e-03 1234 tok/s ETA 56s}. */
    static String consoleLine(int it, int iters, List<ExitConfig> exits, double[] losses, double lr, double tokensPerSecond, double elapsed) {
        var line = new StringBuilder(String.format(Locale.ROOT, "tune %d/%d", it + 1, iters));
        for (int i = 0; i < losses.length; i++) line.append(String.format(Locale.ROOT, " exit@%d %.4f", exits.get(i).layer(), losses[i]));
        line.append(String.format(Locale.ROOT, " | lr %.2e %.0f tok/s ETA %.0fs", lr, tokensPerSecond, (iters - it - 1) * elapsed / (it + 1)));
        return line.toString();
    }
}
