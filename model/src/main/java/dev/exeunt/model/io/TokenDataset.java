package dev.exeunt.model.io;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A flat stream of token ids — every document of a dataset, in order, with nothing inserted between
 * them — read a window at a time. Training reads only the windows it needs, so a dataset may be far
 * larger than the heap: {@link #open(Path)} memory-maps Arrow files (page cache, not heap) instead of
 * loading them.
 *
 * <p>Reads may run on several threads at once; {@link #close()} (after the last read) releases the
 * mapping.
 */
public interface TokenDataset extends AutoCloseable {
    /** Number of tokens. */
    long tokenCount();

    /**
     * Copies tokens {@code [start, start + len)} into {@code dst[off..]}.
     *
     * @throws IndexOutOfBoundsException when the range is not inside the dataset or the array
     * @throws java.io.UncheckedIOException wrapping a {@link CheckpointFormatException} when a stored id
     *         does not fit in int32
     */
    void read(long start, int[] dst, int off, int len);

    /** The tokenizer hash the data was tokenized with ({@link TokenDatasetWriter#TOKENIZER_HASH}), or null. */
    default String tokenizerHash() {
        return null;
    }

    /** Where that tokenizer was ({@link TokenDatasetWriter#TOKENIZER_PATH}), or null. */
    default String tokenizerPath() {
        return null;
    }

    /** What the data is, for messages (a file or directory). */
    String describe();

    /**
     * Refuses (unless {@code force}) this dataset when it was tokenized with another tokenizer than
     * {@code hash}, as {@link TokenDatasetReader#checkTokenizer} does for one file.
     *
     * @return true when they differ but {@code force} lets them through
     */
    default boolean checkTokenizer(String hash, String whose, boolean force) throws IOException {
        return DatasetTokenizerCheck.check(describe(), tokenizerHash(), tokenizerPath(), hash, whose, force);
    }

    /** The largest token id (-1 when empty): one sequential pass, a bounded buffer at a time. */
    default int maxTokenId() {
        int[] buf = new int[1 << 16];
        int max = -1;
        for (long s = 0, n = tokenCount(); s < n; s += buf.length) {
            int k = (int) Math.min(buf.length, n - s);
            read(s, buf, 0, k);
            for (int i = 0; i < k; i++) max = Math.max(max, buf[i]);
        }
        return max;
    }

    /** Releases what the dataset holds (a mapping); reads after this fail. */
    @Override
    void close();

    /**
     * Opens an Arrow IPC file (stream or file format) or a Hugging Face {@code datasets} directory
     * (what {@code save_to_disk} writes: {@code state.json} listing {@code data-0000N-of-0000M.arrow}
     * shards) as one dataset, memory-mapped, reading column {@value TokenDatasetWriter#COLUMN}.
     */
    static TokenDataset open(Path fileOrDirectory) throws IOException {
        return open(fileOrDirectory, TokenDatasetWriter.COLUMN);
    }

    /** As {@link #open(Path)}, reading {@code column}. */
    static TokenDataset open(Path fileOrDirectory, String column) throws IOException {
        if (Files.isDirectory(fileOrDirectory)) {
            return MappedTokenDataset.open(fileOrDirectory, HfDatasetDirectory.shards(fileOrDirectory), column);
        }
        return MappedTokenDataset.open(fileOrDirectory, java.util.List.of(fileOrDirectory), column);
    }

    /** A heap array as a dataset (not copied). */
    static TokenDataset of(int[] tokens) {
        return of(MemorySegment.ofArray(tokens));
    }

    /** A segment of native-order int32 as a dataset (not copied; the caller keeps it alive). */
    static TokenDataset of(MemorySegment tokens) {
        Objects.requireNonNull(tokens);
        if (tokens.byteSize() % Integer.BYTES != 0) {
            throw new IllegalArgumentException("token segment size " + tokens.byteSize() + " is not a multiple of 4");
        }
        long n = tokens.byteSize() / Integer.BYTES;
        return new TokenDataset() {
            @Override
            public long tokenCount() {
                return n;
            }

            @Override
            public void read(long start, int[] dst, int off, int len) {
                Objects.checkFromIndexSize(start, len, n);
                MemorySegment.copy(tokens, ValueLayout.JAVA_INT, start * Integer.BYTES, dst, off, len);
            }

            @Override
            public String describe() {
                return "in memory (" + n + " tokens)";
            }

            @Override
            public void close() {
                // the caller owns the memory
            }
        };
    }
}
