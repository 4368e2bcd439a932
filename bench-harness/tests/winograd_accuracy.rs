//! The measured Winograd error stays within each tile size's promised tolerance (the
//! measurement is the harness's report, `results/winograd-accuracy.md`).
#![cfg(feature = "winograd")]

use bench_harness::winograd_accuracy::{accuracy, accuracy_table, bounded};

#[test]
fn measured_accuracy_is_within_tolerance() {
    let rows = accuracy().unwrap();
    eprintln!("{}", accuracy_table(&rows));
    // Data with a dynamic range inside one tile is reported, not bounded: the transforms
    // spread each input's rounding over the whole tile (docs/winograd.md).
    for r in rows.iter().filter(|r| r.tile > 0 && bounded(r.data)) {
        assert!(
            r.max_rel <= r.tolerance,
            "{} on {} / {}: {:.3e} > {:.1e}",
            r.algorithm,
            r.layer,
            r.data,
            r.max_rel,
            r.tolerance
        );
    }
}
