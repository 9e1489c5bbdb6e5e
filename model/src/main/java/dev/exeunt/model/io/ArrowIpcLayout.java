package dev.exeunt.model.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.flatbuf.Block;
import org.apache.arrow.flatbuf.Buffer;
import org.apache.arrow.flatbuf.DictionaryBatch;
import org.apache.arrow.flatbuf.FieldNode;
import org.apache.arrow.flatbuf.Footer;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;

/**
 * Checks every length an Arrow IPC file states (message metadata lengths, body lengths, footer
 * length and blocks, buffer offsets and lengths, row and node counts) against the file's actual size
 * before Arrow Java reads it: Arrow allocates whatever a message says it needs (a heap array for the
 * metadata, one off-heap buffer for the body, validity bitmaps sized by the row count), so a 24 KB
 * file claiming 2^30 rows must be refused here, with a {@link CheckpointFormatException} naming the
 * field and both numbers, not run into the allocator.
 *
 * <p>Only metadata is read (positional reads of a few bytes and of each flatbuffer), so a check costs
 * little next to reading the data.
 */
final class ArrowIpcLayout {
    /** Larger metadata than this (one schema or batch header) is not something a writer produces. */
    static final int MAX_METADATA = 64 << 20;
    private static final int CONTINUATION = 0xFFFFFFFF;
    private static final int FILE_TRAILER = 10; // int32 footer length + "ARROW1"

    private final Path path;
    private final FileChannel ch;
    private final long size;
    private final List<RecordBatchBody> batches = new ArrayList<>();

    /**
     * Where one checked record batch lies: its body's file offset and length, its row count, and the
     * field nodes and buffers (offsets relative to the body) in the schema's depth-first field order.
     * Every buffer here lies inside the body and the body inside the file.
     */
    record RecordBatchBody(long bodyOffset, long bodyLength, long rows, long[] nodeLengths, long[] nodeNullCounts,
                           long[] bufferOffsets, long[] bufferLengths) {}

    private ArrowIpcLayout(Path path, FileChannel ch) throws IOException {
        this.path = path;
        this.ch = ch;
        this.size = ch.size();
    }

    /** Checks a stream-format file (messages from offset 0) or a file-format one (footer and its blocks). */
    static void check(Path path, FileChannel ch, TokenDatasetReader.Format format) throws IOException {
        recordBatches(path, ch, format);
    }

    /** Checks the file as {@link #check} does and returns its record batches in file order. */
    static List<RecordBatchBody> recordBatches(Path path, FileChannel ch, TokenDatasetReader.Format format) throws IOException {
        ArrowIpcLayout l = new ArrowIpcLayout(path, ch);
        if (format == TokenDatasetReader.Format.STREAM) {
            l.checkStream(0, l.size);
        } else {
            l.checkFile();
        }
        return List.copyOf(l.batches);
    }

    private void checkStream(long from, long end) throws IOException {
        long pos = from;
        boolean first = true;
        while (end - pos >= 4) {
            long start = pos;
            int len = readInt(pos);
            pos += 4;
            if (len == CONTINUATION) {
                if (end - pos < 4) break;
                len = readInt(pos);
                pos += 4;
            }
            if (len == 0) return; // end-of-stream marker
            pos = checkMessage(start, pos, len, end, -1, -1, first ? MessageHeader.Schema : -1);
            first = false;
        }
    }

    private void checkFile() throws IOException {
        if (size < 8 + FILE_TRAILER) {
            throw fail("file of " + size + " bytes is too short for an Arrow IPC file (magic and footer)");
        }
        long trailer = size - FILE_TRAILER;
        int footerLen = readInt(trailer);
        long footerStart = trailer - footerLen;
        if (footerLen <= 0 || footerStart < 8) {
            throw fail("footer length " + footerLen + " does not fit in a file of " + size + " bytes");
        }
        if (footerLen > MAX_METADATA) {
            throw fail("footer length " + footerLen + " exceeds the limit of " + MAX_METADATA + " bytes");
        }
        Footer footer;
        try {
            footer = Footer.getRootAsFooter(read(footerStart, footerLen));
            checkBlocks(footer, true, footerStart);
            checkBlocks(footer, false, footerStart);
        } catch (RuntimeException e) { // flatbuffers decoding of hostile bytes: IndexOutOfBounds and the like
            throw fail("corrupt footer at offset " + footerStart + ": " + e.getMessage());
        }
    }

