//! node-agent-webhook: validates Velero's node-agent ConfigMap and applies it to data-mover pods.

pub mod config;
pub mod k8s;
