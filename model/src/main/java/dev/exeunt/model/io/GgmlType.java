package dev.exeunt.model.io;

import java.util.Optional;

/**
 * ggml tensor element types, with their GGUF ids (from {@code enum ggml_type} in ggml.h).
 *
 * <p>Types are stored in blocks: {@link #blockSize()} elements take {@link #typeSize()} bytes, so a
 * row of {@code ne[0]} elements takes {@code ne[0] / blockSize * typeSize} bytes ({@code ne[0]} must be
 * a multiple of the block size). Block sizes follow ggml's type traits (as also listed in gguf-py's
 * {@code GGML_QUANT_SIZES}). Q8_1, whose size the two sources disagree on (it is an intermediate type
 * that files do not contain), has no known layout here: such tensors are listed, but asking for their
 * data fails with "unsupported ggml type".
 */
public enum GgmlType {
    F32(0, 1, 4),
    F16(1, 1, 2),
    Q4_0(2, 32, 18),
    Q4_1(3, 32, 20),
    Q5_0(6, 32, 22),
    Q5_1(7, 32, 24),
    Q8_0(8, 32, 34),
    Q8_1(9, 0, 0), // ggml-common.h and gguf-py disagree on its block size (36 vs 40); never stored in practice
    Q2_K(10, 256, 84),
    Q3_K(11, 256, 110),
    Q4_K(12, 256, 144),
    Q5_K(13, 256, 176),
    Q6_K(14, 256, 210),
    Q8_K(15, 256, 292),
    IQ2_XXS(16, 256, 66),
    IQ2_XS(17, 256, 74),
    IQ3_XXS(18, 256, 98),
    IQ1_S(19, 256, 50),
    IQ4_NL(20, 32, 18),
    IQ3_S(21, 256, 110),
    IQ2_S(22, 256, 82),
    IQ4_XS(23, 256, 136),
    I8(24, 1, 1),
    I16(25, 1, 2),
    I32(26, 1, 4),
    I64(27, 1, 8),
    F64(28, 1, 8),
    IQ1_M(29, 256, 56),
    BF16(30, 1, 2),
    TQ1_0(34, 256, 54),
    TQ2_0(35, 256, 66),
    MXFP4(39, 32, 17),
    NVFP4(40, 64, 36),
    Q1_0(41, 128, 18);

    private static final GgmlType[] BY_ID = new GgmlType[64];

    static {
        for (GgmlType t : values()) {
            BY_ID[t.id] = t;
        }
    }

    private final int id;
    private final int blockSize;
    private final int typeSize;

    GgmlType(int id, int blockSize, int typeSize) {
        this.id = id;
        this.blockSize = blockSize;
        this.typeSize = typeSize;
    }

    /** The id stored in GGUF tensor infos. */
    public int id() {
        return id;
    }

    /** Elements per block (1 for plain types); 0 if the layout is not known here. */
    public int blockSize() {
        return blockSize;
    }

    /** Bytes per block; 0 if the layout is not known here. */
    public int typeSize() {
        return typeSize;
    }

    /** Whether byte sizes (and so {@link GgufFile#data}) are available for this type. */
    public boolean hasKnownLayout() {
        return blockSize > 0;
    }

    public boolean isQuantized() {
        return blockSize > 1 || !hasKnownLayout();
    }

    /**
     * Bytes taken by a tensor with these ggml dims ({@code ne[0]} first).
     *
     * @throws IllegalArgumentException if the layout is unknown or {@code ne[0]} is not a multiple of the block size
     */
    public long byteSize(long[] dims) {
        if (!hasKnownLayout()) {
            throw new IllegalArgumentException("byte size of ggml type " + id + " (" + name() + ") is not known");
        }
        long n = 1;
        for (long d : dims) {
            n = Math.multiplyExact(n, d);
        }
        long ne0 = dims.length == 0 ? 1 : dims[0];
        if (ne0 % blockSize != 0) {
            throw new IllegalArgumentException("ne[0] = " + ne0 + " is not a multiple of the " + name()
                    + " block size " + blockSize);
        }
        return Math.multiplyExact(n / blockSize, (long) typeSize);
    }

    public static Optional<GgmlType> ofId(long id) {
        return id >= 0 && id < BY_ID.length ? Optional.ofNullable(BY_ID[(int) id]) : Optional.empty();
    }
}
