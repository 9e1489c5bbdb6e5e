package dev.exeunt.model.nn;

/**
 * One sequence's rows inside a packed [N, D] batch: rows [row, row+count) hold positions
 * [startPos, startPos+count) of the sequence whose keys and values live in {@code cache}.
 * Packing lets sequences of different lengths and depths share every GEMM while each keeps its
 * own KV cache (generation with per-sequence early exit).
 */
public record Packed(int row, int count, int startPos, KvCache cache) {}
