//! Table-driven tests of a whole ConfigMap, shared by the ConfigMap kinds' test modules.

use super::configmap::{ConfigMapCheck, ConfigMapData};
use super::validate::Environment;

/// A kind's whole-ConfigMap check.
pub type Check<C> = fn(&ConfigMapData, &Environment) -> ConfigMapCheck<C>;

/// Each case: a name, the ConfigMap's data, and exactly the findings it must produce.
pub type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

/// The findings for a ConfigMap's `data`, rendered as the webhook renders them.
pub fn findings<C>(check: Check<C>, data: &[(&str, &str)], env: &Environment) -> Vec<String> {
    let data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    check(&ConfigMapData { data, binary_keys: Vec::new() }, env)
        .rendered()
        .into_iter()
        .map(|(s, text)| format!("{s}: {text}"))
        .collect()
}

pub fn assert_cases<C>(check: Check<C>, env: &Environment, cases: &[Case]) {
    for (name, data, want) in cases {
        assert_eq!(findings(check, data, env), want.to_vec(), "case {name:?}");
    }
}
