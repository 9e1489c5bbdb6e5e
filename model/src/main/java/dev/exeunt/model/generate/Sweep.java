package dev.exeunt.model.generate;

import dev.exeunt.model.nn.EarlyExitModel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Early-exit speed against quality: for each threshold, greedy generation over a set of prompts,
 * reporting decode tokens/s, speedup against the full model (threshold 1, measured in the same run),
 * the share of tokens from each exit, and agreement with the full model's greedy output. A speculative
 * sweep decodes every row with lossless self-speculative decoding (the exits draft, the full model
 * verifies): its agreement should read 100%, and each row reports how many drafts were accepted.
 */
public final class Sweep {
    /**
     * One threshold's result: its decode rate and the full model's measured beside it (their ratio is the
     * speedup); agreement: the share of generated positions whose token equals the full model's;
     * prefixAgreement: the share of tokens before each output's first divergence from the full model's
     * (after it, positions agree only by chance); exitShare[i]: share of tokens from exit i, the last entry
     * the final head; acceptance: per exit, the drafts of a speculative row over all prompts (zeros otherwise).
     */
    public record Point(double threshold, double tokensPerSecond, double fullTokensPerSecond, double speedup, double agreement,
                        double prefixAgreement, double[] exitShare, boolean speculative, List<Acceptance> acceptance) {}

    /** How outputs agree with the full model's: per position, and up to the first divergence; both over the longer of each pair. */
    public record Agreement(double positional, double prefix) {
        public static Agreement of(List<int[]> outputs, List<int[]> reference) {
            long same = 0, prefix = 0, total = 0;
            for (int i = 0; i < outputs.size(); i++) {
                int[] a = outputs.get(i), b = reference.get(i);
                int shorter = Math.min(a.length, b.length), k = 0;
                while (k < shorter && a[k] == b[k]) k++;
                prefix += k;
                for (int j = 0; j < shorter; j++) if (a[j] == b[j]) same++;
                total += Math.max(a.length, b.length);
            }
            return total == 0 ? new Agreement(1, 1) : new Agreement((double) same / total, (double) prefix / total);
        }
    }

    private Sweep() {}

    /**
     * Runs every threshold {@code repeats} times, each beside a run of the full model, and keeps the medians
     * (the speedup: of the pairs' ratios).
     * {@code rows} is the greedy configuration of every row but its threshold (its maxNewTokens, eosId,
     * and speculative with its draftMax); the full model is the same at threshold 1, not speculative.
     * Prompts run one at a time (batch size 1, where early exit saves weight reads) unless
     * {@code batched}, which packs them into one batch: there a layer's weights are read as long as any
     * sequence still needs the layer, so early exit saves far less.
     */
    public static List<Point> run(EarlyExitModel model, List<int[]> prompts, double[] thresholds, GenerationConfig rows, int repeats,
                                  boolean batched) {
        if (rows.temperature() != 0) throw new IllegalArgumentException("a sweep compares greedy outputs; got temperature " + rows.temperature());
        if (repeats < 1) throw new IllegalArgumentException("repeats must be >= 1, got " + repeats);
        var gen = new Timed(new Generator(model), model, batched);
        var full = rows.withSpeculative(false).withThreshold(1.0);
        // Warm-up: the Vector API runs its slow fallback until C2 has compiled each kernel, which takes a few
        // thousand calls; time only once rounds of every row and the full model compile almost nothing new. A
        // shorter warm-up (a fixed 3 s of two configs) left C2 compiling through the first timed row, whose full
        // model runs then read slow: a speculative sweep's first row read 1.38-1.53x, the same row last 1.29-1.33x.
        Runnable round = () -> {
            gen.generate(prompts, full);
            for (double t : thresholds) gen.generate(prompts, rows.withThreshold(t));
        };
        // A model cut over ranks warms a fixed count: every rank must make the same calls.
        boolean alone = model.tensorParallel().size() == 1 && model.parameters().pipeline().stages() == 1;
        if (alone) DecodeWarmUp.untilSettled(round, 10);
        else for (int w = 0; w < 3; w++) round.run();
        int[] exitLayers = model.config().exits().stream().mapToInt(e -> e.layer()).toArray(); // every stage's exits
        List<Point> points = new ArrayList<>();
        for (double t : thresholds) {
            double[] fullTps = new double[repeats], tps = new double[repeats], ratio = new double[repeats];
            List<Generation> reference = null, out = null;
            List<Acceptance> acceptance = null;
            for (int r = 0; r < repeats; r++) {
                // Each repeat is a pair run back to back, in alternating order; the speedup is the median of the
                // pairs' ratios, so a slow phase of the machine lands on both sides of a pair rather than on one row.
                if (r % 2 == 1) {
                    out = gen.generate(prompts, rows.withThreshold(t));
                    tps[r] = gen.rate;
                    acceptance = gen.acceptance();
                }
                reference = gen.generate(prompts, full);
                fullTps[r] = gen.rate;
                if (r % 2 == 0) {
                    out = gen.generate(prompts, rows.withThreshold(t));
                    tps[r] = gen.rate;
                    acceptance = gen.acceptance();
                }
                ratio[r] = tps[r] / fullTps[r];
            }
            var agreement = Agreement.of(out.stream().map(Generation::tokenIds).toList(), reference.stream().map(Generation::tokenIds).toList());
            double[] share = new double[exitLayers.length + 1]; // the last: the final head
            for (Generation g : out) for (GeneratedToken tok : g.tokens()) share[indexOf(exitLayers, tok.exitLayer())]++;
            double count = Arrays.stream(share).sum();
            for (int i = 0; i < share.length; i++) share[i] /= Math.max(1, count);
            points.add(new Point(t, median(tps), median(fullTps), median(ratio), agreement.positional(), agreement.prefix(), share, rows.speculative(), acceptance));
        }
        return points;
    }

