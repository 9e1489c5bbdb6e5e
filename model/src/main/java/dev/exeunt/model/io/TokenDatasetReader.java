package dev.exeunt.model.io;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalInt;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.OutOfMemoryException;
import org.apache.arrow.vector.BaseIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.LargeListVector;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowFileReader;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Reads tokenized documents from an Arrow IPC file — stream format (Hugging Face {@code datasets}
 * cache files) or file format (detected by the {@code ARROW1} magic) — from a column (default
 * {@value TokenDatasetWriter#COLUMN}) of type {@code list} or {@code large_list} of integers
 * (int32 or int64, also int8/int16/unsigned). Other columns are ignored. A null list reads as an empty
 * document; null token ids, or ids outside the int32 range, are errors.
 *
 * <p>The reader holds no open file: each {@link #documents()} or {@code readAll...} call opens the
 * file and reads it one record batch at a time, so only one batch is in memory at once. All Arrow
 * memory comes from a child of the given allocator (by default of {@link HostMemory#allocator()}, so
 * it counts against the host-memory limit) and is freed when each pass ends.
 *
 * <p>A hostile file cannot make the reader allocate more than its size justifies: before Arrow sees
 * the file, {@link ArrowIpcLayout} checks every length it states against the file's size; the child
 * allocator is capped at {@link #memoryBound(long) a small multiple of the file size}; and each batch's
 * offsets, validity and data buffers are checked against its row and value counts before use.
 */
public final class TokenDatasetReader implements AutoCloseable {
    /** IPC container format of a file. */
    public enum Format { STREAM, FILE }

    private static final byte[] FILE_MAGIC = "ARROW1".getBytes(StandardCharsets.US_ASCII);

    private final Path path;
    private final String column;
    private final BufferAllocator allocator;
    private final Format format;
    private final Schema schema;

    private TokenDatasetReader(Path path, String column, BufferAllocator allocator, Format format)
            throws IOException {
        this.path = path;
        this.column = column;
        this.allocator = allocator;
        this.format = format;
        try (ArrowReader r = openReader()) {
            this.schema = r.getVectorSchemaRoot().getSchema();
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (OutOfMemoryException e) {
            throw outOfMemory(e);
        } catch (IOException | RuntimeException e) {
            throw new CheckpointFormatException(path, "cannot read Arrow IPC " + format.name().toLowerCase()
                    + " schema: " + e, e);
        }
        Field f = null;
        List<String> names = new ArrayList<>();
        for (Field x : schema.getFields()) {
            names.add(x.getName() + ": " + describe(x));
            if (f == null && column.equals(x.getName())) {
                f = x;
            }
        }
        if (f == null) {
            throw new CheckpointFormatException(path, "no column '" + column + "'; columns present: " + names);
        }
        ArrowType t = f.getType();
        boolean listOk = t instanceof ArrowType.List || t instanceof ArrowType.LargeList;
        boolean elemOk = listOk && f.getChildren().size() == 1
                && f.getChildren().get(0).getType() instanceof ArrowType.Int;
        if (!elemOk) {
            throw new CheckpointFormatException(path, "column '" + column + "' has type " + describe(f)
                    + ", expected list<int32|int64> or large_list<int32|int64>");
        }
    }

    private static String describe(Field f) {
        StringBuilder sb = new StringBuilder(f.getType().toString());
        if (!f.getChildren().isEmpty()) {
            sb.append('<');
            for (int i = 0; i < f.getChildren().size(); i++) {
                sb.append(i == 0 ? "" : ", ").append(describe(f.getChildren().get(i)));
            }
            sb.append('>');
        }
        return sb.toString();
    }

    /** Opens {@code file}, reading column {@value TokenDatasetWriter#COLUMN}, with host memory. */
    public static TokenDatasetReader open(Path file) throws IOException {
        return open(file, TokenDatasetWriter.COLUMN, null);
    }

    /**
     * Opens {@code file}, reading {@code column}, with Arrow memory from a child of {@code allocator}
     * ({@link HostMemory#allocator()} when null), closed by {@link #close()}.
     */
    public static TokenDatasetReader open(Path file, String column, BufferAllocator allocator) throws IOException {
        Objects.requireNonNull(column);
        long size;
        Format format;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            size = ch.size();
            format = detectFormat(file, ch);
        }
        BufferAllocator parent = allocator != null ? allocator : HostMemory.allocator();
        BufferAllocator own = parent.newChildAllocator("TokenDatasetReader " + file, 0, memoryBound(size));
        try {
            return new TokenDatasetReader(file, column, own, format);
        } catch (IOException | RuntimeException e) {
            own.close();
            throw e;
        }
    }

    /**
     * Most Arrow memory a pass over a file of {@code fileSize} bytes may take: one batch body (at most
     * the file) plus the validity bitmaps Arrow makes for null-free vectors (an eighth of their data),
     * with room for small files' fixed costs.
     */
    static long memoryBound(long fileSize) {
        return 2 * fileSize + (1 << 20);
    }

    private static Format detectFormat(Path path, FileChannel ch) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(FILE_MAGIC.length);
        while (b.hasRemaining() && ch.read(b) >= 0) {
            // fill
        }
        if (ch.size() < 8) {
            throw new CheckpointFormatException(path, "not an Arrow IPC file: only " + ch.size() + " bytes");
        }
        return Arrays.equals(b.array(), FILE_MAGIC) ? Format.FILE : Format.STREAM;
    }

    private ArrowReader openReader() throws IOException {
        FileChannel ch = FileChannel.open(path, StandardOpenOption.READ);
        try {
            ArrowIpcLayout.check(path, ch, format);
            ch.position(0);
            return format == Format.FILE ? new ArrowFileReader(ch, allocator) : new ArrowStreamReader(ch, allocator);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /**
     * An allocation Arrow could not make: past this reader's cap the file's sizes lie (a format error);
     * past the shared host-memory limit the machine is short of memory (the one-line memory error).
     */
    private IOException outOfMemory(OutOfMemoryException e) throws CheckpointFormatException {
        boolean ours = e.getOutcomeDetails().map(d -> d.getFailedAllocator() == allocator).orElse(true);
        if (ours) {
            return new CheckpointFormatException(path, "reading it needs more than " + allocator.getLimit()
                    + " bytes of memory, more than a valid file of its size can (a length or count field is corrupt)");
        }
        throw HostMemory.outOfMemory(e);
    }

    public Path path() {
        return path;
    }

    public Format format() {
        return format;
    }

    public String column() {
        return column;
    }

    public Schema schema() {
        return schema;
    }

    /** The Arrow schema metadata value of {@code key}, or null. */
    public String metadata(String key) {
        Map<String, String> m = schema.getCustomMetadata();
        return m == null ? null : m.get(key);
    }

    /**
     * The tokenizer hash {@code exeunt prepare} recorded ({@link TokenDatasetWriter#TOKENIZER_HASH}), or null for
     * datasets from elsewhere; a malformed value is an error naming the file.
     */
    public String tokenizerHash() throws CheckpointFormatException {
        String h = metadata(TokenDatasetWriter.TOKENIZER_HASH);
        if (h != null && !h.matches("sha256:[0-9a-f]{64}")) {
            throw new CheckpointFormatException(path, "schema metadata '" + TokenDatasetWriter.TOKENIZER_HASH
                    + "' must be \"sha256:\" and 64 hex digits, got '" + h + "'");
        }
        return h;
    }

    /**
     * Refuses (unless {@code force}) this dataset when it was tokenized with another tokenizer than
     * {@code hash}; datasets or models without a recorded hash pass.
     *
     * @param whose what {@code hash} belongs to, for the message (e.g. "the model ckpt uses")
     * @return true when they differ but {@code force} lets them through
     */
    public boolean checkTokenizer(String hash, String whose, boolean force) throws IOException {
        return DatasetTokenizerCheck.check(path.toString(), tokenizerHash(), metadata(TokenDatasetWriter.TOKENIZER_PATH), hash, whose, force);
    }

    /** Names of all columns of the file. */
    public List<String> columnNames() {
        return schema.getFields().stream().map(Field::getName).toList();
    }

    /** A pass over the documents, one record batch in memory at a time. Close it when done. */
    public Documents documents() throws IOException {
        return new Documents(openReader());
    }

    /** Document and token counts (one pass over the file). */
    public TokenDatasetWriter.Stats stats() throws IOException {
        long docs = 0;
        long toks = 0;
        try (Documents d = documents()) {
            while (d.nextBatch()) {
                docs += d.batchRows;
                for (int i = 0; i < d.batchRows; i++) {
                    toks += d.col.end(i) - d.col.start(i);
                }
            }
        }
        return new TokenDatasetWriter.Stats(docs, toks);
    }

    /**
     * All tokens as one flat stream, documents in file order, with {@code eos} (when present) inserted
     * <em>between</em> consecutive documents (also around empty documents; not after the last one).
     */
    public int[] readAllTokens(OptionalInt eos) throws IOException {
        int[] out = new int[1024];
        long n = 0;
        boolean first = true;
        try (Documents d = documents()) {
            while (d.nextBatch()) {
                for (int i = 0; i < d.batchRows; i++) {
                    long s = d.col.start(i);
                    long len = d.col.end(i) - s;
                    long need = n + len + (eos.isPresent() && !first ? 1 : 0);
                    if (need > Integer.MAX_VALUE - 16) {
                        throw new CheckpointFormatException(path, "more than 2^31 tokens: too many for one array");
                    }
                    if (need > out.length) {
                        out = Arrays.copyOf(out, (int) Math.min(Integer.MAX_VALUE - 16, Math.max(need, 2L * out.length)));
                    }
                    if (eos.isPresent() && !first) {
                        out[(int) n++] = eos.getAsInt();
                    }
                    first = false;
                    d.copy(i, s, (int) len, out, (int) n);
                    n += len;
                }
            }
        }
        return n == out.length ? out : Arrays.copyOf(out, (int) n);
    }

    /**
     * All tokens as one flat stream in an off-heap I32 tensor of shape {@code [n]} from host memory (two
     * passes: count, then copy), separated by {@code eos} as in {@link #readAllTokens(OptionalInt)}. The
     * caller closes it.
     */
    public Tensor readAllTokensOffHeap(OptionalInt eos) throws IOException {
        TokenDatasetWriter.Stats st = stats();
        long total = st.tokens() + (eos.isPresent() ? Math.max(0, st.documents() - 1) : 0);
        if (total > Integer.MAX_VALUE) {
            throw new CheckpointFormatException(path, total + " tokens: more than a tensor of 2^31 - 1 elements holds");
        }
        Tensor out = Tensor.empty(DType.I32, (int) total);
        try {
            copyAllTokens(out.segment(), total, eos);
            return out;
        } catch (IOException | RuntimeException e) {
            out.close();
            throw e;
        }
    }

    private void copyAllTokens(MemorySegment seg, long total, OptionalInt eos) throws IOException {
        long n = 0;
        boolean first = true;
        int[] buf = new int[8192];
        try (Documents d = documents()) {
            while (d.nextBatch()) {
                for (int i = 0; i < d.batchRows; i++) {
                    if (eos.isPresent() && !first) {
                        checkRoom(n, 1, total);
                        seg.setAtIndex(ValueLayout.JAVA_INT, n++, eos.getAsInt());
                    }
                    first = false;
                    long s = d.col.start(i);
                    long len = d.col.end(i) - s;
                    checkRoom(n, len, total);
                    for (long done = 0; done < len; ) {
                        int k = (int) Math.min(buf.length, len - done);
                        d.copy(i, s + done, k, buf, 0);
                        MemorySegment.copy(buf, 0, seg, ValueLayout.JAVA_INT, (n + done) * 4, k);
                        done += k;
                    }
                    n += len;
                }
            }
        }
        checkRoom(n, 0, total);
        if (n != total) {
            throw new CheckpointFormatException(path, "file changed while reading: " + n + " tokens, expected " + total);
        }
    }

    private void checkRoom(long n, long len, long total) throws CheckpointFormatException {
        if (n + len > total) {
            throw new CheckpointFormatException(path, "file changed while reading: more than " + total + " tokens");
        }
    }

    /** Closes the reader's allocator (fails if Arrow memory is still held: a pass left open). */
    @Override
    public void close() {
        allocator.close();
    }

    /** Offsets view over a list or large_list column of the current batch. */
    private interface ListColumn {
        boolean isNull(int row);

        long start(int row);

        long end(int row);
    }

    /**
     * A cursor over the documents of one pass. {@link #next()} advances; {@link #tokens()} returns the
     * current document as a fresh array.
     */
    public final class Documents implements AutoCloseable {
        private final ArrowReader reader;
        private ListColumn col;
        private BaseIntVector values;
        private int batchRows;
        private long batchStart;
        private int row = -1;
        private boolean done;

        private Documents(ArrowReader reader) {
            this.reader = reader;
        }

        boolean nextBatch() throws IOException {
            if (done) {
                return false;
            }
            boolean loaded;
            try {
                loaded = reader.loadNextBatch();
            } catch (OutOfMemoryException e) {
                throw outOfMemory(e);
            } catch (IOException | RuntimeException e) {
                throw new CheckpointFormatException(path, "cannot read record batch: " + e, e);
            }
            if (!loaded) {
                done = true;
                return false;
            }
            VectorSchemaRoot root = reader.getVectorSchemaRoot();
            FieldVector v = root.getVector(column);
            if (v instanceof ListVector lv) {
                col = new ListColumn() {
                    public boolean isNull(int r) { return lv.isNull(r); }
                    public long start(int r) { return lv.isNull(r) ? 0 : lv.getElementStartIndex(r); }
                    public long end(int r) { return lv.isNull(r) ? 0 : lv.getElementEndIndex(r); }
                };
                values = intValues(lv.getDataVector());
            } else if (v instanceof LargeListVector lv) {
                col = new ListColumn() {
                    public boolean isNull(int r) { return lv.isNull(r); }
                    public long start(int r) { return lv.isNull(r) ? 0 : lv.getElementStartIndex(r); }
                    public long end(int r) { return lv.isNull(r) ? 0 : lv.getElementEndIndex(r); }
                };
                values = intValues(lv.getDataVector());
            } else {
                throw new CheckpointFormatException(path, "column '" + column + "' is " + v.getClass().getSimpleName());
            }
            batchStart += batchRows;
            batchRows = root.getRowCount();
            row = -1;
            BatchCheck.check(path, column, batchStart, v, batchRows);
            return true;
        }

        private BaseIntVector intValues(FieldVector data) throws CheckpointFormatException {
            if (data instanceof BaseIntVector ints) return ints;
            throw new CheckpointFormatException(path, "column '" + column + "' holds " + data.getField().getType()
                    + " values, expected integers");
        }

        /** Advances to the next document; false at the end of the file. */
        public boolean next() throws IOException {
            while (col == null || row + 1 >= batchRows) {
                if (!nextBatch()) {
                    return false;
                }
            }
            row++;
            return true;
        }

        /** Index of the current document in the file (0-based). */
        public long index() {
            return batchStart + row;
        }

        /** Number of tokens of the current document. */
        public int length() {
            return Math.toIntExact(col.end(row) - col.start(row));
        }

        /** The current document's token ids. */
        public int[] tokens() throws CheckpointFormatException {
            long s = col.start(row);
            int[] out = new int[Math.toIntExact(col.end(row) - s)];
            copy(row, s, out.length, out, 0);
            return out;
        }

        void copy(int r, long from, int len, int[] dst, int dstOff) throws CheckpointFormatException {
            int f = Math.toIntExact(from);
            if (values instanceof IntVector iv && iv.getNullCount() == 0) {
                ArrowBuf data = iv.getDataBuffer();
                for (int i = 0; i < len; i++) {
                    dst[dstOff + i] = data.getInt((long) (f + i) * Integer.BYTES);
                }
                return;
            }
            for (int i = 0; i < len; i++) {
                int idx = f + i;
                if (values.isNull(idx)) {
                    throw new CheckpointFormatException(path, "null token id in document " + docIndex(r)
                            + " of column '" + column + "'");
                }
                long x = values.getValueAsLong(idx);
                if (x != (int) x) {
                    throw new CheckpointFormatException(path, "token id " + x + " in document " + docIndex(r)
                            + " does not fit in int32");
                }
                dst[dstOff + i] = (int) x;
            }
        }

        private long docIndex(int r) {
            return batchStart + r;
        }

        @Override
        public void close() throws IOException {
            reader.close();
        }
    }
}
