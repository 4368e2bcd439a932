#!/usr/bin/env bash
# Bounded cargo-fuzz runs of the three targets (nightly + cargo-fuzz); fails on any crash.
# Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
status=0
for t in weights_loader npy_reader conv_differential; do
  echo "=== $t ($secs s)"
  mkdir -p corpus/$t
  log=$(mktemp)
  if cargo +nightly fuzz run -O "$t" corpus/$t -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=4096 >"$log" 2>&1; then
    grep -E "Done [0-9]+ runs" "$log" || tail -3 "$log"
  else
    echo "FAILED: $t"; tail -40 "$log"; status=1
  fi
  rm -f "$log"
done
exit $status
