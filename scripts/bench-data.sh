# Sourced by the bench-*.sh scripts: builds the jar once, then bench_data DIR writes DIR/data.arrow, the
# JDK's java.util sources tokenized with a 2048-token BPE trained on them (the same corpus every run).
./exeunt version >/dev/null # build the jar once, not in several processes at once
bench_data() {
  local dir=$1 jh
  [ -f "$dir/data.arrow" ] && return
  mkdir -p "$dir/src"; jh=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  [ -f "$jh/lib/src.zip" ] || jh=/usr/lib/jvm/temurin-25-jdk-amd64
  (cd "$dir/src" && unzip -q -o "$jh/lib/src.zip" 'java.base/java/util/*.java')
  ./exeunt prepare --input "$dir/src" --train-tokenizer 2048 --out "$dir/data.arrow" >/dev/null 2>&1
}
