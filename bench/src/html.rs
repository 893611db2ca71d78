//! `shale-bench report FILE...`: an HTML page of saved benchmark results, so they are looked
//! at, not read. Each file is a benchmark's saved stdout (or any text): every line that is a
//! JSON object with a `bench` key is one run. Per benchmark, every number is drawn as a bar
//! per run with the median marked, and every array of numbers (e.g. `meta`'s
//! `failover_ms_trials`) as a line over its items and, from 5 items, as a percentile curve
//! (latency percentiles); an array of `[x, y]` pairs (e.g. `heal`'s `heal_progress_pct`:
//! seconds since the kill, % healed) as a timeline; figures measured at several client
//! counts (`write_MiBps_1`, `write_MiBps_4`; `creates_per_s_1`, `creates_per_s_64`) as a
//! throughput-vs-clients curve of their medians; a table gives median, min and max.
//!
//! The charts are small inline SVG written here (bars, polylines, dots, labels): no plotting
//! crate is needed for that, and the page has no scripts and no external files.
use crate::report::median;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Files with saved benchmark output (`shale-bench meta | tee meta-1.txt`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where to write the page.
    #[arg(long, default_value = "bench-report.html")]
    out: PathBuf,
}

/// The runs in `text`: every line that is a JSON object naming its bench.
pub fn runs(text: &str) -> Vec<Map<String, Value>> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter_map(|v| match v {
            Value::Object(m) if m.get("bench").is_some_and(Value::is_string) => Some(m),
            _ => None,
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt(x: f64) -> String {
    if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

const W: f64 = 300.0;
const H: f64 = 150.0;
const PAD: f64 = 28.0;

/// The top of a chart's value axis: the largest value (never 0, so it can divide).
fn axis_max(values: &[f64]) -> f64 {
    values
        .iter()
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE)
}

/// Bars, one per run, and the median as a dashed line.
pub fn bars(title: &str, values: &[f64]) -> String {
    let max = axis_max(values);
    let (w, h) = (W - 2.0 * PAD, H - 2.0 * PAD);
    let bw = w / values.len().max(1) as f64;
    let y = |v: f64| PAD + h - (v.max(0.0) / max) * h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" role=\"img\"><title>{}</title>",
        esc(title)
    );
    let _ = write!(
        s,
        "<text x=\"4\" y=\"14\" font-size=\"12\">{}</text>",
        esc(title)
    );
    for (i, v) in values.iter().enumerate() {
        let x = PAD + i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#4a7fb5\"><title>run {}: {}</title></rect>",
            x + 2.0,
            y(*v),
            (bw - 4.0).max(1.0),
            PAD + h - y(*v),
            i + 1,
            fmt(*v)
        );
    }
    let m = median(values);
    let _ = write!(
        s,
        "<line x1=\"{PAD}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#c33\">median {}</text>\
         <text x=\"2\" y=\"{:.1}\" font-size=\"10\">{}</text><text x=\"2\" y=\"{:.1}\" font-size=\"10\">0</text>",
        PAD + w,
        y(m),
        y(m),
        PAD + 2.0,
        y(m) - 3.0,
        fmt(m),
        PAD + 4.0,
        fmt(max),
        PAD + h
    );
    s + "</svg>"
}

/// A line over the items of a series (e.g. failover trials).
pub fn line(title: &str, values: &[f64]) -> String {
    let max = axis_max(values);
    let (w, h) = (W - 2.0 * PAD, H - 2.0 * PAD);
    let step = w / (values.len().max(2) - 1) as f64;
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                PAD + i as f64 * step,
                PAD + h - (v / max) * h
            )
        })
        .collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" role=\"img\"><title>{t}</title>\
         <text x=\"4\" y=\"14\" font-size=\"12\">{t}</text>\
         <polyline fill=\"none\" stroke=\"#4a7fb5\" stroke-width=\"2\" points=\"{}\"/>\
         <text x=\"2\" y=\"{:.1}\" font-size=\"10\">{}</text><text x=\"2\" y=\"{:.1}\" font-size=\"10\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{} items</text></svg>",
        pts.join(" "),
        PAD + 4.0,
        fmt(max),
        PAD + h,
        PAD + w - 40.0,
        H - 6.0,
        values.len(),
        t = esc(title)
    )
}

