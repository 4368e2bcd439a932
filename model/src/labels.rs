//! Class names for the top-k lines of `mobilenet run`.
//!
//! - [`Labels::imagenet`]: the 1000 ILSVRC-2012 classes in torchvision's order (index 0
//!   `tench` ... 999 `toilet tissue`), the order of every ImageNet-1k PyTorch checkpoint.
//!   `data/imagenet-1k.txt` is `torchvision.models._meta._IMAGENET_CATEGORIES` from the
//!   torchvision 0.29.2 wheel, one name per line.
//! - [`Labels::from_file`]: one class name per line, as many as the model has classes.

use std::path::Path;

use crate::error::{io_err, ModelError, Result};

/// The ImageNet-1k class names, one per line (see the module docs for their source).
const IMAGENET_1K: &str = include_str!("../data/imagenet-1k.txt");

/// Number of ImageNet-1k classes.
pub const IMAGENET_CLASSES: usize = 1000;

/// One name per class index.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    names: Vec<String>,
}

impl Labels {
    /// The 1000 ImageNet-1k class names, in torchvision's order.
    pub fn imagenet() -> Self {
        Labels { names: IMAGENET_1K.lines().map(|l| l.trim().to_string()).collect() }
    }

    /// Reads one class name per line (surrounding whitespace trimmed, trailing blank lines
    /// ignored). A blank line before the last name, or a count other than `classes`, is an
    /// error naming the file (and both counts).
    pub fn from_file(path: &Path, classes: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::parse(&text, classes)
            .map_err(|problem| ModelError::Labels { path: path.display().to_string(), problem })
    }

    /// The names for a run: `file` if given, ImageNet-1k's for 1000 classes, none otherwise.
    pub fn for_run(file: Option<&Path>, classes: usize) -> Result<Option<Self>> {
        match file {
            Some(path) => Self::from_file(path, classes).map(Some),
            None if classes == IMAGENET_CLASSES => Ok(Some(Self::imagenet())),
            None => Ok(None),
        }
    }

    fn parse(text: &str, classes: usize) -> Result<Self, String> {
        let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        while names.last().is_some_and(|n| n.is_empty()) {
            names.pop();
        }
        if let Some(i) = names.iter().position(|n| n.is_empty()) {
            return Err(format!("line {} is blank (one class name per line)", i + 1));
        }
        if names.len() != classes {
            return Err(format!(
                "{} class names, but the model has {classes} classes (--classes)",
                names.len()
            ));
        }
        Ok(Labels { names })
    }

    /// The name of class `i`, if there is one.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.names.get(i).map(String::as_str)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no names.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_file_has_1000_nonempty_unique_lines_in_torchvision_order() {
        let lines: Vec<&str> = IMAGENET_1K.lines().collect();
        assert_eq!(lines.len(), IMAGENET_CLASSES);
        assert!(lines.iter().all(|l| !l.trim().is_empty() && l.trim() == *l), "blank or padded line");
        let mut unique = lines.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), IMAGENET_CLASSES, "duplicate names");
        let labels = Labels::imagenet();
        assert_eq!(labels.len(), IMAGENET_CLASSES);
        assert_eq!(labels.name(0), Some("tench"));
        assert_eq!(labels.name(1), Some("goldfish"));
        assert_eq!(labels.name(281), Some("tabby"));
        assert_eq!(labels.name(999), Some("toilet tissue"));
        assert_eq!(labels.name(1000), None);
    }

    #[test]
    fn parse_trims_ignores_trailing_blanks_and_checks_the_count() {
        let l = Labels::parse("cat\r\n  dog \nbird\n\n  \n", 3).unwrap();
        assert_eq!((l.name(0), l.name(1), l.name(2)), (Some("cat"), Some("dog"), Some("bird")));
        let e = Labels::parse("cat\ndog\n", 3).unwrap_err();
        assert!(e.contains('2') && e.contains('3'), "{e}");
        let e = Labels::parse("cat\n\ndog\nbird\n", 3).unwrap_err();
        assert!(e.contains("line 2 is blank"), "{e}");
    }

    #[test]
    fn from_file_errors_name_the_file_and_run_defaults_to_imagenet_for_1000_classes() {
        let path = std::env::temp_dir().join(format!("model-labels-{}.txt", std::process::id()));
        std::fs::write(&path, "a\nb\n").unwrap();
        let e = Labels::from_file(&path, 10).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("2 class names") && e.contains("10"),
            "{e}"
        );
        assert_eq!(Labels::for_run(Some(&path), 2).unwrap().unwrap().name(1), Some("b"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(Labels::for_run(None, 1000).unwrap(), Some(Labels::imagenet()));
        assert_eq!(Labels::for_run(None, 10).unwrap(), None);
    }
}
