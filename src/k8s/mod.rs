//! Kubernetes value rules, as apimachinery implements them.

pub mod field;
