//! node-agent-webhook: validates Velero's node-agent ConfigMap and applies it to data-mover pods.
//!
//! The pure core (`config`, `k8s`, `mutate`) holds the logic and takes plain values; `admission`
//! is the wire format, and `validating` and `mutating` map it to and from the core, one per
//! webhook (`check` does the same for files); `server`, `source`, `cluster` and `metrics` are
//! the thin imperative shell around it. docs/architecture.md says what each module owns.

pub mod admission;
pub mod check;
pub mod cluster;
pub mod config;
pub mod explain;
pub mod k8s;
pub mod logging;
pub mod metrics;
pub mod mutate;
pub mod mutating;
pub mod nodes;
pub mod server;
pub mod source;
pub mod validating;
