//! The one list of algorithms, and the kernel sets built from it.
//!
//! Tests, benches, the CLI and the report all walk [`algorithms`] and [`kernel_sets`]; nobody
//! keeps a second list. Adding an algorithm = one line in [`COMPILED`] (under its cargo
//! feature); it then appears in every test sweep, bench table and kernel set automatically.

use std::fmt;

use crate::algo::{ConvAlgorithm, LayerKind, PreparedConv};
use crate::error::{KernelError, Result};
use crate::gemm::{self, Gemm};
use crate::im2col::Im2col;
use crate::isa;
use crate::naive::Naive;
use crate::spec::{Activation, ConvSpec};
#[cfg(feature = "winograd")]
use crate::winograd;

/// Every algorithm compiled into this build, runnable here or not.
///
/// Winograd: the preferred tile size of each flavour comes first (kernel-set recipes take
/// the first `winograd` algorithm of a flavour); every tile size is registered so tests and
/// benches cover them all. F(2) first: in MobileNetV1 the `winograd` set runs only the
/// stride-1 depthwise layers, where F(2) beats F(4) on every layer (dw7, AVX-512: 46 vs
/// 85 us; docs/winograd.md); F(4) wins only on wide dense layers (56x56x64: 0.59 vs 0.85 ms).
static COMPILED: &[&dyn ConvAlgorithm] = &[
    &Naive,
    // Packed GEMM: pointwise and FC layers (gemm-*), any dense or grouped conv (im2col-*).
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    &Gemm { name: "gemm-avx512", flavour: &gemm::avx512::FLAVOUR },
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    &Im2col { name: "im2col-avx512", flavour: &gemm::avx512::FLAVOUR },
    #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
    &Gemm { name: "gemm-avx2", flavour: &gemm::avx2::FLAVOUR },
    #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
    &Im2col { name: "im2col-avx2", flavour: &gemm::avx2::FLAVOUR },
    #[cfg(all(feature = "neon", target_arch = "aarch64"))]
    &Gemm { name: "gemm-neon", flavour: &gemm::neon::FLAVOUR },
    #[cfg(all(feature = "neon", target_arch = "aarch64"))]
    &Im2col { name: "im2col-neon", flavour: &gemm::neon::FLAVOUR },
    #[cfg(feature = "pulp")]
    &Gemm { name: "gemm-pulp", flavour: &gemm::pulp::FLAVOUR },
    #[cfg(feature = "pulp")]
    &Im2col { name: "im2col-pulp", flavour: &gemm::pulp::FLAVOUR },
    #[cfg(feature = "wide")]
    &Gemm { name: "gemm-wide", flavour: &gemm::wide::FLAVOUR },
    #[cfg(feature = "wide")]
    &Im2col { name: "im2col-wide", flavour: &gemm::wide::FLAVOUR },
    &Gemm { name: "gemm-scalar", flavour: &gemm::scalar::FLAVOUR },
    &Im2col { name: "im2col-scalar", flavour: &gemm::scalar::FLAVOUR },
    // Direct depthwise (direct-*).
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    &crate::direct::avx512::DirectAvx512,
    #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
    &crate::direct::avx2::DirectAvx2,
    #[cfg(all(feature = "neon", target_arch = "aarch64"))]
    &crate::direct::neon::DirectNeon,
    #[cfg(feature = "pulp")]
    &crate::direct::pulp::DirectPulp,
    #[cfg(feature = "wide")]
    &crate::direct::wide::DirectWide,
    // Winograd (winograd-f{2,4,6}-*), stride-1 3x3 dense and depthwise.
    #[cfg(all(feature = "winograd", feature = "avx512", target_arch = "x86_64"))]
    &winograd::WINOGRAD_F2_AVX512,
    #[cfg(all(feature = "winograd", feature = "avx512", target_arch = "x86_64"))]
    &winograd::WINOGRAD_F4_AVX512,
    #[cfg(all(feature = "winograd", feature = "avx512", target_arch = "x86_64"))]
    &winograd::WINOGRAD_F6_AVX512,
    #[cfg(all(feature = "winograd", feature = "avx2", target_arch = "x86_64"))]
    &winograd::WINOGRAD_F2_AVX2,
    #[cfg(all(feature = "winograd", feature = "avx2", target_arch = "x86_64"))]
    &winograd::WINOGRAD_F4_AVX2,
    #[cfg(all(feature = "winograd", feature = "avx2", target_arch = "x86_64"))]
    &winograd::WINOGRAD_F6_AVX2,
    #[cfg(all(feature = "winograd", feature = "neon", target_arch = "aarch64"))]
    &winograd::WINOGRAD_F2_NEON,
    #[cfg(all(feature = "winograd", feature = "neon", target_arch = "aarch64"))]
    &winograd::WINOGRAD_F4_NEON,
    #[cfg(all(feature = "winograd", feature = "neon", target_arch = "aarch64"))]
    &winograd::WINOGRAD_F6_NEON,
    #[cfg(feature = "winograd")]
    &winograd::WINOGRAD_F2_SCALAR,
    #[cfg(feature = "winograd")]
    &winograd::WINOGRAD_F4_SCALAR,
    #[cfg(feature = "winograd")]
    &winograd::WINOGRAD_F6_SCALAR,
];

