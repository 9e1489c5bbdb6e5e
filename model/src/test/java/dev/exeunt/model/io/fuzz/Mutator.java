package dev.exeunt.model.io.fuzz;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Structured mutations of a valid file, in the manner of AFL's havoc stage: bit flips, byte
 * overwrites, "interesting" integers (0, -1, 2^31, 2^63-1, ...) written over the file's own integer
 * fields, truncation, insertion, deletion and duplication of spans, and for text formats numbers and
 * structure characters. Everything derives from the given random generator, so a mutant is
 * reproduced from its seed alone.
 */
final class Mutator {
    /** What a mutation did: the rows of the fault table. */
    enum Kind { BIT_FLIP, BYTE_OVERWRITE, INTERESTING_INT, SIZE_FIELD, TRUNCATE, INSERT, DELETE, DUPLICATE, TEXT_NUMBER, TEXT_STRUCTURE }

    private static final long[] INTERESTING = {
        0, 1, -1, 2, 7, 8, 24, 64, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
        0x7fff_ffffL, 0x8000_0000L, 0xffff_ffffL, 1L << 30, 1L << 32, 1L << 40, 1L << 62,
        Long.MAX_VALUE, Long.MIN_VALUE, Integer.MIN_VALUE, -2, -8
    };
    private static final String[] TEXT_NUMBERS = {
        "0", "-1", "-0", "1e308", "-1e308", "1e-400", "2147483647", "2147483648", "-2147483649",
        "4294967296", "9223372036854775807", "9223372036854775808", "99999999999999999999999999", "0.5",
        "NaN", "1.7976931348623157E309", "\"1\"", "null", "true", "[]", "{}"
    };
    private static final String[] TEXT_STRUCTURE = {
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "null", "[[[[[[[[[[", "{\"a\":", "\u0000", "\u00ff"
    };

    private final byte[] seed;
    private final boolean text;
    /** Offsets of 4- and 8-byte little-endian integers of the seed that look like sizes, counts or offsets. */
    private final int[] fields32;
    private final int[] fields64;

    Mutator(byte[] seed, boolean text) {
        this.seed = seed.clone();
        this.text = text;
        this.fields32 = sizeLike(seed, 4);
        this.fields64 = sizeLike(seed, 8);
    }

