package dev.exeunt.model.io;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A GGUF metadata value: a typed scalar, string, or array (arrays may nest).
 *
 * <p>Java representation of {@link #value()}: UINT8/INT8 {@code Byte}, UINT16/INT16 {@code Short},
 * UINT32/INT32 {@code Integer}, UINT64/INT64 {@code Long} (unsigned types keep their bit pattern; use
 * {@link #asLong()}), FLOAT32 {@code Float}, FLOAT64 {@code Double}, BOOL {@code Boolean}, STRING
 * {@code String}. An ARRAY holds a primitive array of the element type ({@code byte[]}, {@code short[]},
 * {@code int[]}, {@code long[]}, {@code float[]}, {@code double[]}, {@code boolean[]}), a {@code String[]},
 * or a {@code GgufValue[]} of ARRAY values for nested arrays. {@link #elementType()} is null for non-arrays.
 * Equality is deep.
 */
public record GgufValue(GgufType type, GgufType elementType, Object value) {
    public GgufValue {
        Objects.requireNonNull(type);
        Objects.requireNonNull(value);
        if (type == GgufType.ARRAY) {
            Objects.requireNonNull(elementType, "array element type");
            Class<?> want = arrayClass(elementType);
            if (value.getClass() != want) {
                throw new IllegalArgumentException("array of " + elementType + " needs a " + want.getSimpleName()
                        + ", got " + value.getClass().getSimpleName());
            }
            if (value instanceof GgufValue[] vs) {
                for (GgufValue v : vs) {
                    if (v.type != GgufType.ARRAY) {
                        throw new IllegalArgumentException("elements of a nested array must be arrays, got " + v.type);
                    }
                }
            }
        } else {
            if (elementType != null) {
                throw new IllegalArgumentException("element type given for a scalar " + type);
            }
            Class<?> want = scalarClass(type);
            if (value.getClass() != want) {
                throw new IllegalArgumentException(type + " needs a " + want.getSimpleName() + ", got "
                        + value.getClass().getSimpleName());
            }
        }
    }

    static Class<?> scalarClass(GgufType t) {
        return switch (t) {
            case UINT8, INT8 -> Byte.class;
            case UINT16, INT16 -> Short.class;
            case UINT32, INT32 -> Integer.class;
            case UINT64, INT64 -> Long.class;
            case FLOAT32 -> Float.class;
            case FLOAT64 -> Double.class;
            case BOOL -> Boolean.class;
            case STRING -> String.class;
            case ARRAY -> GgufValue.class;
        };
    }

    static Class<?> arrayClass(GgufType t) {
        return switch (t) {
            case UINT8, INT8 -> byte[].class;
            case UINT16, INT16 -> short[].class;
            case UINT32, INT32 -> int[].class;
            case UINT64, INT64 -> long[].class;
            case FLOAT32 -> float[].class;
            case FLOAT64 -> double[].class;
            case BOOL -> boolean[].class;
            case STRING -> String[].class;
            case ARRAY -> GgufValue[].class;
        };
    }

    // ---- factories

    public static GgufValue uint8(int v) {
        if (v < 0 || v > 0xFF) {
            throw new IllegalArgumentException("uint8 out of range: " + v);
        }
        return new GgufValue(GgufType.UINT8, null, (byte) v);
    }

    public static GgufValue int8(int v) {
        if (v != (byte) v) {
            throw new IllegalArgumentException("int8 out of range: " + v);
        }
        return new GgufValue(GgufType.INT8, null, (byte) v);
    }

    public static GgufValue uint16(int v) {
        if (v < 0 || v > 0xFFFF) {
            throw new IllegalArgumentException("uint16 out of range: " + v);
        }
        return new GgufValue(GgufType.UINT16, null, (short) v);
    }

    public static GgufValue int16(int v) {
        if (v != (short) v) {
            throw new IllegalArgumentException("int16 out of range: " + v);
        }
        return new GgufValue(GgufType.INT16, null, (short) v);
    }

    public static GgufValue uint32(long v) {
        if (v < 0 || v > 0xFFFF_FFFFL) {
            throw new IllegalArgumentException("uint32 out of range: " + v);
        }
        return new GgufValue(GgufType.UINT32, null, (int) v);
    }

    public static GgufValue int32(int v) {
        return new GgufValue(GgufType.INT32, null, v);
    }

    /** An unsigned 64-bit value given by its bit pattern. */
    public static GgufValue uint64(long bits) {
        return new GgufValue(GgufType.UINT64, null, bits);
    }

    public static GgufValue int64(long v) {
        return new GgufValue(GgufType.INT64, null, v);
    }

    public static GgufValue float32(float v) {
        return new GgufValue(GgufType.FLOAT32, null, v);
    }

    public static GgufValue float64(double v) {
        return new GgufValue(GgufType.FLOAT64, null, v);
    }

    public static GgufValue bool(boolean v) {
        return new GgufValue(GgufType.BOOL, null, v);
    }

    public static GgufValue string(String v) {
        return new GgufValue(GgufType.STRING, null, v);
    }

    /** An array of {@code elementType}; {@code javaArray} must be of the matching class (see the class doc). */
    public static GgufValue array(GgufType elementType, Object javaArray) {
        return new GgufValue(GgufType.ARRAY, elementType, javaArray);
    }

    public static GgufValue stringArray(List<String> values) {
        return array(GgufType.STRING, values.toArray(String[]::new));
    }

    public static GgufValue int32Array(int... values) {
        return array(GgufType.INT32, values.clone());
    }

    public static GgufValue float32Array(float... values) {
        return array(GgufType.FLOAT32, values.clone());
    }

    /** An array of arrays. */
    public static GgufValue nestedArray(GgufValue... arrays) {
        return array(GgufType.ARRAY, arrays.clone());
    }

    // ---- accessors

    public boolean isArray() {
        return type == GgufType.ARRAY;
    }

    /** Integer scalar as a long; unsigned types are zero-extended (UINT64 returns the bit pattern). */
    public long asLong() {
        return switch (type) {
            case UINT8 -> ((Byte) value) & 0xFFL;
            case INT8 -> (Byte) value;
            case UINT16 -> ((Short) value) & 0xFFFFL;
            case INT16 -> (Short) value;
            case UINT32 -> ((Integer) value) & 0xFFFF_FFFFL;
            case INT32 -> (Integer) value;
            case UINT64, INT64 -> (Long) value;
            default -> throw new IllegalStateException("not an integer: " + this);
        };
    }

    /** Integer scalar as an int, failing when out of range. */
    public int asInt() {
        long v = asLong();
        if (type == GgufType.UINT64 && v < 0 || v != (int) v) {
            throw new ArithmeticException("value " + Long.toUnsignedString(v) + " does not fit in an int");
        }
        return (int) v;
    }

    public double asDouble() {
        return switch (type) {
            case FLOAT32 -> (Float) value;
            case FLOAT64 -> (Double) value;
            case UINT64 -> Double.parseDouble(Long.toUnsignedString((Long) value));
            default -> asLong();
        };
    }

    public boolean asBoolean() {
        if (type != GgufType.BOOL) {
            throw new IllegalStateException("not a bool: " + this);
        }
        return (Boolean) value;
    }

    public String asString() {
        if (type != GgufType.STRING) {
            throw new IllegalStateException("not a string: " + this);
        }
        return (String) value;
    }

    /** Number of elements of an array. */
    public int arrayLength() {
        requireArray();
        return java.lang.reflect.Array.getLength(value);
    }

    public List<String> asStringList() {
        requireArray();
        if (elementType != GgufType.STRING) {
            throw new IllegalStateException("not a string array: " + this);
        }
        return List.of((String[]) value);
    }

    /** Elements of a nested array. */
    public List<GgufValue> asArrayList() {
        requireArray();
        if (elementType != GgufType.ARRAY) {
            throw new IllegalStateException("not an array of arrays: " + this);
        }
        return List.of((GgufValue[]) value);
    }

    /** Integer array as longs (unsigned types zero-extended). */
    public long[] asLongArray() {
        requireArray();
        int n = arrayLength();
        long[] out = new long[n];
        switch (elementType) {
            case UINT8 -> { byte[] a = (byte[]) value; for (int i = 0; i < n; i++) out[i] = a[i] & 0xFFL; }
            case INT8 -> { byte[] a = (byte[]) value; for (int i = 0; i < n; i++) out[i] = a[i]; }
            case UINT16 -> { short[] a = (short[]) value; for (int i = 0; i < n; i++) out[i] = a[i] & 0xFFFFL; }
            case INT16 -> { short[] a = (short[]) value; for (int i = 0; i < n; i++) out[i] = a[i]; }
            case UINT32 -> { int[] a = (int[]) value; for (int i = 0; i < n; i++) out[i] = a[i] & 0xFFFF_FFFFL; }
            case INT32 -> { int[] a = (int[]) value; for (int i = 0; i < n; i++) out[i] = a[i]; }
            case UINT64, INT64 -> System.arraycopy((long[]) value, 0, out, 0, n);
            default -> throw new IllegalStateException("not an integer array: " + this);
        }
        return out;
    }

    /** Integer array as ints, failing on values out of int range. */
    public int[] asIntArray() {
        if (isArray() && (elementType == GgufType.INT32 || elementType == GgufType.UINT32 && allNonNegative((int[]) value))) {
            return ((int[]) value).clone();
        }
        long[] l = asLongArray();
        int[] out = new int[l.length];
        for (int i = 0; i < l.length; i++) {
            if (l[i] != (int) l[i] || elementType == GgufType.UINT64 && l[i] < 0) {
                throw new ArithmeticException("array element " + i + " = " + l[i] + " does not fit in an int");
            }
            out[i] = (int) l[i];
        }
        return out;
    }

    private static boolean allNonNegative(int[] a) {
        for (int x : a) {
            if (x < 0) {
                return false;
            }
        }
        return true;
    }

    /** Numeric array as floats. */
    public float[] asFloatArray() {
        requireArray();
        if (elementType == GgufType.FLOAT32) {
            return ((float[]) value).clone();
        }
        int n = arrayLength();
        float[] out = new float[n];
        if (elementType == GgufType.FLOAT64) {
            double[] a = (double[]) value;
            for (int i = 0; i < n; i++) {
                out[i] = (float) a[i];
            }
        } else {
            long[] a = asLongArray();
            for (int i = 0; i < n; i++) {
                out[i] = a[i];
            }
        }
        return out;
    }

    private void requireArray() {
        if (type != GgufType.ARRAY) {
            throw new IllegalStateException("not an array: " + this);
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GgufValue v && type == v.type && elementType == v.elementType
                && Objects.deepEquals(value, v.value);
    }

    @Override
    public int hashCode() {
        return Objects.hash(type, elementType, Arrays.deepHashCode(new Object[] {value}));
    }

    @Override
    public String toString() {
        if (type != GgufType.ARRAY) {
            return type == GgufType.STRING ? type + "\"" + abbreviate((String) value) + "\""
                    : type + "(" + (type.isUnsigned() ? Long.toUnsignedString(asLong()) : value) + ")";
        }
        int n = arrayLength();
        StringBuilder sb = new StringBuilder("ARRAY<").append(elementType).append(">[").append(n).append("]{");
        for (int i = 0; i < Math.min(n, 8); i++) {
            Object e = java.lang.reflect.Array.get(value, i);
            sb.append(i == 0 ? "" : ", ").append(e instanceof String s ? "\"" + abbreviate(s) + "\"" : e);
        }
        return sb.append(n > 8 ? ", ...}" : "}").toString();
    }

    private static String abbreviate(String s) {
        return s.length() <= 64 ? s : s.substring(0, 61) + "...";
    }
}
