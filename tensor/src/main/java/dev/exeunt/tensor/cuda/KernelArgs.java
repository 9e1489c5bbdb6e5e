package dev.exeunt.tensor.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Builds cuLaunchKernel's {@code void** kernelParams}: one slot per argument holding the address of a copy of its
 * value. Like {@code CudaDriver.kernelParams}, plus structs passed by value ({@link StridedDesc}, {@link Struct}).
 * Device pointers are {@code long} ({@link #NULL_PTR} for a null pointer); ints, floats and doubles as themselves.
 */
final class KernelArgs {
    private KernelArgs() {}

    static final Long NULL_PTR = 0L;

    /** A struct passed by value: raw bytes with the C layout (8-byte aligned in the slot). */
    record Struct(byte[] bytes) {}

    static Struct ints(int... values) {
        MemorySegment s = MemorySegment.ofArray(new byte[4 * values.length]);
        for (int i = 0; i < values.length; i++) s.setAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i, values[i]);
        return new Struct(s.toArray(ValueLayout.JAVA_BYTE));
    }

    static Struct longs(long... values) {
        MemorySegment s = MemorySegment.ofArray(new byte[8 * values.length]);
        for (int i = 0; i < values.length; i++) s.setAtIndex(ValueLayout.JAVA_LONG_UNALIGNED, i, values[i]);
        return new Struct(s.toArray(ValueLayout.JAVA_BYTE));
    }

    static MemorySegment params(Arena arena, Object... args) {
        MemorySegment array = arena.allocate(ValueLayout.ADDRESS, Math.max(1, args.length));
        for (int i = 0; i < args.length; i++) {
            MemorySegment slot = switch (args[i]) {
                case Integer v -> arena.allocateFrom(ValueLayout.JAVA_INT, v);
                case Long v -> arena.allocateFrom(ValueLayout.JAVA_LONG, v);
                case Float v -> arena.allocateFrom(ValueLayout.JAVA_FLOAT, v);
                case Double v -> arena.allocateFrom(ValueLayout.JAVA_DOUBLE, v);
                case StridedDesc d -> {
                    MemorySegment s = arena.allocate(StridedDesc.BYTES, 16);
                    d.write(s);
                    yield s;
                }
                case Struct st -> {
                    MemorySegment s = arena.allocate(Math.max(8, st.bytes().length), 16);
                    MemorySegment.copy(st.bytes(), 0, s, ValueLayout.JAVA_BYTE, 0, st.bytes().length);
                    yield s;
                }
                case null -> throw new IllegalArgumentException("null kernel argument " + i + " (use NULL_PTR for a null pointer)");
                default -> throw new IllegalArgumentException("unsupported kernel argument type " + args[i].getClass());
            };
            array.setAtIndex(ValueLayout.ADDRESS, i, slot);
        }
        return array;
    }
}
