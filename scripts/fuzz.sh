#!/usr/bin/env bash
# Bounded cargo-fuzz runs of the three targets (nightly + cargo-fuzz).
# Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in weights_loader npy_reader conv_differential; do
  echo "=== $t ($secs s)"
  mkdir -p corpus/$t
  cargo +nightly fuzz run -O "$t" corpus/$t -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=4096 2>&1 |
    grep -E "Done [0-9]+ runs|ERROR|panicked|SUMMARY|crash-" || true
done
