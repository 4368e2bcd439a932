//! Memory: refuse a model that cannot fit, up front, with one line that gives the bytes.
//!
//! Every configuration the CLI accepts (resolution up to 8192, batch up to 65536) either
//! runs or is refused here, before anything large is allocated: `mobilenet bench
//! --resolution 8192 --batch 64` used to die with SIGABRT from a failed 51.5 GB allocation.
//! Linux overcommits, so a large allocation can succeed and the process be killed later
//! while the buffer is zeroed; asking the allocator ([`kernels::AlignedBuf::zeros`] uses
//! `try_reserve_exact`) is not enough, the budget must be checked against what is free.
//!
//! [`required`] counts what [`crate::MobileNet::with_plan`] allocates and what scales with
//! batch x resolution, exactly: the NHWC input copy, the two ping-pong activation buffers
//! (the largest layer output each), the pooled features and the logits at the storage type,
//! the f32 logits, plus the f32 NCHW input the caller passes to `forward`, and the prepared
//! weights (counted at 4 bytes per parameter, whatever the storage type). The kernels'
//! scratch is not counted: it depends on the algorithm (a few cache-sized bands for the
//! direct, Winograd and fused kernels; a column buffer for im2col; f32 copies of a layer's
//! input and output on a widened path) and is allocated fallibly once the layers are
//! prepared; [`ensure_available`] checks such a figure the same way.

use kernels::Precision;

use crate::config::Config;
use crate::error::{ModelError, Result};

/// What a model of one configuration needs, in bytes, by part (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Input copy, ping-pong activations, pooled features and logits at the storage type,
    /// and the f32 logits.
    pub activations: u64,
    /// The f32 NCHW input the caller holds for `forward`.
    pub caller_input: u64,
    /// The prepared weights (4 bytes per parameter).
    pub weights: u64,
}

impl Footprint {
    pub fn total(&self) -> u64 {
        self.activations.saturating_add(self.caller_input).saturating_add(self.weights)
    }
}

/// The bytes a [`crate::MobileNet`] of `config` for `batch` images at `precision` allocates,
/// and the input its caller holds (see the module docs). Errors on an invalid configuration
/// or a size that overflows `u64`.
pub fn required(config: &Config, batch: usize, precision: Precision) -> Result<Footprint> {
    let layers = config.layers()?;
    let overflow = || ModelError::Config(format!("the memory a batch of {batch} needs overflows 64 bits"));
    let mul = |a: u64, b: u64| a.checked_mul(b).ok_or_else(overflow);
    let (batch, e) = (batch as u64, precision.bytes() as u64);
    let r = config.resolution as u64;
    let image = mul(mul(r, r)?, 3)?;
    let mut largest = 0u64;
    for l in &layers {
        let (h, w) = if l.kind == kernels::LayerKind::FullyConnected { (1, 1) } else { l.output_hw };
        largest = largest.max(mul(mul(h as u64, w as u64)?, l.spec.out_channels as u64)?);
    }
    let pooled = config.feature_channels() as u64;
    let classes = config.classes as u64;
    // Per image, in elements of the storage type: the input, ping and pong, pooled, logits.
    let per_image = [image, largest, largest, pooled, classes]
        .into_iter()
        .try_fold(0u64, |a, x| a.checked_add(x))
        .ok_or_else(overflow)?;
    let activations =
        mul(batch, mul(per_image, e)?)?.checked_add(mul(batch, mul(classes, 4)?)?).ok_or_else(overflow)?;
    let params: u64 = layers.iter().map(|l| l.cost.params()).sum();
    Ok(Footprint { activations, caller_input: mul(batch, mul(image, 4)?)?, weights: mul(params, 4)? })
}

/// Refuses, with [`ModelError::Memory`], a model of `config`, `batch`, `precision` whose
/// [`required`] bytes exceed the memory available (where it can be read: see
/// [`available`]).
pub fn check(config: &Config, batch: usize, precision: Precision) -> Result<()> {
    let need = required(config, batch, precision)?;
    let what = format!(
        "MobileNetV1 {}-{} at batch {batch} ({precision}: activations, input and weights)",
        config.width, config.resolution
    );
    ensure_available(need.total(), &what)
}

