//! The dashboard page: plain server-rendered HTML with inline SVG (no scripts, no external
//! files; the page reloads itself every 2 s). Pure: it draws a [`View`] the sampler built.
//!
//! Sections (each with an `id` the browser test looks for): `summary`, `masters` (role, term,
//! log, commit and apply indexes of every member as it answers for itself, and when it last
//! answered the leader), `health` (healthy / under-replicated / missing / corrupt chunks,
//! healing progress and ETA), `graphs` (write, read and request rates and under-replicated
//! chunks over the last minutes), `chunkservers` (capacity bar, chunks, load, state, last
//! heartbeat) and `at-risk` (files with chunks below their target). Every name that came
//! from outside is escaped.
use super::history::{History, Sample};
use crate::http::escape;
use crate::human::size;
use shale_proto::metapb::{MasterInfo, StatusReply};
use std::fmt::Write;

/// What one page shows.
pub struct View<'a> {
    /// This master's gRPC address.
    pub asked: &'a str,
    /// This master's own status (None: its gRPC port did not answer).
    pub own: Option<&'a StatusReply>,
    /// The leader's status, the source of the healing figures (None: no leader answered).
    pub leader: Option<&'a StatusReply>,
    /// Every member, with its own status when it answered.
    pub masters: &'a [(MasterInfo, Option<StatusReply>)],
    pub history: &'a History,
}

const STYLE: &str = "body{font:14px sans-serif;margin:1em 2em;color:#222}\
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}\
.bad{color:#b00;font-weight:bold}.warn{color:#a60}.ok{color:#070}\
section{margin-bottom:1.2em}.graph{display:inline-block;margin-right:1em}h2{margin:.6em 0 .3em}";

/// Colours the browser test looks for in the screenshot: capacity bars, graph lines, the
/// healing bar.
pub const BAR_COLOUR: &str = "#2a9d4b";
pub const LINE_COLOUR: &str = "#1f5fbf";

pub fn page(v: &View) -> String {
    let mut out = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" \
         content=\"2\"><title>shale dashboard: {}</title><style>{STYLE}</style></head><body>\
         <h1>shale</h1>",
        escape(v.asked)
    );
    summary(&mut out, v);
    masters(&mut out, v);
    health(&mut out, v);
    graphs(&mut out, v.history);
    chunkservers(&mut out, v);
    at_risk(&mut out, v);
    out + "<p><a href=\"/api/dashboard\">JSON</a> · <a href=\"/metrics\">metrics</a></p>\
           </body></html>"
}

fn summary(out: &mut String, v: &View) {
    out.push_str("<section id=\"summary\">");
    match v.own {
        Some(s) => {
            let leader = if s.leader == 0 {
                "<span class=\"bad\">no leader</span>".to_string()
            } else {
                format!("master {} at {}", s.leader, escape(&s.leader_address))
            };
            let _ = write!(
                out,
                "<p>This is master {} ({}), <b>{}</b> in term {}, applied index {}. Leader: \
                 {leader}. {} files, {} directories, {} chunks.</p>",
                s.id,
                escape(v.asked),
                escape(&s.role),
                s.term,
                s.applied_index,
                s.files,
                s.dirs,
                s.chunks
            );
        }
        None => {
            let _ = write!(
                out,
                "<p class=\"bad\">This master's gRPC port ({}) does not answer.</p>",
                escape(v.asked)
            );
        }
    }
    out.push_str("</section>");
}

