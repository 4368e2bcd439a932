//! Files the CLI writes (weights from `convert` and `quantize`), written so that a failure
//! never leaves a half-written file, writing over the input is safe, and the new file gets
//! the mode the user's umask gives (0644 under the usual 022), as any new file would.
//!
//! `std::fs::write` to an existing path truncates it in place and keeps its old mode: a
//! file first made by `mktemp` (0600) stayed 0600 after `convert` wrote over it, and a
//! failed write over the input destroyed the input. Here the bytes go to a new file beside
//! the target, which is then renamed over it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, ModelError, Result};

/// Writes `bytes` to `path` atomically: a new file in the same folder (mode `0666` less
/// the umask), flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| ModelError::Config(format!("{}: not a file name to write", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("model-files-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_over_an_existing_file_and_leaves_no_temporary() {
        let d = dir("atomic");
        let p = d.join("w.safetensors");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new bytes").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new bytes");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // A folder that does not exist: an error naming the path, nothing left behind.
        let e = write_atomic(&d.join("no/such/dir/x"), b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir/x"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn the_new_file_gets_the_umask_mode_not_the_old_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("mode");
        let p = d.join("w.safetensors");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let fresh = d.join("fresh");
        std::fs::write(&fresh, b"").unwrap();
        let umask_mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, umask_mode);
        let _ = std::fs::remove_dir_all(&d);
    }
}
