#!/usr/bin/env bash
# AddressSanitizer (nightly) over the SIMD kernel tests on x86-64: every hand-written and
# portable kernel (gemm, im2col, direct, winograd) runs instrumented against the naive oracle.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/asan}
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS=detect_leaks=1
export PROPTEST_CASES=${PROPTEST_CASES:-32}
cargo +nightly test -p kernels --target x86_64-unknown-linux-gnu --tests
