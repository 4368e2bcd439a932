//! What a ceiling child of the harness reports to its parent (`benches/harness.rs`).
//!
//! The ISA ceiling is fixed once per process, so the harness re-runs itself with
//! `KERNELS_ISA=<isa>` and `BENCH_CEILING_CHILD=<file>`; the child writes one
//! [`ChildReport`] as JSON to `<file>` and the parent reads it back. JSON with a version
//! rather than ad-hoc lines, so that a field added later fails loudly instead of shifting
//! columns, and a truncated file is an error rather than fewer rows.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::ModelResult;

/// The version of the child report's layout; bumped on any change of [`ChildReport`].
pub const SCHEMA_VERSION: u32 = 1;

/// One ceiling child's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildReport {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The ceiling the child ran under, as the child read it (`kernels::Isa::name`).
    pub isa: String,
    /// The best-flavour sets end to end, one per kernel set and thread count.
    pub models: Vec<ModelResult>,
}

/// Why a child report could not be written or read.
#[derive(Debug)]
pub enum ChildError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The file was written by another layout of [`ChildReport`].
    Version {
        path: PathBuf,
        found: u32,
    },
    /// The child ran under another ceiling than the parent asked for.
    Isa {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ChildError::Json { path, source } => {
                write!(f, "{}: not a child report: {source}", path.display())
            }
            ChildError::Version { path, found } => write!(
                f,
                "{}: child report schema version {found}, this harness reads {SCHEMA_VERSION}",
                path.display()
            ),
            ChildError::Isa { path, expected, found } => {
                write!(f, "{}: the child ran at ceiling {found}, not {expected}", path.display())
            }
        }
    }
}

impl std::error::Error for ChildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChildError::Io { source, .. } => Some(source),
            ChildError::Json { source, .. } => Some(source),
            ChildError::Version { .. } | ChildError::Isa { .. } => None,
        }
    }
}

impl ChildReport {
    pub fn new(isa: &str, models: Vec<ModelResult>) -> ChildReport {
        ChildReport { schema_version: SCHEMA_VERSION, isa: isa.to_string(), models }
    }

    /// Writes the report as JSON to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ChildError> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|source| ChildError::Json { path: path.to_path_buf(), source })?;
        std::fs::write(path, json).map_err(|source| ChildError::Io { path: path.to_path_buf(), source })
    }

    /// Reads the report of a child asked to run at ceiling `isa`, checking its version and
    /// its ceiling.
    pub fn read(path: &Path, isa: &str) -> Result<ChildReport, ChildError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ChildError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path, isa)
    }

    fn parse(text: &str, path: &Path, isa: &str) -> Result<ChildReport, ChildError> {
        let report: ChildReport = serde_json::from_str(text)
            .map_err(|source| ChildError::Json { path: path.to_path_buf(), source })?;
        if report.schema_version != SCHEMA_VERSION {
            return Err(ChildError::Version { path: path.to_path_buf(), found: report.schema_version });
        }
        if report.isa != isa {
            return Err(ChildError::Isa {
                path: path.to_path_buf(),
                expected: isa.into(),
                found: report.isa,
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ChildReport {
        ChildReport::new(
            "avx2",
            vec![ModelResult { kernel_set: "direct".into(), threads: 2, median_s: 3.25e-3, flops: 1.1e9 }],
        )
    }

    #[test]
    fn round_trips_through_a_file() {
        let path = std::env::temp_dir().join(format!("bench-harness-child-test-{}.json", std::process::id()));
        report().write(&path).unwrap();
        let back = ChildReport::read(&path, "avx2");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.unwrap(), report());
    }

    #[test]
    fn rejects_bad_files_with_typed_errors() {
        let p = Path::new("child.json");
        let json = serde_json::to_string(&report()).unwrap();
        assert!(matches!(ChildReport::parse(&json, p, "avx512"), Err(ChildError::Isa { .. })));
        let old = json.replace("\"schema_version\":1", "\"schema_version\":0");
        assert!(matches!(ChildReport::parse(&old, p, "avx2"), Err(ChildError::Version { found: 0, .. })));
        // A child killed mid-write leaves a truncated file: an error, not fewer rows.
        let cut = &json[..json.len() / 2];
        assert!(matches!(ChildReport::parse(cut, p, "avx2"), Err(ChildError::Json { .. })));
        let missing = ChildReport::read(Path::new("/nonexistent/child.json"), "avx2");
        assert!(matches!(missing, Err(ChildError::Io { .. })));
    }
}