fn masters(out: &mut String, v: &View) {
    out.push_str(
        "<section id=\"masters\"><h2>masters</h2><table><tr><th>id</th><th>address</th>\
         <th>role</th><th>term</th><th>last log</th><th>committed</th><th>applied</th>\
         <th>snapshot</th><th>answers the leader</th></tr>",
    );
    let leader_id = v.leader.map(|l| l.id);
    for (info, st) in v.masters {
        // Only the leader hears from every member.
        let heard_ms_ago = v
            .leader
            .and_then(|l| l.masters.iter().find(|m| m.id == info.id))
            .and_then(|m| m.heard_ms_ago);
        let heard = if Some(info.id) == leader_id {
            "is the leader".to_string()
        } else {
            match heard_ms_ago {
                Some(ms) if ms < 2_000 => format!("{ms} ms ago"),
                Some(ms) => format!("<span class=\"bad\">not for {} s</span>", ms / 1000),
                None if v.leader.is_some() => "<span class=\"bad\">never</span>".into(),
                None => "unknown".into(),
            }
        };
        let voter = if info.voter { "" } else { " (learner)" };
        match st {
            Some(s) => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}{voter}</td><td>{}</td><td>{}</td>\
                     <td>{}</td><td>{}</td><td>{}</td><td>{heard}</td></tr>",
                    info.id,
                    escape(&info.address),
                    escape(&s.role),
                    s.term,
                    s.last_log_index,
                    s.committed_index,
                    s.applied_index,
                    s.snapshot_index
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td class=\"bad\">not answering{voter}</td>\
                     <td></td><td>{}</td><td></td><td></td><td></td><td>{heard}</td></tr>",
                    info.id,
                    escape(&info.address),
                    v.leader
                        .and_then(|l| l.masters.iter().find(|m| m.id == info.id))
                        .and_then(|m| m.matched_index)
                        .map_or(String::new(), |i| format!("{i} (leader's view)")),
                );
            }
        }
    }
    out.push_str("</table></section>");
}

/// A horizontal bar `percent` full.
fn bar(class: &str, percent: f64, colour: &str) -> String {
    let w = (percent.clamp(0.0, 100.0) * 1.2).round();
    format!(
        "<svg class=\"{class}\" width=\"120\" height=\"12\"><rect width=\"120\" height=\"12\" \
         fill=\"#e4e4e4\"/><rect width=\"{w}\" height=\"12\" fill=\"{colour}\"/></svg>"
    )
}

fn health(out: &mut String, v: &View) {
    out.push_str("<section id=\"health\"><h2>chunk health</h2>");
    let Some(l) = v.leader else {
        out.push_str("<p class=\"warn\">unknown: no leader answers</p></section>");
        return;
    };
    if l.unreported > 0 {
        let _ = write!(
            out,
            "<p class=\"warn\">unknown yet: {} chunkservers have not reported to the leader \
             since it started</p>",
            l.unreported
        );
    }
    let healthy = l
        .chunks
        .saturating_sub(l.under_replicated)
        .saturating_sub(l.missing);
    let cls = |n: u64| if n == 0 { "ok" } else { "bad" };
    let _ = write!(
        out,
        "<table><tr><th>healthy</th><th>under-replicated</th><th>missing</th>\
         <th>corrupt replicas</th><th>copies running</th></tr><tr><td class=\"ok\">{healthy}</td>\
         <td class=\"{}\">{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td>\
         </tr></table>",
        cls(l.under_replicated),
        l.under_replicated,
        cls(l.missing),
        l.missing,
        cls(l.bad_replicas),
        l.bad_replicas,
        l.copying
    );
    if l.safe_mode {
        out.push_str("<p class=\"warn\">the leader is in safe mode (deletes nothing yet)</p>");
    }
    let h = v.history.healing();
    let eta = match (h.remaining, h.eta_s) {
        (0, _) => "nothing to heal".to_string(),
        (_, Some(s)) => format!("ETA {}", seconds(s)),
        (_, None) => "ETA unknown (no progress measured yet)".to_string(),
    };
    let rate = h
        .chunks_per_s
        .map_or(String::new(), |r| format!(", {r:.1} chunks/s"));
    let _ = write!(
        out,
        "<p id=\"healing\">healing: {} {:.0} % of {} done, {} left{rate}; {eta}</p></section>",
        bar("heal", h.percent_done, BAR_COLOUR),
        h.percent_done,
        h.peak,
        h.remaining
    );
}

fn seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Samples a graph spans at least (a young history fills the last minute, not a sliver).
const GRAPH_SPAN_MIN: usize = 60;

