//! node-agent-webhook: validates Velero's node-agent ConfigMap and applies it to data-mover pods.
//!
//! The pure core (`config`, `k8s`, `validating`, `admission`, `manifest`, `check`) holds the
//! logic; `server`, `source`, `cluster` and `metrics` are the thin imperative shell around it.

pub mod admission;
pub mod check;
pub mod cluster;
pub mod config;
pub mod k8s;
pub mod logging;
pub mod metrics;
pub mod mutate;
pub mod mutating;
pub mod server;
pub mod source;
pub mod validating;
