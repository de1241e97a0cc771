//! Kubernetes value rules, as apimachinery implements them: field errors, names,
//! labels, annotations, selectors, quantities, container resources, tolerations and taints.

pub mod field;
pub mod names;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod toleration;
