package dev.exeunt.model.generate;

import dev.exeunt.model.nn.EarlyExitModel;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Self-speculative decoding at one exit: the tokens it drafted and how many of them the full model's
 * verifying pass accepted. One per exit of the model, in {@code model.exits()} order, as
 * {@link Generator.Stats} counts them; every command that reports acceptance formats it here.
 */
public record Acceptance(int layer, long drafted, long accepted) {
    public Acceptance {
        if (drafted < 0 || accepted < 0 || accepted > drafted) {
            throw new IllegalArgumentException("exit@" + layer + ": " + accepted + " accepted of " + drafted + " drafts is not a count");
        }
    }

    /** Per exit of {@code model}: the counts of {@code drafted[e]} and {@code accepted[e]}. */
    public static List<Acceptance> of(EarlyExitModel model, long[] drafted, long[] accepted) {
        int n = model.exits().size();
        if (drafted.length != n || accepted.length != n) {
            throw new IllegalArgumentException("acceptance counts for " + drafted.length + " and " + accepted.length + " exits; the model has " + n);
        }
        List<Acceptance> out = new ArrayList<>();
        for (int e = 0; e < n; e++) out.add(new Acceptance(model.exits().get(e).config().layer(), drafted[e], accepted[e]));
        return List.copyOf(out);
    }

    /** Per exit of the whole model {@code config} describes (in config order): the counts of {@code drafted[e]} and {@code accepted[e]}. */
    public static List<Acceptance> of(dev.exeunt.model.config.ModelConfig config, long[] drafted, long[] accepted) {
        int n = config.exits().size();
        if (drafted.length != n || accepted.length != n) {
            throw new IllegalArgumentException("acceptance counts for " + drafted.length + " and " + accepted.length + " exits; the model has " + n);
        }
        List<Acceptance> out = new ArrayList<>();
        for (int e = 0; e < n; e++) out.add(new Acceptance(config.exits().get(e).layer(), drafted[e], accepted[e]));
        return List.copyOf(out);
    }

    /** The last {@link Generator#generate} call's counts. */
    public static List<Acceptance> of(EarlyExitModel model, Generator.Stats stats) {
        return of(model, stats.drafted(), stats.accepted());
    }

    /** accepted / drafted; NaN when the exit drafted nothing. */
    public double rate() {
        return drafted == 0 ? Double.NaN : (double) accepted / drafted;
    }

    /** accepted / drafted over all exits; NaN when none drafted. */
    public static double overallRate(List<Acceptance> exits) {
        long d = exits.stream().mapToLong(Acceptance::drafted).sum(), a = exits.stream().mapToLong(Acceptance::accepted).sum();
        return d == 0 ? Double.NaN : (double) a / d;
    }

    /** {@code exit@2: 30 drafts, 27 accepted (90.0%)}; no percentage when nothing was drafted. */
    public String line() {
        return String.format(Locale.ROOT, "exit@%d: %d drafts, %d accepted%s", layer, drafted, accepted,
                drafted == 0 ? "" : String.format(Locale.ROOT, " (%.1f%%)", 100 * rate()));
    }

    /** {@code [{"layer":2,"drafted":30,"accepted":27}, ...]} */
    public static String toJson(List<Acceptance> exits) {
        var sb = new StringBuilder("[");
        for (Acceptance x : exits) {
            sb.append(sb.length() > 1 ? "," : "").append("{\"layer\":").append(x.layer).append(",\"drafted\":").append(x.drafted)
                    .append(",\"accepted\":").append(x.accepted).append('}');
        }
        return sb.append(']').toString();
    }
}
