package dev.exeunt.model.io;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.testing.LeakCheck;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Files whose size fields lie, each refused before anything is allocated, with a
 * {@link CheckpointFormatException} naming the file, the field and both numbers. The first is the
 * issue's case: a small Arrow file whose row count says 2^30 made {@code eval} take 13 GB.
 */
@ExtendWith(LeakCheck.class)
class HostileSizesTest {
    @TempDir
    Path dir;

    /** A one-batch stream file of 37 documents, with every int64 equal to 37 in the batch's metadata set to {@code rows}. */
    private Path arrowWithRowCount(long rows) throws IOException {
        Path p = dir.resolve("rows.arrow");
        try (TokenDatasetWriter w = TokenDatasetWriter.create(p, TokenDatasetWriter.Options.DEFAULT)) {
            for (int d = 0; d < 37; d++) w.add(new int[] {d, d + 1, d + 2});
        }
        byte[] b = Files.readAllBytes(p);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        int pos = 0;
        while (true) {
            if (bb.getInt(pos) == -1) pos += 4;
            int len = bb.getInt(pos);
            pos += 4;
            Message m = Message.getRootAsMessage(ByteBuffer.wrap(b, pos, len).slice());
            if (m.headerType() == MessageHeader.RecordBatch) {
                int patched = 0;
                for (int i = pos; i + 8 <= pos + len; i++) {
                    if (bb.getLong(i) == 37) {
                        bb.putLong(i, rows);
                        patched++;
                    }
                }
                assertTrue(patched >= 1, "row count found in the batch header");
                break;
            }
            pos += len + (int) m.bodyLength();
        }
        Files.write(p, b);
        return p;
    }

    @Test
    void arrowRowCountOfTwoToTheThirtyIsRefusedBeforeReading() throws IOException {
        Path p = arrowWithRowCount(1L << 30);
        long peakBefore = HostMemory.allocator().getPeakMemoryAllocation();
        // refused on open: the layout check walks every message before Arrow reads one
        var e = assertThrows(CheckpointFormatException.class, () -> TokenDatasetReader.open(p).close());
        assertTrue(e.getMessage().startsWith(p + ": "), e.getMessage());
        assertTrue(e.getMessage().contains("row count 1073741824 is impossible for a record batch body of"), e.getMessage());
        assertTrue(HostMemory.allocator().getPeakMemoryAllocation() - peakBefore < (1 << 20),
                "nothing near the claimed size was allocated");
    }

    @Test
    void arrowRowCountAboveTheBatchsRealRowsIsRefused() throws IOException {
        // 38 rows claimed for 37: within the body, so it passes the layout check; the offsets check catches it
        Path p = arrowWithRowCount(38);
        try (TokenDatasetReader r = TokenDatasetReader.open(p)) {
            var e = assertThrows(CheckpointFormatException.class, () -> r.readAllTokens(OptionalInt.empty()));
            assertTrue(e.getMessage().contains("38"), e.getMessage());
        }
    }

    @Test
    void arrowMessageLengthsBeyondTheFileAreRefused() throws IOException {
        Path p = dir.resolve("len.arrow");
        try (TokenDatasetWriter w = TokenDatasetWriter.create(p, TokenDatasetWriter.Options.DEFAULT)) {
            w.add(new int[] {1, 2, 3});
        }
        byte[] b = Files.readAllBytes(p);
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(4, 0x7fff_ffff); // the schema's metadata length
        Files.write(p, b);
        var e = assertThrows(CheckpointFormatException.class, () -> TokenDatasetReader.open(p).close());
        assertTrue(e.getMessage().contains("metadata length 2147483647 goes beyond the end of the file"), e.getMessage());
    }

    @Test
    void ggufCountsBeyondTheFileAreRefused() throws IOException {
        Path p = dir.resolve("m.gguf");
        new GgufWriter().putString("general.name", "x")
                .addTensor("w", GgmlType.F32, new long[] {2}, MemorySegment.ofArray(new float[] {1, 2})).write(p);
        byte[] valid = Files.readAllBytes(p);
        // header: magic, u32 version, u64 tensor count (offset 8), u64 metadata count (offset 16)
        assertGgufRefused(p, valid, 8, 1L << 40, "tensor count 1099511627776 is impossible for a file of " + valid.length);
        assertGgufRefused(p, valid, 16, -1L, "metadata count 18446744073709551615 is impossible");
        // first key's length (offset 24): 2^62
        assertGgufRefused(p, valid, 24, 1L << 62, "needs 4611686018427387904 bytes at offset 32 but the file has " + valid.length);
    }

    private void assertGgufRefused(Path p, byte[] valid, int at, long value, String expected) throws IOException {
        byte[] b = valid.clone();
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putLong(at, value);
        Files.write(p, b);
        var e = assertThrows(CheckpointFormatException.class, () -> GgufFile.open(p).close());
        assertTrue(e.getMessage().startsWith(p + ": "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }

    @Test
    void safetensorsHeaderLengthBeyondTheFileIsRefused() throws IOException {
        Path p = dir.resolve("m.safetensors");
        new SafetensorsWriter().add("w", SafetensorsDtype.F32, new long[] {2}, MemorySegment.ofArray(new float[] {1, 2})).write(p);
        byte[] b = Files.readAllBytes(p);
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 1L << 40);
        Files.write(p, b);
        var e = assertThrows(CheckpointFormatException.class, () -> SafetensorsFile.open(p).close());
        assertTrue(e.getMessage().contains("header length 1099511627776 goes beyond the end of the file (" + b.length + " bytes)"),
                e.getMessage());
    }

    @Test
    void safetensorsHeaderInAnotherEncodingIsRefused() throws IOException {
        Path p = dir.resolve("utf32.safetensors");
        byte[] json = "{}".getBytes(java.nio.charset.Charset.forName("UTF-32BE"));
        ByteBuffer bb = ByteBuffer.allocate(8 + json.length).order(ByteOrder.LITTLE_ENDIAN);
        bb.putLong(json.length).put(json);
        Files.write(p, bb.array());
        var e = assertThrows(CheckpointFormatException.class, () -> SafetensorsFile.open(p).close());
        assertTrue(e.getMessage().contains("not valid UTF-8") || e.getMessage().contains("malformed JSON"), e.getMessage());
    }

    @Test
    void emptyTensorWithADimensionBeyondIntIsAFormatError() throws IOException {
        // 3e9 x 0 elements: a valid, empty safetensors tensor that no Tensor shape can hold
        Path p = dir.resolve("wide.safetensors");
        new SafetensorsWriter().add("w", SafetensorsDtype.F32, new long[] {3_000_000_000L, 0}, MemorySegment.ofArray(new float[0]))
                .write(p);
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(p)) {
            var e = assertThrows(CheckpointFormatException.class, () -> TensorFiles.load(c, "w", Device.CPU));
            assertTrue(e.getMessage().contains("dimension 0 = 3000000000"), e.getMessage());
        }
    }
}
