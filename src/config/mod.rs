//! The node-agent ConfigMap: parsing with positions, Go-compatible decoding, validation.

pub mod decode;
pub mod diagnostics;
pub mod json;
pub mod model;
