//! The one list of algorithms, and the kernel sets built from it.
//!
//! Tests, benches, the CLI and the report all walk [`algorithms`] and [`kernel_sets`]; nobody
//! keeps a second list. The list is the families times the backend table
//! ([`Backend::ALL`]): adding a backend (one `simd/` file and one table row) adds every family
//! on it; adding a family is one line in [`compiled`]. Either then appears in every test
//! sweep, bench table and kernel set automatically.

use std::fmt;
use std::sync::OnceLock;

use crate::algo::{self, ConvAlgorithm, Family, Layer, LayerKind, PreparedConv, Storage};
use crate::direct::Direct;
use crate::error::{KernelError, Result};
use crate::gemm::Gemm;
use crate::im2col::Im2col;
use crate::isa;
use crate::naive::Naive;
use crate::simd::Backend;
use crate::spec::{Activation, ConvSpec};
#[cfg(feature = "winograd")]
use crate::winograd::{Winograd, TILE_SIDES};

/// Every algorithm compiled into this build, runnable here or not: `naive`, then each
/// family on each backend compiled in (the backend table, [`Backend::ALL`], best first).
///
/// Winograd: every tile size of [`TILE_SIDES`] is registered, the preferred first (kernel-set
/// recipes take the first `winograd` algorithm of a flavour).
pub fn compiled() -> &'static [&'static dyn ConvAlgorithm] {
    static COMPILED: OnceLock<Vec<&'static dyn ConvAlgorithm>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        // Built once per process: the names and structs live as long as the registry.
        fn leak<T: ConvAlgorithm + 'static>(a: T) -> &'static dyn ConvAlgorithm {
            Box::leak(Box::new(a))
        }
        let name = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let mut all: Vec<&'static dyn ConvAlgorithm> = vec![&Naive];
        let backends = || Backend::compiled_in();
        all.extend(backends().map(|b| leak(Gemm { name: name(format!("gemm-{b}")), backend: b })));
        all.extend(backends().map(|b| leak(Im2col { name: name(format!("im2col-{b}")), backend: b })));
        all.extend(backends().map(|b| leak(Direct { name: name(format!("direct-{b}")), backend: b })));
        #[cfg(feature = "winograd")]
        for b in backends() {
            all.extend(
                TILE_SIDES
                    .iter()
                    .map(|&m| leak(Winograd { name: name(format!("winograd-f{m}-{b}")), m, backend: b })),
            );
        }
        all
    })
}

/// Every algorithm compiled in and runnable on this CPU under the `KERNELS_ISA` ceiling.
///
/// Errors if `KERNELS_ISA` is unknown or names an ISA this CPU lacks.
pub fn algorithms() -> Result<Vec<&'static dyn ConvAlgorithm>> {
    isa::ceiling()?;
    Ok(compiled().iter().copied().filter(|a| a.backend().available()).collect())
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

    /// Prepares `layer` as a `kind` layer with the chosen algorithm for activations stored
    /// as `E`: the algorithm's native path where it has one, else its emulated path
    /// ([`algo::prepare`]).
    pub fn prepare_as<E: Storage>(
        &self,
        kind: LayerKind,
        layer: &Layer<'_>,
        quant: &E::Quant,
    ) -> Result<Box<dyn PreparedConv<E>>> {
        algo::prepare::<E>(self.choose(kind, layer.spec), layer, quant)
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
    signature: Family,
    families: [&'static [Family]; 4],
}

use Family as F;

const RECIPES: &[Recipe] = &[
    Recipe {
        name: "im2col",
        signature: F::Im2col,
        families: [&[F::Im2col], &[F::Im2col], &[F::Gemm], &[F::Gemm]],
    },
    Recipe {
        name: "direct",
        signature: F::Direct,
        families: [&[F::Im2col], &[F::Direct, F::Im2col], &[F::Gemm], &[F::Gemm]],
    },
    // Winograd where it applies (stride-1 3x3), the best other algorithm elsewhere.
    Recipe {
        name: "winograd",
        signature: F::Winograd,
        families: [&[F::Winograd, F::Im2col], &[F::Winograd, F::Direct, F::Im2col], &[F::Gemm], &[F::Gemm]],
    },
];

/// Every kernel set runnable here: `naive`; for each recipe and each backend (flavour) that
/// has the recipe's defining family, `recipe-flavour` (e.g. `direct-avx2`), where each family
/// takes that flavour (every family has every backend, so a `*-scalar` set stays scalar) or
/// else the best one here; and the bare recipe name as the best flavour here (e.g. `direct`
/// = `direct-avx512` on a CPU with AVX-512). Flavours are tried in the backend table's order.
pub fn kernel_sets() -> Result<Vec<KernelSet>> {
    let algos = algorithms()?;
    let find = |family: Family, flavour: &str| {
        algos.iter().copied().find(|a| a.family() == family && a.flavour() == flavour)
    };
    let flavour_names = || Backend::ALL.iter().map(|&b| b.name());
    let best = |family: Family, prefer: &'static str| {
        std::iter::once(prefer).chain(flavour_names()).find_map(|fl| find(family, fl))
    };
    let mut sets = vec![KernelSet { name: "naive".into(), chains: Default::default() }];
    for recipe in RECIPES {
        let flavours: Vec<&str> = flavour_names().filter(|fl| find(recipe.signature, fl).is_some()).collect();
        for (i, &fl) in flavours.iter().enumerate() {
            let chains =
                recipe.families.map(|families| families.iter().filter_map(|&f| best(f, fl)).collect());
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
