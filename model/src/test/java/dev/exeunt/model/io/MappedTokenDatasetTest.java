package dev.exeunt.model.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;
import java.util.Random;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;
import dev.exeunt.tensor.testing.LeakCheck;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * The memory-mapped {@link TokenDataset} against the streaming {@link TokenDatasetReader} it replaces
 * for training: same tokens, same windows, same batches, for every layout the reader accepts, and
 * Hugging Face dataset directories of shards read as the one file they were split from.
 */
@ExtendWith(LeakCheck.class)
class MappedTokenDatasetTest {
    @TempDir
    Path dir;

    private static List<int[]> docs(long seed, int n, int maxLen, int vocab) {
        Random r = new Random(seed);
        List<int[]> docs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] d = new int[i % 7 == 3 ? 0 : r.nextInt(maxLen + 1)]; // empty documents too
            for (int j = 0; j < d.length; j++) d[j] = r.nextInt(vocab);
            docs.add(d);
        }
        return docs;
    }

    private Path write(String name, List<int[]> docs, TokenDatasetWriter.Options o) throws IOException {
        Path p = dir.resolve(name);
        TokenDatasetWriter.write(p, o, null, w -> {
            for (int[] d : docs) w.add(d);
        });
        return p;
    }

    private static int[] readAll(Path p) throws IOException {
        try (TokenDatasetReader r = TokenDatasetReader.open(p)) {
            return r.readAllTokens(OptionalInt.empty());
        }
    }

    private static int[] readAll(TokenDataset ds) {
        int[] out = new int[Math.toIntExact(ds.tokenCount())];
        ds.read(0, out, 0, out.length);
        return out;
    }

    /** Whole stream and random windows (crossing batch and shard boundaries) equal the reader's int[]. */
    private static void assertSameTokens(int[] expected, TokenDataset ds) {
        assertEquals(expected.length, ds.tokenCount());
        assertArrayEquals(expected, readAll(ds));
        Random r = new Random(7);
        for (int i = 0; i < 200 && expected.length > 0; i++) {
            int s = r.nextInt(expected.length);
            int len = r.nextInt(expected.length - s + 1);
            int[] got = new int[len + 2];
            ds.read(s, got, 1, len);
            for (int j = 0; j < len; j++) assertEquals(expected[s + j], got[1 + j], "token " + (s + j));
        }
        assertThrows(IndexOutOfBoundsException.class, () -> ds.read(expected.length - 1L, new int[2], 0, 2));
    }

    @Test
    void sameTokensAsTheReaderForEveryLayout() throws IOException {
        List<int[]> docs = docs(1, 300, 40, 50_000);
        TokenDatasetWriter.Options[] layouts = {
            TokenDatasetWriter.Options.DEFAULT,
            TokenDatasetWriter.Options.DEFAULT.withBatchSize(7),
            TokenDatasetWriter.Options.DEFAULT.withBatchSize(1).withFileFormat(true),
            TokenDatasetWriter.Options.DEFAULT.withBatchSize(13).withInt64(true).withLargeList(true),
            TokenDatasetWriter.Options.DEFAULT.withBatchSize(5).withInt64(true).withFileFormat(true),
        };
        for (int i = 0; i < layouts.length; i++) {
            Path p = write("l" + i + ".arrow", docs, layouts[i]);
            try (TokenDataset ds = TokenDataset.open(p)) {
                assertSameTokens(readAll(p), ds);
            }
        }
        for (String py : List.of("py_stream.arrow", "py_file64.arrow")) { // written by pyarrow, with other columns
            Path p = SafetensorsTest.resource(py);
            try (TokenDataset ds = TokenDataset.open(p)) {
                assertSameTokens(readAll(p), ds);
            }
        }
    }

    /** Columns before input_ids (utf8: 3 buffers), null documents, and int64 ids out of int32 range. */
    @Test
    void otherColumnsNullDocumentsAndOutOfRangeIds() throws IOException {
        Field item = new Field("item", FieldType.nullable(new ArrowType.Int(64, true)), null);
        List<Field> fields = List.of(new Field("text", FieldType.nullable(ArrowType.Utf8.INSTANCE), null),
                new Field("input_ids", FieldType.nullable(ArrowType.List.INSTANCE), List.of(item)));
        Path p = dir.resolve("nulls.arrow");
        long[][] rows = {{1, 2}, null, {3}, {}, null, {4, 5, 6}};
        try (RootAllocator a = new RootAllocator();
             VectorSchemaRoot root = VectorSchemaRoot.create(new Schema(fields), a);
             var ch = java.nio.channels.FileChannel.open(p, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE);
             ArrowStreamWriter w = new ArrowStreamWriter(root, null, ch)) {
            w.start();
            for (int batch = 0; batch < 2; batch++) {
                root.allocateNew();
                VarCharVector text = (VarCharVector) root.getVector("text");
                ListVector lv = (ListVector) root.getVector("input_ids");
                BigIntVector ids = (BigIntVector) lv.getDataVector();
                int n = 0;
                for (int r = 0; r < rows.length; r++) {
                    text.setSafe(r, ("row " + r + " with some text").getBytes(StandardCharsets.UTF_8));
                    if (rows[r] == null) {
                        lv.setNull(r);
                        continue;
                    }
                    int s = lv.startNewValue(r);
                    for (int j = 0; j < rows[r].length; j++) ids.setSafe(s + j, rows[r][j] + 10L * batch);
                    lv.endValue(r, rows[r].length);
                    n += rows[r].length;
                }
                text.setValueCount(rows.length);
                lv.setValueCount(rows.length);
                ids.setValueCount(n);
                root.setRowCount(rows.length);
                w.writeBatch();
            }
            w.end();
        }
        int[] expected = readAll(p);
        assertArrayEquals(new int[] {1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16}, expected);
        try (TokenDataset ds = TokenDataset.open(p)) {
            assertSameTokens(expected, ds);
        }

        List<int[]> big = List.of(new int[] {1, 2});
        Path wide = write("wide.arrow", big, TokenDatasetWriter.Options.DEFAULT.withInt64(true));
        try (TokenDataset ds = TokenDataset.open(wide)) {
            assertArrayEquals(new int[] {1, 2}, readAll(ds));
        }
    }

    @Test
    void windowsAndBatchesAreBitIdenticalToTheIntArrayPath() throws IOException {
        List<int[]> docs = docs(2, 2000, 60, 30_000);
        Path p = write("train.arrow", docs, TokenDatasetWriter.Options.DEFAULT.withBatchSize(37));
        int[] heap = readAll(p);
        Path shards = dir.resolve("shards");
        DatasetSharder.split(p, shards, 4, TokenDatasetWriter.Options.DEFAULT.withBatchSize(11));
        for (Path source : List.of(p, shards)) {
            try (TokenDataset mapped = TokenDataset.open(source)) {
                for (int seqLen : new int[] {16, 33}) {
                    TokenWindows a = TokenWindows.of(heap, seqLen);
                    TokenWindows b = TokenWindows.of(mapped, seqLen);
                    assertEquals(a.windowCount(), b.windowCount());
                    assertEquals(a.split(0.1), b.split(0.1));
                    assertEquals(a.splitEvery(5), b.splitEvery(5));
                    var ba = a.batches(a.split(0.1).train(), 8, 42, true, false);
                    var bb = b.batches(b.split(0.1).train(), 8, 42, true, false);
                    for (int i = 0; i < 2 * ba.batchesPerEpoch() + 3; i++) {
                        var x = ba.next();
                        var y = bb.next();
                        assertArrayEquals(x.windows(), y.windows());
                        assertArrayEquals(x.inputs(), y.inputs(), "inputs of batch " + i);
                        assertArrayEquals(x.targets(), y.targets(), "targets of batch " + i);
                    }
                }
            }
        }
    }

    /** Rank r of D gets rows [r*B/D, (r+1)*B/D) of each global batch: together, the one-rank batch in order. */
    @Test
    void dataParallelRanksPartitionEachGlobalBatch() {
        int[] tokens = new int[5000];
        for (int i = 0; i < tokens.length; i++) tokens[i] = i;
        TokenWindows w = TokenWindows.of(tokens, 10);
        var batches = w.batches(w.all(), 7, 3, true, false); // 499 windows: the last batch is partial (2)
        for (int ranks = 1; ranks <= 4; ranks++) {
            for (int e = 0; e < 2; e++) {
                for (int s = 0; s < batches.batchesPerEpoch(); s++) {
                    var global = batches.get(e, s);
                    List<Integer> ws = new ArrayList<>();
                    List<Integer> in = new ArrayList<>();
                    List<Integer> tg = new ArrayList<>();
                    for (int r = 0; r < ranks; r++) {
                        var part = batches.get(e, s, r, ranks);
                        int b = global.size();
                        assertEquals((r + 1) * b / ranks - r * b / ranks, part.size());
                        for (int x : part.windows()) ws.add(x);
                        for (int x : part.inputs()) in.add(x);
                        for (int x : part.targets()) tg.add(x);
                    }
                    assertArrayEquals(global.windows(), ws.stream().mapToInt(Integer::intValue).toArray());
                    assertArrayEquals(global.inputs(), in.stream().mapToInt(Integer::intValue).toArray());
                    assertArrayEquals(global.targets(), tg.stream().mapToInt(Integer::intValue).toArray());
                }
            }
        }
        var cursor = w.batches(w.all(), 8, 3, true, true);
        var rank1 = w.batches(w.all(), 8, 3, true, true);
        for (int i = 0; i < 70; i++) { // crosses an epoch (62 per epoch)
            var g = cursor.next();
            var part = rank1.next(1, 2);
            assertArrayEquals(java.util.Arrays.copyOfRange(g.windows(), 4, 8), part.windows());
        }
        assertThrows(IndexOutOfBoundsException.class, () -> batches.get(0, 0, 2, 2));
        assertThrows(IllegalArgumentException.class, () -> batches.get(0, 0, 0, 0));
    }

    @Test
    void huggingFaceDirectoryOfShardsReadsAsOneDataset() throws IOException {
        List<int[]> docs = docs(3, 1003, 30, 1000);
        String hash = "sha256:" + "ab".repeat(32);
        var o = TokenDatasetWriter.Options.DEFAULT.withBatchSize(100).withMetadata(TokenDatasetWriter.TOKENIZER_HASH, hash);
        Path single = write("all.arrow", docs, o);
        int[] expected = readAll(single);
        Path ds = dir.resolve("ds");
        List<Path> shards = DatasetSharder.split(single, ds, 3, o);
        assertEquals(List.of("data-00000-of-00003.arrow", "data-00001-of-00003.arrow", "data-00002-of-00003.arrow"),
                shards.stream().map(x -> x.getFileName().toString()).toList());
        // datasets' contiguous shard(): 1003 = 335 + 334 + 334 documents
        try (TokenDatasetReader r = TokenDatasetReader.open(shards.get(0))) {
            assertEquals(335, r.stats().documents());
            assertEquals(hash, r.tokenizerHash());
        }
        String state = Files.readString(ds.resolve(HfDatasetDirectory.STATE));
        assertTrue(state.contains("\"_data_files\"") && state.contains("\"filename\" : \"data-00002-of-00003.arrow\""), state);
        assertTrue(Files.readString(ds.resolve(HfDatasetDirectory.INFO)).contains("\"Sequence\""));
        try (TokenDataset d = TokenDataset.open(ds)) {
            assertSameTokens(expected, d);
            assertEquals(hash, d.tokenizerHash());
            assertEquals(false, d.checkTokenizer(hash, "the model uses", false));
            var e = assertThrows(IOException.class, () -> d.checkTokenizer("sha256:" + "cd".repeat(32), "the model uses", false));
            assertTrue(e.getMessage().contains(ds.toString()), e.getMessage());
        }
        // rewriting replaces the directory; without state.json the data-N-of-M names are enough
        DatasetSharder.split(single, ds, 2, o);
        assertEquals(2, HfDatasetDirectory.shards(ds).size());
        Files.delete(ds.resolve(HfDatasetDirectory.STATE));
        try (TokenDataset d = TokenDataset.open(ds)) {
            assertSameTokens(expected, d);
        }
        byte[] shard1 = Files.readAllBytes(ds.resolve("data-00001-of-00002.arrow"));
        Files.write(ds.resolve("data-00001-of-00002.arrow"), java.util.Arrays.copyOf(shard1, shard1.length / 2));
        var corrupt = assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(ds));
        assertTrue(corrupt.getMessage().contains("data-00001-of-00002.arrow"), "names the shard: " + corrupt.getMessage());
        Files.delete(ds.resolve("data-00001-of-00002.arrow"));
        var missing = assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(ds));
        assertTrue(missing.getMessage().contains("data-00001-of-00002.arrow is missing"), missing.getMessage());
    }

    @Test
    void stateJsonCannotPointOutsideItsDirectory() throws IOException {
        Path ds = dir.resolve("evil");
        Files.createDirectories(ds);
        write("outside.arrow", docs(4, 5, 5, 10), TokenDatasetWriter.Options.DEFAULT);
        Files.writeString(ds.resolve("state.json"), "{\"_data_files\": [{\"filename\": \"../outside.arrow\"}]}");
        var e = assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(ds));
        assertTrue(e.getMessage().contains("not a file name inside the directory"), e.getMessage());
        Files.writeString(ds.resolve("state.json"), "{\"_data_files\": [{\"filename\": \"x.arrow\"}], \"_indices_data_files\": "
                + "[{\"filename\": \"indices.arrow\"}]}");
        Files.writeString(ds.resolve("x.arrow"), "not read");
        var idx = assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(ds));
        assertTrue(idx.getMessage().contains("_indices_data_files"), idx.getMessage());
        Files.writeString(ds.resolve("state.json"), "{\"_data_files\": 3}");
        assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(ds));
        Files.writeString(ds.resolve("state.json"), "{\"_data_files\": [");
        assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(ds));
    }

    @Test
    void shardsTokenizedDifferentlyAreRefusedNamingTheShard() throws IOException {
        Path ds = dir.resolve("mixed");
        Files.createDirectories(ds);
        var o = TokenDatasetWriter.Options.DEFAULT;
        TokenDatasetWriter.write(ds.resolve("data-00000-of-00002.arrow"), o.withMetadata(TokenDatasetWriter.TOKENIZER_HASH,
                "sha256:" + "11".repeat(32)), null, w -> w.add(new int[] {1, 2, 3}));
        TokenDatasetWriter.write(ds.resolve("data-00001-of-00002.arrow"), o.withMetadata(TokenDatasetWriter.TOKENIZER_HASH,
                "sha256:" + "22".repeat(32)), null, w -> w.add(new int[] {4}));
        var e = assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(ds));
        assertTrue(e.getMessage().contains("data-00001-of-00002.arrow") && e.getMessage().contains("tokenized alike"), e.getMessage());
    }

    @Test
    void hostileLengthsAreRefusedBeforeMapping() throws IOException {
        Path p = write("h.arrow", docs(5, 50, 20, 100), TokenDatasetWriter.Options.DEFAULT.withBatchSize(10));
        byte[] b = Files.readAllBytes(p);
        // truncate inside the last record batch body: its stated body length now goes past the end
        Files.write(p, java.util.Arrays.copyOf(b, b.length - 40));
        var e = assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(p));
        assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
    }

    /** An offset past the batch's ids (inside the file, so only the offset check can catch it). */
    @Test
    void offsetBeyondTheIdsIsRefused() throws IOException {
        Path p = write("o.arrow", List.of(new int[] {1, 2, 3}, new int[] {4, 5}), TokenDatasetWriter.Options.DEFAULT);
        ArrowIpcLayout.RecordBatchBody b;
        try (var ch = java.nio.channels.FileChannel.open(p)) {
            b = ArrowIpcLayout.recordBatches(p, ch, TokenDatasetReader.Format.STREAM).get(0);
        }
        byte[] bytes = Files.readAllBytes(p);
        int lastOffset = (int) (b.bodyOffset() + b.bufferOffsets()[1] + 2 * 4); // offsets [0, 3, 5]: the 5
        java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(lastOffset, 1 << 20);
        Files.write(p, bytes);
        var e = assertThrows(CheckpointFormatException.class, () -> TokenDataset.open(p));
        assertTrue(e.getMessage().contains("offset 2 = 1048576 goes beyond the 5 token ids"), e.getMessage());
        assertThrows(CheckpointFormatException.class, () -> readAll(p)); // the reader refuses it too
    }

    @Test
    void sizesAsDatasetsWritesThem() {
        assertEquals(500_000_000L, DatasetSharder.parseSize("500MB"));
        assertEquals(1L << 30, DatasetSharder.parseSize("1GiB"));
        assertEquals(123, DatasetSharder.parseSize("123"));
        assertThrows(IllegalArgumentException.class, () -> DatasetSharder.parseSize("lots"));
        assertEquals(3, DatasetSharder.shardsFor(1_000_000_001L, 500_000_000L));
        assertEquals(1, DatasetSharder.shardsFor(10, 500_000_000L));
        assertEquals(3, DatasetSharder.shardsFor(1_000_000_000L, 500_000_000L)); // int(2.0) + 1, as datasets counts
    }

    @Test
    void readAfterCloseFails() throws IOException {
        Path p = write("c.arrow", docs(6, 10, 10, 10), TokenDatasetWriter.Options.DEFAULT);
        TokenDataset ds = TokenDataset.open(p);
        long n = ds.tokenCount();
        ds.close();
        ds.close(); // idempotent
        assertThrows(IllegalStateException.class, () -> ds.read(0, new int[1], 0, (int) Math.min(1, n)));
    }

}
