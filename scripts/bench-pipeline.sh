#!/usr/bin/env bash
# Exit training overhead and bubble filling at pp=4, side by side, medians of R rounds (default 3):
#   noexit  the model without exits           exits  with two exits at 1/4 and 1/2 depth (stages 0 and 1)
#   fill    with the exits and --fill-bubbles (EE-LLM's default count, r = 2)
#   fitted  with --fill-bubbles --backward-forward-ratio measured (fills fitted to the measured stage times)
# as 4 mpirun processes (one thread each), with ENGINE=local as 4 thread ranks of one process, or with
# ENGINE=serial as 4 thread ranks that compute one at a time with all cores (-Dexeunt.pipeline.serialize):
# then the measured step is the sum of every stage's work and only the replay below is a step time, but
# every traced duration is a stage's own, free of the others' contention.
# Global batch 16, micro-batch 2: m = 8 micro-batches per step. Step times are medians of the iterations
# after the first three (JIT warm-up; measured fills start in the third). One more run per configuration writes --trace-schedule, from which each
# stage's bubble (1 - busy / step span) is measured, against 1F1B's analytical (P-1)/(m+P-1). Peak host
# memory per stage (stage_peak_mb; per process, so meaningful with ENGINE=mpi) with deferred exits (the
# default) and with --defer-exits false (exit logits alive from forward to backward).
# LAYERS (default 8) sets the depth: an exit head costs about 0.65 of a layer here (d 128, vocab 2048), so
# the exit stages' share of it shrinks as their layer count grows.
# The step is also replayed from the trace as if each stage had its own core (the traced order and
# durations, each action waiting only for its message), which is what a machine with a core or a device
# per stage would see; on fewer cores than stages the measured times include the stages' contention.
# usage: [ENGINE=local|serial] [LAYERS=32] scripts/bench-pipeline.sh [ROUNDS]   (from the repository root, nothing else running)
set -euo pipefail
R=${1:-3}
ENGINE=${ENGINE:-mpi}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
. scripts/bench-data.sh
bench_data "$W"
L=${LAYERS:-8}
MODEL="--data $W/data.arrow --family gpt2 --layers $L --d-model 128 --heads 4 --seq-len 64 --batch 16 --micro-batch-size 2 --iters 8 --warmup 1 --eval-every 0 --save-every 1000 --pp 4"
EXITS="--exits $((L / 4)),$((L / 2)) --exit-kind norm"
if [ "$ENGINE" = mpi ]; then
  LAUNCH="mpirun --oversubscribe --mca btl self,vader -np 4"
  [ "$(id -u)" = 0 ] && LAUNCH="mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -np 4"
  LAUNCH="$LAUNCH env EXEUNT_THREADS=1"
elif [ "$ENGINE" = serial ]; then # one process, the stages computing one at a time with both cores: clean durations
  LAUNCH="env EXEUNT_THREADS=2 EXEUNT_JVM_OPTS=-Dexeunt.pipeline.serialize=true"
else
  LAUNCH="env EXEUNT_THREADS=2"
fi
step() { python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/train_log.jsonl") if '"loss"' in l][3:]
print(f"{statistics.median(r['step_ms'] for r in rows):.1f}")
PY
}
run() { local name=$1; shift; rm -rf "$W/$name"; $LAUNCH ./exeunt train $MODEL "$@" --out "$W/$name" >"$W/$name.log" 2>&1 || { tail -5 "$W/$name.log"; exit 1; }; }
for i in $(seq "$R"); do
  run noexit;                   echo "noexit $(step "$W/noexit")" >>"$W/results"
  run exits $EXITS;             echo "exits $(step "$W/exits")" >>"$W/results"
  run fill $EXITS --fill-bubbles; echo "fill $(step "$W/fill")" >>"$W/results"
  run fitted $EXITS --fill-bubbles --backward-forward-ratio measured; echo "fitted $(step "$W/fitted")" >>"$W/results"
