package dev.exeunt.model.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsTest {
    @TempDir
    Path dir;

    private record Spec(String name, SafetensorsDtype dtype, long[] shape) {}

    private static byte[] randomBytes(Random r, long n) {
        byte[] b = new byte[Math.toIntExact(n)];
        r.nextBytes(b);
        return b;
    }

    private static long bytes(SafetensorsDtype d, long[] shape) {
        long n = d.byteSize();
        for (long s : shape) {
            n *= s;
        }
        return n;
    }

    @Test
    void roundTripManyDtypesAndShapes() throws IOException {
        List<Spec> specs = List.of(
                new Spec("model.layers.0.weight", SafetensorsDtype.F32, new long[] {3, 5}),
                new Spec("half", SafetensorsDtype.F16, new long[] {7}),
                new Spec("brain", SafetensorsDtype.BF16, new long[] {2, 3, 2}),
                new Spec("double", SafetensorsDtype.F64, new long[] {1, 1}),
                new Spec("scalar", SafetensorsDtype.I64, new long[] {}),
                new Spec("i32", SafetensorsDtype.I32, new long[] {4}),
                new Spec("i16", SafetensorsDtype.I16, new long[] {3}),
                new Spec("i8", SafetensorsDtype.I8, new long[] {5}),
                new Spec("u8", SafetensorsDtype.U8, new long[] {9}),
                new Spec("mask", SafetensorsDtype.BOOL, new long[] {2, 2}),
                new Spec("empty", SafetensorsDtype.F32, new long[] {0}),
                new Spec("empty2d", SafetensorsDtype.BF16, new long[] {4, 0, 3}));
        Random r = new Random(1);
        Map<String, byte[]> content = new LinkedHashMap<>();
        SafetensorsWriter w = new SafetensorsWriter().metadata("format", "pt").metadata("note", "ünïcode ✓");
        for (Spec s : specs) {
            byte[] b = randomBytes(r, bytes(s.dtype(), s.shape()));
            content.put(s.name(), b);
            if (s.name().startsWith("i")) {
                w.add(s.name(), s.dtype(), s.shape(), out -> out.write(ByteBuffer.wrap(b))); // callback path
            } else {
                w.add(s.name(), s.dtype(), s.shape(), MemorySegment.ofArray(b));
            }
        }
        Path file = dir.resolve("model.safetensors");
        w.write(file);
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(file), files.toList(), "no temp file left behind");
        }

        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertEquals(Map.of("format", "pt", "note", "ünïcode ✓"), f.metadata());
            assertEquals(specs.size(), f.tensors().size());
            assertEquals(0, f.dataStart() % 8, "data region 8-byte aligned");
            long expectOffset = 0;
            for (SafetensorsTensorInfo t : f.tensors()) { // file order == name order, packed
                assertEquals(expectOffset, t.begin());
                expectOffset = t.end();
            }
            assertEquals(Files.size(file), f.dataStart() + expectOffset);
            for (Spec s : specs) {
                SafetensorsTensorInfo t = f.tensor(s.name());
                assertEquals(s.dtype(), t.dtype());
                assertArrayEquals(s.shape(), t.shape());
                assertArrayEquals(content.get(s.name()), f.data(s.name()).toArray(ValueLayout.JAVA_BYTE), s.name());
            }
            assertEquals(1, f.tensor("scalar").elementCount());
            assertEquals(0, f.tensor("scalar").rank());
            assertEquals(0, f.data("empty").byteSize());
            assertThrows(NoSuchElementException.class, () -> f.data("nope"));
            assertTrue(f.data("half").isReadOnly());
        }
    }

    @Test
    void headerIsByteExact() throws IOException {
        Path file = dir.resolve("tiny.safetensors");
        MemorySegment data = MemorySegment.ofArray(new float[] {1.0f, 2.0f});
        new SafetensorsWriter().metadata("format", "pt")
                .add("a", SafetensorsDtype.F32, new long[] {2}, data)
                .write(file);
        // JSON is 85 bytes, padded with 3 spaces to 88 so the data starts at 8 + 88 = 96.
        String json = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        ByteBuffer expected = ByteBuffer.allocate(104).order(ByteOrder.LITTLE_ENDIAN);
        expected.putLong(88).put(json.getBytes(StandardCharsets.US_ASCII)).put("   ".getBytes(StandardCharsets.US_ASCII));
        expected.put(new byte[] {0, 0, (byte) 0x80, 0x3F, 0, 0, 0, 0x40}); // 1.0f, 2.0f little-endian
        assertEquals(85, json.length());
        assertArrayEquals(expected.array(), Files.readAllBytes(file));
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertEquals(96, f.dataStart());
            assertEquals(2.0f, f.data("a").get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 4));
        }
    }

    @Test
    void emptyFileWithoutTensors() throws IOException {
        Path file = dir.resolve("none.safetensors");
        new SafetensorsWriter().write(file);
        assertEquals(16, Files.size(file)); // "{}" padded to 8
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertTrue(f.tensors().isEmpty());
            assertTrue(f.metadata().isEmpty());
        }
    }

    // ---- corruption

    private Path raw(String name, String json, int dataBytes) throws IOException {
        byte[] j = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + j.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(j.length).put(j);
        Path p = dir.resolve(name);
        Files.write(p, b.array());
        return p;
    }

    private CheckpointFormatException fails(Path p, String... fragments) {
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> SafetensorsFile.open(p).close());
        assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "'" + f + "' not in: " + e.getMessage());
        }
        assertEquals(p, e.file());
        return e;
    }

    @Test
    void tooShortForHeaderLength() throws IOException {
        Path p = dir.resolve("short.safetensors");
        Files.write(p, new byte[] {1, 2, 3, 4, 5});
        fails(p, "shorter than the 8-byte header length");
    }

    @Test
    void headerLengthBeyondFile() throws IOException {
        Path p = dir.resolve("long.safetensors");
        ByteBuffer b = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN).putLong(1000);
        Files.write(p, b.array());
        fails(p, "header length 1000", "beyond the end of the file");
        ByteBuffer neg = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN).putLong(-1);
        Files.write(p, neg.array());
        fails(p, "header length 18446744073709551615");
    }

    @Test
    void malformedJson() throws IOException {
        fails(raw("bad.safetensors", "{\"a\": {\"dtype\": ", 0), "malformed JSON");
        fails(raw("arr.safetensors", "[1,2]", 0), "not a JSON object");
        fails(raw("dup.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                + "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2), "malformed JSON", "a");
    }

    @Test
    void unknownDtype() throws IOException {
        fails(raw("dt.safetensors", "{\"w\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "tensor 'w'", "unknown dtype 'F17'");
    }

    @Test
    void badOffsets() throws IOException {
        fails(raw("neg.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8),
                "tensor 'w'", "non-negative");
        fails(raw("rev.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8),
                "tensor 'w'", "reversed");
        fails(raw("three.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8),
                "tensor 'w'", "data_offsets");
        fails(raw("range.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8),
                "tensor 'w'", "beyond the data region of 8 bytes");
        fails(raw("overlap.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "'b'", "overlaps", "'a'");
        fails(raw("shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8),
                "tensor 'w'", "shape");
    }

    @Test
    void byteSizeMismatch() throws IOException {
        fails(raw("size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12),
                "tensor 'w'", "byte size 8", "12");
    }

    @Test
    void truncatedDataRegion() throws IOException {
        Path file = dir.resolve("trunc.safetensors");
        new SafetensorsWriter()
                .add("first", SafetensorsDtype.F32, new long[] {4}, MemorySegment.ofArray(new float[4]))
                .add("second", SafetensorsDtype.F32, new long[] {4}, MemorySegment.ofArray(new float[4]))
                .write(file);
        byte[] all = Files.readAllBytes(file);
        for (int cut = 1; cut <= 16; cut++) { // every truncation of the data region is detected
            Path p = dir.resolve("cut" + cut + ".safetensors");
            Files.write(p, java.util.Arrays.copyOf(all, all.length - cut));
            fails(p, cut <= 16 ? "'second'" : "'first'", "file truncated?");
        }
        for (int len = 0; len < all.length - 32; len++) { // any cut inside the header: a format error, never something else
            Path p = dir.resolve("h" + len + ".safetensors");
            Files.write(p, java.util.Arrays.copyOf(all, len));
            assertThrows(CheckpointFormatException.class, () -> SafetensorsFile.open(p).close(), "cut at " + len);
        }
    }

    @Test
    void writerRejectsWrongSizesAndLeavesNoFile() throws IOException {
        SafetensorsWriter w = new SafetensorsWriter();
        assertThrows(IllegalArgumentException.class,
                () -> w.add("x", SafetensorsDtype.F32, new long[] {3}, MemorySegment.ofArray(new byte[8])));
        w.add("y", SafetensorsDtype.F32, new long[] {3}, out -> out.write(ByteBuffer.allocate(8)));
        Path target = dir.resolve("never.safetensors");
        assertThrows(IllegalStateException.class, () -> w.write(target));
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(), files.toList(), "neither target nor temp file");
        }
        assertThrows(IllegalArgumentException.class,
                () -> w.add("y", SafetensorsDtype.U8, new long[] {1}, MemorySegment.ofArray(new byte[1])));
        assertThrows(IllegalArgumentException.class,
                () -> w.add("__metadata__", SafetensorsDtype.U8, new long[] {1}, MemorySegment.ofArray(new byte[1])));
    }

    @Test
    void openInCallerArena() throws IOException {
        Path file = dir.resolve("arena.safetensors");
        new SafetensorsWriter().add("v", SafetensorsDtype.I32, new long[] {2}, MemorySegment.ofArray(new int[] {7, 9})).write(file);
        MemorySegment seg;
        try (Arena arena = Arena.ofConfined()) {
            try (SafetensorsFile f = SafetensorsFile.open(file, arena)) {
                seg = f.data("v");
            }
            assertEquals(9, seg.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 1),
                    "still mapped after the file object is closed");
        }
        assertFalse(seg.scope().isAlive());
    }

    // ---- sharded checkpoints

    private void shard(Path file, String... names) throws IOException {
        SafetensorsWriter w = new SafetensorsWriter().metadata("format", "pt");
        for (String n : names) {
            w.add(n, SafetensorsDtype.F32, new long[] {2}, MemorySegment.ofArray(new float[] {n.length(), n.hashCode()}));
        }
        w.write(file);
    }

    private static float first(MemorySegment s) {
        return s.get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
    }

    @Test
    void shardedWithIndex() throws IOException {
        Path ck = Files.createDirectory(dir.resolve("ck"));
        shard(ck.resolve("model-00001-of-00002.safetensors"), "embed", "layer.0");
        shard(ck.resolve("model-00002-of-00002.safetensors"), "layer.1", "lm_head.weight");
        Files.writeString(ck.resolve(SafetensorsCheckpoint.INDEX_FILE), """
                {"metadata": {"total_size": 32},
                 "weight_map": {"embed": "model-00001-of-00002.safetensors",
                                "layer.0": "model-00001-of-00002.safetensors",
                                "layer.1": "model-00002-of-00002.safetensors",
                                "lm_head.weight": "model-00002-of-00002.safetensors"}}""");
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ck)) {
            assertEquals(List.of("embed", "layer.0", "layer.1", "lm_head.weight"), new ArrayList<>(c.names()));
            assertEquals(2, c.files().size());
            assertEquals("32", c.indexMetadata().get("total_size"));
            assertEquals("model-00002-of-00002.safetensors", c.fileOf("layer.1").path().getFileName().toString());
            assertEquals(14f, first(c.data("lm_head.weight")));
            assertEquals(List.of("missing.a", "missing.b"), c.missing(List.of("embed", "missing.a", "missing.b")));
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class,
                    () -> c.requireAll(List.of("embed", "missing.a", "missing.b")));
            assertTrue(e.getMessage().contains("2 of 3 required tensors are missing: missing.a, missing.b"), e.getMessage());
            assertThrows(NoSuchElementException.class, () -> c.data("missing.a"));
        }
        // the same checkpoint opened through the index file itself
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ck.resolve(SafetensorsCheckpoint.INDEX_FILE))) {
            assertEquals(4, c.names().size());
        }
    }

    @Test
    void indexNamingAbsentTensorsOrFiles() throws IOException {
        Path ck = Files.createDirectory(dir.resolve("ck"));
        shard(ck.resolve("a.safetensors"), "x");
        Files.writeString(ck.resolve(SafetensorsCheckpoint.INDEX_FILE),
                "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"a.safetensors\"}}");
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> SafetensorsCheckpoint.open(ck));
        assertTrue(e.getMessage().contains("y (in a.safetensors)"), e.getMessage());

        Files.writeString(ck.resolve(SafetensorsCheckpoint.INDEX_FILE),
                "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"b.safetensors\"}}");
        e = assertThrows(CheckpointFormatException.class, () -> SafetensorsCheckpoint.open(ck));
        assertTrue(e.getMessage().contains("missing: [b.safetensors]"), e.getMessage());

        Files.writeString(ck.resolve(SafetensorsCheckpoint.INDEX_FILE), "{\"weight_map\": 3}");
        e = assertThrows(CheckpointFormatException.class, () -> SafetensorsCheckpoint.open(ck));
        assertTrue(e.getMessage().contains("weight_map"), e.getMessage());
    }

    @Test
    void directoryOfLooseFilesAndSingleFile() throws IOException {
        Path ck = Files.createDirectory(dir.resolve("loose"));
        shard(ck.resolve("b.safetensors"), "p", "q");
        shard(ck.resolve("a.safetensors"), "r");
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ck)) {
            assertEquals(List.of("p", "q", "r"), new ArrayList<>(c.names()));
            assertEquals("a.safetensors", c.files().get(0).path().getFileName().toString());
            assertEquals(Map.of("format", "pt"), c.metadata());
        }
        shard(ck.resolve("c.safetensors"), "q");
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> SafetensorsCheckpoint.open(ck));
        assertTrue(e.getMessage().contains("'q' is present in both b.safetensors and c.safetensors"), e.getMessage());

        shard(ck.resolve(SafetensorsCheckpoint.SINGLE_FILE), "only");
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(ck)) { // model.safetensors wins over loose files
            assertEquals(List.of("only"), new ArrayList<>(c.names()));
        }
        Path empty = Files.createDirectory(dir.resolve("empty"));
        e = assertThrows(CheckpointFormatException.class, () -> SafetensorsCheckpoint.open(empty));
        assertTrue(e.getMessage().contains("no model.safetensors.index.json"), e.getMessage());
    }

    static Path resource(String name) {
        try {
            return Path.of(SafetensorsTest.class.getResource("/io/" + name).toURI());
        } catch (java.net.URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A file written by Hugging Face's safetensors (numpy API): it orders data by dtype alignment, then name. */
    @Test
    void readsFileWrittenByReferenceImplementation() throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(resource("py.safetensors"))) {
            assertEquals(Map.of("format", "np"), f.metadata());
            assertEquals(List.of("w.i64", "w.scalar", "w.f32", "w.empty", "w.f16", "w.u8", "w.bool"),
                    f.tensors().stream().map(SafetensorsTensorInfo::name).toList());
            assertEquals(0, f.dataStart() % 8);
            assertArrayEquals(new long[] {2, 3}, f.tensor("w.i64").shape());
            assertArrayEquals(new long[] {0, 1, 2, 3, 4, 5},
                    f.data("w.i64").toArray(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN)));
            assertEquals(3.5, f.data("w.scalar").get(ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0));
            assertEquals(0, f.tensor("w.scalar").rank());
            assertEquals(SafetensorsDtype.F16, f.tensor("w.f16").dtype());
            assertEquals("a6c000b3fcbcdcb95bb8", java.util.HexFormat.of().formatHex(f.data("w.f16").toArray(ValueLayout.JAVA_BYTE)));
            assertArrayEquals(new long[] {0, 3}, f.tensor("w.empty").shape());
            assertEquals(0, f.data("w.empty").byteSize());
            assertArrayEquals(new byte[] {1, 0, 1}, f.data("w.bool").toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(new byte[] {0, 1, 2, 3, 4, 5, 6}, f.data("w.u8").toArray(ValueLayout.JAVA_BYTE));
            assertEquals(SafetensorsDtype.F32, f.tensor("w.f32").dtype());
            assertArrayEquals(new long[] {3, 4}, f.tensor("w.f32").shape());
        }
    }
}
