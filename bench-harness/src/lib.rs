//! Shared pieces of the criterion benches: the machine's measured FMA peak, so every figure
//! can be given as a percentage of it.

pub mod peak;

pub use peak::fma_peak_gflops;
