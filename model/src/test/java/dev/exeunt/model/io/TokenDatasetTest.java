package dev.exeunt.model.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.OptionalInt;
import java.util.Random;
import java.util.stream.Stream;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenDatasetTest {
    @TempDir
    Path dir;

    RootAllocator allocator;

    @BeforeEach
    void setUp() {
        allocator = new RootAllocator();
    }

    @AfterEach
    void noLeaks() {
        assertEquals(0, allocator.getAllocatedMemory(), "Arrow memory leaked");
        allocator.close();
    }

    private static List<int[]> randomDocs(long seed, int n, int maxLen, int vocab) {
        Random r = new Random(seed);
        List<int[]> docs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int len = i % 5 == 3 ? 0 : r.nextInt(maxLen + 1); // includes empty documents
            int[] d = new int[len];
            for (int j = 0; j < len; j++) {
                d[j] = r.nextInt(vocab);
            }
            docs.add(d);
        }
        return docs;
    }

    private Path write(String name, List<int[]> docs, TokenDatasetWriter.Options options) throws IOException {
        Path p = dir.resolve(name);
        try (TokenDatasetWriter w = TokenDatasetWriter.create(p, options, allocator)) {
            for (int[] d : docs) {
                w.add(d);
            }
            assertEquals(docs.size(), w.documentCount());
            assertEquals(docs.stream().mapToLong(d -> d.length).sum(), w.tokenCount());
            assertFalse(Files.exists(p), "target appears only on close");
        }
        assertEquals(0, allocator.getAllocatedMemory());
        return p;
    }

    private List<int[]> readDocs(TokenDatasetReader r) throws IOException {
        List<int[]> out = new ArrayList<>();
        try (TokenDatasetReader.Documents d = r.documents()) {
            while (d.next()) {
                assertEquals(out.size(), d.index());
                assertEquals(d.length(), d.tokens().length);
                out.add(d.tokens());
            }
        }
        return out;
    }

    private static void assertDocsEqual(List<int[]> expected, List<int[]> actual) {
        assertEquals(expected.size(), actual.size());
        for (int i = 0; i < expected.size(); i++) {
            assertArrayEquals(expected.get(i), actual.get(i), "document " + i);
        }
    }

    private static int[] flatten(List<int[]> docs, OptionalInt eos) {
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < docs.size(); i++) {
            if (i > 0 && eos.isPresent()) {
                out.add(eos.getAsInt());
            }
            for (int t : docs.get(i)) {
                out.add(t);
            }
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    @Test
    void roundTripStreamFormat() throws IOException {
        List<int[]> docs = randomDocs(1, 103, 40, 50_000);
        Path p = write("train.arrow", docs, TokenDatasetWriter.Options.DEFAULT.withBatchSize(10));
        try (TokenDatasetReader r = TokenDatasetReader.open(p, TokenDatasetWriter.COLUMN, allocator)) {
            assertEquals(TokenDatasetReader.Format.STREAM, r.format());
            assertEquals(List.of("input_ids"), r.columnNames());
            assertTrue(r.schema().getCustomMetadata().get("huggingface").contains("\"dtype\": \"int32\""));
            assertDocsEqual(docs, readDocs(r));
            long tokens = docs.stream().mapToLong(d -> d.length).sum();
            assertEquals(new TokenDatasetWriter.Stats(103, tokens), r.stats());
            assertArrayEquals(flatten(docs, OptionalInt.empty()), r.readAllTokens(OptionalInt.empty()));
            assertArrayEquals(flatten(docs, OptionalInt.of(0)), r.readAllTokens(OptionalInt.of(0)));
            long hostBefore = HostMemory.allocatedBytes();
            try (Tensor t = r.readAllTokensOffHeap(OptionalInt.of(7))) {
                assertArrayEquals(flatten(docs, OptionalInt.of(7)), t.segment().toArray(ValueLayout.JAVA_INT));
                assertTrue(HostMemory.allocatedBytes() >= hostBefore + 4L * t.numel(), "counted as host memory");
            }
            assertEquals(0, allocator.getAllocatedMemory(), "nothing held between passes");
        }
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(p), files.toList(), "no temp file left behind");
        }
        // stream format: starts with the IPC continuation marker, no ARROW1 magic
        byte[] head = Arrays.copyOf(Files.readAllBytes(p), 4);
        assertArrayEquals(new byte[] {-1, -1, -1, -1}, head);
    }

    @Test
    void fileFormatInt64AndLargeList() throws IOException {
        List<int[]> docs = randomDocs(2, 57, 30, Integer.MAX_VALUE);
        for (TokenDatasetWriter.Options o : List.of(
                TokenDatasetWriter.Options.DEFAULT.withBatchSize(8).withFileFormat(true),
                TokenDatasetWriter.Options.DEFAULT.withBatchSize(8).withInt64(true),
                TokenDatasetWriter.Options.DEFAULT.withBatchSize(8).withLargeList(true).withInt64(true),
                TokenDatasetWriter.Options.DEFAULT.withBatchSize(1000).withLargeList(true).withFileFormat(true))) {
            Path p = write("d-" + o.int64() + o.largeList() + o.fileFormat() + ".arrow", docs, o);
            if (o.fileFormat()) {
                assertEquals("ARROW1", new String(Arrays.copyOf(Files.readAllBytes(p), 6), StandardCharsets.US_ASCII));
            }
            try (TokenDatasetReader r = TokenDatasetReader.open(p, "input_ids", allocator)) {
                assertEquals(o.fileFormat() ? TokenDatasetReader.Format.FILE : TokenDatasetReader.Format.STREAM, r.format());
                Field f = r.schema().getFields().get(0);
                assertEquals(o.largeList() ? ArrowType.LargeList.INSTANCE : ArrowType.List.INSTANCE, f.getType());
                assertEquals(new ArrowType.Int(o.int64() ? 64 : 32, true), f.getChildren().get(0).getType());
                assertDocsEqual(docs, readDocs(r));
                assertArrayEquals(flatten(docs, OptionalInt.of(1)), r.readAllTokens(OptionalInt.of(1)));
            }
        }
    }

    @Test
    void ownAllocatorIsClosed() throws IOException {
        List<int[]> docs = randomDocs(3, 5, 10, 100);
        Path p = dir.resolve("own.arrow");
        try (TokenDatasetWriter w = TokenDatasetWriter.create(p, TokenDatasetWriter.Options.DEFAULT)) {
            for (int[] d : docs) {
                w.add(d);
            }
        }
        try (TokenDatasetReader r = TokenDatasetReader.open(p)) {
            assertDocsEqual(docs, readDocs(r));
        }
    }

    /** A file laid out like a Hugging Face cache file with several columns: text, input_ids, attention_mask. */
    private Path hfLikeFile(String name, boolean withInputIds) throws IOException {
        Field item = new Field("item", FieldType.nullable(new ArrowType.Int(32, true)), null);
        List<Field> fields = new ArrayList<>();
        fields.add(new Field("text", FieldType.nullable(ArrowType.Utf8.INSTANCE), null));
        if (withInputIds) {
            fields.add(new Field("input_ids", FieldType.nullable(ArrowType.List.INSTANCE), List.of(item)));
        }
        fields.add(new Field("attention_mask", FieldType.nullable(ArrowType.List.INSTANCE), List.of(item)));
        Path p = dir.resolve(name);
        try (VectorSchemaRoot root = VectorSchemaRoot.create(new Schema(fields), allocator);
             FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
             ArrowStreamWriter w = new ArrowStreamWriter(root, null, ch)) {
            w.start();
            for (int batch = 0; batch < 2; batch++) {
                root.allocateNew();
                VarCharVector text = (VarCharVector) root.getVector("text");
                for (int row = 0; row < 3; row++) {
                    text.setSafe(row, ("doc " + batch + "/" + row).getBytes(StandardCharsets.UTF_8));
                    for (String col : withInputIds ? List.of("input_ids", "attention_mask") : List.of("attention_mask")) {
                        ListVector lv = (ListVector) root.getVector(col);
                        IntVector iv = (IntVector) lv.getDataVector();
                        int start = lv.startNewValue(row);
                        for (int j = 0; j <= row; j++) {
                            iv.setSafe(start + j, col.equals("input_ids") ? 100 * batch + 10 * row + j : 1);
                        }
                        lv.endValue(row, row + 1);
                    }
                }
                for (Field f : fields) {
                    root.getVector(f.getName()).setValueCount(3);
                }
                ((ListVector) root.getVector("attention_mask")).getDataVector().setValueCount(6);
                if (withInputIds) {
                    ((ListVector) root.getVector("input_ids")).getDataVector().setValueCount(6);
                }
                root.setRowCount(3);
                w.writeBatch();
            }
            w.end();
        }
        return p;
    }

    @Test
    void readsHuggingFaceLikeMultiColumnFile() throws IOException {
        Path p = hfLikeFile("hf.arrow", true);
        try (TokenDatasetReader r = TokenDatasetReader.open(p, "input_ids", allocator)) {
            assertEquals(List.of("text", "input_ids", "attention_mask"), r.columnNames());
            List<int[]> docs = readDocs(r);
            assertDocsEqual(List.of(new int[] {0}, new int[] {10, 11}, new int[] {20, 21, 22},
                    new int[] {100}, new int[] {110, 111}, new int[] {120, 121, 122}), docs);
        }
    }

    @Test
    void missingColumnNamesTheColumnsPresent() throws IOException {
        Path p = hfLikeFile("nocol.arrow", false);
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class,
                () -> TokenDatasetReader.open(p, "input_ids", allocator));
        assertTrue(e.getMessage().contains("no column 'input_ids'"), e.getMessage());
        assertTrue(e.getMessage().contains("text: Utf8"), e.getMessage());
        assertTrue(e.getMessage().contains("attention_mask"), e.getMessage());
        e = assertThrows(CheckpointFormatException.class, () -> TokenDatasetReader.open(p, "text", allocator));
        assertTrue(e.getMessage().contains("column 'text' has type Utf8"), e.getMessage());

        Path junk = dir.resolve("junk.arrow");
        Files.writeString(junk, "this is not an arrow file at all");
        assertThrows(CheckpointFormatException.class, () -> TokenDatasetReader.open(junk, "input_ids", allocator));
    }

    @Test
    void failedWriteLeavesNothing() throws IOException {
        Path p = dir.resolve("bad.arrow");
        assertThrows(IllegalStateException.class, () -> TokenDatasetWriter.write(p,
                TokenDatasetWriter.Options.DEFAULT.withBatchSize(2), allocator, w -> {
                    for (int i = 0; i < 5; i++) {
                        w.add(new int[] {i, i + 1});
                    }
                    throw new IllegalStateException("tokenizer exploded");
                }));
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(), files.toList(), "neither target nor temp file");
        }
        TokenDatasetWriter.Stats st = TokenDatasetWriter.write(p, TokenDatasetWriter.Options.DEFAULT, allocator,
                w -> w.add(new int[] {1, 2, 3}));
        assertEquals(new TokenDatasetWriter.Stats(1, 3), st);

        TokenDatasetWriter w = TokenDatasetWriter.create(dir.resolve("aborted.arrow"), TokenDatasetWriter.Options.DEFAULT, allocator);
        w.add(new int[] {4});
        w.abort();
        w.close();
        assertFalse(Files.exists(dir.resolve("aborted.arrow")));
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(p), files.toList());
        }
    }

    // ---- windows

    @Test
    void windowsFromReaderTokens() throws IOException {
        List<int[]> docs = randomDocs(4, 40, 20, 1000);
        Path p = write("w.arrow", docs, TokenDatasetWriter.Options.DEFAULT);
        int[] flat;
        try (TokenDatasetReader r = TokenDatasetReader.open(p, "input_ids", allocator);
             Tensor offHeap = r.readAllTokensOffHeap(OptionalInt.of(0))) {
            flat = r.readAllTokens(OptionalInt.of(0));
            TokenWindows heap = TokenWindows.of(flat, 16);
            TokenWindows off = TokenWindows.of(offHeap.segment(), 16);
            assertEquals((flat.length - 1) / 16, heap.windowCount());
            assertEquals(heap.windowCount(), off.windowCount());
            int[] a = new int[16], b = new int[16], c = new int[16], d = new int[16];
            for (int w = 0; w < heap.windowCount(); w++) {
                heap.window(w, a, 0, b, 0);
                off.window(w, c, 0, d, 0);
                assertArrayEquals(Arrays.copyOfRange(flat, w * 16, w * 16 + 16), a);
                assertArrayEquals(Arrays.copyOfRange(flat, w * 16 + 1, w * 16 + 17), b);
                assertArrayEquals(a, c);
                assertArrayEquals(b, d);
            }
        }
    }

    @Test
    void windowCountsAndShortData() {
        int[] t = new int[33];
        Arrays.setAll(t, i -> i);
        assertEquals(2, TokenWindows.of(t, 16).windowCount()); // 33 tokens: windows at 0 and 16 (needs token 32)
        assertEquals(1, TokenWindows.of(Arrays.copyOf(t, 32), 16).windowCount());
        assertEquals(1, TokenWindows.of(Arrays.copyOf(t, 17), 16).windowCount());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TokenWindows.of(Arrays.copyOf(t, 16), 16));
        assertTrue(e.getMessage().contains("shorter than one window"), e.getMessage());
        assertTrue(e.getMessage().contains("at least 17 tokens"), e.getMessage());
        TokenWindows strided = TokenWindows.of(MemorySegment.ofArray(t), 8, 4);
        assertEquals((33 - 9) / 4 + 1, strided.windowCount());
        int[] in = new int[8], tg = new int[8];
        strided.window(3, in, 0, tg, 0);
        assertEquals(12, in[0]);
        assertEquals(13, tg[0]);
        assertEquals(20, tg[7]);
    }

    @Test
    void splitsAreDeterministicAndDisjoint() {
        int[] t = new int[1001];
        TokenWindows w = TokenWindows.of(t, 10); // 100 windows
        TokenWindows.Split s = w.split(0.1);
        assertEquals(s, w.split(0.1));
        assertEquals(90, s.train().length);
        assertEquals(10, s.validation().length);
        assertEquals(90, s.validation()[0]);
        assertEquals(1, w.split(0.001).validation().length);
        assertEquals(0, w.split(0).validation().length);
        TokenWindows.Split every = w.splitEvery(10);
        assertEquals(10, every.validation().length);
        assertEquals(9, every.validation()[0]);
        assertEquals(99, every.validation()[9]);
        boolean[] seen = new boolean[100];
        for (int x : every.train()) {
            seen[x] = true;
        }
        for (int x : every.validation()) {
            assertFalse(seen[x]);
            seen[x] = true;
        }
        for (boolean b : seen) {
            assertTrue(b);
        }
        assertThrows(IllegalArgumentException.class, () -> TokenWindows.of(new int[3], 2).split(0.5));
    }

    @Test
    void batchesShuffleDeterministicallyPerEpoch() {
        int[] t = new int[10 * 8 + 1];
        Arrays.setAll(t, i -> i);
        TokenWindows w = TokenWindows.of(t, 8); // 10 windows
        int[] train = w.split(0.2).train(); // windows 0..7
        TokenWindows.Batches a = w.batches(train, 3, 42, true, true);
        TokenWindows.Batches b = w.batches(train, 3, 42, true, true);
        assertEquals(2, a.batchesPerEpoch()); // 8 / 3, last partial batch dropped
        List<int[]> epoch0 = new ArrayList<>();
        for (int i = 0; i < 6; i++) { // three epochs
            TokenWindows.Batch x = a.next();
            TokenWindows.Batch y = b.next();
            assertEquals(i / 2, x.epoch());
            assertEquals(i % 2, x.step());
            assertArrayEquals(x.windows(), y.windows());
            assertArrayEquals(x.inputs(), y.inputs());
            assertEquals(3 * 8, x.inputs().length);
            for (int k = 0; k < 3; k++) { // rows are the windows' tokens, targets shifted by one
                assertEquals(x.windows()[k] * 8, x.inputs()[k * 8]);
                assertEquals(x.windows()[k] * 8 + 8, x.targets()[k * 8 + 7]);
            }
            if (i < 2) {
                epoch0.add(x.windows());
            }
        }
        int[] o0 = a.order(0), o1 = a.order(1);
        assertNotEquals(Arrays.toString(o0), Arrays.toString(o1), "reshuffled each epoch");
        assertArrayEquals(train, Arrays.stream(o1).sorted().toArray(), "an epoch is a permutation");
        assertNotEquals(Arrays.toString(o0), Arrays.toString(w.batches(train, 3, 43, true, true).order(0)));
        assertArrayEquals(train, w.batches(train, 3, 42, false, true).order(5), "no shuffle keeps order");
        // resume
        TokenWindows.Batches c = w.batches(train, 3, 42, true, true);
        c.seek(0, 1);
        assertArrayEquals(epoch0.get(1), c.next().windows());
        assertEquals(1, c.epoch());
        // keep the last partial batch
        TokenWindows.Batches d = w.batches(train, 3, 42, true, false);
        assertEquals(3, d.batchesPerEpoch());
        assertEquals(2, d.get(0, 2).size());
        assertEquals(2 * 8, d.get(0, 2).inputs().length);
        assertThrows(IllegalArgumentException.class, () -> w.batches(train, 9, 1, true, true));
    }

    /** Files written by pyarrow: a multi-column stream file like a datasets cache, and a file-format large_list<int64>. */
    @Test
    void readsFilesWrittenByPyarrow() throws IOException {
        List<int[]> expected = List.of(new int[] {1, 2, 3}, new int[0], new int[] {4, 5},
                new int[] {100, 101, 102, 103, 104, 105, 106, 107, 108, 109});
        try (TokenDatasetReader r = TokenDatasetReader.open(SafetensorsTest.resource("py_stream.arrow"), "input_ids", allocator)) {
            assertEquals(TokenDatasetReader.Format.STREAM, r.format());
            assertEquals(List.of("text", "input_ids", "attention_mask"), r.columnNames());
            assertDocsEqual(expected, readDocs(r));
            assertEquals(new TokenDatasetWriter.Stats(4, 15), r.stats());
        }
        try (TokenDatasetReader r = TokenDatasetReader.open(SafetensorsTest.resource("py_file64.arrow"), "input_ids", allocator)) {
            assertEquals(TokenDatasetReader.Format.FILE, r.format());
            assertEquals(ArrowType.LargeList.INSTANCE, r.schema().getFields().get(0).getType());
            assertDocsEqual(expected, readDocs(r));
            assertArrayEquals(flatten(expected, OptionalInt.of(2)), r.readAllTokens(OptionalInt.of(2)));
        }
    }
}
