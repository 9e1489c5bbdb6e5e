#!/usr/bin/env bash
# Data- and tensor-parallel scaling on this machine, side by side, medians of R rounds (default 3):
#   dp: 1 process x 2 threads   vs  mpirun -np 2 (one thread each), --dp 2, same global batch
#   tp: 1 process x 2 threads   vs  --tp 2 as 2 local thread ranks, and as mpirun -np 2 --tp 2
# tokens/s are from each run's train_log.jsonl: batch x seq / the median step_ms of the iterations after
# the first two (JIT warm-up); sync_ms is the time spent in the data-parallel exchange per step.
# usage: scripts/bench-parallel.sh [ROUNDS]   (run from the repository root, nothing else running)
set -euo pipefail
R=${1:-3}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
. scripts/bench-data.sh
bench_data "$W"
MODEL="--data $W/data.arrow --family gpt2 --layers 4 --d-model 256 --heads 8 --seq-len 128 --batch 8 --iters 8 --warmup 1 --eval-every 0 --save-every 1000 --exits 2 --exit-kind norm"
MPI="mpirun --oversubscribe --bind-to core --mca btl self,vader -np 2"
[ "$(id -u)" = 0 ] && MPI="mpirun --allow-run-as-root --oversubscribe --bind-to core --mca btl self,vader -np 2"
rate() { python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/train_log.jsonl") if '"loss"' in l][2:]
ms = statistics.median(r["step_ms"] for r in rows); sync = statistics.median(r["sync_ms"] for r in rows)
print(f"{8 * 128 / ms * 1000:.1f} {sync:.1f} {ms:.1f}")
PY
}
run() { local name=$1; shift; rm -rf "$W/$name"; "$@" --out "$W/$name" >"$W/$name.log" 2>&1 || { tail -5 "$W/$name.log"; exit 1; }; echo "$name $(rate "$W/$name")" >>"$W/results"; }
for i in $(seq "$R"); do
  run one  env EXEUNT_THREADS=2 ./exeunt train $MODEL
  run dp2  $MPI ./exeunt train $MODEL --dp 2
  run tp2local env EXEUNT_THREADS=2 ./exeunt train $MODEL --tp 2
  run tp2mpi $MPI ./exeunt train $MODEL --tp 2
done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
python3 - "$W/results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, tps, sync, ms = line.split(); runs[name].append((float(tps), float(sync), float(ms)))
med = {k: (statistics.median(t for t, _, _ in v), statistics.median(s for _, s, _ in v), statistics.median(m for _, _, m in v)) for k, v in runs.items()}
base = med["one"][0]
for k in ["one", "dp2", "tp2local", "tp2mpi"]:
    t, s, m = med[k]
    print(f"{k:9s} {t:8.1f} tokens/s  ratio {t / base:5.2f}  step {m:7.1f} ms  sync {s:6.1f} ms  (runs: {', '.join(f'{x[0]:.0f}' for x in runs[k])})")
PY
