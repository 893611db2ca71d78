//! The dashboard's memory: one sample per second of cluster rates and chunk health, the last
//! [`SAMPLES_MAX`] kept (five minutes), and what is derived from them (healing progress and
//! its ETA). Pure: the sampler (`super::sampler`) feeds it counters it read over gRPC.
//!
//! Invariants: samples are in time order; at most [`SAMPLES_MAX`] are kept; a counter that
//! went backwards (its server restarted) counts from zero, never as a negative rate.
use std::collections::{BTreeMap, VecDeque};

/// Samples kept: five minutes at one per second.
pub const SAMPLES_MAX: usize = 300;
/// The window the healing rate (and so the ETA) is measured over, in samples.
const ETA_WINDOW: usize = 30;

/// One second of the cluster, as the dashboard saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix time, ms.
    pub at_ms: u64,
    /// Since the reading before, ms (what the rates are averaged over).
    pub span_ms: u64,
    /// Chunk bytes written by all chunkservers (every replica and copy), per second.
    pub write_bytes_per_s: f64,
    /// Chunk bytes returned by reads, per second.
    pub read_bytes_per_s: f64,
    /// Client requests answered by all masters, per second.
    pub requests_per_s: f64,
    /// The leader's healing figures (None: no leader answered).
    pub under_replicated: Option<u64>,
    pub missing: Option<u64>,
    pub copying: Option<u64>,
}

/// Cumulative counters read at one instant: per chunkserver (bytes written, bytes read) and
/// per master (client requests). Servers that did not answer are absent.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub at_ms: u64,
    pub chunkservers: BTreeMap<u64, (u64, u64)>,
    pub masters: BTreeMap<u64, u64>,
}

/// How much a counter grew from `prev` to `cur` (a counter that went backwards restarted
/// from zero in between).
pub fn grew(prev: u64, cur: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else {
        cur
    }
}

/// Healing as derived from the history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Healing {
    /// Chunks still below target or missing (latest sample).
    pub remaining: u64,
    /// The most there were since the last sample with none.
    pub peak: u64,
    /// Done of the peak, 0–100 (100 when nothing is left).
    pub percent_done: f64,
    /// Chunks healed per second over the last 30 s (None: not measurable yet).
    pub chunks_per_s: Option<f64>,
    /// Seconds until done at that rate (None: nothing left, or no progress measured).
    pub eta_s: Option<f64>,
}

/// Servers whose last counters are remembered, at most (beyond that, forgotten ones count
/// from zero when they come back).
const SERVERS_MAX: usize = 100_000;

#[derive(Default)]
pub struct History {
    samples: VecDeque<Sample>,
    /// When the last reading was taken (None: no reading yet).
    last_ms: Option<u64>,
    /// Every server's last known counters (kept while it is not heard from, so that one
    /// that comes back is not counted from zero again).
    chunkservers: BTreeMap<u64, (u64, u64)>,
    masters: BTreeMap<u64, u64>,
}

