//! The node-agent config parser and validator, as the validating webhook runs them on a
//! ConfigMap's `data` (`check_node_agent`): the input is one data value (or, by its first
//! byte, split into two keys, or moved to `binaryData`), checked for each Velero version the
//! rules know.

use std::collections::HashSet;

use node_agent_webhook::config::configmap::{check_node_agent, ConfigMapData};
use node_agent_webhook::config::diagnostics::Severity;
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::config::version::VeleroVersion;

/// One input: panics (an `assert!` included) are the findings.
pub fn run(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let mut configmap = ConfigMapData::default();
    let ConfigMapData { data, binary_keys } = &mut configmap;
    match bytes.first().map(|b| b % 8) {
        // Mostly one key, as node-agent wants.
        Some(0) => {
            let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
            data.insert("a.json".to_string(), a.to_string());
            data.insert("b.json".to_string(), b.to_string());
        }
        Some(1) => binary_keys.push("config".to_string()),
        _ => {
            data.insert("node-agent-config.json".to_string(), text.to_string());
        }
    }
    let classes: HashSet<String> = ["backup-priority".to_string()].into_iter().collect();
    for version in [None, Some("1.16.2"), Some("1.17.0"), Some("1.18.1")] {
        let env = Environment {
            velero_version: version.map(|v| v.parse::<VeleroVersion>().expect("known version")),
            priority_classes: if version.is_some() { Some(&classes) } else { None },
            ..Environment::default()
        };
        let check = check_node_agent(&configmap, &env);
        let rendered = check.rendered();
        if check.has_errors() {
            assert!(check.config().is_none(), "a config with errors must not be served");
            assert!(rendered.iter().any(|(s, _)| *s == Severity::Error), "errors must be rendered");
        }
        // Errors sort first.
        let first_warning = rendered.iter().position(|(s, _)| *s == Severity::Warning).unwrap_or(rendered.len());
        assert!(rendered[first_warning..].iter().all(|(s, _)| *s == Severity::Warning));
    }
}
