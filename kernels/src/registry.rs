//! The one list of algorithms, and the kernel sets built from it.
//!
//! Tests, benches, the CLI and the report all walk [`algorithms`] and [`kernel_sets`]; nobody
//! keeps a second list. Adding an algorithm = one line in [`COMPILED`] (under its cargo
//! feature); it then appears in every test sweep, bench table and kernel set automatically.

use std::fmt;

use crate::algo::{ConvAlgorithm, LayerKind, PreparedConv};
use crate::error::{KernelError, Result};
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

/// A named choice of algorithm per layer kind, with `naive` as the fallback for shapes the
/// choice does not support.
#[derive(Clone)]
pub struct KernelSet {
    name: String,
    choice: [&'static dyn ConvAlgorithm; 4],
}

impl KernelSet {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The algorithm this set names for `kind`.
    pub fn algorithm(&self, kind: LayerKind) -> &'static dyn ConvAlgorithm {
        self.choice[kind as usize]
    }

    /// The algorithm that will actually run `spec` as a `kind` layer (naive if the set's
    /// choice does not support it).
    pub fn choose(&self, kind: LayerKind, spec: &ConvSpec) -> &'static dyn ConvAlgorithm {
        let a = self.algorithm(kind);
        if a.supports(spec) {
            a
        } else {
            &Naive
        }
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
            write!(f, "  {}={}", kind, self.algorithm(kind).name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A kernel-set recipe: its name, the family that defines it, and the family per layer
/// kind (in [`LayerKind::ALL`] order).
struct Recipe {
    name: &'static str,
    signature: &'static str,
    families: [&'static str; 4],
}

const RECIPES: &[Recipe] = &[
    Recipe { name: "im2col", signature: "im2col", families: ["im2col", "im2col", "gemm", "gemm"] },
    Recipe { name: "direct", signature: "direct", families: ["im2col", "direct", "gemm", "gemm"] },
    Recipe { name: "winograd", signature: "winograd", families: ["winograd", "winograd", "gemm", "gemm"] },
];

/// Flavours from most to least preferred when a recipe names no flavour.
const FLAVOURS: &[&str] = &["avx512", "avx2", "neon", "pulp", "wide", "scalar"];

/// Every kernel set runnable here: `naive`; for each recipe and each flavour that has the
/// recipe's defining family, `recipe-flavour` (e.g. `direct-avx2`); and the bare recipe name
/// as the best flavour here (e.g. `direct` = `direct-avx512` on Zen 4).
pub fn kernel_sets() -> Result<Vec<KernelSet>> {
    let algos = algorithms()?;
    let find = |family: &str, flavour: &str| {
        algos.iter().copied().find(|a| a.family() == family && a.flavour() == flavour)
    };
    let best = |family: &str, prefer: &str| {
        std::iter::once(prefer)
            .chain(FLAVOURS.iter().copied())
            .find_map(|fl| find(family, fl))
            .unwrap_or(&Naive as &dyn ConvAlgorithm)
    };
    let mut sets = vec![KernelSet { name: "naive".into(), choice: [&Naive; 4] }];
    for recipe in RECIPES {
        let flavours: Vec<&str> =
            FLAVOURS.iter().copied().filter(|fl| find(recipe.signature, fl).is_some()).collect();
        for (i, &fl) in flavours.iter().enumerate() {
            let choice = recipe.families.map(|family| best(family, fl));
            if i == 0 {
                sets.push(KernelSet { name: recipe.name.into(), choice });
            }
            sets.push(KernelSet { name: format!("{}-{fl}", recipe.name), choice });
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
    fn unknown_set_lists_alternatives() {
        match kernel_set("fastest-ever") {
            Err(KernelError::UnknownKernelSet { available, .. }) => {
                assert!(available.contains(&"naive".to_string()))
            }
            other => panic!("expected UnknownKernelSet, got {other:?}"),
        }
    }
}