/// A line through `(x, y)` points (sorted by x), with dots, both axes labelled with their
/// range: a throughput-vs-clients curve, a percentile curve, a timeline.
pub fn xy(title: &str, x_label: &str, points: &[(f64, f64)]) -> String {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let ymax = axis_max(&ys);
    let (x0, x1) = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => (a.0, b.0),
        _ => (0.0, 1.0),
    };
    let xspan = if x1 > x0 { x1 - x0 } else { 1.0 };
    let (w, h) = (W - 2.0 * PAD, H - 2.0 * PAD);
    let at = |(x, y): (f64, f64)| {
        (
            PAD + (x - x0) / xspan * w,
            PAD + h - (y.max(0.0) / ymax) * h,
        )
    };
    let line: Vec<String> = pts
        .iter()
        .map(|p| {
            let (x, y) = at(*p);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" role=\"img\"><title>{t}</title>\
         <text x=\"4\" y=\"14\" font-size=\"12\">{t}</text>\
         <polyline fill=\"none\" stroke=\"#4a7fb5\" stroke-width=\"2\" points=\"{}\"/>",
        line.join(" "),
        t = esc(title)
    );
    if pts.len() <= 32 {
        for p in &pts {
            let (x, y) = at(*p);
            let _ = write!(
                svg,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"#4a7fb5\"><title>{}: {}</title></circle>",
                fmt(p.0),
                fmt(p.1)
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"2\" y=\"{:.1}\" font-size=\"10\">{}</text><text x=\"2\" y=\"{:.1}\" font-size=\"10\">0</text>\
         <text x=\"{PAD}\" y=\"{:.1}\" font-size=\"10\">{}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{} {}</text></svg>",
        PAD + 4.0,
        fmt(ymax),
        PAD + h,
        H - 6.0,
        fmt(x0),
        PAD + w,
        H - 6.0,
        fmt(x1),
        esc(x_label)
    );
    svg
}

/// `name` split as `base_N` (N all digits: a client or thread count), e.g. `write_MiBps_4`.
fn scaled(name: &str) -> Option<(&str, u32)> {
    let (base, n) = name.rsplit_once('_')?;
    if base.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, n.parse().ok()?))
}

/// For every figure measured at several client counts (`base_1`, `base_4`, ...): its median
/// per count, as (base, [(clients, median)]).
fn scaling(runs: &[&Map<String, Value>]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut by: BTreeMap<String, BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for r in runs {
        for (k, v) in r.iter() {
            if let (Some((base, n)), Some(x)) = (scaled(k), v.as_f64()) {
                by.entry(base.to_string())
                    .or_default()
                    .entry(n)
                    .or_default()
                    .push(x);
            }
        }
    }
    by.into_iter()
        .filter(|(_, ns)| ns.len() >= 2)
        .map(|(b, ns)| {
            let pts = ns
                .into_iter()
                .map(|(n, v)| (n as f64, median(&v)))
                .collect();
            (b, pts)
        })
        .collect()
}

/// The percentile curve of a series of samples: (percentile, value) at every sample.
fn percentiles(values: &[f64]) -> Vec<(f64, f64)> {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    s.into_iter()
        .enumerate()
        .map(|(i, v)| (100.0 * (i + 1) as f64 / n as f64, v))
        .collect()
}

/// The page for `runs` (grouped by bench, in name order).
pub fn page(all: &[Map<String, Value>]) -> String {
    let mut by_bench: BTreeMap<String, Vec<&Map<String, Value>>> = BTreeMap::new();
    for r in all {
        let name = r.get("bench").and_then(Value::as_str).unwrap_or("?");
        by_bench.entry(name.to_string()).or_default().push(r);
    }
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Shale benchmark report</title>\
         <style>body{font-family:sans-serif;margin:2em}svg{margin:4px;border:1px solid #ddd}\
         table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}\
         td:first-child,th:first-child{text-align:left}</style></head><body><h1>Shale benchmark report</h1>",
    );
    for (bench, runs) in &by_bench {
        let _ = write!(
            out,
            "<h2 id=\"{b}\">{b} ({} runs)</h2><div>",
            runs.len(),
            b = esc(bench)
        );
        for (base, pts) in scaling(runs) {
            out += &xy(&format!("{base} vs clients (median)"), "clients", &pts);
        }
        let mut keys: Vec<&String> = runs.iter().flat_map(|r| r.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut table =
            String::from("<table><tr><th>figure</th><th>median</th><th>min</th><th>max</th></tr>");
        for k in keys {
            let nums: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.get(k.as_str()).and_then(Value::as_f64))
                .collect();
            if !nums.is_empty() {
                out += &bars(k, &nums);
                let (lo, hi) = (
                    nums.iter().copied().fold(f64::INFINITY, f64::min),
                    nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                );
                let _ = write!(
                    table,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(k),
                    fmt(median(&nums)),
                    fmt(lo),
                    fmt(hi)
                );
            }
            for (i, r) in runs.iter().enumerate() {
                if let Some(Value::Array(a)) = r.get(k.as_str()) {
                    let series: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
                    if series.len() >= 2 {
                        out += &line(&format!("{k} (run {})", i + 1), &series);
                    }
                    if series.len() >= 5 {
                        out += &xy(
                            &format!("{k} percentiles (run {})", i + 1),
                            "percentile",
                            &percentiles(&series),
                        );
                    }
                    // [x, y] pairs: a timeline (e.g. heal progress over seconds).
                    let pairs: Vec<(f64, f64)> = a
                        .iter()
                        .filter_map(|p| match p.as_array().map(Vec::as_slice) {
                            Some([x, y]) => Some((x.as_f64()?, y.as_f64()?)),
                            _ => None,
                        })
                        .collect();
                    if pairs.len() >= 2 {
                        out += &xy(&format!("{k} (run {})", i + 1), "s", &pairs);
                    }
                }
            }
        }
        out += "</div>";
        out += &table;
        out += "</table>";
    }
    out + "</body></html>\n"
}