    /** Generation over all prompts, batched or one by one, remembering the decode rate and the drafts of the last call. */
    private static final class Timed {
        final Generator gen;
        final EarlyExitModel model;
        final boolean batched;
        double rate;
        long[] drafted, accepted;

        Timed(Generator gen, EarlyExitModel model, boolean batched) {
            this.gen = gen;
            this.model = model;
            this.batched = batched;
        }

        List<Generation> generate(List<int[]> prompts, GenerationConfig cfg) {
            List<Generation> out = new ArrayList<>();
            long tokens = 0;
            double seconds = 0;
            // per exit of the whole model (a pipeline stage counts its own)
            drafted = new long[model.config().exits().size()];
            accepted = new long[model.config().exits().size()];
            for (List<int[]> call : batched ? List.of(prompts) : prompts.stream().map(List::of).toList()) {
                out.addAll(gen.generate(call, cfg, TokenListener.NONE));
                var st = gen.lastStats();
                tokens += st.generatedTokens();
                seconds += st.decodeSeconds();
                for (int e = 0; e < model.exits().size(); e++) {
                    drafted[model.exits().get(e).index()] += st.drafted()[e];
                    accepted[model.exits().get(e).index()] += st.accepted()[e];
                }
            }
            rate = seconds == 0 ? 0 : tokens / seconds;
            return out;
        }

        List<Acceptance> acceptance() {
            return Acceptance.of(model.config(), drafted, accepted);
        }
    }

    /** The index of layer {@code v} in {@code a}; a.length (the final head's) when no exit is there. */
    private static int indexOf(int[] a, int v) {
        for (int i = 0; i < a.length; i++) if (a[i] == v) return i;
        return a.length;
    }

    static double median(double[] v) {
        double[] c = v.clone();
        Arrays.sort(c);
        return c[c.length / 2];
    }

    /** The rows as a text table; a speculative sweep adds the share of drafts accepted (over all exits). */
    public static String table(List<Point> points) {
        int[] exitLayers = exitLayers(points);
        boolean speculative = points.stream().anyMatch(Point::speculative);
        var sb = new StringBuilder(String.format(Locale.ROOT, "%9s %10s %10s %8s %10s %8s", "threshold", "tokens/s", "full tok/s", "speedup",
                "agreement", "prefix"));
        if (speculative) sb.append(String.format(Locale.ROOT, " %8s", "accepted"));
        for (int l : exitLayers) sb.append(String.format(Locale.ROOT, " %8s", "exit@" + l));
        sb.append(String.format(Locale.ROOT, " %8s%n", "final"));
        for (Point p : points) {
            sb.append(String.format(Locale.ROOT, "%9.3f %10.1f %10.1f %7.2fx %9.1f%% %7.1f%%", p.threshold(), p.tokensPerSecond(),
                    p.fullTokensPerSecond(), p.speedup(), 100 * p.agreement(), 100 * p.prefixAgreement()));
            if (speculative) {
                double rate = Acceptance.overallRate(p.acceptance());
                sb.append(Double.isNaN(rate) ? String.format(Locale.ROOT, " %8s", "-") : String.format(Locale.ROOT, " %7.1f%%", 100 * rate));
            }
            for (double s : p.exitShare()) sb.append(String.format(Locale.ROOT, " %7.1f%%", 100 * s));
            sb.append('\n');
        }
        sb.append("speedup = tokens/s / full tok/s, as the median of back-to-back pairs: the same prompts through the full model (exits off), "
                + "run beside each repeat of each row.\n");
        double noise = noise(points);
        if (!Double.isNaN(noise)) {
            sb.append(String.format(Locale.ROOT, "noise: the full model's rate varies by %.1f%% between rows (largest from their median), "
                    + "so speedups within 1 +/- %.2f are noise.%n", 100 * noise, noise));
        }
        return sb.toString();
    }

