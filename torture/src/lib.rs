//! Shale's fault harness (see the crate description): [`model`] and [`linear`] are the pure
//! checker.
pub mod linear;
pub mod model;
