//! The live config: edits made with kubectl reach the next pod, with no restart of anything, and
//! an edit the validating webhook would have refused is never served.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::*;

fn config_with_team(team: &str) -> String {
    format!(r#"{{"podLabels": {{"team": "{team}"}}}}"#)
}

/// Creates DataUpload pods as node-agent until one carries `team=<team>`; returns how long it took
/// from `since` and the pods created.
pub fn until_a_pod_gets_team(team: &str, since: Instant, limit: Duration) -> (Duration, Vec<String>) {
    let node_agent = Identity::node_agent();
    let mut created = Vec::new();
    while since.elapsed() < limit {
        let (name, pod) = pod_fixture("v1.18", "dataupload");
        let (_, stored) = create_pod(Some(&node_agent), &pod);
        created.push(name);
        if stored["metadata"]["labels"]["team"] == team {
            return (since.elapsed(), created);
        }
    }
    panic!("no pod got team={team} within {limit:?}");
}

#[test]
fn a_kubectl_edit_reaches_the_next_pod_created() {
    let _serial = serial();
    webhook_up();
    serve_config(&config_with_team("before-edit"));
    let mut delays = Vec::new();
    let mut all = Vec::new();
    for round in 0..5 {
        let team = format!("edit-{round}");
        let applied = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), &config_with_team(&team)).must();
        assert!(applied.stdout.contains("configured"), "{}", applied.stdout);
        let since = Instant::now();
        let (delay, created) = until_a_pod_gets_team(&team, since, Duration::from_secs(10));
        delays.push(delay);
        all.extend(created);
    }
    delays.sort();
    eprintln!("edit -> first pod with the new setting: {delays:?} (goal under 1 s)");
    assert!(delays[delays.len() / 2] < Duration::from_secs(1), "median delay {:?}", delays[delays.len() / 2]);
    delete_pods(&all, NS);
}

#[test]
fn an_edit_the_validating_webhook_would_refuse_is_not_served() {
    let _serial = serial();
    webhook_up();
    serve_config(&config_with_team("last-good"));
    let errors = || metric_sum(&our_metrics(), "node_agent_webhook_config_reloads_total", &["result=\"error\""]);
    let before = errors();

    // Unregistered, so the API server stores what we would have denied.
    let webhook = unregister_validating_webhook();
    let stored = apply_config_as(
        |m| kubectl_stdin(&["apply", "-f", "-"], m),
        r#"{"podLabels": {"team": "broken"}, "podResources": {"cpuLimit": 2}}"#,
    );
    assert!(stored.ok, "with the webhook unregistered the API server stores it: {}", stored.stderr);
    wait_until("the server sees and rejects the edit", Duration::from_secs(10), || errors() > before);

    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, pod) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_eq!(pod["metadata"]["labels"]["team"], "last-good", "the last good config keeps serving");
    delete_pods(&[name], NS);

    register_validating_webhook(&webhook);
    serve_config(&config_with_team("repaired"));
}

fn pod_team() -> Value {
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    delete_pods(&[name], NS);
    stored["metadata"]["labels"]["team"].clone()
}

fn reloads(result: &str) -> f64 {
    metric_sum(&our_metrics(), "node_agent_webhook_config_reloads_total", &[&format!("result=\"{result}\"")])
}

#[test]
fn the_server_is_ready_without_the_configmap_and_follows_its_creation_and_deletion() {
    let _serial = serial();
    webhook_down();
    kubectl(&["delete", "cm", CONFIGMAP, "-n", NS, "--ignore-not-found"]).must();
    webhook_up(); // returns once /readyz is 200
    assert_eq!(reloads("missing"), 1.0, "read once, as missing");
    assert_eq!(pod_team(), Value::Null, "no ConfigMap, no settings");

    serve_config(&config_with_team("created"));
    assert_eq!(pod_team(), "created");

    kubectl(&["delete", "cm", CONFIGMAP, "-n", NS]).must();
    wait_until("the deletion drops the settings", Duration::from_secs(10), || pod_team() == Value::Null);
}

#[test]
fn the_server_is_ready_with_an_invalid_configmap_at_start() {
    let _serial = serial();
    webhook_down();
    let webhook = unregister_validating_webhook();
    kubectl(&["delete", "cm", CONFIGMAP, "-n", NS, "--ignore-not-found"]).must();
    apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), r#"{"podLabels": {"team": 7}}"#).must();
    webhook_up(); // returns once /readyz is 200
    register_validating_webhook(&webhook);
    assert_eq!(reloads("error"), 1.0, "read once, and rejected");
    assert_eq!(pod_team(), Value::Null, "an invalid config gives no settings");
    serve_config(&config_with_team("fixed"));
    assert_eq!(pod_team(), "fixed");
}
