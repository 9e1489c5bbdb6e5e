#!/usr/bin/env python3
"""Writes the GGUF reference fixtures that GgufReferenceGreedyTest checks, and their expected greedy tokens (expected.txt).

A tiny random-weight Llama (2 layers, dim 32, 4 heads, 2 kv heads, vocab 259) is written with llama.cpp's own
gguf-py (pip install gguf numpy) as F32, Q8_0 and Q4_0 files (matrices quantized by gguf-py's quantizers;
norms and the token embedding stay F32, as llama-quantize leaves norms). The expected tokens come from a
float64 forward written here in llama.cpp's conventions, independent of Exeunt: the weights are used as the
file stores them, RoPE rotates adjacent pairs (llama.cpp's "norm" rope for the llama architecture, which is
why convert_hf_to_gguf.py permutes q/k rows), grouped-query heads, RMSNorm, SwiGLU. Each quantized file's
tokens are computed from its own dequantized weights. Seeds whose greedy steps have a top-2 logit gap under
1e-3 are skipped, so float32 rounding cannot flip a token.

Run from this directory: python3 make_reference.py (gguf-py from pip, or PYTHONPATH=LLAMA_CPP/gguf-py).
python3 make_reference.py --kquant-source FILE.gguf writes the F32 model make_llamacpp_fixtures.sh quantizes.
"""
import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

VOCAB, DIM, LAYERS, HEADS, KV_HEADS, FFN, CTX = 259, 32, 2, 4, 2, 64, 64
HD = DIM // HEADS
EPS, THETA = 1e-5, 10000.0
PROMPTS = [[1, 70, 101, 33, 200], [5, 17, 250, 9, 3, 44, 128, 60, 7, 99, 31, 2, 180, 77, 15, 66, 42, 8]]
NEW_TOKENS = 24


def random_weights(seed):
    r = np.random.default_rng(seed)
    w = {"token_embd.weight": r.standard_normal((VOCAB, DIM)), "output_norm.weight": 1 + 0.2 * r.standard_normal(DIM),
         "output.weight": r.standard_normal((VOCAB, DIM)) * 2 / np.sqrt(DIM)}
    for l in range(LAYERS):
        p = f"blk.{l}."
        w[p + "attn_norm.weight"] = 1 + 0.2 * r.standard_normal(DIM)
        w[p + "attn_q.weight"] = r.standard_normal((HEADS * HD, DIM)) / np.sqrt(DIM)
        w[p + "attn_k.weight"] = r.standard_normal((KV_HEADS * HD, DIM)) / np.sqrt(DIM)
        w[p + "attn_v.weight"] = r.standard_normal((KV_HEADS * HD, DIM)) / np.sqrt(DIM)
        w[p + "attn_output.weight"] = r.standard_normal((DIM, HEADS * HD)) / np.sqrt(HEADS * HD)
        w[p + "ffn_norm.weight"] = 1 + 0.2 * r.standard_normal(DIM)
        w[p + "ffn_gate.weight"] = r.standard_normal((FFN, DIM)) / np.sqrt(DIM)
        w[p + "ffn_up.weight"] = r.standard_normal((FFN, DIM)) / np.sqrt(DIM)
        w[p + "ffn_down.weight"] = r.standard_normal((DIM, FFN)) / np.sqrt(FFN)
    return {k: v.astype(np.float32) for k, v in w.items()}


def stored(w, qtype):
    """Per tensor: the ggml type and bytes (or float32 array) the file holds, and the float64 values it means."""
    out = {}
    for name, a in w.items():
        if qtype == Q.F32 or a.ndim == 1 or name == "token_embd.weight":
            out[name] = (a, a.astype(np.float64))
        else:
            q = gguf.quants.quantize(a, qtype)
            out[name] = (q, gguf.quants.dequantize(q, qtype).astype(np.float64).reshape(a.shape))
    return out


def rms(x, g):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * g


