//! The chunkserver registry: registration (idempotent by the server's uuid), draining, removal.
use super::*;

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
        if uuid.is_empty() || uuid.len() > 64 {
            return Err(MetaError::BadArgument(
                "chunkserver uuid must be 1..=64 bytes".into(),
            ));
        }
        if !address.contains(':') || address.len() > 256 {
            return Err(MetaError::BadArgument(format!(
                "{address:?} is not host:port"
            )));
        }
        if host.is_empty() || host.len() > 255 || rack.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(MetaError::BadArgument(
                "host and rack labels must be 1..=255 bytes".into(),
            ));
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
        let id = NodeId(self.next_server);
        self.next_server += 1;
        self.servers.insert(id, info);
        Ok(Reply::Server(id))
    }
}
