//! Page-aligned buffers for O_DIRECT writes, reused through a bounded pool: the shared
//! `shale_proto::bufpool` (the data port receives frames into the same kind of buffer, so the
//! store can write them as they are).
pub use shale_proto::bufpool::*;
