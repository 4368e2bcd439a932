//! The `auto` plan: the wisdom file's measured choices for this CPU and model, else the
//! cache-derived defaults ([`Plan::defaults`]). It lives apart from `plan.rs` so that the
//! imports go one way: `plan` <- `wisdom` (which stores plans) <- `auto` (which reads both).

use kernels::Precision;

use crate::config::Config;
use crate::error::Result;
use crate::plan::{Plan, AUTO};
use crate::wisdom::{self, Wisdom, WisdomKey};

impl Plan {
    /// The `auto` plan for this CPU: the wisdom file's entry for (CPU, model, batch,
    /// threads, precision) when there is one and it is valid here, else
    /// [`defaults`](Self::defaults). A wisdom file that cannot be read, comes from another
    /// CPU or names algorithms this build cannot run is ignored with one line on
    /// `warn`.
    pub fn auto(
        config: &Config,
        batch: usize,
        threads: usize,
        precision: Precision,
        wisdom_path: Option<&std::path::Path>,
        warn: &mut dyn FnMut(&str),
    ) -> Result<Plan> {
        let key = WisdomKey::new(config, batch, threads, precision);
        let path = match wisdom_path {
            Some(p) => Some(p.to_path_buf()),
            None => wisdom::default_path(),
        };
        if let Some(path) = path.filter(|p| p.exists()) {
            match Wisdom::load(&path) {
                Err(e) => warn(&format!("warning: ignoring wisdom file {}: {e}", path.display())),
                Ok(w) if !w.cpu.matches_this_cpu() => warn(&format!(
                    "warning: ignoring wisdom file {}: it was measured on another CPU ({}), this is {}",
                    path.display(),
                    w.cpu.describe(),
                    wisdom::CpuKey::this_cpu().describe()
                )),
                Ok(w) => {
                    if let Some(entry) = w.find(&key) {
                        let plan = Plan {
                            name: AUTO.into(),
                            source: format!("wisdom {} (tuned {})", path.display(), entry.measured),
                            layers: entry.layers.clone(),
                        };
                        match plan.check(config, threads) {
                            Ok(()) => return Ok(plan),
                            Err(e) => {
                                warn(&format!("warning: ignoring wisdom entry in {}: {e}", path.display()))
                            }
                        }
                    }
                }
            }
        }
        Self::defaults(config, batch, threads)
    }
}
