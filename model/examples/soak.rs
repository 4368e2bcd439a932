//! Soak: N inferences in a row with one prepared model, printing resident memory (VmRSS)
//! at checkpoints. `forward` allocates nothing, so RSS must stay flat after the first run.
//!
//! ```sh
//! cargo run --release -p model --example soak -- [iterations] [kernel set] [threads]
//! ```

use kernels::testing::random_values;
use model::{Config, MobileNet, Weights};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let set = kernels::kernel_set(args.get(2).map_or("direct", String::as_str))?;
    let threads: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let config = Config::default();
    let weights = Weights::random(&config, 0)?;
    let mut net = MobileNet::new(config, &weights, &set, 1, threads)?;
    let input = random_values(3 * 224 * 224, 1);
    let first = net.forward(&input)?.to_vec();
    let start_rss = rss_kib();
    println!("kernel set {}, {threads} thread(s): RSS after first inference {start_rss} KiB", set.name());
    let t = std::time::Instant::now();
    for i in 1..=iters {
        let out = net.forward(&input)?;
        if out != first.as_slice() {
            return Err(format!("inference {i} differs from the first").into());
        }
        if i % (iters / 5).max(1) == 0 {
            println!("after {i:>6} inferences: RSS {} KiB", rss_kib());
        }
    }
    let end_rss = rss_kib();
    println!(
        "{iters} inferences in {:.1} s; RSS growth {} KiB; every output bit-identical to the first",
        t.elapsed().as_secs_f64(),
        end_rss as i64 - start_rss as i64
    );
    Ok(())
}
