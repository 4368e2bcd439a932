//! The cache hierarchy of the CPU we run on, found at run time, and the blocking derived
//! from it.
//!
//! The GEMM and Winograd kernels size their blocks from L1d and L2. Constants written for
//! one CPU (32 KiB L1d / 1 MiB L2 on Zen 4) are wrong elsewhere: a 48 KiB L1d (Sapphire
//! Rapids, Zen 5) fits a longer K block, a 512 KiB L2 (Zen 3) thrashes with a B block sized
//! for 1 MiB. So [`caches`] asks the machine, in this order:
//!
//! 1. Linux sysfs, `/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}`: what the
//!    kernel found (it also knows about hypervisor quirks and hybrid cores).
//! 2. x86_64 CPUID: leaf 4 (Intel) or leaf `0x8000001D` (AMD), for systems without sysfs.
//! 3. A fallback: the smallest caches of the machines the project runs on (see
//!    [`FALLBACK`]).
//!
//! A source whose values are absurd (L1d outside 8 KiB..=1 MiB, L2 outside 64 KiB..=64 MiB,
//! as a broken VM may report) is skipped for the next one.
//!
//! We read cpu0 and assume every core the process runs on looks like it. That holds on
//! every homogeneous CPU; on hybrid ones (P + E cores) cpu0 is normally a P core, whose
//! larger caches are the ones the hot threads should be blocked for.
//!
//! This file depends on `std` only.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

/// Largest [`Blocking::kc`] ever returned, for stack buffers sized at compile time.
pub const KC_LIMIT: usize = 512;

/// Smallest [`Blocking::kc`] ever returned: below it the read-modify-write of C per K block
/// starts to show (it costs `MR*NR*2` memory ops against `MR*NR*KC/LANES` FMAs).
const KC_MIN: usize = 128;

/// Largest packed-B block (see [`Blocking::b_block_bytes`]).
const B_BLOCK_LIMIT: usize = 512 * KIB;

/// Most rows of an A micro-panel any GEMM microkernel keeps in L1d (the `MR` of the
/// largest tile, rounded up).
const MR_LIMIT: usize = 16;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Plausible L1d sizes; anything outside is a broken report.
const L1D_RANGE: std::ops::RangeInclusive<usize> = 8 * KIB..=MIB;
/// Plausible L2 sizes; anything outside is a broken report.
const L2_RANGE: std::ops::RangeInclusive<usize> = 64 * KIB..=64 * MIB;

/// Where sysfs describes cpu0's caches.
const SYSFS_CACHE_DIR: &str = "/sys/devices/system/cpu/cpu0/cache";

/// Data/unified cache sizes of the core this process runs on, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caches {
    /// Level 1 data cache (per core).
    pub l1d: usize,
    /// Level 2 cache (per core on most CPUs; per cluster of cores on some).
    pub l2: usize,
    /// Level 3 cache (shared), if there is one.
    pub l3: Option<usize>,
    /// Which source the sizes came from.
    pub source: Source,
}

/// Where a [`Caches`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Linux `/sys/devices/system/cpu/cpu0/cache`.
    Sysfs,
    /// The x86_64 `cpuid` instruction.
    Cpuid,
    /// Nothing usable was found: [`FALLBACK`].
    Fallback,
}

impl Source {
    /// Short lowercase name: `"sysfs"`, `"cpuid"` or `"fallback"`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Sysfs => "sysfs",
            Source::Cpuid => "cpuid",
            Source::Fallback => "fallback",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Used when neither sysfs nor CPUID gives plausible sizes: the smallest caches of the
/// machines the project runs on (Zen 3: 32 KiB L1d and 512 KiB L2 per core). Blocking
/// sized from them fits everywhere; on bigger caches it is only a little small. L3 is not
/// used for blocking, so claiming none is harmless.
pub const FALLBACK: Caches = Caches { l1d: 32 * KIB, l2: 512 * KIB, l3: None, source: Source::Fallback };

impl Caches {
    /// Whether the sizes look like a real CPU's (see the module docs).
    pub fn is_plausible(&self) -> bool {
        L1D_RANGE.contains(&self.l1d) && L2_RANGE.contains(&self.l2)
    }
}

/// Writes a size as `N MiB`, `N KiB` or `N B`, whichever is exact.
fn fmt_size(f: &mut fmt::Formatter<'_>, bytes: usize) -> fmt::Result {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        write!(f, "{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        write!(f, "{} KiB", bytes / KIB)
    } else {
        write!(f, "{bytes} B")
    }
}

