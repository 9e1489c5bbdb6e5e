package dev.exeunt.model.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GgufTest {
    @TempDir
    Path dir;

    private static Map<String, GgufValue> allTypes() {
        Map<String, GgufValue> m = new LinkedHashMap<>();
        m.put("general.architecture", GgufValue.string("llama"));
        m.put("t.u8", GgufValue.uint8(255));
        m.put("t.i8", GgufValue.int8(-128));
        m.put("t.u16", GgufValue.uint16(65535));
        m.put("t.i16", GgufValue.int16(-32768));
        m.put("t.u32", GgufValue.uint32(4_000_000_000L));
        m.put("t.i32", GgufValue.int32(-7));
        m.put("t.u64", GgufValue.uint64(-1L));
        m.put("t.i64", GgufValue.int64(Long.MIN_VALUE));
        m.put("t.f32", GgufValue.float32(1.5e-5f));
        m.put("t.f64", GgufValue.float64(Math.PI));
        m.put("t.bool", GgufValue.bool(true));
        m.put("t.str", GgufValue.string("héllo ✓ \u0000 end"));
        m.put("t.empty_str", GgufValue.string(""));
        m.put("t.a_u8", GgufValue.array(GgufType.UINT8, new byte[] {1, (byte) 200}));
        m.put("t.a_i8", GgufValue.array(GgufType.INT8, new byte[] {-1, 2}));
        m.put("t.a_u16", GgufValue.array(GgufType.UINT16, new short[] {(short) 60000, 3}));
        m.put("t.a_i16", GgufValue.array(GgufType.INT16, new short[] {-3, 4}));
        m.put("t.a_u32", GgufValue.array(GgufType.UINT32, new int[] {-1, 5}));
        m.put("t.a_i32", GgufValue.int32Array(-5, 6, 7));
        m.put("t.a_u64", GgufValue.array(GgufType.UINT64, new long[] {Long.MAX_VALUE, 8}));
        m.put("t.a_i64", GgufValue.array(GgufType.INT64, new long[] {-9, 10}));
        m.put("t.a_f32", GgufValue.float32Array(0.25f, Float.NaN, Float.NEGATIVE_INFINITY));
        m.put("t.a_f64", GgufValue.array(GgufType.FLOAT64, new double[] {1e300, -0.0}));
        m.put("t.a_bool", GgufValue.array(GgufType.BOOL, new boolean[] {true, false, true}));
        m.put("t.a_str", GgufValue.stringArray(List.of("a", "", "ü b")));
        m.put("t.a_empty", GgufValue.array(GgufType.FLOAT32, new float[0]));
        m.put("t.a_nested", GgufValue.nestedArray(
                GgufValue.int32Array(1, 2),
                GgufValue.stringArray(List.of("x")),
                GgufValue.nestedArray(GgufValue.array(GgufType.BOOL, new boolean[] {false})),
                GgufValue.array(GgufType.UINT8, new byte[0])));
        return m;
    }

    private record T(String name, GgmlType type, long[] dims) {}

    private static final List<T> TENSORS = List.of(
            new T("token_embd.weight", GgmlType.F32, new long[] {3, 2}),
            new T("f16", GgmlType.F16, new long[] {5}),
            new T("q8", GgmlType.Q8_0, new long[] {64, 2}),     // 4 blocks of 34 bytes
            new T("q4", GgmlType.Q4_0, new long[] {32, 1, 3}),  // 3 blocks of 18 bytes
            new T("bf16", GgmlType.BF16, new long[] {2, 2, 2, 2}),
            new T("i8", GgmlType.I8, new long[] {7}),
            new T("i32", GgmlType.I32, new long[] {1}),
            new T("q4k", GgmlType.Q4_K, new long[] {256}));

    private Map<String, byte[]> writeFile(Path file, Integer alignment) throws IOException {
        GgufWriter w = new GgufWriter();
        allTypes().forEach(w::put);
        if (alignment != null) {
            w.alignment(alignment);
        }
        Random r = new Random(7);
        Map<String, byte[]> data = new LinkedHashMap<>();
        for (T t : TENSORS) {
            byte[] b = new byte[Math.toIntExact(t.type().byteSize(t.dims()))];
            r.nextBytes(b);
            data.put(t.name(), b);
            if (t.name().startsWith("i")) {
                w.addTensor(t.name(), t.type(), t.dims(), out -> out.write(ByteBuffer.wrap(b)));
            } else {
                w.addTensor(t.name(), t.type(), t.dims(), MemorySegment.ofArray(b));
            }
        }
        w.write(file);
        return data;
    }

    @Test
    void roundTripAllMetadataTypesAndTensors() throws IOException {
        for (Integer alignment : Arrays.asList(null, 64, 1, 4096)) {
            Path file = dir.resolve("m" + alignment + ".gguf");
            Map<String, byte[]> data = writeFile(file, alignment);
            try (GgufFile g = GgufFile.open(file)) {
                long al = alignment == null ? 32 : alignment;
                assertEquals(3, g.version());
                assertEquals(al, g.alignment());
                Map<String, GgufValue> expected = allTypes();
                if (alignment != null) {
                    expected.put("general.alignment", GgufValue.uint32(alignment));
                }
                assertEquals(expected, g.metadata());
                assertEquals(new ArrayList<>(expected.keySet()), new ArrayList<>(g.metadata().keySet()), "file order");
                assertEquals(0, g.dataOffset() % al, "data section aligned");
                assertEquals(TENSORS.size(), g.tensors().size());
                long expectOffset = 0;
                for (int i = 0; i < TENSORS.size(); i++) {
                    T t = TENSORS.get(i);
                    GgufTensorInfo info = g.tensors().get(i);
                    assertEquals(t.name(), info.name());
                    assertEquals(t.type(), info.type());
                    assertArrayEquals(t.dims(), info.dims());
                    assertEquals(expectOffset, info.offset(), "offsets are running sums of padded sizes");
                    assertEquals(0, (g.dataOffset() + info.offset()) % al);
                    expectOffset += GgufFile.alignUp(info.byteSize(), al);
                    MemorySegment seg = g.data(t.name());
                    assertArrayEquals(data.get(t.name()), seg.toArray(ValueLayout.JAVA_BYTE), t.name());
                }
                assertEquals(Files.size(file), g.dataOffset() + expectOffset);
                assertEquals(136, g.tensor("q8").byteSize());
                assertEquals(54, g.tensor("q4").byteSize());
                assertArrayEquals(new long[] {3, 1, 32}, g.tensor("q4").shape());
            }
        }
    }

    @Test
    void accessors() {
        Map<String, GgufValue> m = allTypes();
        assertEquals(255, m.get("t.u8").asLong());
        assertEquals(4_000_000_000L, m.get("t.u32").asLong());
        assertEquals(-1L, m.get("t.u64").asLong());
        assertThrows(ArithmeticException.class, () -> m.get("t.u64").asInt());
        assertEquals(-7, m.get("t.i32").asInt());
        assertArrayEquals(new long[] {1, 200}, m.get("t.a_u8").asLongArray());
        assertArrayEquals(new long[] {60000, 3}, m.get("t.a_u16").asLongArray());
        assertArrayEquals(new long[] {4294967295L, 5}, m.get("t.a_u32").asLongArray());
        assertThrows(ArithmeticException.class, () -> m.get("t.a_u32").asIntArray());
        assertArrayEquals(new int[] {-5, 6, 7}, m.get("t.a_i32").asIntArray());
        assertEquals(List.of("a", "", "ü b"), m.get("t.a_str").asStringList());
        assertEquals(4, m.get("t.a_nested").asArrayList().size());
        assertEquals(Math.PI, m.get("t.f64").asDouble());
        assertThrows(IllegalStateException.class, () -> m.get("t.str").asLong());
        assertThrows(IllegalArgumentException.class, () -> GgufValue.uint8(256));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.array(GgufType.INT32, new long[1]));
    }

    @Test
    void byteExactTinyFile() throws IOException {
        Path file = dir.resolve("tiny.gguf");
        new GgufWriter().putUint32("a", 7)
                .addTensor("t", GgmlType.F32, new long[] {2}, MemorySegment.ofArray(new float[] {1f, 2f}))
                .write(file);
        ByteBuffer e = ByteBuffer.allocate(128).order(ByteOrder.LITTLE_ENDIAN);
        e.put("GGUF".getBytes(StandardCharsets.US_ASCII)).putInt(3).putLong(1).putLong(1); // header: 24 bytes
        e.putLong(1).put((byte) 'a').putInt(4).putInt(7);                                   // kv: 17 bytes -> 41
        e.putLong(1).put((byte) 't').putInt(1).putLong(2).putInt(0).putLong(0);             // tensor info: 33 -> 74
        e.position(96);                                                                      // zero padding to 32
        e.putFloat(1f).putFloat(2f);                                                         // data, then pad to 128
        assertArrayEquals(e.array(), Files.readAllBytes(file));
        try (GgufFile g = GgufFile.open(file)) {
            assertEquals(96, g.dataOffset());
            assertEquals(2f, g.data("t").get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 4));
        }
    }

    @Test
    void tokenizerMetadata() throws IOException {
        Path file = dir.resolve("tok.gguf");
        List<String> tokens = List.of("<unk>", "<s>", "</s>", "▁a", "b", "▁ab");
        new GgufWriter()
                .putString("tokenizer.ggml.model", "gpt2")
                .putString("tokenizer.ggml.pre", "llama-bpe")
                .put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens))
                .put("tokenizer.ggml.scores", GgufValue.float32Array(0, 0, 0, -1, -2, -3))
                .put("tokenizer.ggml.token_type", GgufValue.int32Array(2, 3, 3, 1, 1, 1))
                .put("tokenizer.ggml.merges", GgufValue.stringArray(List.of("▁a b")))
                .putUint32("tokenizer.ggml.bos_token_id", 1)
                .putUint32("tokenizer.ggml.eos_token_id", 2)
                .putUint32("tokenizer.ggml.unknown_token_id", 0)
                .putUint32("tokenizer.ggml.seperator_token_id", 2)
                .putBool("tokenizer.ggml.add_bos_token", true)
                .putString("tokenizer.chat_template", "{{ messages }}")
                .write(file);
        try (GgufFile g = GgufFile.open(file)) {
            GgufTokenizerData t = g.tokenizer();
            assertEquals("gpt2", t.model());
            assertEquals(Optional.of("llama-bpe"), t.pre());
            assertEquals(tokens, t.tokens());
            assertArrayEquals(new float[] {0, 0, 0, -1, -2, -3}, t.scores());
            assertArrayEquals(new int[] {2, 3, 3, 1, 1, 1}, t.tokenTypes());
            assertEquals(List.of("▁a b"), t.merges());
            assertEquals(OptionalInt.of(1), t.bosId());
            assertEquals(OptionalInt.of(2), t.eosId());
            assertEquals(OptionalInt.of(0), t.unknownId());
            assertEquals(OptionalInt.of(2), t.separatorId());
            assertEquals(OptionalInt.empty(), t.paddingId());
            assertEquals(Optional.of(true), t.addBos());
            assertEquals(Optional.empty(), t.addEos());
            assertEquals(Optional.of("{{ messages }}"), t.chatTemplate());
        }
        Path bad = dir.resolve("badtok.gguf");
        new GgufWriter().putString("tokenizer.ggml.model", "llama")
                .put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens))
                .put("tokenizer.ggml.scores", GgufValue.float32Array(0, 1))
                .write(bad);
        try (GgufFile g = GgufFile.open(bad)) {
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class, g::tokenizer);
            assertTrue(e.getMessage().contains("has 2 entries but there are 6 tokens"), e.getMessage());
        }
        try (GgufFile g = GgufFile.open(dir.resolve("tok.gguf"))) {
            assertTrue(g.tensors().isEmpty());
        }
    }

    // ---- corruption

    private Path patched(String name, byte[] bytes) throws IOException {
        Path p = dir.resolve(name);
        Files.write(p, bytes);
        return p;
    }

    private static CheckpointFormatException fails(Path p, String... fragments) {
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> GgufFile.open(p).close());
        assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "'" + f + "' not in: " + e.getMessage());
        }
        return e;
    }

    /** Offset of the u32 type field of a tensor info (just after its name and dims). */
    private static int typeFieldOffset(byte[] file, String name, int nDims) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer lenPrefix = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(n.length);
        byte[] needle = new byte[8 + n.length];
        System.arraycopy(lenPrefix.array(), 0, needle, 0, 8);
        System.arraycopy(n, 0, needle, 8, n.length);
        int last = -1;
        for (int i = 0; i + needle.length <= file.length; i++) {
            if (Arrays.equals(file, i, i + needle.length, needle, 0, needle.length)) {
                last = i; // tensor infos come after the metadata
            }
        }
        return last + needle.length + 4 + 8 * nDims;
    }

    private static void putU32(byte[] b, int off, int v) {
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(off, v);
    }

    private static void putU64(byte[] b, int off, long v) {
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putLong(off, v);
    }

    @Test
    void badMagicAndVersion() throws IOException {
        Path good = dir.resolve("good.gguf");
        writeFile(good, null);
        byte[] b = Files.readAllBytes(good);
        byte[] m = b.clone();
        m[0] = 'X';
        fails(patched("magic.gguf", m), "bad magic 'XGUF'", "not a GGUF file");
        fails(patched("tiny.gguf", new byte[] {'G', 'G'}), "not a GGUF file");
        for (int v : new int[] {1, 4, 0x03000000}) {
            byte[] x = b.clone();
            putU32(x, 4, v);
            fails(patched("v" + v + ".gguf", x), "unsupported GGUF version");
        }
        byte[] v2 = b.clone();
        putU32(v2, 4, 2);
        try (GgufFile g = GgufFile.open(patched("v2.gguf", v2))) {
            assertEquals(2, g.version());
            assertEquals(TENSORS.size(), g.tensors().size());
        }
    }

    @Test
    void everyTruncationIsAFormatError() throws IOException {
        Path good = dir.resolve("good.gguf");
        writeFile(good, null);
        byte[] b = Files.readAllBytes(good);
        long needed;
        try (GgufFile g = GgufFile.open(good)) {
            GgufTensorInfo last = g.tensors().get(g.tensors().size() - 1);
            needed = g.dataOffset() + last.offset() + last.byteSize();
        }
        Path p = dir.resolve("cut.gguf");
        for (int len = 0; len < needed; len += (len < 1200 ? 1 : 7)) {
            Files.write(p, Arrays.copyOf(b, len));
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> GgufFile.open(p).close(),
                    "cut at " + len);
            assertTrue(e.getMessage().contains("truncated") || e.getMessage().contains("not a GGUF file")
                    || e.getMessage().contains("impossible"), "cut at " + len + ": " + e.getMessage());
        }
        Files.write(p, Arrays.copyOf(b, (int) needed)); // trailing padding of the last tensor is optional
        try (GgufFile g = GgufFile.open(p)) {
            assertEquals(TENSORS.size(), g.tensors().size());
        }
    }

    @Test
    void badOffsetsTypesAndValues() throws IOException {
        Path good = dir.resolve("good.gguf");
        writeFile(good, null);
        byte[] b = Files.readAllBytes(good);
        int typeOff = typeFieldOffset(b, "f16", 1);
        assertEquals(GgmlType.F16.id(), ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getInt(typeOff));

        byte[] x = b.clone();
        putU64(x, typeOff + 4, 1L << 40); // aligned offset far beyond the file
        fails(patched("range.gguf", x), "tensor 'f16'", "beyond the end of the file");
        x = b.clone();
        putU64(x, typeOff + 4, 33); // not a multiple of 32
        fails(patched("unaligned.gguf", x), "tensor 'f16'", "not a multiple of the alignment 32");
        x = b.clone();
        putU64(x, typeOff + 4, 0); // same offset as the first tensor
        fails(patched("overlap.gguf", x), "overlaps");
        x = b.clone();
        putU32(x, typeOff, 5); // removed type id
        fails(patched("type5.gguf", x), "unknown ggml type 5 for tensor 'f16'");
        x = b.clone();
        putU32(x, typeOff, GgmlType.Q8_0.id()); // ne[0] = 5 is not a multiple of 32
        fails(patched("block.gguf", x), "tensor 'f16'", "not a multiple of the Q8_0 block size 32");
        x = b.clone();
        putU32(x, typeOff, GgmlType.Q8_1.id()); // listed, but data unsupported
        try (GgufFile g = GgufFile.open(patched("q81.gguf", x))) {
            assertEquals(GgmlType.Q8_1, g.tensor("f16").type());
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> g.data("f16"));
            assertTrue(e.getMessage().contains("unsupported ggml type 9 (Q8_1) for tensor 'f16'"), e.getMessage());
            assertEquals(34 * 4, g.data("q8").byteSize());
        }
        x = b.clone();
        putU32(x, typeOff - 12, 5); // n_dims
        fails(patched("ndims.gguf", x), "tensor 'f16' has 5 dimensions");

        // metadata: the first key is general.architecture (string), the second t.u8
        int firstType = 24 + 8 + "general.architecture".length();
        x = b.clone();
        putU32(x, firstType, 13);
        fails(patched("vtype.gguf", x), "unknown value type 13", "general.architecture");
        int boolValue = indexAfterKey(b, "t.bool") + 4;
        x = b.clone();
        x[boolValue] = 2;
        fails(patched("bool.gguf", x), "invalid bool byte 2", "t.bool");
        int strLen = indexAfterKey(b, "t.str") + 4;
        x = b.clone();
        putU64(x, strLen, 1L << 50);
        fails(patched("strlen.gguf", x), "truncated", "t.str");
        int arrLen = indexAfterKey(b, "t.a_i32") + 8;
        x = b.clone();
        putU64(x, arrLen, 1L << 40);
        fails(patched("arrlen.gguf", x), "truncated", "t.a_i32", "1099511627776 elements");
        x = b.clone();
        putU64(x, 16, 1L << 60); // metadata count
        fails(patched("kvcount.gguf", x), "metadata count", "impossible");
        // duplicate key: rename t.i8 to t.u8
        x = b.clone();
        int k = indexAfterKey(b, "t.i8") - 2;
        x[k] = 'u';
        fails(patched("dupkey.gguf", x), "duplicate metadata key 't.u8'");
    }

    @Test
    void badAlignment() throws IOException {
        Path good = dir.resolve("a64.gguf");
        new GgufWriter().alignment(64).putUint32("x", 1)
                .addTensor("t", GgmlType.F32, new long[] {4}, MemorySegment.ofArray(new float[4])).write(good);
        byte[] b = Files.readAllBytes(good);
        int v = indexAfterKey(b, "general.alignment") + 4;
        byte[] x = b.clone();
        putU32(x, v, 48);
        fails(patched("a48.gguf", x), "general.alignment = 48 is not a power of two");
        x = b.clone();
        putU32(x, v - 4, GgufType.INT32.id());
        fails(patched("aint.gguf", x), "general.alignment must be a UINT32");
        assertThrows(IllegalArgumentException.class, () -> new GgufWriter().alignment(24));
    }

    @Test
    void writerValidation() {
        GgufWriter w = new GgufWriter();
        assertThrows(IllegalArgumentException.class,
                () -> w.addTensor("q", GgmlType.Q8_0, new long[] {16}, MemorySegment.ofArray(new byte[17])));
        assertThrows(IllegalArgumentException.class,
                () -> w.addTensor("f", GgmlType.F32, new long[] {2}, MemorySegment.ofArray(new byte[4])));
        assertThrows(IllegalArgumentException.class,
                () -> w.addTensor("q81", GgmlType.Q8_1, new long[] {256}, out -> { }));
        assertThrows(IllegalArgumentException.class,
                () -> w.addTensor("d", GgmlType.F32, new long[] {1, 1, 1, 1, 1}, out -> { }));
    }

    /** Index just after the bytes of a metadata key (where its u32 type is). */
    private static int indexAfterKey(byte[] file, String key) {
        byte[] k = key.getBytes(StandardCharsets.UTF_8);
        for (int i = 8; i + k.length <= file.length; i++) {
            if (Arrays.equals(file, i, i + k.length, k, 0, k.length)
                    && ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN).getLong(i - 8) == k.length) {
                return i + k.length;
            }
        }
        throw new AssertionError("key not found: " + key);
    }

    /** A file written by llama.cpp's gguf-py (GGUFWriter). */
    @Test
    void readsFileWrittenByGgufPy() throws IOException {
        try (GgufFile g = GgufFile.open(SafetensorsTest.resource("py.gguf"))) {
            assertEquals(3, g.version());
            assertEquals(32, g.alignment());
            assertEquals(0, g.dataOffset() % 32);
            Map<String, GgufValue> m = g.metadata();
            assertEquals(GgufValue.string("llama"), m.get("general.architecture"));
            assertEquals(GgufValue.uint32(2), m.get("llama.block_count"));
            assertEquals(GgufValue.float32(10000f), m.get("llama.rope.freq_base"));
            assertEquals(GgufValue.bool(true), m.get("x.flag"));
            assertEquals(GgufValue.string("héllo"), m.get("x.s"));
            assertEquals(GgufValue.int32Array(1, 2, 3), m.get("x.arr"));
            assertEquals(GgufValue.stringArray(List.of("a", "bb")), m.get("x.strs"));
            assertEquals(GgufValue.int64(-5), m.get("x.i64"));
            GgufTokenizerData tok = g.tokenizer();
            assertEquals("gpt2", tok.model());
            assertEquals(List.of("a", "b", "ab"), tok.tokens());
            assertEquals(OptionalInt.of(2), tok.eosId());
            assertEquals(List.of("t.f32", "t.f16", "t.q8"), g.tensors().stream().map(GgufTensorInfo::name).toList());
            assertArrayEquals(new long[] {3, 2}, g.tensor("t.f32").dims()); // numpy (2, 3) -> ne = [3, 2]
            assertArrayEquals(new long[] {32, 2}, g.tensor("t.q8").dims());
            assertEquals(GgmlType.Q8_0, g.tensor("t.q8").type());
            assertEquals(68, g.data("t.q8").byteSize());
            assertEquals("18f2a1be3dc1d23e1471853f979e03be",
                    java.util.HexFormat.of().formatHex(g.data("t.f32").asSlice(0, 16).toArray(ValueLayout.JAVA_BYTE)));
            assertEquals("3ec412cd550517fa2c702760f2ac7eae",
                    java.util.HexFormat.of().formatHex(g.data("t.q8").asSlice(0, 16).toArray(ValueLayout.JAVA_BYTE)));
        }
    }
}