done
run inline $EXITS --defer-exits false
run noexit --trace-schedule "$W/noexit.json"
run exits $EXITS --trace-schedule "$W/exits.json"
run fill $EXITS --fill-bubbles --trace-schedule "$W/fill.json"
run fitted $EXITS --fill-bubbles --backward-forward-ratio measured --trace-schedule "$W/fitted.json"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; engine $ENGINE, pp 4, m 8, $L layers"
python3 - "$W" <<'PY'
import collections, json, statistics, sys
w = sys.argv[1]
runs = collections.defaultdict(list)
for line in open(w + "/results"):
    name, ms = line.split(); runs[name].append(float(ms))
med = {k: statistics.median(v) for k, v in runs.items()}
for k in ["noexit", "exits", "fill", "fitted"]:
    print(f"{k:7s} step {med[k]:8.1f} ms  vs no exits {med[k] / med['noexit']:5.3f}x  (runs: {', '.join(f'{x:.0f}' for x in runs[k])})")
P, m = 4, 8
def peaks(name):
    rows = [json.loads(l) for l in open(f"{w}/{name}/train_log.jsonl") if '"loss"' in l][3:]
    return [statistics.median(r["stage_peak_mb"][s] for r in rows) for s in range(P)]
for k in ["noexit", "exits", "inline"]:
    print(f"peak MB per stage, {k:7s}: " + " ".join(f"{x:7.1f}" for x in peaks(k)) + ("  (exits deferred)" if k == "exits" else "  (exits in the forward)" if k == "inline" else ""))
print(f"analytical 1F1B bubble (P-1)/(m+P-1) = {(P - 1) / (m + P - 1):.3f}")
busy_kinds = {"forward", "backward", "fill forward", "fill backward"}
def replay(ev):
    """The traced step replayed without contention: each stage's actions in their traced order, each taking
    the median traced duration of its stage and kind (so one slow event, a GC or another process, does not
    decide the step), each waiting only for the message it needs (a stage on its own core)."""
    acts = {s: sorted((e for e in ev if e["tid"] == s and e["cat"] in busy_kinds), key=lambda e: e["ts"]) for s in range(P)}
    med = {(s, c): statistics.median(e["dur"] for e in acts[s] if e["cat"] == c) for s in range(P) for c in {e["cat"] for e in acts[s]}}
    acts = {s: [dict(e, dur=med[(s, e["cat"])]) for e in acts[s]] for s in range(P)}
    kind = lambda e: "F" if "forward" in e["cat"] else "B"
    micro = lambda e: int(e["name"].split()[-1])
    has = {(s, kind(e), micro(e)) for s in range(P) for e in acts[s]}
    done, clock, nxt = {}, [0.0] * P, [0] * P
    while any(nxt[s] < len(acts[s]) for s in range(P)):
        moved = False
        for s in range(P):
            while nxt[s] < len(acts[s]):
                e = acts[s][nxt[s]]; k, i = kind(e), micro(e)
                dep = (s - 1, "F", i) if k == "F" and s > 0 else (s + 1, "B", i) if k == "B" and (s + 1, "B", i) in has else None
                if dep is not None and dep not in done: break
                start = max(clock[s], done.get(dep, 0.0)); clock[s] = start + e["dur"]; done[(s, k, i)] = clock[s]; nxt[s] += 1; moved = True
        if not moved: raise SystemExit("trace replay deadlocked")
    return max(clock), [sum(e["dur"] for e in acts[s]) for s in range(P)]
replays = {}
for k in ["noexit", "exits", "fill", "fitted"]:
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
    replays[k] = replay(ev)
print("replayed on a core per stage (traced order, median durations per stage and kind, no contention):")
for k in ["noexit", "exits", "fill", "fitted"]:
    span, busy = replays[k]
    print(f"{k:7s} step {span / 1000:7.1f} ms  vs no exits {span / replays['noexit'][0]:5.3f}x  bubble per stage "
          + " ".join(f"{1 - b / span:.3f}" for b in busy) + f" (mean {statistics.mean(1 - b / span for b in busy):.3f})")
PY