impl fmt::Display for Caches {
    /// E.g. `L1d 48 KiB, L2 2 MiB, L3 480 MiB (sysfs)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("L1d ")?;
        fmt_size(f, self.l1d)?;
        f.write_str(", L2 ")?;
        fmt_size(f, self.l2)?;
        match self.l3 {
            Some(l3) => {
                f.write_str(", L3 ")?;
                fmt_size(f, l3)?;
            }
            None => f.write_str(", no L3")?,
        }
        write!(f, " ({})", self.source)
    }
}

/// The caches of this machine, detected on the first call (see the module docs).
pub fn caches() -> Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    *CACHES.get_or_init(detect)
}

/// Tries each source in order and keeps the first plausible answer.
fn detect() -> Caches {
    caches_from_sysfs(Path::new(SYSFS_CACHE_DIR))
        .filter(Caches::is_plausible)
        .or_else(|| caches_from_cpuid().filter(Caches::is_plausible))
        .unwrap_or(FALLBACK)
}

// ---------------------------------------------------------------------------------------
// sysfs
// ---------------------------------------------------------------------------------------

/// Parses a sysfs cache size: `"48K"`, `"2048K"`, `"480M"`, or plain bytes (`"32768"`);
/// surrounding whitespace (sysfs ends lines with `\n`) is ignored, a `K`/`M`/`G` suffix may
/// be either case. Zero, overflow and anything else give `None`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], KIB),
        b'M' | b'm' => (&s[..s.len() - 1], MIB),
        b'G' | b'g' => (&s[..s.len() - 1], 1024 * MIB),
        _ => (s, 1),
    };
    // `usize::from_str` also takes a leading '+', which no size string has.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = digits.parse::<usize>().ok()?.checked_mul(unit)?;
    (bytes > 0).then_some(bytes)
}

