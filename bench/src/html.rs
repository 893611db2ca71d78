//! `shale-bench report FILE...`: an HTML page of saved benchmark results, so they are looked
//! at, not read. Each file is a benchmark's saved stdout (or any text): every line that is a
//! JSON object with a `bench` key is one run. Per benchmark, every number is drawn as a bar
//! per run with the median marked, and every array of numbers (e.g. `meta`'s
//! `failover_ms_trials`) as a line over its items; a table gives median, min and max.
//!
//! The charts are small inline SVG written here (bars, a polyline, labels): no plotting crate
//! is needed for that, and the page has no scripts and no external files.
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

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
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
}
