package dev.exeunt.model.io;

import java.nio.file.Path;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.BaseFixedWidthVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.complex.LargeListVector;
import org.apache.arrow.vector.complex.ListVector;

/**
 * Checks one loaded record batch of a token column before it is read: Arrow Java trusts the buffer
 * lengths, counts and offsets of the file, so a corrupt one would otherwise surface as an
 * IndexOutOfBoundsException deep in a read (or, with bounds checks off, as garbage). Every check
 * names the column, the batch, the field and both numbers.
 */
final class BatchCheck {
    private BatchCheck() {}

    /** {@code v} is the list or large_list column of a batch of {@code rows} rows starting at document {@code first}. */
    static void check(Path path, String column, long first, FieldVector v, int rows) throws CheckpointFormatException {
        String where = "column '" + column + "' of the record batch starting at document " + first + ": ";
        int width = v instanceof LargeListVector ? Long.BYTES : Integer.BYTES;
        FieldVector child = v instanceof ListVector lv ? lv.getDataVector() : ((LargeListVector) v).getDataVector();
        if (v.getValueCount() != rows) {
            throw new CheckpointFormatException(path, where + "has " + v.getValueCount() + " values but the batch has "
                    + rows + " rows");
        }
        checkValidity(path, where + "validity bitmap", v.getValidityBuffer(), rows);
        if (rows == 0) return;
        ArrowBuf offsets = v.getOffsetBuffer();
        long needOffsets = (rows + 1L) * width;
        if (offsets.capacity() < needOffsets) {
            throw new CheckpointFormatException(path, where + "offsets buffer of " + offsets.capacity()
                    + " bytes is shorter than the " + needOffsets + " bytes " + rows + " rows need");
        }
        long values = child.getValueCount();
        long prev = offset(offsets, 0, width);
        if (prev < 0) {
            throw new CheckpointFormatException(path, where + "first offset " + prev + " is negative");
        }
        for (int r = 1; r <= rows; r++) {
            long o = offset(offsets, r, width);
            if (o < prev) {
                throw new CheckpointFormatException(path, where + "offset " + r + " = " + o + " is less than offset "
                        + (r - 1) + " = " + prev);
            }
            prev = o;
        }
        if (prev > values) {
            throw new CheckpointFormatException(path, where + "last offset " + prev + " goes beyond the "
                    + values + " token ids of the batch");
        }
        if (child instanceof BaseFixedWidthVector ids) {
            long needData = values * ids.getTypeWidth();
            if (ids.getDataBuffer().capacity() < needData) {
                throw new CheckpointFormatException(path, where + "token id buffer of " + ids.getDataBuffer().capacity()
                        + " bytes is shorter than the " + needData + " bytes " + values + " ids need");
            }
            checkValidity(path, where + "token id validity bitmap", ids.getValidityBuffer(), values);
        }
    }

    private static long offset(ArrowBuf offsets, long index, int width) {
        return width == Long.BYTES ? offsets.getLong(index * width) : offsets.getInt(index * width);
    }

    private static void checkValidity(Path path, String what, ArrowBuf validity, long count) throws CheckpointFormatException {
        long need = (count + 7) / 8;
        if (validity.capacity() < need) {
            throw new CheckpointFormatException(path, what + " of " + validity.capacity() + " bytes is shorter than the "
                    + need + " bytes " + count + " values need");
        }
    }
}