/// Builds [`Caches`] from sysfs-style `(level, type, size)` strings, one per cache (the
/// contents of `index*/level`, `index*/type` and `index*/size`). Instruction caches are
/// skipped; entries that do not parse are ignored; the first entry for a level wins.
/// `None` unless both L1d and L2 are found. Sizes are not checked for plausibility here.
pub fn caches_from_sysfs_entries<'a, I>(entries: I) -> Option<Caches>
where
    I: IntoIterator<Item = (&'a str, &'a str, &'a str)>,
{
    let mut levels: [Option<usize>; 3] = [None; 3];
    for (level, kind, size) in entries {
        // "Data" for the split L1, "Unified" for L2 and L3 (and for a unified L1).
        if !matches!(kind.trim(), "Data" | "Unified") {
            continue;
        }
        let (Ok(level @ 1..=3), Some(size)) = (level.trim().parse::<usize>(), parse_size(size)) else {
            continue;
        };
        levels[level - 1].get_or_insert(size);
    }
    Some(Caches { l1d: levels[0]?, l2: levels[1]?, l3: levels[2], source: Source::Sysfs })
}

/// Reads a sysfs-style cache directory (`dir/index*/{level,type,size}`, normally
/// `/sys/devices/system/cpu/cpu0/cache`) and parses it with [`caches_from_sysfs_entries`].
/// An `index*` entry with a missing or unreadable file is skipped; `None` if the directory
/// cannot be read or L1d or L2 is missing.
pub fn caches_from_sysfs(dir: &Path) -> Option<Caches> {
    // Visit index0, index1, ... in numeric order (read_dir's order is unspecified), so
    // "the first entry for a level" means the lowest index, as the kernel lists them.
    let mut indices: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let n = entry.file_name().to_str()?.strip_prefix("index")?.parse::<usize>().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    indices.sort_unstable_by_key(|&(n, _)| n);

    let read = |index: &Path, name: &str| std::fs::read_to_string(index.join(name)).ok();
    let files: Vec<(String, String, String)> = indices
        .iter()
        .filter_map(|(_, index)| Some((read(index, "level")?, read(index, "type")?, read(index, "size")?)))
        .collect();
    caches_from_sysfs_entries(files.iter().map(|(l, t, s)| (l.as_str(), t.as_str(), s.as_str())))
}

// ---------------------------------------------------------------------------------------
// CPUID
// ---------------------------------------------------------------------------------------

/// Reads the caches with CPUID: leaf `0x8000001D` on AMD (and Hygon, which copies it) when
/// the extended leaves reach it, leaf 4 otherwise (Intel and others). `None` on other
/// architectures, or when the leaf lists no L1d or no L2. Sizes are not checked for
/// plausibility here.
pub fn caches_from_cpuid() -> Option<Caches> {
    #[cfg(target_arch = "x86_64")]
    {
        x86::caches()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Caches, Source};
    use std::arch::x86_64::{__cpuid_count, CpuidResult};

    /// Deterministic cache parameters, Intel's numbering.
    const LEAF_INTEL: u32 = 4;
    /// The same layout in AMD's extended range (needs TopologyExtensions; without it the
    /// leaf reads as zeros, i.e. an empty list, and we fall back).
    const LEAF_AMD: u32 = 0x8000_001D;
    /// Guard against a (virtual) CPU that never reports the "no more caches" entry.
    const MAX_SUBLEAVES: u32 = 16;

    fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
        // `__cpuid_count` is a safe fn in recent Rust (1.95 here) but an `unsafe fn` in older
        // releases such as the workspace's MSRV (1.89): keep the block for those, and allow
        // the lint that flags it as unneeded on new compilers.
        #[allow(unused_unsafe)]
        // SAFETY: the CPUID instruction exists on every x86_64 CPU, and a leaf above the
        // maximum only returns meaningless (not undefined) values, which callers guard
        // against by checking the maximum leaf first.
        unsafe {
            __cpuid_count(leaf, subleaf)
        }
    }

    pub(super) fn caches() -> Option<Caches> {
        let vendor_regs = cpuid(0, 0);
        let max_basic = vendor_regs.eax;
        // The vendor string is EBX, EDX, ECX in that order.
        let mut vendor = [0u8; 12];
        vendor[0..4].copy_from_slice(&vendor_regs.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&vendor_regs.edx.to_le_bytes());
        vendor[8..12].copy_from_slice(&vendor_regs.ecx.to_le_bytes());
        let amd_like = &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine";
        let max_extended = cpuid(0x8000_0000, 0).eax;

        let leaf = if amd_like && max_extended >= LEAF_AMD {
            LEAF_AMD
        } else if max_basic >= LEAF_INTEL {
            LEAF_INTEL
        } else {
            return None;
        };
        caches_from_leaf(leaf)
    }

    /// Walks the subleaves of a deterministic-cache-parameters leaf (same layout in leaf 4
    /// and `0x8000001D`) until the type-0 entry.
    fn caches_from_leaf(leaf: u32) -> Option<Caches> {
        let mut levels: [Option<usize>; 3] = [None; 3];
        for subleaf in 0..MAX_SUBLEAVES {
            let r = cpuid(leaf, subleaf);
            // EAX[4:0]: 0 none (end of list), 1 data, 2 instruction, 3 unified.
            let kind = r.eax & 0x1f;
            if kind == 0 {
                break;
            }
            let level = ((r.eax >> 5) & 0x7) as usize;
            if !(kind == 1 || kind == 3) || !(1..=3).contains(&level) {
                continue;
            }
            // Every field is stored minus one (Intel SDM, CPUID leaf 4).
            let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
            let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
            let line = (r.ebx & 0xfff) as usize + 1;
            let sets = r.ecx as usize + 1;
            let size = ways * partitions * line * sets;
            levels[level - 1].get_or_insert(size);
        }
        Some(Caches { l1d: levels[0]?, l2: levels[1]?, l3: levels[2], source: Source::Cpuid })
    }
}

// ---------------------------------------------------------------------------------------
// Blocking
// ---------------------------------------------------------------------------------------

