package dev.exeunt.model.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import org.apache.arrow.vector.TypeLayout;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;

/**
 * A token column of one or more Arrow IPC files (shards, concatenated in order), memory-mapped: no
 * token is copied onto the heap until a window of it is read.
 *
 * <p>Opening builds an offset table of <em>runs</em> — stretches of consecutive token ids in one file:
 * a record batch's non-null documents lie back to back in its values buffer, so a batch without null
 * documents is one run. It costs one walk over the message headers ({@link ArrowIpcLayout}, which
 * first checks every stated length against the file's size, so a hostile file is refused before
 * anything is mapped) and a read of each batch's list offsets (4 or 8 bytes a document, checked to be
 * non-decreasing and inside the batch as {@link BatchCheck} does); token bodies are not touched.
 *
 * <p>Each shard is mapped read-only in one shared arena, closed by {@link #close()}.
 */
final class MappedTokenDataset implements TokenDataset {
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String description;
    private final List<Path> files;
    private final Arena arena;
    private final MemorySegment[] maps;
    // run i: tokens [runStart[i], runStart[i+1]) are ids at byte runByte[i] of maps[runFile[i]]
    private final long[] runStart;
    private final long[] runByte;
    private final int[] runFile;
    private final IdType[] runType;
    private final String tokenizerHash;
    private final String tokenizerPath;

    /** How ids are stored: byte width and signedness. */
    private record IdType(int bytes, boolean signed) {}

    private MappedTokenDataset(String description, List<Path> files, Arena arena, MemorySegment[] maps, List<Run> runs,
                               String tokenizerHash, String tokenizerPath) {
        this.description = description;
        this.files = files;
        this.arena = arena;
        this.maps = maps;
        int n = runs.size();
        runStart = new long[n + 1];
        runByte = new long[n];
        runFile = new int[n];
        runType = new IdType[n];
        long total = 0;
        for (int i = 0; i < n; i++) {
            Run r = runs.get(i);
            runStart[i] = total;
            runByte[i] = r.byteOffset;
            runFile[i] = r.file;
            runType[i] = r.type;
            total += r.tokens;
        }
        runStart[n] = total;
        this.tokenizerHash = tokenizerHash;
        this.tokenizerPath = tokenizerPath;
    }

    private record Run(int file, long byteOffset, long tokens, IdType type) {}

    /**
     * Maps {@code shards} in order as one dataset. Every shard must have the column and agree on the
     * recorded tokenizer, or the dataset is refused naming the shard that differs.
     */
    static MappedTokenDataset open(Path what, List<Path> shards, String column) throws IOException {
        Objects.requireNonNull(column);
        if (shards.isEmpty()) throw new CheckpointFormatException(what, "no data files");
        List<Run> runs = new ArrayList<>();
        Arena arena = Arena.ofShared();
        MemorySegment[] maps = new MemorySegment[shards.size()];
        String hash = null;
        String tokPath = null;
        try {
            for (int f = 0; f < shards.size(); f++) {
                Path file = shards.get(f);
                Field field;
                TokenDatasetReader.Format format;
                String h;
                String tp;
                List<Field> fields;
                try (TokenDatasetReader r = TokenDatasetReader.open(file, column, null)) { // schema and column type checks
                    format = r.format();
                    h = r.tokenizerHash();
                    tp = r.metadata(TokenDatasetWriter.TOKENIZER_PATH);
                    fields = r.schema().getFields();
                }
                if (f == 0) {
                    hash = h;
                    tokPath = tp;
                } else if (!Objects.equals(hash, h)) {
                    throw new CheckpointFormatException(file, "shard records tokenizer " + h + " but shard "
                            + shards.get(0).getFileName() + " records " + hash + ": the shards of one dataset must be"
                            + " tokenized alike");
                }
                try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                    List<ArrowIpcLayout.RecordBatchBody> batches = ArrowIpcLayout.recordBatches(file, ch, format);
                    maps[f] = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
                    new ColumnIndex(file, column, fields).addRuns(f, maps[f], batches, runs);
                }
            }
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
        return new MappedTokenDataset(what.toString(), List.copyOf(shards), arena, maps, runs, hash, tokPath);
    }

    /** Where the column's nodes and buffers sit in a record batch of this schema. */
    private static final class ColumnIndex {
        final Path file;
        final String column;
        final int node;   // the list node; its child (the ids) is node + 1
        final int buffer; // list validity; offsets at buffer + 1, id validity + 2, ids + 3
        final int offsetBytes;
        final IdType type;

