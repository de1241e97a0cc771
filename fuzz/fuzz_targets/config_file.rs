//! What `node-agent-webhook check` and `--config-file` read: a config value, or YAML/JSON
//! manifests holding the ConfigMap (the manifest reader, the YAML and JSON parsers with
//! positions, and the checker behind them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_agent_webhook::check::{findings_in_file, Selection};
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::config::load::config_from_text;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let env = Environment::default();
    if let Ok(findings) = findings_in_file("input", text, &Selection::All, &env) {
        for finding in &findings {
            assert!(finding.line >= 1 && finding.column >= 1, "positions are 1-based: {finding:?}");
            let _ = finding.render();
        }
    }
    let _ = findings_in_file("input", text, &Selection::Named("node-agent-config".to_string()), &env);
    let _ = config_from_text(text, "node-agent-config");
});
