//! Instruction-set detection: done once, cached, and overridable with `KERNELS_ISA`.
//!
//! The *ceiling* is the highest ISA level algorithms may use. It is the best level this CPU
//! has, or the level named by `KERNELS_ISA=scalar|avx2|avx512|avx512bf16|amx|neon` (for tests and benches
//! that force each path in turn). Forcing a level the CPU lacks is an error, never SIGILL:
//! every `#[target_feature]` function in this crate is reachable only through an algorithm
//! whose `supports()` first checks [`available`].

use std::fmt;
use std::sync::OnceLock;

/// What can go wrong choosing an ISA: `isa.rs` is a leaf with its own error, which
/// [`crate::KernelError`] wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsaError {
    /// `KERNELS_ISA` (or a caller) named an ISA that does not exist.
    Unknown(String),
    /// An ISA was requested that this CPU (or this build) does not have.
    Unavailable { isa: Isa, reason: &'static str },
}

impl fmt::Display for IsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsaError::Unknown(s) => {
                let names: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
                write!(f, "unknown ISA {s:?} (expected one of {})", names.join(", "))
            }
            IsaError::Unavailable { isa, reason } => write!(f, "ISA {isa} is not available: {reason}"),
        }
    }
}

impl std::error::Error for IsaError {}

type Result<T> = std::result::Result<T, IsaError>;

