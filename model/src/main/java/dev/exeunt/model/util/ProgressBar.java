package dev.exeunt.model.util;

import java.io.PrintStream;
import java.util.Locale;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * A console progress bar: label, bar and percentage (when the total is known), current/total, rate,
 * ETA and elapsed time, plus an optional detail text.
 *
 * <p>On a terminal (by default: {@code System.console() != null}) the line is redrawn in place with
 * {@code \r} at most every {@link Builder#terminalInterval(long) 100 ms}. Otherwise (logs, CI) a plain
 * line is printed at most every {@link Builder#plainInterval(long) 5 s}. {@link #close()} prints the
 * final line (once). {@link #add(long)} and {@link #set(long)} are thread-safe and cheap when no redraw
 * is due.
 *
 * <pre>{@code
 * try (ProgressBar bar = ProgressBar.builder("tokenize").total(bytes).unit(ProgressBar.Unit.BYTES).build()) {
 *     ... bar.add(n) ...
 * }
 * }</pre>
 */
public final class ProgressBar implements AutoCloseable {

    /** How amounts and rates are shown. */
    public enum Unit {
        /** plain counts: {@code 1,234/5,000 docs}, rate {@code 321.0 docs/s} */
        ITEMS,
        /** bytes shown as MB (10^6 bytes), rate in MB/s */
        BYTES
    }

    private static final int BAR_WIDTH = 30;

    private final String label;
    private final Unit unit;
    private final String itemName;
    private final PrintStream out;
    private final boolean terminal;
    private final long intervalNanos;
    private final LongSupplier clock;
    private final long startNanos;
    private final AtomicLong current = new AtomicLong();
    private volatile long total;
    private volatile Supplier<String> detail;
    private volatile long nextDrawNanos;
    private int lastWidth;
    private boolean closed;

    private ProgressBar(Builder b) {
        this.label = b.label;
        this.unit = b.unit;
        this.itemName = b.itemName;
        this.out = b.out;
        this.terminal = b.terminal != null ? b.terminal : System.console() != null;
        this.intervalNanos = terminal ? b.terminalIntervalNanos : b.plainIntervalNanos;
        this.clock = b.clock;
        this.total = b.total;
        this.detail = b.detail;
        this.startNanos = clock.getAsLong();
        // a plain log gets its first line only after one interval; a terminal draws right away
        this.nextDrawNanos = terminal ? startNanos : startNanos + intervalNanos;
        if (terminal) {
            maybeDraw();
        }
    }

    public static Builder builder(String label) {
        return new Builder(label);
    }

    /** Builder; everything but the label is optional. */
    public static final class Builder {
        private final String label;
        private long total = -1;
        private Unit unit = Unit.ITEMS;
        private String itemName = "";
        private PrintStream out = System.err;
        private Boolean terminal;
        private long terminalIntervalNanos = 100_000_000L;
        private long plainIntervalNanos = 5_000_000_000L;
        private LongSupplier clock = System::nanoTime;
        private Supplier<String> detail;

        private Builder(String label) {
            this.label = Objects.requireNonNull(label);
        }

        /** Total amount; negative or zero for unknown (no bar, percentage or ETA). */
        public Builder total(long total) {
            this.total = total;
            return this;
        }

        public Builder unit(Unit unit) {
            this.unit = Objects.requireNonNull(unit);
            return this;
        }

        /** Name of the items for {@link Unit#ITEMS} (e.g. {@code "docs"}); empty by default. */
        public Builder itemName(String name) {
            this.itemName = Objects.requireNonNull(name);
            return this;
        }

        /** Where to print (default {@code System.err}). */
        public Builder out(PrintStream out) {
            this.out = Objects.requireNonNull(out);
            return this;
        }

        /** Force terminal ({@code \r} redraw) or plain-line mode instead of asking {@code System.console()}. */
        public Builder terminal(boolean terminal) {
            this.terminal = terminal;
            return this;
        }

        /** Minimum time between redraws on a terminal, in milliseconds (default 100). */
        public Builder terminalInterval(long millis) {
            this.terminalIntervalNanos = millis * 1_000_000L;
            return this;
        }

        /** Minimum time between plain lines, in milliseconds (default 5000). */
        public Builder plainInterval(long millis) {
            this.plainIntervalNanos = millis * 1_000_000L;
            return this;
        }

        /** Time source in nanoseconds (default {@code System::nanoTime}); for tests. */
        public Builder clock(LongSupplier nanoClock) {
            this.clock = Objects.requireNonNull(nanoClock);
            return this;
        }

        /** Extra text appended to each line, computed at draw time (e.g. a token count). */
        public Builder detail(Supplier<String> detail) {
            this.detail = detail;
            return this;
        }

        public ProgressBar build() {
            return new ProgressBar(this);
        }
    }

    /** Adds {@code n} to the current amount and redraws if due. Thread-safe. */
    public void add(long n) {
        current.addAndGet(n);
        if (clock.getAsLong() - nextDrawNanos >= 0) {
            maybeDraw();
        }
    }

    /** Sets the current amount and redraws if due. Thread-safe. */
    public void set(long value) {
        current.set(value);
        if (clock.getAsLong() - nextDrawNanos >= 0) {
            maybeDraw();
        }
    }

    /** Changes the total (negative or zero: unknown). */
    public void setTotal(long total) {
        this.total = total;
    }

    public void setDetail(Supplier<String> detail) {
        this.detail = detail;
    }

    public long current() {
        return current.get();
    }

    public long total() {
        return total;
    }

    /** Seconds since the bar was created. */
    public double elapsedSeconds() {
        return (clock.getAsLong() - startNanos) / 1e9;
    }

    private synchronized void maybeDraw() {
        long now = clock.getAsLong();
        if (closed || now - nextDrawNanos < 0) {
            return;
        }
        nextDrawNanos = now + intervalNanos;
        draw(now, false);
    }

    private void draw(long now, boolean last) {
        String line = render(current.get(), now, last);
        if (terminal) {
            int pad = Math.max(0, lastWidth - line.length());
            out.print("\r" + line + " ".repeat(pad) + (last ? System.lineSeparator() : ""));
            lastWidth = line.length();
        } else {
            out.println(line);
        }
        out.flush();
    }

    /** Prints the final line (with a line end). Further calls do nothing. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        draw(clock.getAsLong(), true);
    }

    /** The current line, as {@link #close()} would print it now (without {@code \r} or line end). */
    public String line() {
        return render(current.get(), clock.getAsLong(), false);
    }

    String render(long cur, long now, boolean last) {
        double secs = Math.max(0, (now - startNanos) / 1e9);
        long tot = total;
        StringBuilder sb = new StringBuilder(120);
        sb.append(label);
        if (tot > 0) {
            double frac = Math.min(1.0, Math.max(0.0, (double) cur / tot));
            if (terminal) {
                int fill = (int) Math.round(frac * BAR_WIDTH);
                sb.append(" [");
                sb.append("=".repeat(Math.max(0, fill - 1)));
                if (fill > 0) {
                    sb.append(fill == BAR_WIDTH ? '=' : '>');
                }
                sb.append(" ".repeat(BAR_WIDTH - fill)).append(']');
            } else {
                sb.append(':');
            }
            sb.append(String.format(Locale.ROOT, " %5.1f%%", frac * 100));
            sb.append(' ').append(amount(cur, false)).append('/').append(amount(tot, true));
        } else {
            sb.append(": ").append(amount(cur, true));
        }
        double rate = secs > 0 ? cur / secs : 0;
        sb.append(", ").append(rate(rate));
        if (tot > 0 && !last) {
            sb.append(", ETA ");
            if (cur >= tot) {
                sb.append(duration(0));
            } else if (rate > 0) {
                sb.append(duration((tot - cur) / rate));
            } else {
                sb.append("?");
            }
        }
        sb.append(", elapsed ").append(duration(secs));
        Supplier<String> d = detail;
        if (d != null) {
            String s = d.get();
            if (s != null && !s.isEmpty()) {
                sb.append(", ").append(s);
            }
        }
        return sb.toString();
    }

    private String amount(long v, boolean withUnit) {
        if (unit == Unit.BYTES) {
            String s = String.format(Locale.ROOT, "%.1f", v / 1e6);
            return withUnit ? s + " MB" : s;
        }
        String s = String.format(Locale.ROOT, "%,d", v);
        return withUnit && !itemName.isEmpty() ? s + " " + itemName : s;
    }

    private String rate(double perSecond) {
        if (unit == Unit.BYTES) {
            return String.format(Locale.ROOT, "%.2f MB/s", perSecond / 1e6);
        }
        String per = itemName.isEmpty() ? "/s" : " " + itemName + "/s";
        return perSecond >= 100
                ? String.format(Locale.ROOT, "%,.0f%s", perSecond, per)
                : String.format(Locale.ROOT, "%.1f%s", perSecond, per);
    }

    /** {@code m:ss}, or {@code h:mm:ss} from one hour. */
    static String duration(double seconds) {
        if (Double.isNaN(seconds) || Double.isInfinite(seconds) || seconds > 1e9) {
            return "?";
        }
        long s = Math.round(seconds);
        long h = s / 3600;
        long m = (s % 3600) / 60;
        long sec = s % 60;
        return h > 0 ? String.format(Locale.ROOT, "%d:%02d:%02d", h, m, sec) : String.format(Locale.ROOT, "%d:%02d", m, sec);
    }
}
