#!/usr/bin/env bash
# Exeunt against llama.cpp on the same GGUF files, one after the other in one run: `bench decode --write-gguf`
# writes the random llama-110m-shaped model (dim 768, 12 layers, vocab 32000, untied head) as F32, llama-quantize
# makes the other types, then llama-bench and `exeunt bench decode --model` run pp and tg on each file with the
# same threads, and a table gives both rates and their ratio (Exeunt / llama.cpp, medians for Exeunt, llama-bench's
# means for llama.cpp).
# usage: LLAMA_CPP=/path/to/llama.cpp [TYPES="f32 q8_0 q4_0 q4_k_m"] [REPEATS=5] [THREADS=nproc] scripts/bench-llamacpp.sh [DIR]
# LLAMA_CPP is a built checkout (build/bin/llama-bench, build/bin/llama-quantize); DIR (default /tmp/exeunt-llamacpp)
# keeps the files between runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
: "${LLAMA_CPP:?set LLAMA_CPP to a built llama.cpp checkout}"
bin="$LLAMA_CPP/build/bin"
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
    "$bin/llama-quantize" "$f32" "$f" "$(echo "$t" | tr 'a-z' 'A-Z')" > "$dir/quantize-$t.log" 2>&1 || { cat "$dir/quantize-$t.log"; exit 1; }
  fi
  echo "== $t: llama-bench, then exeunt bench decode" >&2
  "$bin/llama-bench" -m "$f" -p 128 -n 64 -t "$threads" -r "$repeats" -o json > "$dir/$t.llamacpp.json" 2> "$dir/$t.llamacpp.log"
  EXEUNT_THREADS="$threads" "$root/exeunt" bench decode --model "$f" --repeats "$repeats" --json > "$dir/$t.exeunt.json"
done
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $threads threads"
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
