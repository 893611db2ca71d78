//! The clients: concurrent tasks doing put (small and multi-chunk, with and without overwrite),
//! get, rm, mv and ls on a flat directory of a few keys, each operation recorded with its call
//! and return times and what it was told (see [`model`](crate::model)).
//!
//! Values are write ids: the bytes of write `v` are its id (8 bytes) followed by bytes derived
//! from `v`, so a read identifies which write it returned and proves every byte of it
//! ([`decode`]). A read that matches no write is corruption, recorded apart.
//!
//! Outcomes: an answer (done, not found, exists, a value, a listing) is recorded as such; a
//! timeout or an unreachable cluster as unknown (the operation may or may not have happened);
//! any other failure means the operation did not happen: it is left out of the history, so a
//! later read of a failed write is a violation.
use crate::linear::Op;
use crate::model::{Input, Output};
use shale_client::{Client, ClientError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The directory the keys live in.
pub const DIR: &str = "/t";

/// The path of key `k` (a file name; see [`dir_path`] for directory names).
pub fn path(k: usize) -> String {
    format!("{DIR}/k{k}")
}

/// Directory names come after the `keys` file names: name `keys + j` is `DIR/dj`.
pub fn dir_path(keys: usize, k: usize) -> String {
    format!("{DIR}/d{}", k - keys)
}

/// How many directory names the workload uses beside its file names.
pub const DIRS: usize = 3;

/// The bytes of write `v` (8 bytes to 2.5 MiB: most small, some spanning chunks of 1 MiB).
pub fn content(v: u64) -> Vec<u8> {
    let (mut rng, len) = sized(v);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&v.to_le_bytes());
    while out.len() < len {
        out.extend_from_slice(&rng.u64(..).to_le_bytes());
    }
    out.truncate(len.max(8));
    out
}

