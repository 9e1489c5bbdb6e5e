package dev.exeunt.model.io;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Splits one token file into a Hugging Face {@code datasets} directory of shards, as
 * {@code save_to_disk(num_shards=N)} / {@code save_to_disk(max_shard_size=...)} do: shard {@code i} of
 * {@code N} holds the contiguous documents {@code datasets}' {@code shard(N, i, contiguous=True)}
 * gives (the first {@code n % N} shards one document more), so reading the shards in order gives the
 * documents of the file in order.
 *
 * <p>The directory is built beside the target under a temporary name and renamed onto it when
 * complete; on any failure the target is left as it was.
 */
public final class DatasetSharder {
    private static final Pattern SIZE = Pattern.compile("(?i)\\s*(\\d+)\\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\\s*");

    private DatasetSharder() {}

    /**
     * A size as {@code datasets} writes it ({@code "500MB"} = 500 * 10^6 bytes, {@code "1GiB"} = 2^30,
     * a bare number is bytes).
     */
    public static long parseSize(String s) {
        Matcher m = SIZE.matcher(s);
        if (!m.matches()) {
            throw new IllegalArgumentException("size '" + s + "' must be a number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
        }
        long n = Long.parseLong(m.group(1));
        String u = m.group(2) == null ? "b" : m.group(2).toLowerCase(Locale.ROOT);
        long mult = switch (u) {
            case "kb" -> 1_000L;
            case "mb" -> 1_000_000L;
            case "gb" -> 1_000_000_000L;
            case "tb" -> 1_000_000_000_000L;
            case "kib" -> 1L << 10;
            case "mib" -> 1L << 20;
            case "gib" -> 1L << 30;
            case "tib" -> 1L << 40;
            default -> 1L;
        };
        long bytes = Math.multiplyExact(n, mult);
        if (bytes <= 0) throw new IllegalArgumentException("size '" + s + "' must be positive");
        return bytes;
    }

    /** Shards for {@code max_shard_size} as {@code save_to_disk} counts them: {@code int(nbytes / max_shard_size) + 1}. */
    public static int shardsFor(long dataBytes, long maxShardSize) {
        return (int) Math.min(99_999, dataBytes / maxShardSize + 1);
    }

    /**
     * Writes the documents of {@code source} as {@code numShards} shards into directory {@code target}
     * (which must not exist, or be a dataset directory this replaces), with {@code options} (whose
     * schema metadata, e.g. the tokenizer hash, every shard records).
     *
     * @return the shard files, in order
     */
    public static List<Path> split(Path source, Path target, int numShards, TokenDatasetWriter.Options options)
            throws IOException {
        if (numShards < 1 || numShards > 99_999) {
            throw new IllegalArgumentException("number of shards must be in [1, 99999]: " + numShards);
        }
        if (Files.exists(target) && !Files.isDirectory(target)) {
            throw new IOException(target + " exists and is not a directory");
        }
        Path parent = target.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        Path tmp = Files.createTempDirectory(parent, "." + target.getFileName() + ".");
        try (TokenDatasetReader r = TokenDatasetReader.open(source)) {
            long docs = r.stats().documents();
            List<String> names = new ArrayList<>();
            try (TokenDatasetReader.Documents d = r.documents()) {
                for (int i = 0; i < numShards; i++) {
                    long count = docs / numShards + (i < docs % numShards ? 1 : 0);
                    String name = HfDatasetDirectory.shardName(i, numShards);
                    names.add(name);
                    TokenDatasetWriter.write(tmp.resolve(name), options, null, w -> {
                        for (long k = 0; k < count; k++) {
                            if (!d.next()) throw new CheckpointFormatException(source, "file changed while sharding it");
                            w.add(d.tokens());
                        }
                    });
                }
                if (d.next()) throw new CheckpointFormatException(source, "file changed while sharding it");
            }
            HfDatasetDirectory.writeMetadata(tmp, names, options.int64());
            replace(tmp, target);
            List<Path> out = new ArrayList<>();
            for (String n : names) out.add(target.resolve(n));
            return out;
        } catch (IOException | RuntimeException e) {
            deleteTree(tmp);
            throw e;
        }
    }

    /** Moves the finished {@code tmp} onto {@code target}, replacing an earlier dataset directory there. */
    private static void replace(Path tmp, Path target) throws IOException {
        if (Files.isDirectory(target)) {
            if (!Files.exists(target.resolve(HfDatasetDirectory.STATE)) && isNonEmpty(target)) {
                throw new IOException(target + " is a non-empty directory without " + HfDatasetDirectory.STATE
                        + ": not replacing what may not be a dataset");
            }
            Path old = Files.createTempDirectory(target.toAbsolutePath().getParent(), "." + target.getFileName() + ".old.");
            Files.delete(old);
            Files.move(target, old, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            Files.move(tmp, target, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            deleteTree(old);
        } else {
            Files.move(tmp, target, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        }
    }

    private static boolean isNonEmpty(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.findAny().isPresent();
        }
    }

    private static void deleteTree(Path dir) {
        if (!Files.exists(dir)) return;
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(IoUtil::deleteQuietly);
        } catch (IOException ignored) {
            // best effort: a leftover temporary directory is named as one
        }
    }
}
