//! openraft wiring for the master group: type config, the state machine store (with snapshot
//! files), and the gRPC transport between masters.
pub mod checkpoint;
pub mod lease;
pub mod network;
pub mod prevote;
pub mod store;
pub mod types;

pub use types::{MasterRaft, Request, TypeConfig};