/// A small line chart of `values` (oldest first), the newest at the right edge.
fn graph(title: &str, values: &[f64], show: impl Fn(f64) -> String) -> String {
    const W: f64 = 260.0;
    const H: f64 = 60.0;
    let max = values.iter().copied().fold(0.0f64, f64::max);
    let now = values.last().copied();
    let mut svg = format!(
        "<div class=\"graph\"><div>{} — now {}, max {}</div><svg width=\"{W}\" height=\"{H}\" \
         style=\"background:#f6f6f6\">",
        escape(title),
        now.map_or("–".into(), &show),
        show(max)
    );
    if values.len() >= 2 {
        let step = W / (values.len().max(GRAPH_SPAN_MIN) - 1) as f64;
        let x0 = W - step * (values.len() - 1) as f64;
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, y)| {
                let y = if max > 0.0 {
                    H - 2.0 - (H - 4.0) * y / max
                } else {
                    H - 2.0
                };
                format!("{:.1},{y:.1}", x0 + step * i as f64)
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{LINE_COLOUR}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    svg + "</svg></div>"
}

fn graphs(out: &mut String, h: &History) {
    let series = |f: &dyn Fn(&Sample) -> f64| h.samples().iter().map(f).collect::<Vec<f64>>();
    let mib = |x: f64| format!("{:.1} MiB/s", x / (1u64 << 20) as f64);
    let _ = write!(
        out,
        "<section id=\"graphs\"><h2>the last minutes (up to {})</h2>{}{}{}{}</section>",
        super::history::SAMPLES_MAX / 60,
        graph(
            "disk writes, all replicas",
            &series(&|s| s.write_bytes_per_s),
            mib
        ),
        graph("reads", &series(&|s| s.read_bytes_per_s), mib),
        graph(
            "client requests",
            &series(&|s| s.requests_per_s),
            |x| format!("{x:.0}/s")
        ),
        graph(
            "chunks under-replicated or missing",
            &series(&|s| (s.under_replicated.unwrap_or(0) + s.missing.unwrap_or(0)) as f64),
            |x| format!("{x:.0}")
        ),
    );
}

fn chunkservers(out: &mut String, v: &View) {
    out.push_str(
        "<section id=\"chunkservers\"><h2>chunkservers</h2><table><tr><th>node</th>\
         <th>host</th><th>address</th><th>state</th><th>capacity</th><th>used</th>\
         <th>chunks</th><th>load</th><th>last heartbeat</th></tr>",
    );
    // The leader's view when there is one (its healing acts on it), else this master's.
    let Some(s) = v.leader.or(v.own) else {
        out.push_str("</table><p class=\"warn\">unknown: no master answers</p></section>");
        return;
    };
    for cs in &s.chunkservers {
        let used = cs.capacity_bytes.saturating_sub(cs.free_bytes);
        let percent = if cs.capacity_bytes > 0 {
            100.0 * used as f64 / cs.capacity_bytes as f64
        } else {
            0.0
        };
        let state_class = match cs.state.as_str() {
            "alive" => "ok",
            "stale" | "unknown" => "warn",
            _ => "bad",
        };
        let heard = cs.heard_ms_ago.map_or("never".into(), |ms| {
            if ms < 10_000 {
                format!("{:.1} s ago", ms as f64 / 1000.0)
            } else {
                format!("{} s ago", ms / 1000)
            }
        });
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{state_class}\">{}{}</td>\
             <td>{} {}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{heard}</td></tr>",
            cs.node_id,
            escape(&cs.host),
            escape(&cs.address),
            escape(&cs.state),
            if cs.draining { " (draining)" } else { "" },
            bar("cap", percent, BAR_COLOUR),
            format_args!("{percent:.0} %"),
            size(used),
            size(cs.capacity_bytes),
            cs.chunks,
            cs.load
        );
    }
    out.push_str("</table></section>");
}

