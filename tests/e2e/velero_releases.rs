//! Velero releases as the server knows them, through the real API server: a config valid for
//! the newest release whose types we have is admitted on it; on a Velero newer than that, keys
//! we have never seen are warnings, and the config's known settings still reach data-mover pods.

use std::time::{Duration, Instant};

use node_agent_webhook::config::velero_types;

use crate::harness::*;
use crate::*;

/// Sets the node-agent DaemonSet's image tag, which the server follows for the Velero version,
/// and waits until the server says it checks for that version. The image it had comes back on
/// drop, also when an assertion fails.
struct NodeAgentImage {
    previous: String,
}

impl NodeAgentImage {
    fn set(tag: &str) -> Self {
        let previous = kubectl(&[
            "get",
            "daemonset/node-agent",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .must()
        .stdout;
        let image = Self::switch_to(&format!("velero/velero:{tag}"));
        let version = tag.trim_start_matches('v').to_string();
        wait_until(&format!("the server checks for Velero {version} ({image})"), Duration::from_secs(10), || {
            let label = format!("version=\"{version}\"");
            metric_sum(&our_metrics(), "node_agent_webhook_velero_version_info", &[&label]) == 1.0
        });
        Self { previous }
    }

    fn switch_to(image: &str) -> String {
        kubectl(&["set", "image", "daemonset/node-agent", "-n", NS, &format!("node-agent={image}")]).must();
        image.to_string()
    }
}

impl Drop for NodeAgentImage {
    fn drop(&mut self) {
        Self::switch_to(&self.previous);
    }
}

/// No ConfigMap, so that the next apply is a CREATE, checked without the UPDATE's comparison.
fn delete_node_agent_configmap() {
    kubectl(&["delete", "cm", CONFIGMAP, "-n", NS, "--ignore-not-found"]).must();
}

/// Issue 21: Velero 1.18.3 reads `backupPVC.<class>.secretNames`/`configMapNames` and the same
/// under `restorePVC`; the fail-closed webhook refused them while it knew Velero up to 1.18.1.
#[test]
fn a_config_with_the_keys_of_velero_1_18_3_is_admitted_for_1_18_3() {
    let _serial = serial();
    webhook_up();
    let config = r#"{"backupPVC": {"gp3": {"storageClass": "e2e-fast", "secretNames": ["ca-bundle"], "configMapNames": ["proxy"]}},
 "restorePVC": {"secretNames": ["ca-bundle"]}}"#;
    let _image = NodeAgentImage::set("v1.18.3");
    delete_node_agent_configmap();
    let run = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), config).must();
    assert_eq!(run.warnings(), Vec::<String>::new(), "{}", run.stderr);
    let stored = kubectl(&["get", "cm", CONFIGMAP, "-n", NS, "-o", "jsonpath={.data.node-agent-config\\.json}"]).must();
    assert_eq!(stored.stdout, config, "the API server stored the config as sent");

    drop(_image);
    let _older = NodeAgentImage::set("v1.18.1");
    delete_node_agent_configmap();
    let warnings =
        apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), config).must().warnings();
    assert_eq!(
        warnings,
        [
            "data[node-agent-config.json]: backupPVC[gp3].secretNames: node-agent of Velero 1.18.1 ignores this (supported since 1.18.3) (line 1, column 67)",
            "data[node-agent-config.json]: backupPVC[gp3].configMapNames: node-agent of Velero 1.18.1 ignores this (supported since 1.18.3) (line 1, column 100)",
            "data[node-agent-config.json]: restorePVC.secretNames: node-agent of Velero 1.18.1 ignores this (supported since 1.18.3) (line 2, column 32)",
        ]
    );
}

/// A Velero newer than every release we have the types of (it may have keys we have never
/// seen): a key we do not know is admitted with a warning naming the newest release we know,
/// a mistake in a key we know is still denied, and the live config keeps its known settings.
#[test]
fn a_velero_newer_than_known_gets_unknown_keys_as_warnings_and_its_known_settings_applied() {
    let _serial = serial();
    webhook_up();
    let newest = velero_types::newest();
    let newer = format!("v{}.{}.0", newest.major, newest.minor + 1);
    let _image = NodeAgentImage::set(&newer);
    let version_info = our_metrics();
    assert_eq!(
        metric_sum(
            &version_info,
            "node_agent_webhook_velero_version_info",
            &["newer_than_known=\"true\"", &format!("known_up_to=\"{newest}\"")]
        ),
        1.0,
        "{version_info}"
    );

    let config = r#"{"podLabels": {"team": "newer-velero"}, "podSecurityContext": {"runAsUser": 1000}}"#;
    delete_node_agent_configmap();
    let run = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), config);
    assert!(run.ok, "a key of a newer Velero is not refused: {}", run.stderr);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings,
        [format!(
            "data[node-agent-config.json]: podSecurityContext: Unknown field: this webhook knows Velero up to {newest}: if Velero {} reads it, it is not checked here; if not, node-agent ignores it (line 1, column 41)",
            &newer[1..]
        )]
    );

    let denied = apply_config_as(
        |m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m),
        r#"{"podLabels": {"team": "-bad"}, "podSecurityContext": {}}"#,
    );
    assert!(
        denial_lines(&denied).iter().any(|l| l.contains("podLabels[team]: Invalid value: \"-bad\"")),
        "{}",
        denied.stderr
    );

    // The known setting reaches the next data-mover pods.
    let (_, created) =
        crate::live_config::until_a_pod_gets_team("newer-velero", Instant::now(), Duration::from_secs(10));
    delete_pods(&created, NS);
    serve_config("{}");
}

/// The live config follows the Velero version too: a config with a key we do not know, stored
/// while the server checked for a release it knows (the validating webhook unregistered, as in
/// an upgrade that raced it), is not served; once node-agent's image names a newer Velero, the
/// server checks the stored config again and serves its known settings, with no edit.
#[test]
fn a_stored_config_is_checked_again_when_the_velero_version_changes() {
    let _serial = serial();
    webhook_up();
    let newest = velero_types::newest();
    let known = NodeAgentImage::set(&format!("v{newest}"));
    serve_config(r#"{"podLabels": {"team": "before-upgrade"}}"#);
    let errors = || metric_sum(&our_metrics(), "node_agent_webhook_config_reloads_total", &["result=\"error\""]);
    let before = errors();

    let webhook = unregister_validating_webhook();
    let config = r#"{"podLabels": {"team": "after-upgrade"}, "podSecurityContext": {"runAsUser": 1000}}"#;
    let stored = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), config);
    register_validating_webhook(&webhook);
    assert!(stored.ok, "with the webhook unregistered the API server stores it: {}", stored.stderr);
    wait_until("the server refuses the unknown key for a release it knows", Duration::from_secs(10), || {
        errors() > before
    });
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, pod) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_eq!(pod["metadata"]["labels"]["team"], "before-upgrade", "the last good config keeps serving");
    delete_pods(&[name], NS);

    let _newer = NodeAgentImage::set(&format!("v{}.{}.0", newest.major, newest.minor + 1));
    let (_, created) =
        crate::live_config::until_a_pod_gets_team("after-upgrade", Instant::now(), Duration::from_secs(10));
    delete_pods(&created, NS);
    drop(_newer);
    drop(known);
    serve_config("{}");
}