def rope_adjacent(x, pos):
    """llama.cpp's norm rope: pairs (x[2i], x[2i+1]) of each head rotated by pos * theta^(-2i/hd)."""
    i = np.arange(HD // 2)
    ang = pos[:, None] * THETA ** (-2.0 * i / HD)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def logits(w, ids):
    """Last-position logits and the full [T, vocab] logits of a no-cache forward."""
    t = len(ids)
    pos = np.arange(t, dtype=np.float64)
    x = w["token_embd.weight"][ids]
    for l in range(LAYERS):
        p = f"blk.{l}."
        h = rms(x, w[p + "attn_norm.weight"])
        q = rope_adjacent((h @ w[p + "attn_q.weight"].T).reshape(t, HEADS, HD), pos)
        k = rope_adjacent((h @ w[p + "attn_k.weight"].T).reshape(t, KV_HEADS, HD), pos)
        v = (h @ w[p + "attn_v.weight"].T).reshape(t, KV_HEADS, HD)
        att = np.empty((t, HEADS, HD))
        for hh in range(HEADS):
            kv = hh // (HEADS // KV_HEADS)
            s = q[:, hh] @ k[:, kv].T / np.sqrt(HD)
            s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            att[:, hh] = (s / s.sum(axis=1, keepdims=True)) @ v[:, kv]
        x = x + att.reshape(t, DIM) @ w[p + "attn_output.weight"].T
        h = rms(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    return rms(x, w["output_norm.weight"]) @ w["output.weight"].T


def greedy(w, prompt):
    ids, gaps = list(prompt), []
    for _ in range(NEW_TOKENS):
        z = logits(w, ids)[-1]
        top = np.sort(z)[-2:]
        gaps.append(float(top[1] - top[0]))
        ids.append(int(np.argmax(z)))
    return ids[len(prompt):], min(gaps)


def write(path, tensors):
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_name("exeunt reference llama")
    wr.add_context_length(CTX)
    wr.add_embedding_length(DIM)
    wr.add_block_count(LAYERS)
    wr.add_feed_forward_length(FFN)
    wr.add_head_count(HEADS)
    wr.add_head_count_kv(KV_HEADS)
    wr.add_rope_dimension_count(HD)
    wr.add_layer_norm_rms_eps(EPS)
    wr.add_rope_freq_base(THETA)
    wr.add_vocab_size(VOCAB)
    # SentencePiece's byte pieces, so that llama.cpp loads the files too (it refuses a BPE vocabulary without merges)
    tokens = [f"<0x{b:02X}>" for b in range(256)] + ["<s>", "</s>", "<unk>"]
    wr.add_tokenizer_model("llama")
    wr.add_token_list(tokens)
    wr.add_token_scores([0.0] * VOCAB)
    wr.add_token_types([6] * 256 + [3, 3, 2])
    wr.add_bos_token_id(256)
    wr.add_eos_token_id(257)
    wr.add_unk_token_id(258)
    for name, (data, _) in tensors.items():
        if data.dtype == np.uint8:
            wr.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtypes[path])
        else:
            wr.add_tensor(name, data)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


qtypes = {"llama-f32.gguf": Q.F32, "llama-q8_0.gguf": Q.Q8_0, "llama-q4_0.gguf": Q.Q4_0}

def kquant_source(path):
    """A model whose rows split into 256-wide super-blocks (dim 256, one layer), as F32, for llama-quantize to
    turn into the k-quant fixtures (make_llamacpp_fixtures.sh)."""
    global DIM, LAYERS, HEADS, KV_HEADS, FFN, HD
    DIM, LAYERS, HEADS, KV_HEADS, FFN = 256, 1, 4, 2, 256
    HD = DIM // HEADS
    weights = random_weights(1)
    write(path, {k: (v, None) for k, v in weights.items()})


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--kquant-source":
        kquant_source(sys.argv[2])
        raise SystemExit(0)
    for seed in range(100):
        weights = random_weights(seed)
        files = {path: stored(weights, t) for path, t in qtypes.items()}
        expected, ok = {}, True
        for path, tensors in files.items():
            w64 = {k: v[1] for k, v in tensors.items()}
            runs = [greedy(w64, p) for p in PROMPTS]
            if min(g for _, g in runs) < 1e-3:
                ok = False
                break
            expected[path] = [toks for toks, _ in runs]
        if ok:
            break
    else:
        raise SystemExit("no seed with clear greedy margins")
    for path, tensors in files.items():
        write(path, tensors)
    with open("expected.txt", "w") as f:
        f.write(f"# written by make_reference.py (seed {seed}): greedy tokens of each file, {NEW_TOKENS} per prompt\n")
        for i, p in enumerate(PROMPTS):
            f.write(f"prompt {i}: {' '.join(map(str, p))}\n")
        for path, runs in expected.items():
            for i, toks in enumerate(runs):
                f.write(f"{path} {i}: {' '.join(map(str, toks))}\n")
    print("seed", seed, {p: e for p, e in expected.items()})