        ColumnIndex(Path file, String column, List<Field> fields) throws CheckpointFormatException {
            this.file = file;
            this.column = column;
            int[] counts = new int[2];
            Field target = null;
            for (Field x : fields) {
                if (x.getName().equals(column)) {
                    target = x;
                    break;
                }
                count(x, counts);
            }
            if (target == null) throw new CheckpointFormatException(file, "no column '" + column + "'");
            node = counts[0];
            buffer = counts[1];
            offsetBytes = target.getType() instanceof ArrowType.LargeList ? 8 : 4;
            ArrowType.Int it = (ArrowType.Int) target.getChildren().get(0).getType(); // checked by TokenDatasetReader
            type = new IdType(it.getBitWidth() / 8, it.getIsSigned());
        }

        /** Adds the nodes and buffers of {@code f} and its children (depth first) to {@code counts}. */
        private void count(Field f, int[] counts) throws CheckpointFormatException {
            counts[0]++;
            if (f.getDictionary() != null) { // a dictionary-encoded column is its indices in a record batch
                counts[1] += 2;
                return;
            }
            ArrowType t = f.getType();
            if (t instanceof ArrowType.Utf8View || t instanceof ArrowType.BinaryView || t instanceof ArrowType.ListView
                    || t instanceof ArrowType.LargeListView) {
                throw new CheckpointFormatException(file, "column '" + f.getName() + "' of type " + t + " comes before '"
                        + column + "': view types are not supported");
            }
            counts[1] += TypeLayout.getTypeBufferCount(t);
            for (Field c : f.getChildren()) count(c, counts);
        }

        void addRuns(int f, MemorySegment map, List<ArrowIpcLayout.RecordBatchBody> batches, List<Run> runs)
                throws CheckpointFormatException {
            long firstDoc = 0;
            for (ArrowIpcLayout.RecordBatchBody b : batches) {
                String where = "column '" + column + "' of the record batch starting at document " + firstDoc + ": ";
                if (b.nodeLengths().length < node + 2 || b.bufferOffsets().length < buffer + 4) {
                    throw new CheckpointFormatException(file, where + "the batch has " + b.nodeLengths().length
                            + " field nodes and " + b.bufferOffsets().length + " buffers, too few for the schema");
                }
                long rows = b.rows();
                if (b.nodeLengths()[node] != rows) {
                    throw new CheckpointFormatException(file, where + "has " + b.nodeLengths()[node]
                            + " values but the batch has " + rows + " rows");
                }
                long values = b.nodeLengths()[node + 1];
                long idBytes = values * type.bytes();
                if (bufferLength(b, buffer + 3) < idBytes) {
                    throw new CheckpointFormatException(file, where + "token id buffer of " + bufferLength(b, buffer + 3)
                            + " bytes is shorter than the " + idBytes + " bytes " + values + " ids need");
                }
                if (rows > 0) {
                    addBatchRuns(f, map, b, rows, values, where, runs);
                }
                firstDoc += rows;
            }
        }

        private void addBatchRuns(int f, MemorySegment map, ArrowIpcLayout.RecordBatchBody b, long rows, long values,
                                  String where, List<Run> runs) throws CheckpointFormatException {
            long needOffsets = (rows + 1) * offsetBytes;
            if (bufferLength(b, buffer + 1) < needOffsets) {
                throw new CheckpointFormatException(file, where + "offsets buffer of " + bufferLength(b, buffer + 1)
                        + " bytes is shorter than the " + needOffsets + " bytes " + rows + " rows need");
            }
            // As Arrow Java does, the bitmap (when present) says which documents are null, whatever the null count
            boolean nulls = hasBitmap(b, buffer, rows, b.nodeNullCounts()[node], where + "validity bitmap");
            long validity = b.bodyOffset() + b.bufferOffsets()[buffer];
            long offsets = b.bodyOffset() + b.bufferOffsets()[buffer + 1];
            long ids = b.bodyOffset() + b.bufferOffsets()[buffer + 3];
            long prev = offset(map, offsets, 0);
            if (prev < 0) throw new CheckpointFormatException(file, where + "first offset " + prev + " is negative");
            long runFrom = -1; // start offset of the open run, -1 when none
            long runTo = -1;
            for (long r = 0; r < rows; r++) {
                long o = offset(map, offsets, r + 1);
                if (o < prev) {
                    throw new CheckpointFormatException(file, where + "offset " + (r + 1) + " = " + o
                            + " is less than offset " + r + " = " + prev);
                }
                if (o > values) { // before any run reaches past the ids (and their bitmap)
                    throw new CheckpointFormatException(file, where + "offset " + (r + 1) + " = " + o + " goes beyond the "
                            + values + " token ids of the batch");
                }
                boolean isNull = nulls && (map.get(ValueLayout.JAVA_BYTE, validity + (r >>> 3)) & (1 << (r & 7))) == 0;
                if (!isNull && o > prev) { // a null list reads as an empty document
                    if (runTo != prev) {
                        closeRun(f, ids, runFrom, runTo, runs, map, b, values, where);
                        runFrom = prev;
                    }
                    runTo = o;
                }
                prev = o;
            }
            closeRun(f, ids, runFrom, runTo, runs, map, b, values, where);
        }

