package dev.exeunt.model.io;

import dev.exeunt.tensor.HostMemory;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BaseIntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.LargeListVector;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowFileWriter;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;
import org.apache.arrow.vector.ipc.ArrowWriter;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Streams tokenized documents into an Arrow IPC file with one column {@value #COLUMN} of
 * {@code list<int32>} — the layout of a Hugging Face {@code datasets} cache file (IPC <em>stream</em>
 * format, schema metadata {@code "huggingface"} describing the feature, so {@code Dataset.from_file}
 * can read it).
 *
 * <p>Documents are appended to the current record batch; a batch is written whenever it holds
 * {@link Options#batchSize()} documents. Data goes to a temporary file in the target directory;
 * {@link #close()} writes the last batch and the end-of-stream marker and atomically renames the
 * temporary file onto the target. If anything fails while writing, or after {@link #abort()}, the
 * temporary file is deleted and the target is left untouched. When the code feeding the writer may
 * throw, use {@link #write(Path, Options, BufferAllocator, DocumentProducer)}, which aborts on any exception.
 */
public final class TokenDatasetWriter implements AutoCloseable {
    public static final String COLUMN = "input_ids";
    /** Schema metadata key of the Hugging Face datasets feature description. */
    static final String HF_METADATA = "huggingface";
    /** Schema metadata key: the {@code TokenizerHash} of the tokenizer the documents were encoded with. */
    public static final String TOKENIZER_HASH = "exeunt.tokenizer_sha256";
    /** Schema metadata key: where that tokenizer was (for messages). */
    public static final String TOKENIZER_PATH = "exeunt.tokenizer";

    /**
     * @param batchSize  documents per record batch (Hugging Face uses 1000)
     * @param int64      write {@code list<int64>} instead of {@code list<int32>}
     * @param largeList  write {@code large_list} (64-bit offsets) instead of {@code list}
     * @param fileFormat write the IPC <em>file</em> format ({@code ARROW1} magic, footer) instead of the stream format
     * @param metadata   extra Arrow schema metadata, e.g. {@link #TOKENIZER_HASH} (the {@code huggingface} key is ours)
     */
    public record Options(int batchSize, boolean int64, boolean largeList, boolean fileFormat, Map<String, String> metadata) {
        public static final Options DEFAULT = new Options(1000, false, false, false);

        public Options {
            if (batchSize <= 0) {
                throw new IllegalArgumentException("batchSize must be positive: " + batchSize);
            }
            metadata = Map.copyOf(metadata);
            if (metadata.containsKey(HF_METADATA)) {
                throw new IllegalArgumentException("schema metadata key '" + HF_METADATA + "' is written by the writer itself");
            }
        }

        public Options(int batchSize, boolean int64, boolean largeList, boolean fileFormat) {
            this(batchSize, int64, largeList, fileFormat, Map.of());
        }

        public Options withBatchSize(int n) {
            return new Options(n, int64, largeList, fileFormat, metadata);
        }

        public Options withInt64(boolean b) {
            return new Options(batchSize, b, largeList, fileFormat, metadata);
        }

        public Options withLargeList(boolean b) {
            return new Options(batchSize, int64, b, fileFormat, metadata);
        }

        public Options withFileFormat(boolean b) {
            return new Options(batchSize, int64, largeList, b, metadata);
        }

        /** These options with {@code key = value} added to the schema metadata. */
        public Options withMetadata(String key, String value) {
            var m = new java.util.HashMap<>(metadata);
            m.put(key, value);
            return new Options(batchSize, int64, largeList, fileFormat, m);
        }
    }

    /** Totals of a written dataset. */
    public record Stats(long documents, long tokens) {}

    /** Feeds documents to a writer (see {@link #write}). */
    @FunctionalInterface
    public interface DocumentProducer {
        void produce(TokenDatasetWriter writer) throws IOException;
    }

    private final Path target;
    private final Path temp;
    private final Options options;
    private final BufferAllocator allocator;
    private final boolean ownsAllocator;
    private final VectorSchemaRoot root;
    private final ArrowWriter writer;
    private final FileChannel channel;
    private final BaseIntVector child;
    private int rows;
    private long childCount;
    private long documents;
    private long tokens;
    private boolean failed;
    private boolean closed;

    private TokenDatasetWriter(Path target, Options options, BufferAllocator allocator, boolean ownsAllocator)
            throws IOException {
        this.target = target;
        this.options = options;
        this.allocator = allocator;
        this.ownsAllocator = ownsAllocator;
        this.temp = IoUtil.tempFileFor(target);
        VectorSchemaRoot r = null;
        FileChannel ch = null;
        try {
            ch = FileChannel.open(temp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING);
            r = VectorSchemaRoot.create(schema(options), allocator);
            ArrowWriter w = options.fileFormat()
                    ? new ArrowFileWriter(r, null, ch)
                    : new ArrowStreamWriter(r, null, ch);
            w.start();
            this.root = r;
            this.channel = ch;
            this.writer = w;
            this.child = (BaseIntVector) (options.largeList()
                    ? ((LargeListVector) r.getVector(COLUMN)).getDataVector()
                    : ((ListVector) r.getVector(COLUMN)).getDataVector());
        } catch (IOException | RuntimeException e) {
            if (r != null) {
                r.close();
            }
            if (ch != null) {
                ch.close();
            }
            IoUtil.deleteQuietly(temp);
            if (ownsAllocator) {
                allocator.close();
            }
            throw e;
        }
    }

    /** A writer with its own allocator, a child of host memory's (closed by {@link #close()}). */
    public static TokenDatasetWriter create(Path file, Options options) throws IOException {
        BufferAllocator alloc = HostMemory.allocator().newChildAllocator("TokenDatasetWriter " + file, 0, Long.MAX_VALUE);
        return new TokenDatasetWriter(file, options, alloc, true);
    }

    /** A writer using the caller's allocator (everything it allocates is freed by {@link #close()}). */
    public static TokenDatasetWriter create(Path file, Options options, BufferAllocator allocator) throws IOException {
        return new TokenDatasetWriter(file, options, Objects.requireNonNull(allocator), false);
    }

    /**
     * Writes a whole dataset: runs {@code producer} on a new writer, commits the file if it returns,
     * deletes the temporary file if it throws.
     */
    public static Stats write(Path file, Options options, BufferAllocator allocator, DocumentProducer producer)
            throws IOException {
        TokenDatasetWriter w = allocator == null ? create(file, options) : create(file, options, allocator);
        try {
            producer.produce(w);
        } catch (IOException | RuntimeException | Error e) {
            w.abort();
            throw e;
        }
        w.close();
        return w.stats();
    }

    static Schema schema(Options options) {
        ArrowType elem = new ArrowType.Int(options.int64() ? 64 : 32, true);
        Field item = new Field("item", FieldType.nullable(elem), null);
        ArrowType list = options.largeList() ? ArrowType.LargeList.INSTANCE : ArrowType.List.INSTANCE;
        Field column = new Field(COLUMN, FieldType.nullable(list), List.of(item));
        String dtype = options.int64() ? "int64" : "int32";
        String hf = "{\"info\": {\"features\": {\"" + COLUMN + "\": {\"feature\": {\"dtype\": \"" + dtype
                + "\", \"_type\": \"Value\"}, " + (options.largeList() ? "\"_type\": \"LargeList\"" : "\"_type\": \"Sequence\"")
                + "}}}}";
        var metadata = new java.util.HashMap<>(options.metadata());
        metadata.put(HF_METADATA, hf);
        return new Schema(List.of(column), metadata);
    }

    /** Appends one document. */
    public void add(int[] docTokens) throws IOException {
        add(docTokens, 0, docTokens.length);
    }

    /** Appends one document made of {@code docTokens[from, from + length)}. */
    public void add(int[] docTokens, int from, int length) throws IOException {
        Objects.checkFromIndexSize(from, length, docTokens.length);
        if (closed) {
            throw new IllegalStateException("writer for " + target + " is closed");
        }
        if (failed) {
            throw new IllegalStateException("writer for " + target + " failed earlier; the output was discarded");
        }
        try {
            if (rows == 0) {
                root.allocateNew();
                childCount = 0;
            }
            if (options.largeList()) {
                LargeListVector lv = (LargeListVector) root.getVector(COLUMN);
                long start = lv.startNewValue(rows);
                fill(start, docTokens, from, length);
                lv.endValue(rows, length);
            } else {
                ListVector lv = (ListVector) root.getVector(COLUMN);
                if (childCount + length > Integer.MAX_VALUE) {
                    // 32-bit offsets: cut the batch before it overflows
                    if (rows > 0) {
                        flush();
                        root.allocateNew();
                        childCount = 0;
                    }
                    if (length > Integer.MAX_VALUE - 1) {
                        throw new IllegalArgumentException("document of " + length + " tokens needs large_list");
                    }
                }
                int start = lv.startNewValue(rows);
                fill(start, docTokens, from, length);
                lv.endValue(rows, length);
            }
            childCount += length;
            rows++;
            documents++;
            tokens += length;
            if (rows >= options.batchSize()) {
                flush();
            }
        } catch (IOException | RuntimeException e) {
            failed = true;
            throw e;
        }
    }

    private void fill(long start, int[] src, int from, int length) {
        int idx = Math.toIntExact(start);
        for (int i = 0; i < length; i++) {
            child.setWithPossibleTruncate(idx + i, src[from + i]);
        }
    }

    private void flush() throws IOException {
        if (rows == 0) {
            return;
        }
        child.setValueCount(Math.toIntExact(childCount));
        root.getVector(COLUMN).setValueCount(rows);
        root.setRowCount(rows);
        writer.writeBatch();
        rows = 0;
        childCount = 0;
    }

    public long documentCount() {
        return documents;
    }

    public long tokenCount() {
        return tokens;
    }

    public Stats stats() {
        return new Stats(documents, tokens);
    }

    public Path target() {
        return target;
    }

    /** Discards everything written so far: deletes the temporary file and releases memory. */
    public void abort() {
        if (closed) {
            return;
        }
        closed = true;
        release();
        IoUtil.deleteQuietly(temp);
    }

    private void release() {
        try {
            writer.close(); // closes the channel too
        } catch (RuntimeException ignored) {
            // already failing
        }
        try {
            channel.close();
        } catch (IOException ignored) {
            // best effort
        }
        root.close();
        if (ownsAllocator) {
            allocator.close();
        }
    }

    /**
     * Writes the last batch and the end marker, then atomically renames the file onto the target. If an
     * earlier write failed, discards the output instead (as {@link #abort()}).
     */
    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        if (failed) {
            abort();
            return;
        }
        boolean ok = false;
        try {
            flush();
            writer.end();
            channel.force(true);
            ok = true;
        } finally {
            closed = true;
            release();
            if (ok) {
                try {
                    IoUtil.commit(temp, target);
                } catch (IOException e) {
                    IoUtil.deleteQuietly(temp);
                    throw e;
                }
            } else {
                IoUtil.deleteQuietly(temp);
            }
        }
    }
}