impl History {
    /// Records counters read now and the leader's healing figures. The first reading is
    /// the baseline (a rate needs two); a server first seen later is new (just started),
    /// so all of its counter is growth.
    pub fn record(&mut self, now: Counters, health: Option<(u64, u64, u64)>) {
        let first = self.last_ms.is_none();
        let prev_ms = self.last_ms.replace(now.at_ms).unwrap_or(now.at_ms);
        if self.chunkservers.len() > SERVERS_MAX || self.masters.len() > SERVERS_MAX {
            self.chunkservers.clear();
            self.masters.clear();
        }
        let (mut w, mut r, mut q) = (0u64, 0u64, 0u64);
        for (node, (cw, cr)) in &now.chunkservers {
            let base = if first { (*cw, *cr) } else { (0, 0) };
            let (pw, pr) = self.chunkservers.insert(*node, (*cw, *cr)).unwrap_or(base);
            w += grew(pw, *cw);
            r += grew(pr, *cr);
        }
        for (id, c) in &now.masters {
            let base = if first { *c } else { 0 };
            q += grew(self.masters.insert(*id, *c).unwrap_or(base), *c);
        }
        let secs = now.at_ms.saturating_sub(prev_ms) as f64 / 1000.0;
        if first || secs <= 0.0 {
            return;
        }
        if self.samples.len() == SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_ms: now.at_ms,
            span_ms: now.at_ms - prev_ms,
            write_bytes_per_s: w as f64 / secs,
            read_bytes_per_s: r as f64 / secs,
            requests_per_s: q as f64 / secs,
            under_replicated: health.map(|h| h.0),
            missing: health.map(|h| h.1),
            copying: health.map(|h| h.2),
        });
    }

    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }

    /// Healing progress and ETA from the samples with the leader's figures.
    pub fn healing(&self) -> Healing {
        let left = |s: &Sample| Some(s.under_replicated? + s.missing?);
        let known: Vec<(u64, u64)> = self
            .samples
            .iter()
            .filter_map(|s| Some((s.at_ms, left(s)?)))
            .collect();
        let Some(&(now_ms, remaining)) = known.last() else {
            return Healing::default();
        };
        let since_clear = known
            .iter()
            .rposition(|(_, n)| *n == 0)
            .map_or(0, |i| i + 1);
        let peak = known[since_clear..]
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        let percent_done = if peak == 0 {
            100.0
        } else {
            100.0 * (peak - remaining.min(peak)) as f64 / peak as f64
        };
        let from = known.len().saturating_sub(ETA_WINDOW).max(since_clear);
        let chunks_per_s = known.get(from).and_then(|&(then_ms, then)| {
            let secs = now_ms.saturating_sub(then_ms) as f64 / 1000.0;
            (secs >= 2.0).then(|| then.saturating_sub(remaining) as f64 / secs)
        });
        let eta_s = match chunks_per_s {
            Some(rate) if rate > 0.0 && remaining > 0 => Some(remaining as f64 / rate),
            _ => None,
        };
        Healing {
            remaining,
            peak,
            percent_done,
            chunks_per_s,
            eta_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(at_ms: u64, cs: &[(u64, u64, u64)], masters: &[(u64, u64)]) -> Counters {
        Counters {
            at_ms,
            chunkservers: cs.iter().map(|(n, w, r)| (*n, (*w, *r))).collect(),
            masters: masters.iter().copied().collect(),
        }
    }

    #[test]
    fn rates_come_from_two_readings_and_restarts_never_go_negative() {
        let mut h = History::default();
        h.record(
            counters(1_000, &[(1, 100, 0), (2, 50, 0)], &[(1, 10)]),
            None,
        );
        assert!(h.samples().is_empty(), "one reading is no rate");
        h.record(
            counters(3_000, &[(1, 2_100, 400), (2, 1_050, 0)], &[(1, 30), (2, 6)]),
            Some((3, 0, 1)),
        );
        let s = &h.samples()[0];
        assert_eq!(s.write_bytes_per_s, 1_500.0);
        assert_eq!(s.read_bytes_per_s, 200.0);
        // Master 2 answered for the first time: new since the baseline, all of it counts.
        assert_eq!(s.requests_per_s, 13.0);
        assert_eq!(s.under_replicated, Some(3));
        // Chunkserver 1 restarted: its counter starts from 0 again; master 2 is silent.
        h.record(
            counters(4_000, &[(1, 300, 0), (2, 1_050, 0)], &[(1, 30)]),
            None,
        );
        let s = &h.samples()[1];
        assert_eq!(s.write_bytes_per_s, 300.0);
        assert_eq!((s.under_replicated, s.requests_per_s), (None, 0.0));
        // Master 2 answers again: only what it did since it was last heard counts.
        h.record(counters(5_000, &[], &[(1, 30), (2, 10)]), None);
        assert_eq!(h.samples()[2].requests_per_s, 4.0);
        // A reading from the same instant is not a rate.
        h.record(counters(5_000, &[(1, 900, 0)], &[]), None);
        assert_eq!(h.samples().len(), 3);
    }

    #[test]
    fn at_most_five_minutes_are_kept() {
        let mut h = History::default();
        for i in 0..(SAMPLES_MAX as u64 + 50) {
            h.record(counters(i * 1000, &[(1, i, 0)], &[]), None);
        }
        assert_eq!(h.samples().len(), SAMPLES_MAX);
        assert!(h
            .samples()
            .iter()
            .zip(h.samples().iter().skip(1))
            .all(|(a, b)| a.at_ms < b.at_ms));
    }

    #[test]
    fn healing_progress_and_eta_follow_the_leaders_figures() {
        let mut h = History::default();
        assert_eq!(h.healing().percent_done, 0.0);
        h.record(counters(0, &[], &[]), None);
        // Healthy, then a server dies: 40 chunks under-replicated, healed at 2 per second.
        let mut t = 1_000;
        h.record(counters(t, &[], &[]), Some((0, 0, 0)));
        for left in (0..=40u64).rev().step_by(2).take(11) {
            t += 1_000;
            h.record(counters(t, &[], &[]), Some((left, 0, 2)));
        }
        let g = h.healing();
        assert_eq!((g.remaining, g.peak), (20, 40));
        assert_eq!(g.percent_done, 50.0);
        assert_eq!(g.chunks_per_s, Some(2.0));
        assert_eq!(g.eta_s, Some(10.0));
        // Missing chunks count as left; no progress means no ETA.
        t += 1_000;
        h.record(counters(t, &[], &[]), Some((20, 1, 0)));
        t += 1_000;
        h.record(counters(t, &[], &[]), Some((20, 1, 0)));
        assert_eq!(h.healing().remaining, 21);
        // Done: 100 %, no ETA.
        t += 1_000;
        h.record(counters(t, &[], &[]), Some((0, 0, 0)));
        let g = h.healing();
        assert_eq!((g.remaining, g.percent_done, g.eta_s), (0, 100.0, None));
    }
}
