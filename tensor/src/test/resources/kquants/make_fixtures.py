#!/usr/bin/env python3
"""Fixtures for CpuKQuantTest: raw Q4_K / Q5_K / Q6_K / Q3_K / Q2_K super-blocks and gguf-py's dequantization of them.

Run from this directory (needs numpy and gguf-py, `pip install gguf`):

    python3 make_fixtures.py

or with llama.cpp's own gguf-py from a checkout (its package imports sentencepiece, which the quantizers do not
use: an empty stand-in will do):

    mkdir -p /tmp/sp/sentencepiece && echo 'class SentencePieceProcessor: pass' > /tmp/sp/sentencepiece/__init__.py
    PYTHONPATH=$LLAMA_CPP/gguf-py:/tmp/sp python3 make_fixtures.py

gguf-py cannot quantize the k-quant types, so the blocks are random bytes (every bit pattern of the packed
scales, nibbles and high bits is a valid block) with the F16 super-block scales overwritten by finite random
halves (some negative, some subnormal, some zero). For each type T it writes

    T.bin  ROWS rows of COLS weights as consecutive super-blocks (COLS / 256 per row), llama.cpp's layout
    T.f32  gguf.quants.dequantize of T.bin, ROWS x COLS little-endian float32

The Java test dequantizes T.bin and compares every float bit for bit with T.f32.
"""
import numpy as np
from gguf import GGMLQuantizationType, GGML_QUANT_SIZES
from gguf.quants import dequantize

ROWS, COLS = 3, 512  # odd row count, two super-blocks per row
rng = np.random.default_rng(20261202)


def halves(n):
    """Finite float16 scales: mostly small normals, with a zero, a negative and a subnormal mixed in."""
    v = (rng.standard_normal(n) * 0.02).astype(np.float16)
    v[0] = np.float16(0.0)
    if n > 2:
        v[1] = -abs(v[1])
        v[2] = np.float16(3e-6)  # subnormal in float16
    rng.shuffle(v)
    return v


def blocks(qtype, n_blocks):
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q5_K):
        raw[:, 0:2] = halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)  # d
        raw[:, 2:4] = halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)  # dmin
    elif qtype == GGMLQuantizationType.Q6_K:
        raw[:, 208:210] = halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)  # d (last)
    elif qtype == GGMLQuantizationType.Q3_K:
        raw[:, 108:110] = halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)  # d (last)
    elif qtype == GGMLQuantizationType.Q2_K:
        raw[:, 80:82] = halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)  # d
        raw[:, 82:84] = halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)  # dmin
    return raw


# Each type added later comes after the others, so their random bytes stay those they always were.
for qtype in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q5_K, GGMLQuantizationType.Q6_K, GGMLQuantizationType.Q3_K,
              GGMLQuantizationType.Q2_K):
    n_blocks = ROWS * COLS // 256
    raw = blocks(qtype, n_blocks)
    row_bytes = COLS // 256 * GGML_QUANT_SIZES[qtype][1]
    out = dequantize(raw.reshape(ROWS, row_bytes), qtype)
    assert out.shape == (ROWS, COLS) and out.dtype == np.float32 and np.isfinite(out).all()
    raw.tofile(f"{qtype.name}.bin")
    out.astype("<f4").tofile(f"{qtype.name}.f32")
    print(qtype.name, raw.nbytes, "bytes ->", out.nbytes, "bytes")
