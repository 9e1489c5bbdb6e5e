#!/usr/bin/env bash
# Writes the llama.cpp side of the GGUF reference fixtures (GgufLlamaCppGreedyTest):
#   kquant-*.gguf  a dim-256 random Llama (make_reference.py --kquant-source) quantized by llama.cpp's own
#                  llama-quantize: Q4_K_M and Q5_K_M (Q4_K / Q5_K with Q6_K tensors mixed in), Q6_K, Q4_0
#                  (whose output tensor llama-quantize writes as Q6_K) and Q2_K (with Q3_K and Q6_K tensors)
#   llamacpp.txt   llama.cpp's greedy tokens for every fixture file and prompt, each with the gap between its
#                  top two logits at that step (llamacpp_greedy.cpp)
# usage: LLAMA_CPP=/path/to/llama.cpp (built: build/bin/libllama.so, llama-quantize) ./make_llamacpp_fixtures.sh
# Needs numpy and gguf-py (pip install gguf, or LLAMA_CPP/gguf-py is put on PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")"
: "${LLAMA_CPP:?set LLAMA_CPP to a built llama.cpp checkout}"
bin="$LLAMA_CPP/build/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$LLAMA_CPP/gguf-py${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c 'import sentencepiece' 2>/dev/null; then
  # gguf-py imports sentencepiece for conversions these scripts do not use
  mkdir -p "$work/py/sentencepiece" && echo 'class SentencePieceProcessor: pass' > "$work/py/sentencepiece/__init__.py"
  export PYTHONPATH="$PYTHONPATH:$work/py"
fi
python3 make_reference.py --kquant-source "$work/kquant-f32.gguf"
for t in Q4_K_M Q5_K_M Q6_K Q4_0 Q2_K; do
  "$bin/llama-quantize" "$work/kquant-f32.gguf" "kquant-$(echo "$t" | tr 'A-Z' 'a-z').gguf" "$t" > "$work/quantize.log" 2>&1 \
    || { cat "$work/quantize.log"; exit 1; }
done
g++ -O2 -std=c++17 -I"$LLAMA_CPP/include" -I"$LLAMA_CPP/ggml/include" llamacpp_greedy.cpp -L"$bin" -lllama \
    -Wl,-rpath,"$bin" -o "$work/llamacpp_greedy"
prompts=$(grep '^prompt ' expected.txt | cut -d: -f2 | sed 's/^ //; s/ /,/g')
{
  echo "# written by make_llamacpp_fixtures.sh: llama.cpp's greedy tokens (id/top-2 logit gap), 24 per prompt"
  echo "# llama.cpp $(git -C "$LLAMA_CPP" describe --always --tags 2>/dev/null || echo 'from a source snapshot'), $(date -u +%Y-%m-%d)"
  for f in llama-f32.gguf llama-q8_0.gguf llama-q4_0.gguf kquant-q4_k_m.gguf kquant-q5_k_m.gguf kquant-q6_k.gguf kquant-q4_0.gguf kquant-q2_k.gguf; do
    i=0
    # shellcheck disable=SC2086
    "$work/llamacpp_greedy" "$f" 24 $prompts 2>/dev/null | while read -r line; do echo "$f $i: $line"; i=$((i + 1)); done
  done
} > llamacpp.txt
cat llamacpp.txt