/// Every algorithm compiled in, including those this CPU cannot run (for loud skips).
pub fn compiled() -> &'static [&'static dyn ConvAlgorithm] {
    COMPILED
}

/// Every algorithm compiled in and runnable on this CPU under the `KERNELS_ISA` ceiling.
///
/// Errors if `KERNELS_ISA` is unknown or names an ISA this CPU lacks.
pub fn algorithms() -> Result<Vec<&'static dyn ConvAlgorithm>> {
    isa::ceiling()?;
    Ok(COMPILED.iter().copied().filter(|a| isa::available(a.isa())).collect())
}

/// Looks up one runnable algorithm by name.
pub fn algorithm(name: &str) -> Result<&'static dyn ConvAlgorithm> {
    algorithms()?.into_iter().find(|a| a.name() == name).ok_or_else(|| KernelError::Unsupported {
        algorithm: "registry",
        spec: format!("no runnable algorithm named {name:?}"),
    })
}

/// A named choice of algorithms per layer kind: for each kind, a preference chain whose first
/// algorithm that supports a shape runs it, with `naive` as the last resort.
#[derive(Clone)]
pub struct KernelSet {
    name: String,
    chains: [Vec<&'static dyn ConvAlgorithm>; 4],
}

impl KernelSet {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The algorithm this set prefers for `kind` (the head of its chain).
    pub fn algorithm(&self, kind: LayerKind) -> &'static dyn ConvAlgorithm {
        self.chains[kind as usize].first().copied().unwrap_or(&Naive)
    }

    /// The whole preference chain for `kind` (naive, the implicit last resort, not included).
    pub fn chain(&self, kind: LayerKind) -> &[&'static dyn ConvAlgorithm] {
        &self.chains[kind as usize]
    }

    /// The algorithm that will actually run `spec` as a `kind` layer: the first in the chain
    /// that supports it, else naive.
    pub fn choose(&self, kind: LayerKind, spec: &ConvSpec) -> &'static dyn ConvAlgorithm {
        self.chains[kind as usize].iter().copied().find(|a| a.supports(spec)).unwrap_or(&Naive)
    }

    /// The largest tolerance of any algorithm this set may run (for end-to-end checks).
    pub fn tolerance(&self) -> f64 {
        self.chains.iter().flatten().map(|a| a.tolerance()).fold(0.0, f64::max)
    }

    /// Prepares `spec` with the chosen algorithm.
    pub fn prepare(
        &self,
        kind: LayerKind,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Box<dyn PreparedConv>> {
        self.choose(kind, spec).prepare(spec, weights_oihw, bias, activation)
    }
}

