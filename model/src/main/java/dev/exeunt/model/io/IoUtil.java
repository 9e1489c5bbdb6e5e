package dev.exeunt.model.io;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/** Shared helpers for the file-format writers: chunked segment writes, byte counting, temp files. */
final class IoUtil {
    static final int CHUNK = 1 << 24;

    private IoUtil() {}

    static void writeFully(WritableByteChannel out, MemorySegment segment) throws IOException {
        long size = segment.byteSize();
        // heap segments over int[], float[], ... cannot be viewed as ByteBuffers: copy through a byte[]
        boolean viewable = segment.heapBase().map(o -> o instanceof byte[]).orElse(true);
        byte[] staging = viewable ? null : new byte[(int) Math.min(CHUNK, size)];
        for (long pos = 0; pos < size; pos += CHUNK) {
            int n = (int) Math.min(CHUNK, size - pos);
            ByteBuffer chunk;
            if (viewable) {
                chunk = segment.asSlice(pos, n).asByteBuffer();
            } else {
                MemorySegment.copy(segment, pos, MemorySegment.ofArray(staging), 0, n);
                chunk = ByteBuffer.wrap(staging, 0, n);
            }
            while (chunk.hasRemaining()) {
                out.write(chunk);
            }
        }
    }

    static void writeFully(WritableByteChannel out, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) {
            out.write(buffer);
        }
    }

    static void writeZeros(WritableByteChannel out, long count) throws IOException {
        if (count > 0) {
            writeFully(out, ByteBuffer.allocate(Math.toIntExact(count)));
        }
    }

    /** Temp file next to {@code target} (same directory, so the final rename can be atomic). */
    static Path tempFileFor(Path target) throws IOException {
        Path abs = target.toAbsolutePath();
        Path dir = abs.getParent();
        Files.createDirectories(dir);
        return Files.createTempFile(dir, "." + abs.getFileName() + ".", ".tmp");
    }

    /** Replaces {@code target} by {@code temp} atomically (falls back to a plain replace where the file system cannot). */
    static void commit(Path temp, Path target) throws IOException {
        try {
            Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // best effort
        }
    }

    /** Runs a data source and checks that it wrote exactly {@code expected} bytes. */
    static void writeSource(FileChannel ch, TensorDataSource source, long expected, Path file, String what)
            throws IOException {
        CountingChannel counting = new CountingChannel(ch);
        source.writeTo(counting);
        if (counting.count != expected) {
            throw new IllegalStateException(file + ": data source for " + what + " wrote " + counting.count
                    + " bytes, expected " + expected);
        }
    }

    /** A channel wrapper counting the bytes written through it (close is ignored). */
    static final class CountingChannel implements WritableByteChannel {
        private final WritableByteChannel inner;
        long count;

        CountingChannel(WritableByteChannel inner) {
            this.inner = inner;
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            int n = inner.write(src);
            count += n;
            return n;
        }

        @Override
        public boolean isOpen() {
            return inner.isOpen();
        }

        @Override
        public void close() {}
    }

    static String shapeString(long[] shape) {
        return java.util.Arrays.toString(shape);
    }
}
