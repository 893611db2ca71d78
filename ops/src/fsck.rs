//! `shale fsck [path]`: files with missing or under-replicated chunks, and totals. Exits
//! non-zero when any data is at risk. While the leader still waits for some chunkservers' full
//! reports (it just started), a chunk with no known replica is "not known yet", not missing,
//! and fsck says so and exits non-zero (retry in a few seconds), as HDFS does in safe mode.
use crate::cli::output::say;
use shale_client::{Client, FileStat};

pub struct Report {
    pub files: u64,
    pub chunks: u64,
    pub under: u64,
    pub missing: u64,
    /// Chunks with no known replica while chunkservers have not reported yet.
    pub unknown: u64,
}

async fn check_file(
    c: &Client,
    path: &str,
    st: &FileStat,
    r: &mut Report,
    unreported: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    r.files += 1;
    let locs = c.chunk_locations(path).await?;
    // An append file lists its extents: several may name one chunk.
    let mut seen = std::collections::HashSet::new();
    for ch in locs.chunks.iter().filter(|ch| seen.insert(ch.chunk_id)) {
        r.chunks += 1;
        // Replicas on servers that are not dead count, as the leader's healing counts them
        // (so fsck and `shale status` agree); those on stale servers are named.
        let have = ch.replicas.len() as u32;
        let stale = ch.replicas.iter().filter(|r| !r.alive).count();
        if have == 0 && unreported > 0 {
            r.unknown += 1;
            say!("{path}: chunk {} has no replica known yet", ch.index);
        } else if have == 0 {
            r.missing += 1;
            say!("{path}: chunk {} has no live replica (MISSING)", ch.index);
        } else if have < st.replication {
            r.under += 1;
            say!(
                "{path}: chunk {} has {have} of {} replicas (under-replicated){}",
                ch.index,
                st.replication,
                stale_note(stale)
            );
        } else if stale > 0 {
            say!(
                "{path}: chunk {} has {have} replicas{}",
                ch.index,
                stale_note(stale)
            );
        }
    }
    Ok(())
}

fn stale_note(stale: usize) -> String {
    match stale {
        0 => String::new(),
        n => format!(", {n} on a server not heard from for a few seconds (stale)"),
    }
}

pub async fn run(c: &Client, path: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let mut r = Report {
        files: 0,
        chunks: 0,
        under: 0,
        missing: 0,
        unknown: 0,
    };
    let unreported = crate::cli::admin::leader_status(c)
        .await
        .map_or(0, |s| s.unreported);
    let root = c.stat(path).await?;
    let mut stack = vec![(path.to_string(), root)];
    while let Some((p, st)) = stack.pop() {
        if st.is_dir {
            for e in c.list(&p).await? {
                let child = if p == "/" {
                    format!("/{}", e.name)
                } else {
                    format!("{p}/{}", e.name)
                };
                stack.push((child, e));
            }
        } else {
            check_file(c, &p, &st, &mut r, unreported).await?;
        }
    }
    let healthy = r.under == 0 && r.missing == 0 && r.unknown == 0;
    let verdict = if r.unknown > 0 && r.missing == 0 {
        "NOT KNOWN YET"
    } else if healthy {
        "HEALTHY"
    } else {
        "AT RISK"
    };
    say!(
        "{} files, {} chunks: {} under-replicated, {} missing{} — {verdict}",
        r.files,
        r.chunks,
        r.under,
        r.missing,
        if r.unknown > 0 {
            format!(", {} not known yet", r.unknown)
        } else {
            String::new()
        },
    );
    if r.unknown > 0 {
        return Err(format!(
            "{unreported} chunkservers have not reported to the leader since it started: \
             replica locations are not known yet; retry in a few seconds"
        )
        .into());
    }
    Ok(healthy)
}
