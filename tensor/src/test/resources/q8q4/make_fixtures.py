#!/usr/bin/env python3
"""Fixtures for CpuQuantGgufTest: gguf-py's (llama.cpp's reference) Q8_0 / Q4_0 quantization of random floats.

Run from this directory (needs numpy and gguf-py, `pip install gguf`):

    python3 make_fixtures.py

It writes

    input.f32   ROWS x COLS little-endian float32: Gaussian rows of different scales, a row of zeros, a row
                with one large outlier per block, and values that sit on the rounding boundaries
    T.bin       gguf.quants.quantize(input, T) for T in Q8_0, Q4_0 (llama.cpp's block layout)
    T.f32       gguf.quants.dequantize(T.bin, T)

The Java test quantizes input.f32 and compares every byte with T.bin, then dequantizes T.bin and compares
every float bit for bit with T.f32.
"""
import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

ROWS, COLS = 7, 96  # odd row count, three blocks per row
rng = np.random.default_rng(20261202)

x = rng.standard_normal((ROWS, COLS)) * np.array([1e-3, 0.02, 1.0, 30.0, 0.0, 1.0, 0.5])[:, None]
# Row 4 is +0.0 throughout. A block whose first element is -0.0 is the one place gguf-py's numpy quantizer and
# llama.cpp's C one (quantize_row_q4_0_ref, which the Java follows) differ: numpy's argmax takes that -0.0 as
# the block's max and stores d = +0.0, C keeps its initial max of +0.0 and stores d = -0.0.
x[4] = 0.0
x[5, ::32] = 40.0  # one outlier per block
x[6] = np.round(rng.standard_normal(COLS) * 8) / 8 * 0.5  # values on quantization steps and half-steps
x = x.astype(np.float32)
x.astype("<f4").tofile("input.f32")
for qtype in (Q.Q8_0, Q.Q4_0):
    q = quantize(x, qtype)
    back = dequantize(q, qtype)
    assert back.shape == x.shape and np.isfinite(back).all()
    q.tofile(f"{qtype.name}.bin")
    back.astype("<f4").tofile(f"{qtype.name}.f32")
    print(qtype.name, q.nbytes, "bytes, max error", float(np.abs(back - x).max()))