/// The generator of write `v`'s bytes, and their count.
fn sized(v: u64) -> (fastrand::Rng, usize) {
    let mut rng = fastrand::Rng::with_seed(v.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = match rng.u8(0..10) {
        0 => rng.usize(1_000_000..2_600_000),
        1 | 2 => rng.usize(100_000..1_000_000),
        _ => rng.usize(8..16_384),
    };
    (rng, len)
}

/// The length of write `v` (without making its bytes).
pub fn content_len(v: u64) -> u64 {
    sized(v).1 as u64
}

/// The write `data` is, or why it is none (its bytes are damaged).
pub fn decode(data: &[u8]) -> Result<u64, String> {
    let Some(head) = data.get(..8) else {
        return Err(format!("{} bytes: shorter than any write", data.len()));
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(head);
    let v = u64::from_le_bytes(id);
    let want = content(v);
    if want.len() != data.len() {
        return Err(format!(
            "write {v}: {} bytes, wrote {}",
            data.len(),
            want.len()
        ));
    }
    if let Some(at) = want.iter().zip(data).position(|(a, b)| a != b) {
        return Err(format!("write {v}: bytes differ from offset {at}"));
    }
    Ok(v)
}

/// The shared record of a run.
pub struct History {
    t0: Instant,
    ops: Mutex<Vec<Op>>,
    /// Reads whose bytes matched no write.
    pub corrupt: Mutex<Vec<String>>,
    /// Well-formed requests refused as invalid (a put of good bytes "has the wrong length"):
    /// the servers misjudged their own state.
    pub refused: Mutex<Vec<String>>,
    /// Operations that failed (left out of the history) and read attempts that got nothing.
    pub failed: AtomicU64,
    /// Why, counted by operation and error kind, with the first message of each.
    pub failures: Mutex<std::collections::BTreeMap<String, (u64, String)>>,
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History {
            t0: Instant::now(),
            ops: Mutex::new(Vec::new()),
            corrupt: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            failed: AtomicU64::new(0),
            failures: Mutex::new(Default::default()),
        })
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    /// Every recorded operation.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a client's answer means for the history.
enum Told {
    Said(Output),
    Unknown,
    /// It did not happen (why, for the report).
    Failed(String),
}

/// A short name for an error's kind, then its message.
fn kind(e: &ClientError) -> String {
    let s = format!("{e:?}");
    let k = s.split(['(', ' ', '{']).next().unwrap_or("?").to_string();
    format!("{k}\t{e}")
}

fn told(e: &ClientError) -> Told {
    match e {
        ClientError::NotFound(_) => Told::Said(Output::NotFound),
        ClientError::AlreadyExists(_) => Told::Said(Output::Exists),
        ClientError::Unavailable(_) => Told::Unknown,
        _ => Told::Failed(kind(e)),
    }
}

/// Runs `input` through `c` and records it (`keys`: how many names are files). Every operation
/// is bounded by `limit` (then it is unknown).
pub async fn perform(
    c: &Client,
    h: &History,
    client: usize,
    keys: usize,
    input: Input,
    limit: Duration,
) {
    let call = h.now();
    let work =
        async {
            match &input {
                Input::Put {
                    key,
                    value,
                    overwrite,
                } => {
                    let data = content(*value);
                    match c.put(&path(*key), &data[..], *overwrite, &|_| {}).await {
                        Ok(_) => Told::Said(Output::Ok),
                        Err(e) => told(&e),
                    }
                }
                Input::Get { key } => {
                    let mut buf = Vec::new();
                    match c.get(&path(*key), &mut buf, &|_| {}).await {
                        Ok(_) => match decode(&buf) {
                            Ok(v) => Told::Said(Output::Value(Some(v))),
                            Err(why) => {
                                h.corrupt
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(format!("read of {}: {why}", path(*key)));
                                Told::Failed("corrupt".into())
                            }
                        },
                        // A read that got nothing tells nothing (reads have no effect).
                        Err(ClientError::NotFound(_)) => Told::Said(Output::NotFound),
                        Err(e) => Told::Failed(kind(&e)),
                    }
                }
                Input::Rm { key } => match c.delete(&path(*key), false).await {
                    Ok(()) => Told::Said(Output::Ok),
                    Err(e) => told(&e),
                },
                Input::Mv { from, to, replace } => {
                    let (a, b) = (path(*from), path(*to));
                    let r = if *replace {
                        c.rename(&a, &b).await
                    } else {
                        c.rename_no_replace(&a, &b).await
                    };
                    match r {
                        Ok(()) => Told::Said(Output::Ok),
                        Err(e) => told(&e),
                    }
                }
                Input::Stat { key } => match c.stat(&path(*key)).await {
                    Ok(s) if !s.is_dir => Told::Said(Output::Len(Some(s.length))),
                    Ok(_) => Told::Failed("a directory at a file name".into()),
                    Err(ClientError::NotFound(_)) => Told::Said(Output::Len(None)),
                    Err(e) => Told::Failed(kind(&e)),
                },
                Input::Mkdir { key } => match c.mkdir(&dir_path(keys, *key), false).await {
                    Ok(_) => Told::Said(Output::Ok),
                    Err(e) => told(&e),
                },
                Input::Rmdir { key } => match c.delete(&dir_path(keys, *key), false).await {
                    Ok(()) => Told::Said(Output::Ok),
                    Err(e) => told(&e),
                },
                Input::Ls => match c.list(DIR).await {
                    Ok(entries) => {
                        let mut mask = 0u64;
                        for e in entries {
                            let bit = if let Some(n) = e.name.strip_prefix('k') {
                                n.parse::<usize>().ok().filter(|k| *k < keys)
                            } else if let Some(n) = e.name.strip_prefix('d') {
                                n.parse::<usize>()
                                    .ok()
                                    .filter(|j| *j < DIRS)
                                    .map(|j| keys + j)
                            } else {
                                None
                            };
                            match bit {
                                Some(k) if k < 64 => mask |= 1 << k,
                                _ => {
                                    h.corrupt.lock().unwrap_or_else(|p| p.into_inner()).push(
                                        format!("listing of {DIR}: unexpected name {:?}", e.name),
                                    );
                                }
                            }
                        }
                        Told::Said(Output::Names(mask))
                    }
                    Err(e) => Told::Failed(kind(&e)),
                },
            }
        };
    let outcome = tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Told::Unknown);
    let is_read = matches!(input, Input::Get { .. } | Input::Ls | Input::Stat { .. });
    let name = match &input {
        Input::Put { .. } => "put",
        Input::Get { .. } => "get",
        Input::Rm { .. } => "rm",
        Input::Mv { .. } => "mv",
        Input::Ls => "ls",
        Input::Stat { .. } => "stat",
        Input::Mkdir { .. } => "mkdir",
        Input::Rmdir { .. } => "rmdir",
    };
    let count = |why: &str| {
        h.failed.fetch_add(1, Ordering::Relaxed);
        let (kind, message) = why.split_once('\t').unwrap_or((why, ""));
        let mut f = h.failures.lock().unwrap_or_else(|p| p.into_inner());
        let e = f
            .entry(format!("{name}: {kind}"))
            .or_insert_with(|| (0, message.to_string()));
        e.0 += 1;
    };
    match outcome {
        Told::Said(output) => h.record(Op {
            client,
            input,
            output,
            call,
            ret: Some(h.now()),
        }),
        // A read with no answer had no effect: nothing to record.
        Told::Unknown if is_read => count("no answer"),
        Told::Unknown => h.record(Op {
            client,
            input,
            output: Output::Unknown,
            call,
            ret: None,
        }),
        Told::Failed(why) => {
            if why.starts_with("InvalidArgument") {
                h.refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{name}: {}", why.replace('\t', ": ")));
            }
            count(&why)
        }
    }
}

/// One client's loop until `stop`: random operations on `keys` keys.
pub async fn client_loop(
    c: Client,
    h: Arc<History>,
    client: usize,
    keys: usize,
    seed: u64,
    next_value: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !stop.load(Ordering::Relaxed) {
        let key = rng.usize(0..keys);
        let input = match rng.u8(0..100) {
            0..=39 => Input::Put {
                key,
                value: next_value.fetch_add(1, Ordering::Relaxed),
                overwrite: rng.u8(0..10) < 7,
            },
            40..=59 => Input::Get { key },
            60..=64 => Input::Stat { key },
            65..=74 => Input::Rm { key },
            75..=86 => {
                let to = (key + rng.usize(1..keys)) % keys;
                Input::Mv {
                    from: key,
                    to,
                    replace: rng.bool(),
                }
            }
            87..=90 => Input::Mkdir {
                key: keys + rng.usize(0..DIRS),
            },
            91..=93 => Input::Rmdir {
                key: keys + rng.usize(0..DIRS),
            },
            _ => Input::Ls,
        };
        perform(&c, &h, client, keys, input, Duration::from_secs(60)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_recognised_byte_for_byte() {
        for v in [0u64, 1, 77, 123_456] {
            let d = content(v);
            assert_eq!(decode(&d), Ok(v));
            assert_eq!(content_len(v), d.len() as u64);
            let mut bad = d.clone();
            let at = bad.len() - 1;
            bad[at] ^= 1;
            if bad.len() > 8 {
                assert!(decode(&bad).is_err());
            }
            assert!(decode(&d[..d.len() - 1]).is_err());
        }
    }
}
