//! The chunkserver registry: registration (idempotent by the server's uuid), draining, removal.
//!
//! Invariants: every registered server has a routable-looking `host:port` address (a DNS name,
//! an IPv4 or a bracketed IPv6 address; not an unspecified one; port ≥ 1), a capacity in
//! `1..=CAPACITY_MAX`, and host/rack labels of 1..=255 characters from [`LABEL_CHARS`]; there
//! are at most [`SERVERS_MAX`] of them. Removing a registration never touches data.
use super::*;

/// At most this many chunkservers are registered at once.
pub const SERVERS_MAX: usize = 10_000;
/// The largest capacity a chunkserver may declare: 1 EiB.
pub const CAPACITY_MAX: u64 = 1 << 60;
/// Characters allowed in host and rack labels besides ASCII letters and digits.
pub const LABEL_CHARS: &str = "._-:/";

/// Checks a chunkserver's advertised `host:port`.
pub fn check_address(address: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("chunkserver address {address:?}: {why}"));
    if address.len() > 260 {
        return bad("longer than 260 bytes");
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("not host:port");
    };
    match port.parse::<u16>() {
        Ok(p) if p >= 1 => {}
        _ => return bad("the port must be 1..=65535"),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(ip) if ip.is_unspecified() => bad("an unspecified address cannot be reached"),
            Ok(_) => Ok(()),
            Err(_) => bad("not an IPv6 address in brackets"),
        };
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return if ip.is_unspecified() || ip.is_broadcast() {
            bad("an unspecified or broadcast address cannot be reached")
        } else {
            Ok(())
        };
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return bad("the host is not a DNS name or an IP address");
    }
    Ok(())
}

/// Checks a host or rack label.
pub fn check_label(what: &str, label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 255 {
        return Err(format!("{what} label must be 1..=255 bytes"));
    }
    if !label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || LABEL_CHARS.contains(c))
    {
        return Err(format!(
            "{what} label {label:?} may use only letters, digits and {LABEL_CHARS:?}"
        ));
    }
    Ok(())
}

impl MetaState {
    pub(super) fn register(
        &mut self,
        uuid: &str,
        address: &str,
        host: &str,
        rack: &Option<String>,
        capacity_bytes: u64,
        now_ms: u64,
    ) -> Res<Reply> {
        if uuid.is_empty()
            || uuid.len() > 64
            || !uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(MetaError::BadArgument(
                "chunkserver uuid must be 1..=64 letters, digits or '-'".into(),
            ));
        }
        check_address(address).map_err(MetaError::BadArgument)?;
        check_label("host", host).map_err(MetaError::BadArgument)?;
        if let Some(r) = rack {
            check_label("rack", r).map_err(MetaError::BadArgument)?;
        }
        if !(1..=CAPACITY_MAX).contains(&capacity_bytes) {
            return Err(MetaError::BadArgument(format!(
                "capacity {capacity_bytes} bytes is not in 1..={CAPACITY_MAX}"
            )));
        }
        let info = ServerInfo {
            uuid: uuid.to_string(),
            address: address.to_string(),
            host: host.to_string(),
            rack: rack.clone(),
            capacity_bytes,
            registered_ms: now_ms,
            draining: false,
        };
        if let Some((id, s)) = self.servers.iter_mut().find(|(_, s)| s.uuid == uuid) {
            let draining = s.draining;
            *s = ServerInfo { draining, ..info };
            return Ok(Reply::Server(*id));
        }
        if self.servers.len() >= SERVERS_MAX {
            return Err(MetaError::Full(format!(
                "{SERVERS_MAX} chunkservers are registered; remove one first"
            )));
        }
        let id = NodeId(self.next_server);
        self.next_server += 1;
        self.servers.insert(id, info);
        Ok(Reply::Server(id))
    }

    pub(super) fn remove_server(&mut self, node: NodeId) -> Res<Reply> {
        match self.servers.remove(&node) {
            Some(_) => {
                self.security.server_principals.remove(&node);
                Ok(Reply::Done)
            }
            None => Err(MetaError::UnknownServer(node.get())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in ["127.0.0.1:7000", "cs-1.example.com:1", "[::1]:9", "h:65535"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "nope",
            "h:0",
            "h:65536",
            "0.0.0.0:80",
            "[::]:80",
            "255.255.255.255:1",
            ":80",
            "<b>x</b>:80",
            "a..b:80",
            "-a:80",
            "h :80",
            "[zz]:80",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels() {
        assert!(check_label("host", "rack-1.dc/a:b_c").is_ok());
        assert!(check_label("host", "").is_err());
        assert!(check_label("host", "<script>").is_err());
        assert!(check_label("host", "a\nb").is_err());
        assert!(check_label("host", &"a".repeat(256)).is_err());
    }
}