fn at_risk(out: &mut String, v: &View) {
    out.push_str("<section id=\"at-risk\"><h2>files at risk</h2>");
    match v.leader {
        None => out.push_str("<p class=\"warn\">unknown: no leader answers</p>"),
        Some(l) if l.at_risk.is_empty() => out.push_str("<p class=\"ok\">none</p>"),
        Some(l) => {
            out.push_str(
                "<table><tr><th>file</th><th>chunk</th><th>live replicas</th><th>target</th></tr>",
            );
            for a in &l.at_risk {
                let name = if a.path.is_empty() {
                    format!("inode {} (in a snapshot or under construction)", a.inode)
                } else {
                    escape(&a.path)
                };
                let _ = write!(
                    out,
                    "<tr><td>{name}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                    a.chunk_index,
                    if a.live_replicas == 0 { "bad" } else { "warn" },
                    a.live_replicas,
                    a.target
                );
            }
            out.push_str("</table>");
        }
    }
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::super::history::Counters;
    use super::*;
    use shale_proto::metapb::{AtRisk, ChunkserverInfo};

    fn status(id: u64, role: &str) -> StatusReply {
        StatusReply {
            id,
            role: role.into(),
            leader: 1,
            leader_address: "127.0.0.1:7001".into(),
            term: 4,
            last_log_index: 120,
            committed_index: 119,
            applied_index: 118,
            chunks: 10,
            under_replicated: 3,
            missing: 1,
            bad_replicas: 2,
            chunkservers: vec![ChunkserverInfo {
                node_id: 7,
                host: "<h>".into(),
                address: "127.0.0.1:9".into(),
                state: "dead".into(),
                capacity_bytes: 1000,
                free_bytes: 250,
                chunks: 5,
                load: 3,
                ..Default::default()
            }],
            at_risk: vec![AtRisk {
                path: "/a&b".into(),
                inode: 9,
                chunk_index: 2,
                live_replicas: 1,
                target: 3,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_section_is_drawn_and_names_are_escaped() {
        let mut leader = status(1, "leader");
        // What the leader knows of the others: when they last answered, what they have.
        leader.masters = vec![MasterInfo {
            id: 3,
            heard_ms_ago: Some(9_000),
            matched_index: Some(50),
            ..Default::default()
        }];
        let own = status(2, "follower");
        let members = vec![
            (
                MasterInfo {
                    id: 1,
                    address: "127.0.0.1:7001".into(),
                    voter: true,
                    ..Default::default()
                },
                Some(leader.clone()),
            ),
            (
                MasterInfo {
                    id: 3,
                    address: "127.0.0.1:7003".into(),
                    voter: true,
                    ..Default::default()
                },
                None,
            ),
        ];
        let mut h = History::default();
        for i in 0..5u64 {
            let mut c = Counters {
                at_ms: i * 1000,
                ..Default::default()
            };
            c.chunkservers.insert(7, (i << 20, 0));
            h.record(c, Some((3, 1, 1)));
        }
        let html = page(&View {
            asked: "127.0.0.1:7002",
            own: Some(&own),
            leader: Some(&leader),
            masters: &members,
            history: &h,
        });
        for id in [
            "summary",
            "masters",
            "health",
            "graphs",
            "chunkservers",
            "at-risk",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
        }
        assert!(
            html.contains("<td>120</td><td>119</td><td>118</td>"),
            "{html}"
        );
        assert!(html.contains("not answering") && html.contains("not for 9 s"));
        assert!(html.contains("50 (leader's view)"), "{html}");
        assert!(html.contains("&lt;h&gt;") && !html.contains("<h>"));
        assert!(html.contains("/a&amp;b"));
        assert!(html.contains("<polyline"), "graphs drawn from 4 samples");
        assert!(html.contains("75 %"), "capacity bar: 750 of 1000 used");
        assert!(
            html.contains("class=\"bad\">1</td>"),
            "missing chunks flagged"
        );
    }

    #[test]
    fn no_leader_and_no_answer_say_unknown() {
        let html = page(&View {
            asked: "127.0.0.1:1",
            own: None,
            leader: None,
            masters: &[],
            history: &History::default(),
        });
        assert!(html.contains("does not answer"));
        assert!(html.contains("unknown: no leader answers"));
        assert!(!html.contains("<polyline"));
    }
}
