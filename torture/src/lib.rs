//! Shale's fault harness, in the manner of Jepsen: a cluster of real `shale` servers, each on its
//! own host (a network namespace), clients recording a history of operations while a seeded
//! nemesis kills, pauses, partitions and damages disks, then checkers decide whether anything
//! went wrong.
//!
//! * [`model`], [`linear`]: the namespace model and the linearizability checker (pure);
//! * [`net`]: hosts on a bridge, nftables faults;
//! * [`cluster`]: the server processes, their logs, crash detection;
//! * [`workload`]: the clients and the recorded history;
//! * [`nemesis`]: the fault schedule;
//! * [`run`]: one run end to end, and its report.
pub mod appends;
pub mod cluster;
pub mod linear;
pub mod model;
pub mod nemesis;
pub mod net;
pub mod run;
pub mod workload;

pub use run::{run, Config, Report};
