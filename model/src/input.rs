//! Network input from a file: an f32 `.npy` array `[N, 3, H, W]`, or an image resized to the
//! resolution and normalised with the ImageNet mean and standard deviation.

use std::path::Path;

use crate::error::{ModelError, Result};
use crate::npy;

/// ImageNet channel means and standard deviations (torchvision's `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A batch of NCHW images ready for the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub n: usize,
    pub data: Vec<f32>,
}

/// Loads `path` as `.npy` (by extension) or as a PNG/JPEG image, for a `resolution` model.
pub fn load(path: &Path, resolution: usize) -> Result<Batch> {
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let a = npy::read(path)?;
        match a.shape.as_slice() {
            &[n, 3, h, w] if h == resolution && w == resolution && n > 0 => Ok(Batch { n, data: a.data }),
            s => Err(ModelError::Npy(format!(
                "{}: shape {s:?}, expected [N, 3, {resolution}, {resolution}] with N >= 1",
                path.display()
            ))),
        }
    } else {
        let bytes = std::fs::read(path).map_err(crate::error::io_err(path))?;
        image_to_batch(&bytes, resolution).map_err(|e| ModelError::Image(format!("{}: {e}", path.display())))
    }
}

/// Decodes an image, resizes it to `resolution x resolution` (triangle filter) and
/// normalises it: `(pixel / 255 - mean) / std` per channel, NCHW with N = 1.
pub fn image_to_batch(bytes: &[u8], resolution: usize) -> std::result::Result<Batch, String> {
    let img = image::load_from_memory(bytes).map_err(|e| format!("cannot decode: {e}"))?;
    let r = u32::try_from(resolution).map_err(|_| "resolution too large".to_string())?;
    let rgb = img.resize_exact(r, r, image::imageops::FilterType::Triangle).to_rgb8();
    let hw = resolution * resolution;
    let mut data = vec![0.0f32; 3 * hw];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * hw + i] = (px.0[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    Ok(Batch { n: 1, data })
}
