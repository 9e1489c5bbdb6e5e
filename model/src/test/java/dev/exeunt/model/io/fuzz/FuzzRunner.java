package dev.exeunt.model.io.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import dev.exeunt.tensor.HostMemory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Runs mutants of seed files through a reader and its use, bounded by a count and a time, and fails
 * with every distinct way a mutant escaped the allowed errors (each with the mutant's index and the
 * base seed to replay it: {@code -Dexeunt.fuzz.seed=S -Dexeunt.fuzz.only=I}; the bytes are kept under
 * {@code target/fuzz-failures}).
 *
 * <p>Allowed outcomes: the file loads and its use completes, or one of {@code allowed} is thrown with a
 * message. Anything else (IllegalArgumentException, IndexOutOfBounds, NegativeArraySize, OutOfMemoryError,
 * a leak of host memory, ...) is a bug of the reader.
 */
final class FuzzRunner {
    /** Loads a file and uses all of it (reads every tensor, every row, encodes text...). */
    interface FileUse {
        void use(Path file) throws Exception;
    }

    static final long BASE_SEED = Long.getLong("exeunt.fuzz.seed", 0x5EEDF00DL);
    static final int MUTANTS = Integer.getInteger("exeunt.fuzz.mutants", 5000);
    static final long MAX_MILLIS = Long.getLong("exeunt.fuzz.millis", 20_000);
    private static final int ONLY = Integer.getInteger("exeunt.fuzz.only", -1);

    private final String name;
    private final List<byte[]> seeds;
    private final boolean text;
    private final List<Class<? extends Throwable>> allowed;

    FuzzRunner(String name, List<byte[]> seeds, boolean text, List<Class<? extends Throwable>> allowed) {
        this.name = name;
        this.seeds = seeds;
        this.text = text;
        this.allowed = allowed;
    }

    /** Per kind of mutation: mutants tried, loaded and used, rejected with an allowed error, escaped. */
    static final class Row {
        int tried, loaded, rejected, escaped;
    }

    Map<Mutator.Kind, Row> run(Path dir, FileUse use) throws IOException {
        for (byte[] s : seeds) {
            Path p = dir.resolve(name + "-seed");
            Files.write(p, s);
            try {
                use.use(p);
            } catch (Exception e) {
                throw new AssertionError(name + ": a seed file does not load: " + e, e);
            }
            Files.delete(p);
        }
        List<Mutator> mutators = seeds.stream().map(s -> new Mutator(s, text)).toList();
        Map<Mutator.Kind, Row> table = new EnumMap<>(Mutator.Kind.class);
        Map<String, String> escapes = new LinkedHashMap<>();
        HostMemory.trimCache();
        long hostBefore = HostMemory.allocatedBytes();
        long arrowBefore = HostMemory.allocator().getAllocatedMemory();
        long deadline = System.currentTimeMillis() + MAX_MILLIS;
        int done = 0;
        for (int i = 0; i < MUTANTS && System.currentTimeMillis() < deadline; i++) {
            if (ONLY >= 0 && i != ONLY) continue;
            SplittableRandom r = new SplittableRandom(BASE_SEED * 31 + name.hashCode() * 1_000_003L + i);
            List<Mutator.Kind> kinds = new ArrayList<>();
            byte[] mutant = mutators.get(i % mutators.size()).mutate(r, kinds);
            Row row = table.computeIfAbsent(kinds.get(0), k -> new Row());
            row.tried++;
            done++;
            Path p = dir.resolve(name + "-" + i);
            Files.write(p, mutant);
            Throwable escaped = null;
            Throwable failure = null;
            try {
                use.use(p);
                row.loaded++;
            } catch (Throwable t) {
                failure = t;
                if (isAllowed(t) && t.getSuppressed().length == 0) {
                    row.rejected++;
                } else {
                    escaped = t;
                }
            }
            HostMemory.trimCache();
            long leaked = HostMemory.allocatedBytes() - hostBefore;
            long arrowLeaked = HostMemory.allocator().getAllocatedMemory() - arrowBefore;
            if (escaped == null && (leaked != 0 || arrowLeaked != 0)) {
                escaped = new AssertionError("memory leaked: " + leaked + " bytes in tensors, " + arrowLeaked
                        + " in Arrow buffers; suppressed: " + suppressed(failure));
            }
            if (escaped != null) {
                row.escaped++;
                String sig = signature(escaped);
                if (!escapes.containsKey(sig)) {
                    Path keep = Path.of("target", "fuzz-failures", name + "-" + Long.toHexString(BASE_SEED) + "-" + i + ".bin");
                    Files.createDirectories(keep.getParent());
                    Files.write(keep, mutant);
                    escapes.put(sig, name + " mutant " + i + " (-Dexeunt.fuzz.seed=" + BASE_SEED + " -Dexeunt.fuzz.only=" + i
                            + ", " + kinds + ", kept in " + keep + "): " + sig + " -- " + oneLine(escaped.getMessage())
                            + (escaped.getSuppressed().length > 0 ? " suppressed: " + suppressed(escaped) : ""));
                }
                hostBefore = HostMemory.allocatedBytes();
                arrowBefore = HostMemory.allocator().getAllocatedMemory();
            }
            Files.deleteIfExists(p);
        }
        System.out.println(format(name, done, table));
        if (!escapes.isEmpty()) {
            fail(escapes.size() + " distinct escapes from the allowed errors " + allowedNames() + ":\n  "
                    + String.join("\n  ", escapes.values()));
        }
        HostMemory.trimCache();
        assertEquals(arrowBefore, HostMemory.allocator().getAllocatedMemory(), name + ": Arrow memory leaked");
        return table;
    }

    private static String suppressed(Throwable t) {
        if (t == null) return "none";
        return java.util.Arrays.stream(t.getSuppressed()).map(x -> signature(x) + ": " + oneLine(x.getMessage())).toList().toString();
    }

    private boolean isAllowed(Throwable t) {
        if (t.getMessage() == null || t.getMessage().isBlank()) return false;
        for (Class<? extends Throwable> c : allowed) {
            if (c.isInstance(t)) return true;
        }
        return false;
    }

    private List<String> allowedNames() {
        return allowed.stream().map(Class::getSimpleName).toList();
    }

    /** Exception type and the first frame of our own code: one bug, however many mutants hit it. */
    private static String signature(Throwable t) {
        String where = "";
        for (StackTraceElement e : t.getStackTrace()) {
            if (e.getClassName().startsWith("dev.exeunt") && !e.getClassName().contains(".fuzz.")) {
                where = " at " + e;
                break;
            }
        }
        return t.getClass().getName() + where;
    }

    private static String oneLine(String s) {
        if (s == null) return "(no message)";
        String l = s.replace('\n', ' ');
        return l.length() > 300 ? l.substring(0, 300) + "..." : l;
    }

    static String format(String name, int done, Map<Mutator.Kind, Row> table) {
        StringBuilder sb = new StringBuilder(String.format("fuzz %-12s %d mutants (seed %d)%n", name, done, BASE_SEED));
        sb.append(String.format("  %-16s %7s %7s %9s %8s%n", "mutation", "tried", "loaded", "rejected", "escaped"));
        table.forEach((k, r) -> sb.append(String.format("  %-16s %7d %7d %9d %8d%n", k, r.tried, r.loaded, r.rejected, r.escaped)));
        return sb.toString();
    }
}
