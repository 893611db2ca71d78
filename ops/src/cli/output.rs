//! What the CLI prints: lines to standard output that end quietly on a broken pipe
//! (`shale ls | head -1`), names escaped for terminals, ISO-8601 times, sizes exact or human.
use std::io::Write;

/// Prints one line to standard output. A closed pipe ends the program quietly (exit 0, as the
/// reader asked for no more); other output errors are reported.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` that ends quietly on a broken pipe (see [`line`]).
macro_rules! say {
    ($($t:tt)*) => { $crate::cli::output::line(format_args!($($t)*)) };
}
pub(crate) use say;

/// Prints a JSON value on one line.
pub fn json(v: &serde_json::Value) {
    line(format_args!("{v}"));
}

/// A name made safe for a terminal: control characters and backslashes escaped (as `ls -b`),
/// so a name cannot move the cursor, recolour the screen or fake extra lines.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Milliseconds since the epoch as ISO-8601 UTC (`2026-11-29T00:19:44.123Z`).
pub fn iso8601(ms: u64) -> String {
    let (date, time) = civil(ms);
    format!("{date}T{time}.{:03}Z", ms % 1000)
}

/// Milliseconds since the epoch as `2026-11-29 00:19` (UTC), for `ls -l`.
pub fn short_time(ms: u64) -> String {
    let (date, time) = civil(ms);
    format!("{date} {}", &time[..5])
}

/// (`YYYY-MM-DD`, `HH:MM:SS`) of a time in ms since the epoch, UTC (Howard Hinnant's
/// days-from-civil inverse).
fn civil(ms: u64) -> (String, String) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// `1 file`, `2 files`.
pub fn files(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

/// A size: exact bytes, or with `human` in binary units (`1.5 GiB`).
pub fn size(bytes: u64, human: bool) -> String {
    if human {
        crate::human::size(bytes)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_control_characters_are_escaped() {
        assert_eq!(escape_name("plain.txt"), "plain.txt");
        assert_eq!(escape_name("a\nb"), "a\\nb");
        assert_eq!(escape_name("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_name("back\\slash"), "back\\\\slash");
    }

    #[test]
    fn times_are_iso8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_795_912_784_000), "2026-11-29T00:39:44.000Z");
        assert_eq!(short_time(1_795_912_784_000), "2026-11-29 00:39");
    }
}