    private void checkBlocks(Footer footer, boolean dictionaries, long dataEnd) throws IOException {
        int n = dictionaries ? footer.dictionariesLength() : footer.recordBatchesLength();
        String what = dictionaries ? "dictionary block " : "record batch block ";
        // a block is 24 bytes of footer: more than the footer holds is a corrupt count
        if (n < 0 || (long) n * 24 > dataEnd) {
            throw fail(what + "count " + n + " is impossible for a file of " + size + " bytes");
        }
        for (int i = 0; i < n; i++) {
            Block b = dictionaries ? footer.dictionaries(i) : footer.recordBatches(i);
            long off = b.offset();
            int meta = b.metaDataLength();
            long body = b.bodyLength();
            if (off < 8 || meta <= 0 || body < 0 || off > dataEnd || meta > dataEnd - off || body > dataEnd - off - meta) {
                throw fail(what + i + " [offset " + off + ", metadata " + meta + " bytes, body " + body
                        + " bytes] goes beyond the " + dataEnd + " bytes before the footer");
            }
            long pos = off;
            int len = readInt(pos);
            pos += 4;
            if (len == CONTINUATION) {
                len = readInt(pos);
                pos += 4;
            }
            long end = off + meta + body;
            if (len <= 0 || len > off + meta - pos) {
                throw fail(what + i + ": message length " + len + " does not fit in its " + meta + " metadata bytes");
            }
            checkMessage(off, pos, len, end, body, off + meta, dictionaries ? MessageHeader.DictionaryBatch : MessageHeader.RecordBatch);
        }
    }

    /**
     * Checks one message whose flatbuffer of {@code len} bytes starts at {@code pos}; returns the offset
     * after its body. {@code blockBody} is the body length a file footer gives (-1 in a stream);
     * {@code blockBodyStart} where the footer puts the body (-1 in a stream: right after the metadata);
     * {@code expectedType} the message header type required there (-1: a record or dictionary batch).
     */
    private long checkMessage(long start, long pos, int len, long end, long blockBody, long blockBodyStart, int expectedType)
            throws IOException {
        String where = "message at offset " + start;
        if (len < 0 || len > end - pos) {
            throw fail(where + ": metadata length " + Integer.toUnsignedString(len) + " goes beyond the end of the file ("
                    + (end - pos) + " bytes left of " + size + ")");
        }
        if (len > MAX_METADATA) {
            throw fail(where + ": metadata length " + len + " exceeds the limit of " + MAX_METADATA + " bytes");
        }
        Message m;
        long body;
        try {
            m = Message.getRootAsMessage(read(pos, len));
            body = m.bodyLength();
        } catch (RuntimeException e) { // flatbuffers decoding of hostile bytes: IndexOutOfBounds and the like
            throw fail(where + ": corrupt metadata: " + e.getMessage());
        }
        pos += len;
        if (body < 0 || body > end - pos) {
            throw fail(where + ": body length " + body + " goes beyond the end of the file (" + (end - pos)
                    + " bytes left of " + size + ")");
        }
        if (blockBody >= 0 && body != blockBody) {
            throw fail(where + ": body length " + body + " differs from the footer's " + blockBody);
        }
        // Arrow Java reads the body before it looks at the type, and leaks it when the type is wrong
        byte type = m.headerType();
        boolean typeOk = expectedType >= 0 ? type == expectedType
                : type == MessageHeader.RecordBatch || type == MessageHeader.DictionaryBatch;
        if (!typeOk) {
            throw fail(where + ": message type " + MessageHeader.name(type < 0 || type >= MessageHeader.names.length ? 0 : type)
                    + " (" + type + ") where " + (expectedType >= 0 ? MessageHeader.name(expectedType)
                    : "a RecordBatch or DictionaryBatch") + " belongs");
        }
        try {
            switch (type) {
                case MessageHeader.RecordBatch -> {
                    RecordBatch b = (RecordBatch) m.header(new RecordBatch());
                    checkBatch(where, b, body);
                    batches.add(describe(b, blockBodyStart >= 0 ? blockBodyStart : pos, body));
                }
                case MessageHeader.DictionaryBatch -> {
                    DictionaryBatch d = (DictionaryBatch) m.header(new DictionaryBatch());
                    if (d == null) throw fail(where + ": dictionary batch message without a header");
                    checkBatch(where + " (dictionary " + d.id() + ")", d.data(), body);
                }
                default -> { }
            }
        } catch (RuntimeException e) { // flatbuffers decoding of hostile bytes: IndexOutOfBounds and the like
            throw fail(where + ": corrupt record batch header: " + e.getMessage());
        }
        return pos + body;
    }

