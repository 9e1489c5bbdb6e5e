package dev.exeunt.model.io;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.WritableByteChannel;

/**
 * Streams the raw bytes of one tensor into a file being written. The writer checks that exactly the
 * declared number of bytes was written.
 */
@FunctionalInterface
public interface TensorDataSource {
    void writeTo(WritableByteChannel out) throws IOException;

    /** A source copying the bytes of a segment (in chunks, so segments over 2 GiB work). */
    static TensorDataSource of(MemorySegment segment) {
        return out -> IoUtil.writeFully(out, segment);
    }

    /** A source copying the remaining bytes of a buffer (the buffer itself is not modified). */
    static TensorDataSource of(ByteBuffer buffer) {
        return out -> IoUtil.writeFully(out, MemorySegment.ofBuffer(buffer));
    }
}
