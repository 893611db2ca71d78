//! `shale append PATH [FILE|-]` (record append, exactly once) and `shale seal PATH`.
//!
//! Records are the input's lines (each with its newline; a last line without one is a record
//! too), or with `--whole` the whole input as one record. Records of one command land in input
//! order (one at a time). With `--id CLIENT:SEQ` the records are named CLIENT:SEQ,
//! CLIENT:SEQ+1, ...: running the same command again with the same ids (after a failure, or when
//! unsure it succeeded) appends nothing twice and prints the original offsets.
use super::Res;
use shale_client::{AppendOptions, Client, RecordId, RECORD_MAX_BYTES};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Parses `CLIENT:SEQ` (both ≥ 1).
pub fn parse_id(s: &str) -> Result<RecordId, String> {
    let (c, q) = s
        .split_once(':')
        .ok_or_else(|| format!("{s}: a record id is CLIENT:SEQ (two numbers ≥ 1)"))?;
    let client: u64 = c.parse().map_err(|e| format!("{s}: client: {e}"))?;
    let seq: u64 = q.parse().map_err(|e| format!("{s}: seq: {e}"))?;
    if client == 0 || seq == 0 {
        return Err(format!("{s}: client and seq must be ≥ 1"));
    }
    Ok(RecordId { client, seq })
}

/// What `shale append` was asked.
pub struct Args {
    pub path: String,
    pub source: String,
    pub whole: bool,
    pub offsets: bool,
    pub id: Option<RecordId>,
    pub opts: AppendOptions,
}

/// Opens the local source (before connecting: a missing file fails at once).
pub fn open_source(source: &str) -> Res<Box<dyn AsyncRead + Unpin + Send>> {
    Ok(if source == "-" {
        Box::new(tokio::io::stdin())
    } else {
        let f = std::fs::File::open(source).map_err(|e| format!("{source}: {e}"))?;
        Box::new(tokio::fs::File::from_std(f))
    })
}

pub async fn run(c: &Client, a: Args, src: Box<dyn AsyncRead + Unpin + Send>) -> Res {
    let mut src = BufReader::with_capacity(1 << 20, src);
    let (mut n, mut bytes, mut first, mut last) = (0u64, 0u64, None, 0u64);
    let mut next_id = a.id;
    loop {
        let mut rec = Vec::new();
        if a.whole {
            (&mut src)
                .take(RECORD_MAX_BYTES as u64 + 1)
                .read_to_end(&mut rec)
                .await?;
        } else {
            (&mut src)
                .take(RECORD_MAX_BYTES as u64 + 1)
                .read_until(b'\n', &mut rec)
                .await?;
        }
        if rec.is_empty() {
            break;
        }
        if rec.len() > RECORD_MAX_BYTES {
            return Err(format!(
                "{}: record {} is longer than {RECORD_MAX_BYTES} bytes (nothing more appended)",
                a.source,
                n + 1
            )
            .into());
        }
        let id = match next_id {
            Some(id) => {
                next_id = Some(RecordId {
                    seq: id.seq + 1,
                    ..id
                });
                id
            }
            None => c.record_id(),
        };
        let at = c
            .append_record_as(&a.path, id, &rec, &a.opts)
            .await
            .map_err(|e| format!("{}: record {}: {e}", a.path, n + 1))?;
        if a.offsets {
            println!("{} {}", at.offset, rec.len());
        }
        n += 1;
        bytes += rec.len() as u64;
        first.get_or_insert(at.offset);
        last = at.length;
        if a.whole {
            break;
        }
    }
    if !a.offsets {
        match first {
            Some(f) => eprintln!(
                "{n} records ({bytes} bytes) appended to {}; the file is {last} bytes (first record at {f})",
                a.path
            ),
            None => eprintln!("nothing to append (empty input)"),
        }
    }
    Ok(())
}
