//! A human-readable dump of a log directory (read-only: nothing is repaired or removed).
use crate::record::{self, Kind, SEGMENT_HEADER_BYTES};
use crate::segment;
use std::fmt::Write;
use std::path::Path;

/// Renders one record's payload for [`dump`].
pub type ShowPayload<'a> = &'a dyn Fn(Kind, &[u8]) -> String;

/// Prints every segment and record. `show` renders a payload (e.g. a decoded entry); without
/// it, payloads are shown as length and a hex prefix.
pub fn dump(dir: &Path, show: Option<ShowPayload<'_>>) -> std::io::Result<String> {
    let mut out = String::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if !name.ends_with(segment::SEGMENT_EXT) {
            let _ = writeln!(out, "{name}: not a segment, skipped");
            continue;
        }
        let buf = std::fs::read(dir.join(&name))?;
        match record::decode_segment_header(&buf) {
            Ok(seq) => {
                let _ = writeln!(out, "{name}: segment {seq}, {} bytes", buf.len());
            }
            Err(why) => {
                let _ = writeln!(out, "{name}: {why}");
                continue;
            }
        }
        let mut pos = SEGMENT_HEADER_BYTES;
        while pos < buf.len() {
            match record::decode(&buf[pos..]) {
                Ok((r, n)) => {
                    let body = match (show, r.kind) {
                        (_, Kind::Batch) => {
                            format!("{} bytes follow", record::batch_bytes(&r).unwrap_or(0))
                        }
                        (Some(f), k) => f(k, r.payload),
                        (None, _) => hex_preview(r.payload),
                    };
                    let _ = writeln!(out, "  @{pos:<10} {:<9} {:<10} {body}", r.kind, r.index);
                    pos += n;
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "  @{pos:<10} DAMAGED: {e} ({} bytes to the end)",
                        buf.len() - pos
                    );
                    break;
                }
            }
        }
    }
    Ok(out)
}

fn hex_preview(b: &[u8]) -> String {
    let mut s = format!("{} bytes", b.len());
    if !b.is_empty() {
        s.push_str(": ");
        for x in b.iter().take(16) {
            let _ = write!(s, "{x:02x}");
        }
        if b.len() > 16 {
            s.push('…');
        }
    }
    s
}
