//! Any bytes given to the `.npy` reader end in an array or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use model::npy;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = npy::parse(data) {
        assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
        assert_eq!(npy::parse(&npy::to_bytes(&a.shape, &a.data)).expect("round trip").shape, a.shape);
    }
});
