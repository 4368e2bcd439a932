//! Any bytes given to the safetensors loader end in weights or a typed error, never a panic
//! or a large allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use model::{Config, Weights};

fuzz_target!(|data: &[u8]| {
    let config = Config { width: 0.25, resolution: 32, classes: 2 };
    if let Ok(w) = Weights::from_safetensors(data, &config) {
        // What loads must save and load back to the same weights.
        let bytes = w.to_safetensors().expect("loaded weights serialise");
        assert_eq!(Weights::from_safetensors(&bytes, &config).expect("round trip"), w);
    }
});
