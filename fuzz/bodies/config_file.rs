//! What `node-agent-webhook check` and `--config-file` read: a config value, or YAML/JSON
//! manifests holding the ConfigMap (the manifest reader, the YAML and JSON parsers with
//! positions, and the checker behind them).

use node_agent_webhook::check::{findings_in_file, Selection};
use node_agent_webhook::config::kind::Names;
use node_agent_webhook::config::load::config_from_text;
use node_agent_webhook::config::validate::Environment;

/// One input: panics (an `assert!` included) are the findings.
pub fn run(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let env = Environment::default();
    // `check --all`: every ConfigMap, each as the kind its name says (node-agent's otherwise).
    let all = Selection { names: Names::default(), all: true, kind: None };
    if let Ok(findings) = findings_in_file("input", text, &all, &env) {
        for finding in &findings {
            assert!(finding.line >= 1 && finding.column >= 1, "positions are 1-based: {finding:?}");
            let _ = finding.render();
        }
    }
    // `check`: only the ConfigMaps with the default names.
    let named = Selection { all: false, ..all };
    let _ = findings_in_file("input", text, &named, &env);
    let _ = config_from_text(text, "node-agent-config", None);
}
