//! Differential: a fuzzed ConvSpec (any values, valid or not) and input size either fail
//! with a typed error or run under every registered algorithm within its tolerance of naive.
#![no_main]
use kernels::testing::{check, Case};
use kernels::{Activation, ConvSpec, Dims, Padding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let b = |i: usize| data[i] as usize;
    let cin = b(0) % 40;
    let groups = b(1) % 9;
    let spec = ConvSpec {
        in_channels: cin,
        out_channels: if b(2) % 3 == 0 { cin } else { b(2) % 40 },
        kernel_h: b(3) % 7,
        kernel_w: if b(4) % 2 == 0 { b(3) % 7 } else { b(4) % 7 },
        stride_h: b(5) % 4,
        stride_w: if b(6) % 2 == 0 { b(5) % 4 } else { b(6) % 4 },
        padding: Padding { top: b(7) % 4, left: b(8) % 4, bottom: b(9) % 4, right: b(10) % 4 },
        groups: if b(11) % 2 == 0 { cin } else { groups },
        dilation_h: 1 + b(12) % 2,
        dilation_w: 1 + b(12) % 2,
    };
    let dims = Dims::new(1 + b(13) % 2, b(14) % 24, b(15) % 24, cin);
    let activation = [Activation::None, Activation::Relu, Activation::Relu6][b(13) % 3];
    let Ok(case) = Case::random(spec, dims, activation, u64::from_le_bytes(data[..8].try_into().unwrap())) else {
        return; // a typed error for an invalid spec or size is the expected outcome
    };
    for algo in kernels::algorithms().expect("valid KERNELS_ISA") {
        if algo.supports(&spec) {
            let verdict = check(algo, &case, 1 + b(1) % 2).expect("a supported valid case runs");
            if let Err(msg) = verdict {
                panic!("{msg}");
            }
        }
    }
});