    /** How far the rows' full-model rates stray from their median, relative (NaN with fewer than two rows). */
    static double noise(List<Point> points) {
        if (points.size() < 2) return Double.NaN;
        double[] full = points.stream().mapToDouble(Point::fullTokensPerSecond).toArray();
        double m = median(full), worst = 0;
        for (double f : full) worst = Math.max(worst, Math.abs(f - m) / m);
        return worst;
    }

    public static String toJson(List<Point> points) {
        int[] exitLayers = exitLayers(points);
        var sb = new StringBuilder("[");
        for (int i = 0; i < points.size(); i++) {
            Point p = points.get(i);
            sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT,
                    "{\"threshold\":%.4f,\"tokens_per_s\":%.2f,\"full_tokens_per_s\":%.2f,\"speedup\":%.4f,\"agreement\":%.4f,"
                            + "\"prefix_agreement\":%.4f,\"speculative\":%b,\"acceptance\":%s,\"exit_share\":{",
                    p.threshold(), p.tokensPerSecond(), p.fullTokensPerSecond(), p.speedup(), p.agreement(), p.prefixAgreement(),
                    p.speculative(), Acceptance.toJson(p.acceptance())));
            for (int k = 0; k < p.exitShare().length; k++) {
                String name = k < exitLayers.length ? "exit@" + exitLayers[k] : "final";
                sb.append(k > 0 ? "," : "").append(String.format(Locale.ROOT, "\"%s\":%.4f", name, p.exitShare()[k]));
            }
            sb.append("}}");
        }
        return sb.append(']').toString();
    }

    /** The exits' layers (every point has one acceptance entry per exit). */
    private static int[] exitLayers(List<Point> points) {
        return points.isEmpty() ? new int[0] : points.get(0).acceptance().stream().mapToInt(Acceptance::layer).toArray();
    }

    /** An SVG scatter plot of speedup (y) against agreement with the full model (x), each point labelled by its threshold. */
    public static String svg(List<Point> points) {
        int w = 600, h = 400, left = 60, right = 60, top = 30, bottom = 50;
        double maxS = Math.max(1.1, points.stream().mapToDouble(Point::speedup).max().orElse(1) * 1.1);
        double minS = Math.min(0.9, points.stream().mapToDouble(Point::speedup).min().orElse(1) * 0.95);
        double minA = Math.min(0.9, points.stream().mapToDouble(Point::agreement).min().orElse(1) - 0.05);
        var sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">%n", w, h));
        sb.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        boolean speculative = points.stream().anyMatch(Point::speculative);
        String title = speculative ? "Speculative decoding: speedup at each threshold (output the full model's)"
                : "Early-exit speedup against agreement with the full model";
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"18\" font-size=\"14\">%s</text>%n", left, title));
        int pw = w - left - right, ph = h - top - bottom;
        sb.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>%n", left, top, pw, ph));
        for (int i = 0; i <= 4; i++) {
            double a = minA + (1 - minA) * i / 4, s = minS + (maxS - minS) * i / 4;
            double x = left + pw * i / 4.0, y = top + ph - ph * i / 4.0;
            sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f%%</text>%n", x, h - bottom + 16, 100 * a));
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2fx</text>%n", left - 6, y + 4, s));
        }
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">agreement with full-model greedy tokens</text>%n", left + pw / 2, h - 12));
        sb.append(String.format(Locale.ROOT, "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">decode speedup</text>%n", top + ph / 2, top + ph / 2));
        var path = new StringBuilder();
        for (Point p : points) {
            double x = left + pw * (p.agreement() - minA) / (1 - minA), y = top + ph - ph * (p.speedup() - minS) / (maxS - minS);
            path.append(path.isEmpty() ? "M" : "L").append(String.format(Locale.ROOT, "%.1f %.1f ", x, y));
            sb.append(String.format(Locale.ROOT, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\"/>%n", x, y));
            boolean nearRight = x > left + 0.8 * pw; // keep labels inside the plot
            sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">t=%.2f</text>%n",
                    nearRight ? x - 8 : x + 6, y - 6, nearRight ? "end" : "start", p.threshold()));
        }
        sb.append(String.format("<path d=\"%s\" fill=\"none\" stroke=\"#1f77b4\" stroke-opacity=\"0.5\"/>%n", path.toString().trim()));
        return sb.append("</svg>\n").toString();
    }
}