/// Refuses `needed` bytes for `what` if they exceed the memory available now.
pub fn ensure_available(needed: u64, what: &str) -> Result<()> {
    match available() {
        Some(a) => fits(needed, a, what),
        None => Ok(()),
    }
}

/// The check itself, on a given availability (what the tests call).
pub fn fits(needed: u64, available: Available, what: &str) -> Result<()> {
    if needed > available.bytes {
        return Err(ModelError::Memory {
            what: what.to_string(),
            needed,
            available: available.bytes,
            source: available.source,
        });
    }
    Ok(())
}

/// Memory this process may still allocate, and where the figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    pub bytes: u64,
    pub source: &'static str,
}

/// On Linux, `MemAvailable` of `/proc/meminfo` (the kernel's estimate of what can be
/// allocated without swapping), lowered to the cgroup v2 limit's headroom
/// (`memory.max - memory.current`) where the process runs in a limited cgroup, as a
/// container does. `None` where neither can be read (other systems: the check is skipped,
/// and a failed allocation is still an error, not an abort).
pub fn available() -> Option<Available> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let mem =
        meminfo.as_deref().and_then(mem_available).map(|bytes| Available { bytes, source: "MemAvailable" });
    let cgroup = cgroup_headroom().map(|bytes| Available { bytes, source: "the cgroup's memory.max" });
    match (mem, cgroup) {
        (Some(m), Some(c)) => Some(if c.bytes < m.bytes { c } else { m }),
        (m, c) => m.or(c),
    }
}

/// `MemAvailable: N kB` of a `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line["MemAvailable:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// `memory.max - memory.current` of this process's cgroup (v2), if it has a limit.
fn cgroup_headroom() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let dir = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok().map(|s| s.trim().to_string());
    let max: u64 = read("memory.max")?.parse().ok()?; // "max" (no limit) does not parse
    let current: u64 = read("memory.current")?.parse().ok()?;
    Some(max.saturating_sub(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(resolution: usize) -> Config {
        Config { width: 1.0, resolution, classes: 1000 }
    }

    #[test]
    fn footprint_of_1_0_224_counts_the_buffers() {
        let f = required(&cfg(224), 1, Precision::F32).unwrap();
        // Input 224*224*3; the largest output is conv0's or pw1's, 112*112*64.
        let per_image = 224 * 224 * 3 + 2 * 112 * 112 * 64 + 1024 + 1000;
        assert_eq!(f.activations, 4 * per_image + 4 * 1000);
        assert_eq!(f.caller_input, 4 * 224 * 224 * 3);
        assert_eq!(f.weights, 4 * 4_221_032);
        let half = required(&cfg(224), 1, Precision::F16).unwrap();
        assert_eq!(half.activations, 2 * per_image + 4 * 1000);
        let int8 = required(&cfg(224), 3, Precision::Int8).unwrap();
        assert_eq!(int8.activations, 3 * (per_image + 4 * 1000));
    }

    #[test]
    fn the_issue_case_needs_hundreds_of_gigabytes_and_is_refused() {
        // `bench --resolution 8192 --batch 64`: 64 * 8192^2 * 3 f32 inputs alone are the
        // 51,539,607,552 bytes of the old abort.
        let f = required(&cfg(8192), 64, Precision::F32).unwrap();
        assert_eq!(f.caller_input, 51_539_607_552);
        assert!(f.total() > 300 << 30, "{f:?}");
        let avail = Available { bytes: 128 << 30, source: "test" };
        let e = fits(f.total(), avail, "that model").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ModelError::Memory { .. }), "{e:?}");
        assert!(msg.contains(&crate::units::group(f.total())) && msg.contains("137,438,953,472"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(fits(f.total(), Available { bytes: f.total(), source: "test" }, "x").is_ok());
    }

    #[test]
    fn largest_configuration_does_not_overflow() {
        let c = Config { width: 4.0, resolution: 8192, classes: 1 << 20 };
        let f = required(&c, 1 << 16, Precision::F32).unwrap();
        assert!(f.total() > 1 << 50);
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       24683652 kB\nMemFree:  1 kB\nMemAvailable:   23808116 kB\n";
        assert_eq!(mem_available(text), Some(23_808_116 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);
        if cfg!(target_os = "linux") {
            assert!(available().is_some_and(|a| a.bytes > 0));
        }
    }
}
