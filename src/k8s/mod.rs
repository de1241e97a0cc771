//! Kubernetes value rules, as apimachinery implements them: field errors, names,
//! labels, annotations, selectors, quantities and container resources.

pub mod field;
pub mod names;
pub mod quantity;
pub mod resources;
pub mod selector;
