#!/usr/bin/env bash
# Thread scaling of the whole network and of every layer: `mobilenet bench --json` at 1, 2,
# 4, ... threads up to the core count. Usage: scripts/thread-scaling.sh [out-dir] [kernel set]
set -euo pipefail
out=${1:-scaling}
set_name=${2:-direct}
bin=${MOBILENET:-target/release/mobilenet}
mkdir -p "$out"
nproc > "$out/nproc.txt"
grep -m1 "model name" /proc/cpuinfo > "$out/cpu.txt" || true
cores=$(nproc)
t=1
while [ "$t" -le "$cores" ]; do
  "$bin" bench --kernels "$set_name" --threads "$t" --iters 200 --json > "$out/$set_name-t$t.json"
  echo "threads $t: $(grep -o '"median_ms":[0-9.]*' "$out/$set_name-t$t.json" | tail -1)"
  t=$((t * 2))
done
