package dev.exeunt.tensor;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Parses memory sizes given in system properties ({@code -Dexeunt.memory.limit=8g}): a non-negative
 * number, optionally fractional, and an optional binary unit {@code k, m, g, t} with optional
 * {@code i} and {@code b} ({@code 8g}, {@code 8gb}, {@code 8GiB}, {@code 1.5t}, {@code 4096}, {@code 512b}).
 * Units are powers of 1024 whether or not the {@code i} is written: that is what the JVM's own
 * {@code -Xmx8g} means, and what people who write {@code 8gb} expect.
 */
final class MemorySize {
    private static final Pattern SIZE = Pattern.compile("([0-9]+(?:\\.[0-9]+)?)\\s*(?:([kmgt])(i)?)?(b)?");

    private MemorySize() {}

    /**
     * The size in bytes of {@code value}, the text of property {@code property}.
     *
     * @throws IllegalArgumentException naming the property and the value when it is not a size
     */
    static long parse(String property, String value) {
        String t = value.trim().toLowerCase(Locale.ROOT);
        Matcher m = SIZE.matcher(t);
        if (!m.matches()) {
            throw new IllegalArgumentException(bad(property, value, "not a size"));
        }
        long unit = m.group(2) == null ? 1 : switch (m.group(2)) {
            case "k" -> 1L << 10;
            case "m" -> 1L << 20;
            case "g" -> 1L << 30;
            default -> 1L << 40;
        };
        double bytes = Double.parseDouble(m.group(1)) * unit;
        if (bytes >= 0x1p63) {
            throw new IllegalArgumentException(bad(property, value, "too large"));
        }
        return (long) bytes;
    }

    private static String bad(String property, String value, String why) {
        return "-D" + property + "=" + value + ": " + why
                + " (expected bytes or a number with k, m, g or t, e.g. 8g, 8GiB, 512m)";
    }
}