        /**
         * Whether buffer {@code i} is a validity bitmap to consult: absent (length 0) only with no nulls;
         * otherwise it must cover {@code count} values.
         */
        private boolean hasBitmap(ArrowIpcLayout.RecordBatchBody b, int i, long count, long nullCount, String what)
                throws CheckpointFormatException {
            long have = bufferLength(b, i);
            if (have == 0 && nullCount == 0) return false;
            long need = (count + 7) / 8;
            if (have < need) {
                throw new CheckpointFormatException(file, what + " of " + have + " bytes is shorter than the " + need
                        + " bytes " + count + " values need");
            }
            return true;
        }

        private void closeRun(int f, long ids, long from, long to, List<Run> runs, MemorySegment map,
                              ArrowIpcLayout.RecordBatchBody b, long values, String where) throws CheckpointFormatException {
            if (from < 0 || to <= from) return;
            // a null id inside a document is an error, as the reader makes it; the bitmap is 1/32 of the ids
            if (hasBitmap(b, buffer + 2, values, 0, where + "token id validity bitmap")) {
                long bits = b.bodyOffset() + b.bufferOffsets()[buffer + 2];
                for (long k = from; k < to; ) {
                    if ((k & 7) == 0 && to - k >= 8) {
                        if (map.get(ValueLayout.JAVA_BYTE, bits + (k >>> 3)) == (byte) 0xFF) {
                            k += 8;
                            continue;
                        }
                    }
                    if ((map.get(ValueLayout.JAVA_BYTE, bits + (k >>> 3)) & (1 << (k & 7))) == 0) {
                        throw new CheckpointFormatException(file, where + "null token id at value " + k);
                    }
                    k++;
                }
            }
            runs.add(new Run(f, ids + from * type.bytes(), to - from, type));
        }

        private long offset(MemorySegment map, long at, long index) {
            return offsetBytes == 8 ? map.get(I64, at + index * 8) : map.get(I32, at + index * 4);
        }

        private static long bufferLength(ArrowIpcLayout.RecordBatchBody b, int i) {
            return b.bufferLengths()[i];
        }
    }

    @Override
    public long tokenCount() {
        return runStart[runStart.length - 1];
    }

    @Override
    public void read(long start, int[] dst, int off, int len) {
        Objects.checkFromIndexSize(start, len, tokenCount());
        Objects.checkFromIndexSize(off, len, dst.length);
        int run = Arrays.binarySearch(runStart, start);
        if (run < 0) run = -run - 2;
        while (len > 0) {
            while (runStart[run + 1] <= start) run++; // skip to the run holding start
            long within = start - runStart[run];
            int k = (int) Math.min(len, runStart[run + 1] - start);
            copy(run, within, dst, off, k);
            start += k;
            off += k;
            len -= k;
        }
    }

    private void copy(int run, long within, int[] dst, int off, int k) {
        MemorySegment m = maps[runFile[run]];
        IdType t = runType[run];
        long at = runByte[run] + within * t.bytes();
        if (t.bytes() == 4 && t.signed()) {
            MemorySegment.copy(m, I32, at, dst, off, k);
            return;
        }
        for (int i = 0; i < k; i++) {
            long x = switch (t.bytes()) {
                case 1 -> t.signed() ? m.get(ValueLayout.JAVA_BYTE, at + i) : Byte.toUnsignedLong(m.get(ValueLayout.JAVA_BYTE, at + i));
                case 2 -> t.signed() ? m.get(I16, at + 2L * i) : Short.toUnsignedLong(m.get(I16, at + 2L * i));
                case 4 -> Integer.toUnsignedLong(m.get(I32, at + 4L * i));
                default -> m.get(I64, at + 8L * i);
            };
            if (x != (int) x || (t.bytes() == 8 && !t.signed() && x < 0)) {
                throw new UncheckedIOException(new CheckpointFormatException(files.get(runFile[run]), "token id "
                        + (t.signed() ? Long.toString(x) : Long.toUnsignedString(x)) + " does not fit in int32"));
            }
            dst[off + i] = (int) x;
        }
    }

    @Override
    public String tokenizerHash() {
        return tokenizerHash;
    }

    @Override
    public String tokenizerPath() {
        return tokenizerPath;
    }

    @Override
    public String describe() {
        return description;
    }

    /** The shards, in order. */
    List<Path> files() {
        return files;
    }

    /** Number of runs in the offset table (for tests). */
    int runCount() {
        return runType.length;
    }

    @Override
    public void close() {
        if (arena.scope().isAlive()) arena.close();
    }
}
