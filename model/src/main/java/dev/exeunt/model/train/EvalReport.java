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

    public String toJson() {
        var sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "{\"tokens\":%d,\"final\":{\"loss\":%.6f,\"perplexity\":%.4f},\"exits\":[",
                tokens, finalLoss, finalPerplexity()));
        for (int i = 0; i < exitLoss.length; i++) {
            if (i > 0) sb.append(',');
            sb.append(String.format(Locale.ROOT, "{\"layer\":%d,\"loss\":%.6f,\"perplexity\":%.4f,\"top1_agreement\":%.6f}",
                    exitLayers[i], exitLoss[i], exitPerplexity(i), exitAgreement[i]));
        }
        return sb.append("]}").toString();
    }

    public String toTable() {
        var sb = new StringBuilder(String.format(Locale.ROOT, "%-12s %10s %12s %14s%n", "head", "loss", "perplexity", "top1 = final"));
        for (int i = 0; i < exitLoss.length; i++) {
            sb.append(String.format(Locale.ROOT, "%-12s %10.4f %12.2f %13.1f%%%n", "exit@" + exitLayers[i], exitLoss[i],
                    exitPerplexity(i), 100 * exitAgreement[i]));
        }
        sb.append(String.format(Locale.ROOT, "%-12s %10.4f %12.2f %14s%n", "final", finalLoss, finalPerplexity(), "-"));
        return sb.toString();
    }
}
