#!/usr/bin/env bash
# Exit training overhead and bubble filling at pp=4, side by side, medians of R rounds (default 3):
#   noexit  the model without exits           exits  with two exits (layers 2 and 4 of 8: stages 0 and 1)
#   fill    with the exits and --fill-bubbles (EE-LLM's default count, r = 2)
# as 4 mpirun processes (one thread each) or, with ENGINE=local, 4 thread ranks of one process.
# Global batch 16, micro-batch 2: m = 8 micro-batches per step. Step times are medians of the iterations
# after the first two (JIT warm-up). One more run per configuration writes --trace-schedule, from which each
# stage's bubble (1 - busy / step span) is measured, against 1F1B's analytical (P-1)/(m+P-1). Peak host
# memory per stage (stage_peak_mb; per process, so meaningful with ENGINE=mpi) with deferred exits (the
# default) and with --defer-exits false (exit logits alive from forward to backward).
# usage: scripts/bench-pipeline.sh [ROUNDS]   (run from the repository root, nothing else running)
set -euo pipefail
R=${1:-3}
ENGINE=${ENGINE:-mpi}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
. scripts/bench-data.sh
bench_data "$W"
MODEL="--data $W/data.arrow --family gpt2 --layers 8 --d-model 128 --heads 4 --seq-len 64 --batch 16 --micro-batch-size 2 --iters 7 --warmup 1 --eval-every 0 --save-every 1000 --pp 4"
EXITS="--exits 2,4 --exit-kind norm"
if [ "$ENGINE" = mpi ]; then
  LAUNCH="mpirun --oversubscribe --mca btl self,vader -np 4"
  [ "$(id -u)" = 0 ] && LAUNCH="mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -np 4"
  LAUNCH="$LAUNCH env EXEUNT_THREADS=1"
else
  LAUNCH="env EXEUNT_THREADS=2"
fi
step() { python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/train_log.jsonl") if '"loss"' in l][2:]
print(f"{statistics.median(r['step_ms'] for r in rows):.1f}")
PY
}
run() { local name=$1; shift; rm -rf "$W/$name"; $LAUNCH ./exeunt train $MODEL "$@" --out "$W/$name" >"$W/$name.log" 2>&1 || { tail -5 "$W/$name.log"; exit 1; }; }
for i in $(seq "$R"); do
  run noexit;                   echo "noexit $(step "$W/noexit")" >>"$W/results"
  run exits $EXITS;             echo "exits $(step "$W/exits")" >>"$W/results"
  run fill $EXITS --fill-bubbles; echo "fill $(step "$W/fill")" >>"$W/results"
done
run inline $EXITS --defer-exits false
run noexit --trace-schedule "$W/noexit.json"
run exits $EXITS --trace-schedule "$W/exits.json"
run fill $EXITS --fill-bubbles --trace-schedule "$W/fill.json"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; engine $ENGINE, pp 4, m 8"
python3 - "$W" <<'PY'
import collections, json, statistics, sys
w = sys.argv[1]
runs = collections.defaultdict(list)
for line in open(w + "/results"):
    name, ms = line.split(); runs[name].append(float(ms))
med = {k: statistics.median(v) for k, v in runs.items()}
for k in ["noexit", "exits", "fill"]:
    print(f"{k:7s} step {med[k]:8.1f} ms  vs no exits {med[k] / med['noexit']:5.3f}x  (runs: {', '.join(f'{x:.0f}' for x in runs[k])})")
P, m = 4, 8
def peaks(name):
    rows = [json.loads(l) for l in open(f"{w}/{name}/train_log.jsonl") if '"loss"' in l][2:]
    return [statistics.median(r["stage_peak_mb"][s] for r in rows) for s in range(P)]
for k in ["noexit", "exits", "inline"]:
    print(f"peak MB per stage, {k:7s}: " + " ".join(f"{x:7.1f}" for x in peaks(k)) + ("  (exits deferred)" if k == "exits" else "  (exits in the forward)" if k == "inline" else ""))
print(f"analytical 1F1B bubble (P-1)/(m+P-1) = {(P - 1) / (m + P - 1):.3f}")
busy_kinds = {"forward", "backward", "fill forward", "fill backward"}
for k in ["noexit", "exits", "fill"]:
    ev = [e for e in json.load(open(f"{w}/{k}.json"))["traceEvents"] if e["ph"] == "X"]
    span = max(e["ts"] + e["dur"] for e in ev)
    per = []
    for s in range(P):
        mine = [e for e in ev if e["tid"] == s]
        busy = sum(e["dur"] for e in mine if e["cat"] in busy_kinds)
        fill = sum(e["dur"] for e in mine if e["cat"].startswith("fill") and e["cat"] in busy_kinds)
        exit_ = sum(e["dur"] for e in mine if e["cat"] in ("exit", "fill exit"))
        per.append((1 - busy / span, fill / span, exit_ / span))
    print(f"{k:7s} traced step {span / 1000:7.1f} ms; per stage bubble " + " ".join(f"{b:.3f}" for b, _, _ in per)
          + f" (mean {statistics.mean(b for b, _, _ in per):.3f}); fill share " + " ".join(f"{f:.3f}" for _, f, _ in per)
          + "; exit share " + " ".join(f"{x:.3f}" for _, _, x in per))
PY