/// Block sizes for the kernels, derived from [`Caches`] by [`Blocking::from_caches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// K block of the packed SGEMM, in elements: a multiple of 16 in `128..=KC_LIMIT`.
    ///
    /// The microkernel keeps the A micro-panel (up to 16 rows x KC f32) in L1d while the B
    /// micro-panels stream past it; A may take two thirds of L1d, the rest is for the B lines
    /// in flight: `kc = 2 * l1d / (3 * 16 * 4)`, rounded down to a multiple of 16. 48 KiB
    /// -> 512, 32 KiB -> 336. Measured on the AMD EPYC family 26 model 2 (Zen 5, 48 KiB
    /// L1d; `mobilenet bench --threads 1 --iters 100`, 10 alternating rounds, per-round
    /// ratio 512 / 384, the old half-of-L1d rule): pw7..pw11 (K = 512: one K block instead
    /// of two) 0.975-0.984, pw12 0.963, pw13 (three blocks -> two) 0.982, fc 0.946, K <= 256
    /// (one block either way) 1.000-1.005, end to end 0.986. 32 KiB (Zen 4, Zen 3: 256 ->
    /// 336) is not measured. Clamped to 128..=512: below 128 the per-K-block
    /// read-modify-write of C shows, and stack buffers grow with [`KC_LIMIT`].
    pub kc: usize,
    /// Bytes of L2 the packed B block (KC x NC f32) may fill: half of L2, leaving the rest
    /// for A, C and prefetches, and at most 512 KiB. 1 MiB L2 -> 512 KiB (the old constant);
    /// 512 KiB (Zen 3) -> 256 KiB, which measured a few percent faster there than 512 KiB;
    /// 2 MiB (Emerald Rapids) -> 512 KiB: 1 MiB measured slower there in an interleaved A/B
    /// (pw12 +9%, pw13 +5%, fc +25%, one thread; the B block is swept once per A panel and
    /// the second core's traffic shares the L2 bandwidth, not its capacity).
    pub b_block_bytes: usize,
    /// Scratch target of one dense Winograd band (transformed input and products, which
    /// should stay in L2 beside a slice of the weights): half of L2, like the B block
    /// (the old constant was 512 KiB for a 1 MiB L2).
    pub winograd_band_bytes: usize,
    /// Whether the SGEMM microkernels software-prefetch B: 2 KiB ahead in the micro-panel
    /// into L1d, and the next packed-B block into L2 while the current one is computed
    /// (see `gemm::tiles::Prefetch`). On where L2 is at least 1 MiB, whatever the L1d (a B
    /// block is at most half of L2, so L2 holds the current one and the next). The Xeon
    /// family 6 model 167 (48 KiB / 2 MiB), where the weights of a layer arrive from L3 or
    /// memory when the model runs layer after layer, and the first pass over each B block
    /// was bound by that stream. Measured there
    /// (`mobilenet bench --precision f32 --threads 1 --iters 200`, 3 interleaved rounds,
    /// medians, off -> on): pw7 0.69 -> 0.63 ms, pw12 0.51 -> 0.38, pw13 1.08 -> 0.74, fc
    /// 0.43 -> 0.33, end to end 9.46 -> 8.52 ms. The AMD EPYC family 26 model 2 (Zen 5,
    /// 48 KiB / 1 MiB), same command, 3 interleaved rounds: pw7..pw11 0.573-0.590 -> 0.513-0.526
    /// ms, pw12 / pw13 within noise, end to end 7.74 -> 7.16-7.44 ms; again at 05e7117
    /// (`--kernels direct --iters 150`, 3 interleaved rounds, per-round ratio on / off of the
    /// pointwise layers): 0.87-0.92 at one thread, 0.91-1.12 at two (a noisy phase). The AMD
    /// EPYC family 25 model 17 (Zen 4, 32 KiB / 1 MiB), same command at 150 iterations, 4
    /// interleaved rounds, per-round ratio on / off of the pointwise layers pw4..pw13:
    /// 0.96-1.00 at one thread, 0.92-0.98 at two (pw13 0.60-0.63 -> 0.55-0.57 ms), end to end
    /// 0.90-1.02 at two. Off below 1 MiB of L2 (Zen 3's 512 KiB: not measured).
    pub prefetch_b: bool,
}

impl Blocking {
    /// Derives the blocking from cache sizes (see the field docs). Sizes outside the
    /// plausible ranges are clamped into them first, so every result is usable (no zero
    /// blocks) whatever `c` holds.
    pub fn from_caches(c: &Caches) -> Blocking {
        let l1d = c.l1d.clamp(*L1D_RANGE.start(), *L1D_RANGE.end());
        let l2 = c.l2.clamp(*L2_RANGE.start(), *L2_RANGE.end());
        let kc = (2 * l1d / (3 * MR_LIMIT * std::mem::size_of::<f32>()) / 16 * 16).clamp(KC_MIN, KC_LIMIT);
        let b_block_bytes = (l2 / 2).min(B_BLOCK_LIMIT);
        let prefetch_b = l2 >= MIB;
        Blocking { kc, b_block_bytes, winograd_band_bytes: l2 / 2, prefetch_b }
    }
}