/// An instruction-set level that a kernel may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, runs everywhere (the naive oracle, `wide` built for the baseline target).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (x86-64-v3; every AVX2 CPU has F16C).
    Avx2,
    /// x86-64 AVX-512F (+VL/BW/DQ as x86-64-v4); implies AVX2.
    Avx512,
    /// AVX-512 with AVX512_BF16 (`vdpbf16ps`, `vcvtneps2bf16`): Zen 4, Cooper Lake,
    /// Sapphire and Emerald Rapids. Only the bf16 kernels use it; `KERNELS_ISA=avx512`
    /// keeps them on the emulated path.
    Avx512Bf16,
    /// AMX-BF16 tiles (`tdpbf16ps`: 16x16 f32 += 16x32 bf16 x 32x16 bf16) on Sapphire and
    /// Emerald Rapids, with the Linux permission (`arch_prctl(ARCH_REQ_XCOMP_PERM)`)
    /// granted; implies AVX512_BF16 here (the tiles' epilogue uses it).
    Amx,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl Isa {
    /// Every ISA, lowest first.
    pub const ALL: [Isa; 6] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16, Isa::Amx, Isa::Neon];

    /// The level the compile-time target features reach (what code that uses no run-time
    /// dispatch, such as `wide`, executes at): `Avx512` with `-C target-feature=+avx512f`
    /// (or a `target-cpu` that has it), `Avx2` with AVX2 and FMA, else `Scalar` (baseline
    /// x86-64's SSE2 and aarch64's baseline NEON count as scalar).
    pub const TARGET: Isa = if cfg!(all(target_arch = "x86_64", target_feature = "avx512f")) {
        Isa::Avx512
    } else if cfg!(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")) {
        Isa::Avx2
    } else {
        Isa::Scalar
    };

    /// The lower-case name used in `KERNELS_ISA`, kernel names and bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
            Isa::Amx => "amx",
            Isa::Neon => "neon",
        }
    }

    /// Parses a `KERNELS_ISA` value.
    pub fn parse(s: &str) -> Result<Isa> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| IsaError::Unknown(s.to_string()))
    }

    /// Whether this CPU can execute code compiled for this ISA (independent of `KERNELS_ISA`).
    pub fn detected(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.detected()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => Isa::Avx512.detected() && is_x86_feature_detected!("avx512bf16"),
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => Isa::Avx512Bf16.detected() && amx_permitted(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The level whose f32 kernels this one runs: the bf16-only levels (`avx512bf16`, `amx`)
    /// run the AVX-512 f32 kernels, every other level its own. The harness measures the f32
    /// levels as ceilings and quotes each against its own FMA peak
    /// ([`crate::peak::fma_peak_gflops_at`]).
    pub fn f32_level(self) -> Isa {
        match self {
            Isa::Avx512Bf16 | Isa::Amx => Isa::Avx512,
            other => other,
        }
    }

    /// Whether `self` may run under the ceiling `ceiling` (NEON and x86 levels are disjoint).
    pub fn within(self, ceiling: Isa) -> bool {
        match (self, ceiling) {
            (Isa::Scalar, _) => true,
            (Isa::Neon, c) => c == Isa::Neon,
            (_, Isa::Neon) => false,
            (s, c) => s <= c,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether AMX-INT8 (`tdpbusd`, CPUID leaf 7 EDX bit 25) can run: AMX allowed under the
/// ceiling (the tile state granted) and the CPU has the int8 tiles.
pub fn amx_int8() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available(Isa::Amx) && (std::arch::x86_64::__cpuid_count(7, 0).edx >> 25) & 1 == 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether AMX-FP16 (`tdpfp16ps`, CPUID leaf 7 sub-leaf 1 EAX bit 21: Granite Rapids on)
/// can run: AMX allowed under the ceiling and the CPU has the f16 tiles. Linux (6.18) does
/// not list `amx_fp16` in /proc/cpuinfo on every such host, so CPUID decides.
pub fn amx_fp16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available(Isa::Amx) && (std::arch::x86_64::__cpuid_count(7, 1).eax >> 21) & 1 == 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7: EDX bits 24 and 22) and Linux
/// grants this process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`; without it the first tile instruction faults). Asked once; a
/// refusal (an older kernel, a hypervisor that hides the state) means no AMX, never a fault.
#[cfg(target_arch = "x86_64")]
fn amx_permitted() -> bool {
    static PERMITTED: OnceLock<bool> = OnceLock::new();
    *PERMITTED.get_or_init(|| {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let cpu = (leaf7.edx >> 24) & 1 == 1 && (leaf7.edx >> 22) & 1 == 1;
        cpu && request_tile_data()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with a permission request only changes this
    // process's permitted XSAVE features; it reads and writes no memory of ours. `syscall`
    // clobbers rcx and r11.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_data() -> bool {
    false
}

/// The best ISA this CPU has.
pub fn best_detected() -> Isa {
    [Isa::Amx, Isa::Avx512Bf16, Isa::Avx512, Isa::Avx2, Isa::Neon]
        .into_iter()
        .find(|isa| isa.detected())
        .unwrap_or(Isa::Scalar)
}

fn ceiling_from(env: Option<&str>) -> Result<Isa> {
    match env {
        None => Ok(best_detected()),
        Some(s) if s.trim().is_empty() => Ok(best_detected()),
        Some(s) => {
            let isa = Isa::parse(s)?;
            if isa.detected() {
                Ok(isa)
            } else {
                Err(IsaError::Unavailable { isa, reason: "KERNELS_ISA forces a level this CPU lacks" })
            }
        }
    }
}

/// The highest ISA level algorithms may use: detected once and cached.
///
/// Errors if `KERNELS_ISA` names an unknown ISA or one this CPU lacks.
pub fn ceiling() -> Result<Isa> {
    static CEILING: OnceLock<Result<Isa>> = OnceLock::new();
    CEILING.get_or_init(|| ceiling_from(std::env::var("KERNELS_ISA").ok().as_deref())).clone()
}

/// Whether kernels for `isa` may run now: the CPU has it and `KERNELS_ISA` allows it.
/// With an invalid `KERNELS_ISA`, only scalar code runs.
pub fn available(isa: Isa) -> bool {
    isa.detected() && ceiling().is_ok_and(|c| isa.within(c))
}

/// A plain-Rust loop outside the kernels that LLVM vectorizes (the input conversion, the
/// average pool), for [`in_widest_vectors`]. Implementations mark `run` `#[inline(always)]`,
/// so that it is compiled inside each target-feature copy (a closure there stayed a call,
/// compiled for the baseline target: int8 pool + fc 0.043 -> 0.049 ms, Xeon 6/167).
pub(crate) trait VectorLoop {
    type Out;
    fn run(self) -> Self::Out;
}

/// Runs `l` compiled for the widest x86 vectors that may run here (AVX-512, else AVX2 with
/// FMA, else the baseline target, which x86-64 compiles 4 lanes wide: SSE2). The result is
/// the same on every path (Rust never reassociates or contracts float operations).
pub(crate) fn in_widest_vectors<L: VectorLoop>(l: L) -> L::Out {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
        unsafe fn avx512<L: VectorLoop>(l: L) -> L::Out {
            l.run()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<L: VectorLoop>(l: L) -> L::Out {
            l.run()
        }
        if available(Isa::Avx512) {
            // SAFETY: the CPU has AVX-512F/BW, within the ceiling.
            return unsafe { avx512(l) };
        }
        if available(Isa::Avx2) {
            // SAFETY: the CPU has AVX2 and FMA, within the ceiling.
            return unsafe { avx2(l) };
        }
    }
    l.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_unknown() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Ok(isa));
        }
        assert_eq!(Isa::parse("AVX2"), Ok(Isa::Avx2));
        assert!(matches!(Isa::parse("sse9"), Err(IsaError::Unknown(_))));
    }

    #[test]
    fn forcing_a_missing_isa_is_an_error_not_sigill() {
        let missing = Isa::ALL.into_iter().find(|i| !i.detected());
        if let Some(isa) = missing {
            assert!(matches!(ceiling_from(Some(isa.name())), Err(IsaError::Unavailable { .. })));
        }
        assert_eq!(ceiling_from(Some("scalar")), Ok(Isa::Scalar));
        assert_eq!(ceiling_from(None), Ok(best_detected()));
    }

    #[test]
    fn ceilings_nest() {
        assert!(Isa::Avx2.within(Isa::Avx512));
        assert!(!Isa::Avx512.within(Isa::Avx2));
        assert!(!Isa::Neon.within(Isa::Avx512));
        assert!(Isa::Scalar.within(Isa::Neon));
    }
}