    private static int[] sizeLike(byte[] b, int width) {
        List<Integer> out = new ArrayList<>();
        for (int p = 0; p + width <= b.length; p++) {
            long v = readLe(b, p, width);
            if (v > 0 && v <= 4L * b.length + 64) out.add(p);
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    /** A mutant with 1 to 3 stacked mutations; {@code kinds} receives the kind of each (the first is the row it counts in). */
    byte[] mutate(SplittableRandom r, List<Kind> kinds) {
        byte[] b = seed.clone();
        int n = 1 + (r.nextInt(4) == 0 ? r.nextInt(3) : 0);
        for (int i = 0; i < n; i++) {
            Kind k = pick(r);
            kinds.add(k);
            b = apply(k, b, r);
        }
        return b;
    }

    private Kind pick(SplittableRandom r) {
        Kind[] binary = {Kind.BIT_FLIP, Kind.BYTE_OVERWRITE, Kind.INTERESTING_INT, Kind.SIZE_FIELD, Kind.SIZE_FIELD,
            Kind.SIZE_FIELD, Kind.TRUNCATE, Kind.INSERT, Kind.DELETE, Kind.DUPLICATE};
        Kind[] textual = {Kind.BIT_FLIP, Kind.BYTE_OVERWRITE, Kind.TRUNCATE, Kind.INSERT, Kind.DELETE, Kind.DUPLICATE,
            Kind.TEXT_NUMBER, Kind.TEXT_NUMBER, Kind.TEXT_NUMBER, Kind.TEXT_STRUCTURE, Kind.TEXT_STRUCTURE};
        Kind[] from = text ? textual : binary;
        return from[r.nextInt(from.length)];
    }

    private byte[] apply(Kind k, byte[] b, SplittableRandom r) {
        if (b.length == 0) return new byte[] {(byte) r.nextInt(256)};
        switch (k) {
            case BIT_FLIP -> {
                for (int i = 0, n = 1 + r.nextInt(8); i < n; i++) {
                    int p = r.nextInt(b.length);
                    b[p] ^= (byte) (1 << r.nextInt(8));
                }
                return b;
            }
            case BYTE_OVERWRITE -> {
                for (int i = 0, n = 1 + r.nextInt(4); i < n; i++) {
                    b[r.nextInt(b.length)] = (byte) (r.nextBoolean() ? r.nextInt(256) : INTERESTING[r.nextInt(INTERESTING.length)]);
                }
                return b;
            }
            case INTERESTING_INT -> {
                int width = 1 << r.nextInt(4);
                if (b.length < width) return b;
                writeLe(b, r.nextInt(b.length - width + 1), width, INTERESTING[r.nextInt(INTERESTING.length)]);
                return b;
            }
            case SIZE_FIELD -> {
                boolean wide = fields64.length > 0 && (fields32.length == 0 || r.nextBoolean());
                int[] fields = wide ? fields64 : fields32;
                int width = wide ? 8 : 4;
                if (fields.length == 0) return apply(Kind.INTERESTING_INT, b, r);
                int p = fields[r.nextInt(fields.length)];
                if (p + width > b.length) return b;
                long old = readLe(b, p, width);
                long v = switch (r.nextInt(6)) {
                    case 0 -> old + 1;
                    case 1 -> old - 1;
                    case 2 -> old * 2;
                    case 3 -> b.length;
                    case 4 -> old + (1L << (8 * (1 + r.nextInt(width - 1))));
                    default -> INTERESTING[r.nextInt(INTERESTING.length)];
                };
                writeLe(b, p, width, v);
                return b;
            }
            case TRUNCATE -> {
                return Arrays.copyOf(b, r.nextInt(b.length));
            }
            case INSERT -> {
                byte[] ins = new byte[1 + r.nextInt(16)];
                for (int i = 0; i < ins.length; i++) ins[i] = (byte) r.nextInt(256);
                return splice(b, r.nextInt(b.length + 1), 0, ins);
            }
            case DELETE -> {
                int p = r.nextInt(b.length);
                return splice(b, p, 1 + r.nextInt(Math.min(64, b.length - p)), new byte[0]);
            }
            case DUPLICATE -> {
                int p = r.nextInt(b.length);
                byte[] chunk = Arrays.copyOfRange(b, p, p + 1 + r.nextInt(Math.min(64, b.length - p)));
                return splice(b, r.nextInt(b.length + 1), 0, chunk);
            }
            case TEXT_NUMBER -> {
                String s = new String(b, StandardCharsets.ISO_8859_1);
                List<int[]> numbers = new ArrayList<>();
                var m = java.util.regex.Pattern.compile("-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?").matcher(s);
                while (m.find()) numbers.add(new int[] {m.start(), m.end()});
                if (numbers.isEmpty()) return apply(Kind.TEXT_STRUCTURE, b, r);
                int[] at = numbers.get(r.nextInt(numbers.size()));
                byte[] rep = TEXT_NUMBERS[r.nextInt(TEXT_NUMBERS.length)].getBytes(StandardCharsets.UTF_8);
                return splice(b, at[0], at[1] - at[0], rep);
            }
            case TEXT_STRUCTURE -> {
                byte[] ins = TEXT_STRUCTURE[r.nextInt(TEXT_STRUCTURE.length)].getBytes(StandardCharsets.UTF_8);
                int p = r.nextInt(b.length + 1);
                return r.nextBoolean() ? splice(b, p, 0, ins) : splice(b, p, Math.min(ins.length, b.length - p), ins);
            }
        }
        throw new AssertionError(k);
    }

    private static byte[] splice(byte[] b, int at, int remove, byte[] insert) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(b.length + insert.length);
        out.write(b, 0, at);
        out.write(insert, 0, insert.length);
        out.write(b, at + remove, b.length - at - remove);
        return out.toByteArray();
    }

    static long readLe(byte[] b, int p, int width) {
        long v = 0;
        for (int i = width - 1; i >= 0; i--) v = (v << 8) | (b[p + i] & 0xFF);
        return v;
    }

    static void writeLe(byte[] b, int p, int width, long v) {
        for (int i = 0; i < width; i++) b[p + i] = (byte) (v >>> (8 * i));
    }
}
