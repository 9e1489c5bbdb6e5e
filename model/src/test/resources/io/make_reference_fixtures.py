# Generates the reference fixtures next to this script with the reference implementations
# (safetensors 0.8.0, pyarrow 25.0.1, gguf-py 0.19.0, numpy 2.4.6). Run in this directory:
#   python make_reference_fixtures.py
import numpy as np, pyarrow as pa, gguf
from safetensors.numpy import save_file
rng = np.random.default_rng(0)
t = {"w.f32": rng.standard_normal((3,4)).astype(np.float32),
     "w.f16": rng.standard_normal((5,)).astype(np.float16),
     "w.i64": np.arange(6, dtype=np.int64).reshape(2,3),
     "w.scalar": np.array(3.5, dtype=np.float64),
     "w.empty": np.zeros((0,3), dtype=np.int32),
     "w.bool": np.array([True, False, True]),
     "w.u8": np.arange(7, dtype=np.uint8)}
save_file(t, "py.safetensors", metadata={"format": "np"})
for k, v in t.items():
    print("ST", k, v.dtype, v.shape, v.tobytes().hex()[:32])
# HF-like stream file
docs = [[1,2,3], [], [4,5], list(range(100,110))]
tbl = pa.table({"text": ["a","b","c","d"], "input_ids": pa.array(docs, type=pa.list_(pa.int32())),
                "attention_mask": pa.array([[1]*len(d) for d in docs], type=pa.list_(pa.int8()))})
with pa.OSFile("py_stream.arrow", "wb") as f:
    with pa.ipc.new_stream(f, tbl.schema) as w:
        for b in tbl.to_batches(max_chunksize=3): w.write_batch(b)
tbl64 = pa.table({"input_ids": pa.array(docs, type=pa.large_list(pa.int64()))})
with pa.OSFile("py_file64.arrow", "wb") as f:
    with pa.ipc.new_file(f, tbl64.schema) as w: w.write_table(tbl64)
# GGUF
w = gguf.GGUFWriter("py.gguf", "llama")
w.add_uint32("llama.block_count", 2)
w.add_float32("llama.rope.freq_base", 10000.0)
w.add_bool("x.flag", True)
w.add_string("x.s", "héllo")
w.add_array("x.arr", [1, 2, 3])
w.add_array("x.strs", ["a", "bb"])
w.add_int64("x.i64", -5)
w.add_tokenizer_model("gpt2")
w.add_token_list(["a", "b", "ab"])
w.add_token_types([1, 1, 1])
w.add_bos_token_id(0)
w.add_eos_token_id(2)
f32 = rng.standard_normal((2, 3)).astype(np.float32)
w.add_tensor("t.f32", f32)
f16 = rng.standard_normal((4,)).astype(np.float16)
w.add_tensor("t.f16", f16)
q8 = rng.integers(0, 255, size=(2, 34), dtype=np.uint8)  # 2 rows x 1 block of Q8_0 (32 elements)
w.add_tensor("t.q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("GG f32", f32.tobytes().hex()[:32], "q8", q8.tobytes().hex()[:32])
