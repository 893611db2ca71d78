//! Human-readable sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses a size: a whole number with an optional binary unit (`K`/`KiB`, `M`/`MiB`, `G`/`GiB`,
/// `T`/`TiB`, `P`/`PiB`, `B`; case-insensitive: `10g` is 10 GiB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("bad size {s:?}: a whole number with an optional unit (B, K, M, G, T, P)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        "p" | "pib" | "pb" => 50,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(super::parse_size("0"), Ok(0));
        assert_eq!(super::parse_size("512"), Ok(512));
        assert_eq!(super::parse_size("10g"), Ok(10 << 30));
        assert_eq!(super::parse_size("3 MiB"), Ok(3 << 20));
        assert_eq!(super::parse_size("1T"), Ok(1 << 40));
        for bad in ["", "x", "1.5G", "-1", "1Q", "99999999999P"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
}