    private void checkBatch(String where, RecordBatch b, long body) throws CheckpointFormatException {
        if (b == null) throw fail(where + ": record batch message without a header");
        long rows = b.length();
        // every batch holds a list column (checked against the schema later): its offsets take
        // 4 or 8 bytes per row, so a row count beyond body/4 is a lie
        if (rows < 0 || rows > body / 4) {
            throw fail(where + ": row count " + rows + " is impossible for a record batch body of " + body
                    + " bytes (a list column needs at least 4 bytes per row)");
        }
        if (b.compression() != null) {
            throw fail(where + ": compressed record batches are not supported (write the file uncompressed)");
        }
        for (int i = 0, n = b.buffersLength(); i < n; i++) {
            Buffer x = b.buffers(i);
            long off = x.offset();
            long len = x.length();
            if (off < 0 || len < 0 || off > body || len > body - off) {
                throw fail(where + ": buffer " + i + " [offset " + off + ", length " + len
                        + "] goes beyond the record batch body of " + body + " bytes");
            }
        }
        FieldNode node = new FieldNode();
        for (int i = 0, n = b.nodesLength(); i < n; i++) {
            b.nodes(node, i);
            // Arrow Java refuses more than INT_MAX after it has read the body, and then leaks it: refuse first
            if (node.length() < 0 || node.length() > Integer.MAX_VALUE || node.nullCount() < 0
                    || node.nullCount() > node.length()) {
                throw fail(where + ": field node " + i + " has length " + node.length() + " and null count "
                        + node.nullCount() + " (length must be in [0, 2^31), null count in [0, length])");
            }
        }
    }

    private static RecordBatchBody describe(RecordBatch b, long bodyOffset, long body) {
        int nn = b.nodesLength();
        long[] nodeLen = new long[nn];
        long[] nodeNulls = new long[nn];
        FieldNode node = new FieldNode();
        for (int i = 0; i < nn; i++) {
            b.nodes(node, i);
            nodeLen[i] = node.length();
            nodeNulls[i] = node.nullCount();
        }
        int nb = b.buffersLength();
        long[] bufOff = new long[nb];
        long[] bufLen = new long[nb];
        Buffer x = new Buffer();
        for (int i = 0; i < nb; i++) {
            b.buffers(x, i);
            bufOff[i] = x.offset();
            bufLen[i] = x.length();
        }
        return new RecordBatchBody(bodyOffset, body, b.length(), nodeLen, nodeNulls, bufOff, bufLen);
    }

    private int readInt(long pos) throws IOException {
        return read(pos, 4).getInt(0);
    }

    private ByteBuffer read(long pos, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            if (ch.read(b, pos + b.position()) < 0) {
                throw fail("truncated: reading " + len + " bytes at offset " + pos + " of " + size);
            }
        }
        return b.flip();
    }

    private CheckpointFormatException fail(String message) {
        return new CheckpointFormatException(path, message);
    }
}
