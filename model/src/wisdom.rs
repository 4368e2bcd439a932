//! The wisdom file: what `mobilenet tune` measured on a CPU, reused by the `auto` plan.
//!
//! One JSON file holds any number of entries, each the tuned [`Plan`](crate::plan::Plan)
//! layers of one (model, batch, threads, precision, ISA ceiling), under the key of the CPU
//! they were measured on: model name, vendor, family/model/stepping, the SIMD flags that
//! matter, and the cache sizes. A file whose CPU key differs from this CPU's in any of
//! those is ignored (with a warning), never trusted: a plan tuned for a Zen 3's 512 KiB L2
//! is wrong on a Xeon, and one naming AVX-512 kernels would not even run there.
//!
//! Location: `--wisdom PATH`, else `$DWCONV_WISDOM`, else
//! `$XDG_CACHE_HOME/dwconv/wisdom.json`, else `$HOME/.cache/dwconv/wisdom.json`.
//!
//! Writes go to a temporary file in the same folder, then `rename` over the old file, so
//! an interrupted `tune` leaves the previous wisdom intact.

use std::path::{Path, PathBuf};

use kernels::Precision;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::plan::LayerChoice;

/// The format tag of the files this version reads and writes.
pub const FORMAT: &str = "dwconv-wisdom-1";

/// Which CPU a wisdom file was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuKey {
    pub model_name: String,
    pub vendor: String,
    /// `family/model/stepping` from /proc/cpuinfo (x86), or the implementer/part (Arm).
    pub signature: String,
    /// The flags of [`kernels::cpu::FLAGS`] this CPU has, in that order.
    pub flags: Vec<String>,
    pub l1d_bytes: usize,
    pub l2_bytes: usize,
    pub l3_bytes: Option<usize>,
}

impl CpuKey {
    /// This CPU's key.
    pub fn this_cpu() -> CpuKey {
        let cpu = kernels::cpu::this_cpu();
        let caches = kernels::cache::caches();
        CpuKey {
            model_name: cpu.model_name.clone(),
            vendor: cpu.vendor.clone(),
            signature: cpu.signature(),
            flags: cpu.flags.iter().map(|f| f.to_string()).collect(),
            l1d_bytes: caches.l1d,
            l2_bytes: caches.l2,
            l3_bytes: caches.l3,
        }
    }

    pub fn matches_this_cpu(&self) -> bool {
        *self == Self::this_cpu()
    }

    /// One line: name, signature, caches.
    pub fn describe(&self) -> String {
        format!(
            "{} [{}], L1d {} KiB, L2 {} KiB",
            if self.model_name.is_empty() { "unknown CPU" } else { &self.model_name },
            self.signature,
            self.l1d_bytes / 1024,
            self.l2_bytes / 1024
        )
    }
}

/// What one entry was tuned for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WisdomKey {
    pub width: f64,
    pub resolution: usize,
    pub classes: usize,
    pub batch: usize,
    pub threads: usize,
    pub precision: String,
    /// The ISA ceiling in force (`KERNELS_ISA` or the best detected).
    pub isa: String,
}

impl WisdomKey {
    pub fn new(config: &Config, batch: usize, threads: usize, precision: Precision) -> WisdomKey {
        WisdomKey {
            width: config.width,
            resolution: config.resolution,
            classes: config.classes,
            batch,
            threads,
            precision: precision.name().to_string(),
            isa: kernels::isa::ceiling().map(|i| i.name().to_string()).unwrap_or_default(),
        }
    }
}

/// One tuned plan and how it was measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: WisdomKey,
    /// When (UTC, `YYYY-MM-DD HH:MM`).
    pub measured: String,
    /// The statistic, in words.
    pub statistic: String,
    /// End to end with this plan, and with the untuned defaults, in the same rounds (ms).
    pub tuned_ms: f64,
    pub default_ms: f64,
    pub layers: Vec<LayerChoice>,
    /// Each layer's measured time with its choice (ms; a fused block's on its depthwise
    /// layer, 0 on its pointwise layer).
    pub layer_ms: Vec<f64>,
}

/// A wisdom file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wisdom {
    pub format: String,
    pub cpu: CpuKey,
    pub entries: Vec<Entry>,
}

impl Wisdom {
    /// An empty file for this CPU.
    pub fn new() -> Wisdom {
        Wisdom { format: FORMAT.into(), cpu: CpuKey::this_cpu(), entries: Vec::new() }
    }

    /// Reads and checks a file (format tag, and a plausible structure); a CPU mismatch is
    /// the caller's to check ([`CpuKey::matches_this_cpu`]).
    pub fn load(path: &Path) -> Result<Wisdom> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
        let w: Wisdom =
            serde_json::from_str(&text).map_err(|e| ModelError::Config(format!("not a wisdom file: {e}")))?;
        if w.format != FORMAT {
            return Err(ModelError::Config(format!("format {:?}, this version reads {FORMAT:?}", w.format)));
        }
        Ok(w)
    }

    /// The entry for `key`, if any.
    pub fn find(&self, key: &WisdomKey) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == *key)
    }

    /// Adds `entry`, replacing one with the same key.
    pub fn insert(&mut self, entry: Entry) {
        self.entries.retain(|e| e.key != entry.key);
        self.entries.push(entry);
    }

    /// Writes the file atomically: a temporary file in the same folder, then a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| ModelError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| ModelError::Config(e.to_string()))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

impl Default for Wisdom {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the wisdom lives unless `--wisdom` says otherwise (see the module docs).
pub fn default_path() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("DWCONV_WISDOM")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("dwconv/wisdom.json")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/dwconv/wisdom.json")))
}
