package dev.exeunt.model.util;

import java.util.function.LongSupplier;

/**
 * When a training loop prints its progress line. {@code every} > 0: every that many steps. 0 (the
 * default, "auto"): every step on a terminal; otherwise (a pipe, a file, CI) the first step, then at
 * most one line every {@link #PLAIN_INTERVAL_NANOS 5 s}, so a log stays readable. The last step always prints.
 */
public final class LogCadence {
    public static final long PLAIN_INTERVAL_NANOS = 5_000_000_000L;
    private final int every;
    private final boolean terminal;
    private final LongSupplier clock;
    private long next = Long.MIN_VALUE;

    public LogCadence(int every, boolean terminal, LongSupplier clock) {
        if (every < 0) throw new IllegalArgumentException("--log-every must be >= 0 (0: automatic), got " + every);
        this.every = every;
        this.terminal = terminal;
        this.clock = clock;
    }

    /** Auto-detecting the terminal as {@link ProgressBar} does. */
    public static LogCadence of(int every) {
        return new LogCadence(every, System.console() != null, System::nanoTime);
    }

    /** Whether step {@code it} (0-based) of {@code iters} prints. */
    public boolean due(int it, int iters) {
        if (it == iters - 1) return true;
        if (every > 0) return it % every == 0;
        if (terminal) return true;
        long now = clock.getAsLong();
        if (next != Long.MIN_VALUE && now - next < 0) return false;
        next = now + PLAIN_INTERVAL_NANOS;
        return true;
    }
}