/// Issues a prefetch of the line holding `p` into L1d (`L2 == false`) or L2 (`true`); a
/// no-op off x86_64. A prefetch never faults, so `p` may point anywhere (form it with
/// `wrapping_add`).
#[inline(always)]
pub(crate) fn prefetch<const L2: bool>(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHh is part of SSE (every x86_64 CPU) and never faults, whatever the
    // address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        if L2 {
            _mm_prefetch::<_MM_HINT_T1>(p.cast());
        } else {
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches every cache line of `x` into L1d.
#[inline(always)]
pub(crate) fn prefetch_lines<T>(x: &[T]) {
    let p = x.as_ptr().cast::<u8>();
    for offset in (0..std::mem::size_of_val(x)).step_by(64) {
        prefetch::<false>(p.wrapping_add(offset));
    }
}

/// The blocking for this machine's [`caches`], computed once.
///
/// For experiments, `KERNELS_KC` (elements, clamped to 16..=[`KC_LIMIT`]) and
/// `KERNELS_B_BLOCK_KIB` override the derived K block and packed-B budget, and
/// `KERNELS_PREFETCH_B` (`0` or `1`) the B prefetches; unparsable values are ignored.
pub fn blocking() -> Blocking {
    static BLOCKING: OnceLock<Blocking> = OnceLock::new();
    *BLOCKING.get_or_init(|| {
        let mut b = Blocking::from_caches(&caches());
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok());
        if let Some(kc) = env("KERNELS_KC") {
            b.kc = kc.clamp(16, KC_LIMIT);
        }
        if let Some(kib) = env("KERNELS_B_BLOCK_KIB") {
            b.b_block_bytes = kib.max(1) * KIB;
        }
        if let Some(on) = env("KERNELS_PREFETCH_B") {
            b.prefetch_b = on != 0;
        }
        b
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("kernels-cache-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        /// Writes `index{n}/{level,type,size}`, newline-terminated like sysfs.
        fn index(&self, n: usize, level: &str, kind: &str, size: &str) {
            let index = self.0.join(format!("index{n}"));
            std::fs::create_dir_all(&index).unwrap();
            for (name, value) in [("level", level), ("type", kind), ("size", size)] {
                std::fs::write(index.join(name), format!("{value}\n")).unwrap();
            }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sizes(l1d: usize, l2: usize) -> Caches {
        Caches { l1d, l2, l3: None, source: Source::Fallback }
    }

    #[test]
    fn size_strings() {
        assert_eq!(parse_size("48K"), Some(48 * KIB));
        assert_eq!(parse_size("2048K"), Some(2 * MIB));
        assert_eq!(parse_size("480M"), Some(480 * MIB));
        assert_eq!(parse_size("32768"), Some(32768));
        assert_eq!(parse_size("48K\n"), Some(48 * KIB));
        assert_eq!(parse_size(" 1G "), Some(1024 * MIB));
        for garbage in ["", "K", "abc", "12Q", "-4K", "+4K", "4 K", "0K", "1.5M", "99999999999999999999K"] {
            assert_eq!(parse_size(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn fake_sysfs_tree() {
        let dir = TempDir::new("tree");
        dir.index(0, "1", "Data", "48K");
        dir.index(1, "1", "Instruction", "32K");
        dir.index(2, "2", "Unified", "2048K");
        dir.index(3, "3", "Unified", "480M");
        std::fs::write(dir.0.join("uevent"), "").unwrap();
        let c = caches_from_sysfs(&dir.0).unwrap();
        assert_eq!(c, Caches { l1d: 48 * KIB, l2: 2 * MIB, l3: Some(480 * MIB), source: Source::Sysfs });
        assert!(c.is_plausible());
        assert_eq!(c.to_string(), "L1d 48 KiB, L2 2 MiB, L3 480 MiB (sysfs)");
    }

    #[test]
    fn sysfs_without_l3_and_out_of_order() {
        let dir = TempDir::new("nol3");
        dir.index(10, "2", "Unified", "512K");
        dir.index(2, "1", "Data", "32K");
        dir.index(1, "1", "Instruction", "32K");
        let c = caches_from_sysfs(&dir.0).unwrap();
        assert_eq!(c, Caches { l1d: 32 * KIB, l2: 512 * KIB, l3: None, source: Source::Sysfs });
    }

    #[test]
    fn garbage_sysfs_tree() {
        let dir = TempDir::new("garbage");
        dir.index(0, "one", "Data", "48K");
        dir.index(1, "1", "Data", "lots");
        dir.index(2, "2", "Unified", "");
        dir.index(3, "7", "Unified", "480M");
        std::fs::create_dir_all(dir.0.join("index4")).unwrap(); // no files at all
        assert_eq!(caches_from_sysfs(&dir.0), None);
        assert_eq!(caches_from_sysfs(&dir.0.join("missing")), None);
    }

    #[test]
    fn sysfs_strings() {
        let entries = [("1\n", "Instruction\n", "64K\n"), ("1", "Data", "48K"), ("2", "Unified", "2048K")];
        let c = caches_from_sysfs_entries(entries).unwrap();
        assert_eq!((c.l1d, c.l2, c.l3), (48 * KIB, 2 * MIB, None));
        assert_eq!(caches_from_sysfs_entries([("1", "Data", "48K")]), None);
    }

    #[test]
    fn plausibility() {
        assert!(FALLBACK.is_plausible());
        assert!(!sizes(4 * KIB, MIB).is_plausible());
        assert!(!sizes(32 * KIB, 32 * KIB).is_plausible());
        assert!(!sizes(32 * KIB, 128 * MIB).is_plausible());
    }

    #[test]
    fn blocking_from_caches() {
        // Zen 4: 32 KiB / 1 MiB.
        let b = Blocking::from_caches(&sizes(32 * KIB, MIB));
        assert_eq!(
            b,
            Blocking { kc: 336, b_block_bytes: 512 * KIB, winograd_band_bytes: 512 * KIB, prefetch_b: true }
        );
        // Zen 3: 32 KiB / 512 KiB, not measured: off.
        assert!(!Blocking::from_caches(&sizes(32 * KIB, 512 * KIB)).prefetch_b);
        let b = Blocking::from_caches(&sizes(48 * KIB, 2 * MIB));
        assert_eq!(
            b,
            Blocking { kc: 512, b_block_bytes: 512 * KIB, winograd_band_bytes: MIB, prefetch_b: true }
        );
        // Zen 5: 48 KiB / 1 MiB, room for the current and the next B block.
        let b = Blocking::from_caches(&sizes(48 * KIB, MIB));
        assert_eq!(
            b,
            Blocking { kc: 512, b_block_bytes: 512 * KIB, winograd_band_bytes: 512 * KIB, prefetch_b: true }
        );
        let b = Blocking::from_caches(&FALLBACK);
        assert_eq!(
            b,
            Blocking { kc: 336, b_block_bytes: 256 * KIB, winograd_band_bytes: 256 * KIB, prefetch_b: false }
        );
        // Clamps: tiny and huge L1d, absurd L2.
        assert_eq!(Blocking::from_caches(&sizes(8 * KIB, MIB)).kc, 128);
        assert_eq!(Blocking::from_caches(&sizes(MIB, MIB)).kc, KC_LIMIT);
        assert_eq!(Blocking::from_caches(&sizes(0, 0)).b_block_bytes, 32 * KIB);
        // Not a multiple of 16 before rounding: 40 KiB -> 426 -> 416, 36 KiB -> 384.
        assert_eq!(Blocking::from_caches(&sizes(40 * KIB, MIB)).kc, 416);
        assert_eq!(Blocking::from_caches(&sizes(36 * KIB + 100, MIB)).kc, 384);
    }

    #[test]
    fn display() {
        assert_eq!(FALLBACK.to_string(), "L1d 32 KiB, L2 512 KiB, no L3 (fallback)");
        let odd = Caches { l1d: 1000, l2: 1536 * KIB, l3: Some(36 * MIB), source: Source::Cpuid };
        assert_eq!(odd.to_string(), "L1d 1000 B, L2 1536 KiB, L3 36 MiB (cpuid)");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn cpuid_finds_plausible_caches() {
        let c = caches_from_cpuid().expect("CPUID lists no L1d/L2");
        println!("cpuid: {c}");
        assert!(c.is_plausible(), "{c}");
        assert_eq!(c.source, Source::Cpuid);
    }

    #[test]
    fn detected_here() {
        let c = caches();
        let b = blocking();
        println!("caches(): {c}");
        println!("blocking(): {b:?}");
        assert!(c.is_plausible());
        assert_eq!(b, Blocking::from_caches(&c));
        assert!(b.kc.is_multiple_of(16) && (KC_MIN..=KC_LIMIT).contains(&b.kc));
    }
}
