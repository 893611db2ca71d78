//! Shale's gateways: ways in for programs that do not link the client library.
//!
//! * [`fuse`]: `shale mount`, the cluster as a local directory tree.
//! * [`s3`]: `shale s3`, an S3-compatible endpoint.
//!
//! A gateway is a client: it uses the public `shale-client` API only, never the masters' or
//! chunkservers' internals, and it acts as the identity its client was given (certificate or
//! user token), so the cluster checks every request it makes.
pub mod fuse;
pub mod s3;