impl fmt::Display for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        for kind in LayerKind::ALL {
            let names: Vec<&str> = self.chain(kind).iter().map(|a| a.name()).chain(["naive"]).collect();
            write!(f, "  {}={}", kind, names.join(">"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A kernel-set recipe: its name, the family that defines it, and per layer kind (in
/// [`LayerKind::ALL`] order) the families to try in order.
struct Recipe {
    name: &'static str,
    signature: &'static str,
    families: [&'static [&'static str]; 4],
}

const RECIPES: &[Recipe] = &[
    Recipe {
        name: "im2col",
        signature: "im2col",
        families: [&["im2col"], &["im2col"], &["gemm"], &["gemm"]],
    },
    Recipe {
        name: "direct",
        signature: "direct",
        families: [&["im2col"], &["direct", "im2col"], &["gemm"], &["gemm"]],
    },
    // Winograd where it applies (stride-1 3x3), the best other algorithm elsewhere.
    Recipe {
        name: "winograd",
        signature: "winograd",
        families: [&["winograd", "im2col"], &["winograd", "direct", "im2col"], &["gemm"], &["gemm"]],
    },
];

/// Flavours from most to least preferred when a recipe names no flavour.
const FLAVOURS: &[&str] = &["avx512", "avx2", "neon", "pulp", "wide", "scalar"];

/// Every kernel set runnable here: `naive`; for each recipe and each flavour that has the
/// recipe's defining family, `recipe-flavour` (e.g. `direct-avx2`), where each family takes
/// that flavour or else the best one here; and the bare recipe name as the best flavour
/// here (e.g. `direct` = `direct-avx512` on a CPU with AVX-512).
pub fn kernel_sets() -> Result<Vec<KernelSet>> {
    let algos = algorithms()?;
    let find = |family: &str, flavour: &str| {
        algos.iter().copied().find(|a| a.family() == family && a.flavour() == flavour)
    };
    let best = |family: &str, prefer: &str| {
        std::iter::once(prefer).chain(FLAVOURS.iter().copied()).find_map(|fl| find(family, fl))
    };
    let mut sets = vec![KernelSet { name: "naive".into(), chains: Default::default() }];
    for recipe in RECIPES {
        let flavours: Vec<&str> =
            FLAVOURS.iter().copied().filter(|fl| find(recipe.signature, fl).is_some()).collect();
        for (i, &fl) in flavours.iter().enumerate() {
            let chains =
                recipe.families.map(|families| families.iter().filter_map(|f| best(f, fl)).collect());
            if i == 0 {
                sets.push(KernelSet { name: recipe.name.into(), chains: chains.clone() });
            }
            sets.push(KernelSet { name: format!("{}-{fl}", recipe.name), chains });
        }
    }
    Ok(sets)
}

/// Looks up a runnable kernel set by name; the error lists the ones that exist.
pub fn kernel_set(name: &str) -> Result<KernelSet> {
    let sets = kernel_sets()?;
    let available = sets.iter().map(|s| s.name.clone()).collect();
    sets.into_iter()
        .find(|s| s.name == name)
        .ok_or(KernelError::UnknownKernelSet { name: name.to_string(), available })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_is_always_there_and_names_are_unique() {
        let sets = kernel_sets().unwrap();
        assert_eq!(sets[0].name(), "naive");
        let mut names: Vec<_> = sets.iter().map(|s| s.name().to_string()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), sets.len());
        let mut algos: Vec<_> = algorithms().unwrap().iter().map(|a| a.name()).collect();
        algos.sort();
        algos.dedup();
        assert_eq!(algos.len(), algorithms().unwrap().len());
    }

    #[test]
    fn chains_fall_back_past_unsupported_shapes() {
        // conv0 is stride 2: a Winograd set must run it with its next family, not naive.
        let conv0 = ConvSpec::dense(3, 32, 3, 2, 1);
        for set in kernel_sets().unwrap() {
            let chosen = set.choose(LayerKind::Dense, &conv0);
            assert!(chosen.supports(&conv0), "{}", set.name());
            if set.chain(LayerKind::Dense).len() > 1 {
                assert_ne!(chosen.name(), "naive", "{}", set.name());
            }
        }
    }

    #[test]
    fn unknown_set_lists_alternatives() {
        match kernel_set("fastest-ever") {
            Err(KernelError::UnknownKernelSet { available, .. }) => {
                assert!(available.contains(&"naive".to_string()))
            }
            other => panic!("expected UnknownKernelSet, got {other:?}"),
        }
    }
}
