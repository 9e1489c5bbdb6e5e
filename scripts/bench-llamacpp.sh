#!/usr/bin/env bash
# Exeunt against llama.cpp on the same GGUF files, one after the other in one run: `bench decode --write-gguf`
# writes the random llama-110m-shaped model (dim 768, 12 layers, vocab 32000, untied head) as F32, llama-quantize
# makes the other types, then llama-bench and `exeunt bench decode --model` run pp and tg on each file with the
# same threads, and a table gives both rates and their ratio (Exeunt / llama.cpp, medians for Exeunt, llama-bench's
# means for llama.cpp).
# usage: LLAMA_CPP=/path/to/llama.cpp [LLAMA_BUILD=build] [TYPES="f32 q8_0 q4_0 q4_k_m"] [REPEATS=5] [THREADS=nproc]
#        scripts/bench-llamacpp.sh [DIR]
# LLAMA_CPP is a built checkout (build/bin/llama-bench, build/bin/llama-quantize); DIR (default /tmp/exeunt-llamacpp)
# keeps the files between runs. For AVX2-only numbers on an AVX-512 machine, build llama.cpp a second time with
# -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF into build-avx2 and run with
# LLAMA_BUILD=build-avx2 EXEUNT_JVM_OPTS=-XX:UseAVX=2 (the JVM's vectors then stop at 256 bits).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
: "${LLAMA_CPP:?set LLAMA_CPP to a built llama.cpp checkout}"
bin="$LLAMA_CPP/${LLAMA_BUILD:-build}/bin"
qbin="$LLAMA_CPP/build/bin"; [ -x "$bin/llama-quantize" ] && qbin="$bin"
dir="${1:-/tmp/exeunt-llamacpp}"
types="${TYPES:-f32 q8_0 q4_0 q4_k_m}"
repeats="${REPEATS:-5}"
threads="${THREADS:-$(nproc)}"
mkdir -p "$dir"
f32="$dir/llama110m-f32.gguf"
[ -f "$f32" ] || "$root/exeunt" bench decode --write-gguf "$f32"
for t in $types; do
  f="$dir/llama110m-$t.gguf"
  if [ ! -f "$f" ]; then
    "$qbin/llama-quantize" "$f32" "$f" "$(echo "$t" | tr 'a-z' 'A-Z')" > "$dir/quantize-$t.log" 2>&1 || { cat "$dir/quantize-$t.log"; exit 1; }
  fi
  echo "== $t: llama-bench, then exeunt bench decode" >&2
  "$bin/llama-bench" -m "$f" -p 128 -n 64 -t "$threads" -r "$repeats" -o json > "$dir/$t.llamacpp.json" 2> "$dir/$t.llamacpp.log"
  EXEUNT_THREADS="$threads" "$root/exeunt" bench decode --model "$f" --repeats "$repeats" --json > "$dir/$t.exeunt.json"
done
echo "CPU: $(lscpu | sed -n "s/^Model name: *//p"), $threads threads; llama.cpp ${LLAMA_BUILD:-build}; JVM options: ${EXEUNT_JVM_OPTS:-none}"
python3 - "$dir" $types <<'PY'
import json, sys
d, types = sys.argv[1], sys.argv[2:]
print(f"| file | test | llama.cpp t/s | Exeunt t/s (median) | Exeunt / llama.cpp |")
print("|---|---|---:|---:|---:|")
for t in types:
    ref = {("pp" if r["n_prompt"] else "tg"): r for r in json.load(open(f"{d}/{t}.llamacpp.json"))}
    ours = {("pp" if r["n_prompt"] else "tg"): r for r in json.load(open(f"{d}/{t}.exeunt.json"))}
    for test in ("pp", "tg"):
        a, b = ref[test], ours[test]
        n = a["n_prompt"] or a["n_gen"]
        print(f"| llama110m-{t}.gguf | {test}{n} | {a['avg_ts']:.1f} | {b['median_ts']:.1f} | {b['median_ts'] / a['avg_ts']:.2f} |")
PY
