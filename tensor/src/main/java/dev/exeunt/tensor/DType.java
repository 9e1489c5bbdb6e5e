package dev.exeunt.tensor;

/**
 * Element types. F32 is the compute type; BF16/F16 are storage types converted on use; I32 holds token
 * ids; I8, Q8_0 and Q4_0 hold weights. Q8_0 and Q4_0 use GGUF's block layouts: 32 weights per block,
 * an F16 scale followed by 32 int8 (34 bytes) or 16 bytes of nibbles (18 bytes). Q2_K, Q4_K, Q5_K and Q6_K are
 * llama.cpp's k-quants: super-blocks of 256 weights (84, 144, 176 and 210 bytes; layouts in
 * {@code dev.exeunt.tensor.cpu.CpuKQuant}). The quantized types are weight storage only: they convert to F32
 * and take part in {@code Backend.linearQuantized}; only Q8_0 and Q4_0 can be produced from F32.
 */
public enum DType {
    F32(4, 1),
    BF16(2, 1),
    F16(2, 1),
    I32(4, 1),
    I8(1, 1),
    Q8_0(34, 32),
    Q4_0(18, 32),
    Q4_K(144, 256),
    Q5_K(176, 256),
    Q6_K(210, 256),
    Q2_K(84, 256);

    private final int bytesPerBlock;
    private final int blockSize;

    DType(int bytesPerBlock, int blockSize) {
        this.bytesPerBlock = bytesPerBlock;
        this.blockSize = blockSize;
    }

    /** Elements per block: 1 for plain types, 32 for Q8_0 / Q4_0, 256 for the k-quants. */
    public int blockSize() {
        return blockSize;
    }

    public boolean isQuantized() {
        return blockSize > 1;
    }

    /** Whether this is one of llama.cpp's k-quant super-block types (Q2_K, Q4_K, Q5_K, Q6_K). */
    public boolean isKQuant() {
        return this == Q2_K || this == Q4_K || this == Q5_K || this == Q6_K;
    }

    public boolean isFloatingPoint() {
        return this == F32 || this == BF16 || this == F16;
    }

    /** Bytes needed for {@code elements} values; block-quantized types need a multiple of the block size. */
    public long byteSize(long elements) {
        if (elements % blockSize != 0) {
            throw new IllegalArgumentException(
                    name() + " stores blocks of " + blockSize + " elements; " + elements + " is not a multiple");
        }
        return elements / blockSize * bytesPerBlock;
    }

    /** Bytes per element for the plain (non-block) types. */
    public int elementBytes() {
        if (isQuantized()) throw new IllegalStateException(name() + " has no per-element size (block-quantized)");
        return bytesPerBlock;
    }
}
