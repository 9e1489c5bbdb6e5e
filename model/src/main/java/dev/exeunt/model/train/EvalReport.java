package dev.exeunt.model.train;

import java.util.Locale;

/**
 * Validation results: loss and perplexity of the final head and of each exit, and for each exit how
 * often its top-1 token equals the final head's.
 */
public record EvalReport(int[] exitLayers, double finalLoss, double[] exitLoss, double[] exitAgreement, long tokens) {
    public double finalPerplexity() {
        return Math.exp(finalLoss);
    }

    public double exitPerplexity(int i) {
        return Math.exp(exitLoss[i]);
    }

    /** JSON number, or null for NaN (a head that was not evaluated). */
    private static String num(String fmt, double v) {
        return Double.isFinite(v) ? String.format(Locale.ROOT, fmt, v) : "null";
    }

    public String toJson() {
        var sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "{\"tokens\":%d,\"final\":{\"loss\":%s,\"perplexity\":%s},\"exits\":[",
                tokens, num("%.6f", finalLoss), num("%.4f", finalPerplexity())));
        for (int i = 0; i < exitLoss.length; i++) {
            if (i > 0) sb.append(',');
            sb.append(String.format(Locale.ROOT, "{\"layer\":%d,\"loss\":%s,\"perplexity\":%s,\"top1_agreement\":%s}",
                    exitLayers[i], num("%.6f", exitLoss[i]), num("%.4f", exitPerplexity(i)), num("%.6f", exitAgreement[i])));
        }
        return sb.append("]}").toString();
    }

    public String toTable() {
        var sb = new StringBuilder(String.format(Locale.ROOT, "%-12s %10s %12s %14s%n", "head", "loss", "perplexity", "top1 = final"));
        for (int i = 0; i < exitLoss.length; i++) {
            sb.append(String.format(Locale.ROOT, "%-12s %10.4f %12.2f %14s%n", "exit@" + exitLayers[i], exitLoss[i],
                    exitPerplexity(i), Double.isFinite(exitAgreement[i]) ? String.format(Locale.ROOT, "%.1f%%", 100 * exitAgreement[i]) : "-"));
        }
        if (Double.isFinite(finalLoss)) {
            sb.append(String.format(Locale.ROOT, "%-12s %10.4f %12.2f %14s%n", "final", finalLoss, finalPerplexity(), "-"));
        }
        return sb.toString();
    }
}
