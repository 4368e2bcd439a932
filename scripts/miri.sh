#!/usr/bin/env bash
# Miri (nightly) over the scalar, naive, packing and im2col tests. SIMD paths are not
# detected under Miri, so only the portable code runs. Tree Borrows: crossbeam-epoch (under
# rayon) trips a known Stacked Borrows false positive. Proptest cases are cut to keep the
# interpreter's run to minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup +nightly component add miri rust-src
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/miri}
export MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-tree-borrows"
export PROPTEST_CASES=${PROPTEST_CASES:-1}
cargo +nightly miri test -p kernels --lib
cargo +nightly miri test -p kernels --test naive
cargo +nightly miri test -p kernels --test gemm -- \
  every_tile_agrees_with_the_triple_loop nan_and_bad_lengths im2col_on_dense_and_grouped_specs im2col_scratch_too_small_is_an_error
cargo +nightly miri test -p model --lib -- npy weights::tests::seeded_init_is_deterministic
