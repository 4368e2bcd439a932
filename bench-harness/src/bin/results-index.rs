//! Regenerates `results/README.md`, the index of the per-CPU results folders, from the
//! provenance lines of the files in them (`bench_harness::index`).
//!
//! ```sh
//! cargo run --release -p bench-harness --bin results-index
//! ```

fn main() {
    match bench_harness::index::write_index(&bench_harness::machine::results_root()) {
        Ok(path) => eprintln!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("error: cannot write the results index: {e}");
            std::process::exit(1);
        }
    }
}
