//! Shared output helpers: the machine description and the final JSON line.
use serde_json::{Map, Value};

/// Prints the hardware and settings a run used (to stdout, before the figures).
pub fn print_machine(dir: &std::path::Path) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "machine: {cores} cores, kernel {}, data dir {}",
        kernel.trim(),
        dir.display()
    );
}

/// Rounds to one decimal for readable JSON.
/// The `p` quantile (0..=1) of `sorted` (0 if empty).
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The median of `v` (the mean of the middle two for an even count; 0 for none).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Rounds to three decimals (ratios).
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints the one-line JSON result; must be the last line on stdout.
pub fn print_json(fields: Vec<(&str, Value)>) {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert(k.to_string(), v);
    }
    println!("{}", Value::Object(m));
}