pub fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut all = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let found = runs(&text);
        if found.is_empty() {
            return Err(format!(
                "{}: no benchmark result (a JSON line with \"bench\")",
                f.display()
            )
            .into());
        }
        all.extend(found);
    }
    std::fs::write(&a.out, page(&all)).map_err(|e| format!("{}: {e}", a.out.display()))?;
    println!("{} runs → {}", all.len(), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_charts_and_a_table() {
        let text = "noise\n{\"bench\":\"meta\",\"creates\":10,\"failover_ms_trials\":[500,600,550]}\n\
                    {\"bench\":\"meta\",\"creates\":30}\n{\"bench\":\"e2e\",\"write\":1.5}\n[1,2]\n";
        let r = runs(text);
        assert_eq!(r.len(), 3);
        let p = page(&r);
        assert!(p.contains("<h2 id=\"e2e\">e2e (1 runs)</h2>"), "{p}");
        assert!(p.contains("meta (2 runs)"));
        // Two bars for `creates` and one for `write`, median 20, the failover trials a line.
        assert_eq!(p.matches("<title>run ").count(), 3, "{p}");
        assert!(
            p.contains("<td>creates</td><td>20</td><td>10</td><td>30</td>"),
            "{p}"
        );
        assert!(p.contains("<polyline"), "{p}");
        assert!(p.contains("failover_ms_trials (run 1)"));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(esc("<a&b>").contains("&lt;a&amp;b&gt;"));
    }

    #[test]
    fn client_counts_become_scaling_curves_and_series_percentiles_and_timelines() {
        let text =
            "{\"bench\":\"e2e\",\"write_MiBps_1\":100,\"write_MiBps_4\":300,\"read_MiBps_1\":9}\n\
                    {\"bench\":\"e2e\",\"write_MiBps_1\":120,\"write_MiBps_4\":260,\"x_y\":1}\n\
                    {\"bench\":\"heal\",\"heal_progress_pct\":[[1.0,0],[2.5,40],[4.0,100]],\
                    \"failover_ms_trials\":[500,600,550,700,520]}\n";
        let r = runs(text);
        let e2e: Vec<&Map<String, Value>> = r.iter().take(2).collect();
        let s = scaling(&e2e);
        // Only figures at two or more client counts; medians per count.
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s["write_MiBps"], vec![(1.0, 110.0), (4.0, 280.0)]);
        assert_eq!(scaled("a_b"), None);
        assert_eq!(scaled("creates_per_s_64"), Some(("creates_per_s", 64)));
        let p = page(&r);
        assert!(p.contains("write_MiBps vs clients (median)"), "{p}");
        assert!(p.contains("failover_ms_trials percentiles (run 1)"), "{p}");
        assert!(p.contains("heal_progress_pct (run 1)"), "{p}");
        assert_eq!(
            percentiles(&[3.0, 1.0, 2.0, 4.0]),
            vec![(25.0, 1.0), (50.0, 2.0), (75.0, 3.0), (100.0, 4.0)]
        );
        let chart = xy("t", "s", &[(4.0, 100.0), (1.0, 0.0)]);
        assert_eq!(chart.matches("<circle").count(), 2);
        assert!(
            chart.contains("points=\"28.0,122.0 272.0,28.0\""),
            "{chart}"
        );
    }
}
