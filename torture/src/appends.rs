//! Record append under faults: a few appenders add self-describing records to one append
//! file while the nemesis works; at the end the file is read whole and checked: nothing but
//! whole records, none twice, and every acknowledged record at the offset it was acknowledged
//! at (exactly once). A record whose append failed or timed out may be there or not (once).
use shale_client::Client;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The directory of the append file, and the file.
pub const DIR: &str = "/ta";
pub const LOG: &str = "/ta/log";

/// Acknowledged records: (appender, seq) → offset.
pub type Acks = Arc<Mutex<HashMap<(u64, u64), u64>>>;

/// Record `seq` of appender `a`: `A{a:02}-{seq:08}-` then 1..4000 letters derived from both,
/// then a newline.
pub fn record(a: u64, seq: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(a.wrapping_mul(0x9e37_79b9) ^ seq);
    let len = rng.usize(1..4000);
    let mut r = format!("A{a:02}-{seq:08}-").into_bytes();
    r.extend((0..len).map(|_| b'a' + rng.u8(0..26)));
    r.push(b'\n');
    r
}

/// Appends records until `stop`; records each acknowledged one.
pub async fn appender(c: Client, a: u64, stop: Arc<AtomicBool>, acks: Acks) {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            c.append_record(LOG, &record(a, seq)),
        )
        .await;
        match r {
            Ok(Ok(at)) => {
                acks.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((a, seq), at.offset);
            }
            // Unknown outcome (or refused): the record may be in the file, at most once.
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What is wrong with the append file's bytes, given the acknowledged records.
pub fn check(bytes: &[u8], acks: &HashMap<(u64, u64), u64>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut found: HashMap<(u64, u64), u64> = HashMap::new();
    let mut at = 0u64;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let id = std::str::from_utf8(&line[..line.len().min(13)])
            .ok()
            .filter(|h| h.len() == 13 && h.starts_with('A') && &h[3..4] == "-" && &h[12..] == "-")
            .and_then(|h| Some((h[1..3].parse().ok()?, h[4..12].parse().ok()?)));
        match id {
            Some((a, seq)) if line == &record(a, seq)[..] => {
                if found.insert((a, seq), at).is_some() {
                    problems.push(format!("{}: record {a}/{seq} twice (again at {at})", LOG));
                }
            }
            _ => problems.push(format!(
                "{LOG}: {} bytes at {at} are not a whole record",
                line.len()
            )),
        }
        at += line.len() as u64;
    }
    let mut missing: Vec<_> = acks
        .iter()
        .filter(|(k, off)| found.get(k) != Some(off))
        .collect();
    missing.sort();
    for ((a, seq), off) in missing.into_iter().take(20) {
        problems.push(match found.get(&(*a, *seq)) {
            Some(got) => format!("{LOG}: record {a}/{seq} acknowledged at {off}, found at {got}"),
            None => format!("{LOG}: acknowledged record {a}/{seq} (at {off}) is lost"),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_catches_loss_duplicates_and_torn_records() {
        let mut file = Vec::new();
        let mut acks = HashMap::new();
        for (a, seq) in [(1, 1), (2, 1), (1, 2)] {
            acks.insert((a, seq), file.len() as u64);
            file.extend(record(a, seq));
        }
        // An unacknowledged record (its append timed out) may be there.
        file.extend(record(2, 2));
        assert!(check(&file, &acks).is_empty());
        // Twice.
        let mut dup = file.clone();
        dup.extend(record(1, 1));
        assert!(check(&dup, &acks)[0].contains("twice"));
        // Torn (cut short), or foreign bytes.
        let torn = &file[..file.len() - 3];
        assert!(check(torn, &acks)[0].contains("not a whole record"));
        let mut padded = vec![0u8; 10];
        padded.extend(&file);
        assert!(!check(&padded, &acks).is_empty());
        // An acknowledged record missing, or elsewhere.
        let lost: Vec<u8> = [record(1, 1), record(1, 2), record(2, 2)].concat();
        let p = check(&lost, &acks);
        assert!(
            p.iter().any(|x| x.contains("2/1") && x.contains("lost")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.contains("1/2") && x.contains("found at")),
            "{p:?}"
        );
    }
}
