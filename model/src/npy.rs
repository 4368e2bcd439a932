//! Minimal `.npy` (NumPy format 1.0-3.0) reading and writing for f32 arrays.
//!
//! Hand-written rather than a dependency because we need only C-order little-endian f32
//! (and f64, converted) and want every malformed file to end in an error that says what is
//! wrong, without trusting sizes from the header before checking them against the file.

use std::path::Path;

use crate::error::{io_err, ModelError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// An f32 array with its shape (C order).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn bad(msg: impl Into<String>) -> ModelError {
    ModelError::Npy(msg.into())
}

/// Parses `.npy` bytes holding `<f4` or `<f8` data in C order.
pub fn parse(bytes: &[u8]) -> Result<Array> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not an .npy file (missing \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header length"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    let end =
        start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let elem = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" | "=f4" => 4,
        "<f8" | "=f8" => 8,
        other => {
            return Err(bad(format!(
                "dtype {other} is not supported (expected little-endian f32 '<f4' or f64 '<f8')"
            )))
        }
    };
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| bad("header has no 'fortran_order'"))?;
    if fortran.trim() != "False" {
        return Err(bad("Fortran-order arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape_txt = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape = parse_shape(shape_txt)?;
    let count =
        shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let payload = &bytes[end..];
    let needed = count.checked_mul(elem).ok_or_else(|| bad("shape overflows"))?;
    if payload.len() != needed {
        return Err(bad(format!("shape {shape:?} needs {needed} data bytes, file has {}", payload.len())));
    }
    let data = if elem == 4 {
        payload.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else {
        payload.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect()
    };
    Ok(Array { shape, data })
}

/// The text after `'key':` up to the next top-level comma or closing brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_a = format!("'{key}':");
    let pat_b = format!("\"{key}\":");
    let pos = header
        .find(&pat_a)
        .map(|p| p + pat_a.len())
        .or_else(|| header.find(&pat_b).map(|p| p + pat_b.len()))?;
    let rest = &header[pos..];
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(txt: &str) -> Result<Vec<usize>> {
    let inner = txt
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| bad("malformed shape"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L').parse::<usize>().map_err(|_| bad(format!("malformed shape entry {s:?}")))
        })
        .collect()
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    parse(&bytes).map_err(|e| match e {
        ModelError::Npy(m) => ModelError::Npy(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// Serialises an f32 array as `.npy` version 1.0.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt =
        if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so that the data starts on a 64-byte boundary, header ending in '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes an f32 array as `.npy`.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    std::fs::write(path, to_bytes(shape, data)).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        let bytes = to_bytes(&[2, 3, 4], &data);
        assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
        assert_eq!(parse(&bytes).unwrap(), Array { shape: vec![2, 3, 4], data });
        assert_eq!(parse(&to_bytes(&[5], &[1.0; 5])).unwrap().shape, vec![5]);
    }

    /// `bytes` with the first occurrence of `from` replaced by the same-length `to`.
    fn patch(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let at = bytes.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
        out[at..at + to.len()].copy_from_slice(to.as_bytes());
        out
    }

    #[test]
    fn malformed_files_are_errors() {
        let good = to_bytes(&[2, 2], &[1.0; 4]);
        assert!(parse(b"hello").is_err());
        assert!(parse(&good[..good.len() - 1]).unwrap_err().to_string().contains("needs 16 data bytes"));
        assert!(parse(&patch(&good, "<f4", "<i4")).unwrap_err().to_string().contains("<i4"));
        assert!(parse(&patch(&good, "False", "True ")).unwrap_err().to_string().contains("Fortran"));
        let raw = |header: &str| {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(&[0u8; 16]);
            b
        };
        let shape = |s: &str| raw(&format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {s}, }}"));
        assert!(parse(&shape("(2, 2)")).is_ok());
        assert!(parse(&shape("(4294967296, 4294967296, 4294967296)"))
            .unwrap_err()
            .to_string()
            .contains("overflows"));
        assert!(parse(&shape("(99999, 99999999)")).unwrap_err().to_string().contains("needs"));
        assert!(parse(&shape("(2, x)")).unwrap_err().to_string().contains("malformed"));
        assert!(parse(&raw("{'descr': '<f4'}")).unwrap_err().to_string().contains("fortran_order"));
        let mut long_header = good.clone();
        long_header[8] = 0xff;
        long_header[9] = 0xff;
        assert!(parse(&long_header).unwrap_err().to_string().contains("truncated"));
    }
}
