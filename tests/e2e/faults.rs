//! Faults, as the failure policies promise to handle them: our server down, the API server
//! restarted under our watches, and the serving certificate rotated while the API server calls.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::live_config::until_a_pod_gets_team;
use crate::*;

const MUTATING: &str = "mutate-datamover-pods.node-agent-webhook.io";

fn apiserver_webhook_count(family: &str, webhook: &str) -> f64 {
    metric_sum(&apiserver_metrics(), family, &[&format!("name=\"{webhook}\"")])
}

#[test]
fn with_our_server_stopped_pods_fail_open_and_config_writes_fail_closed() {
    let _serial = serial();
    webhook_up();
    serve_config(FULL_CONFIG);
    let fail_open = apiserver_webhook_count("apiserver_admission_webhook_fail_open_count", MUTATING);
    webhook_down();

    // Pods: created exactly as node-agent sent them (failurePolicy Ignore).
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_stored_as_sent(&pod, &stored, "created while the webhook is down");
    assert_eq!(
        apiserver_webhook_count("apiserver_admission_webhook_fail_open_count", MUTATING),
        fail_open + 1.0,
        "the API server counts the fail-open"
    );
    delete_pods(&[name], NS);

    // ConfigMap writes: refused (failurePolicy Fail), and nothing changes.
    let run = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), r#"{"podLabels": {"team": "unchecked"}}"#);
    assert!(!run.ok, "an unchecked edit must not be stored");
    assert!(run.stderr.contains("failed calling webhook \"validate-config.node-agent-webhook.io\""), "{}", run.stderr);

    // Started again: served again, with the config it never saw change.
    webhook_up();
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_eq!(stored["metadata"]["labels"]["team"], "platform");
    delete_pods(&[name], NS);
    serve_config(r#"{"podLabels": {"team": "checked"}}"#);
}

fn cluster_sh(command: &str) {
    let status = Command::new(repo_path("hack/controlplane/cluster.sh"))
        .arg(command)
        .env("E2E_DIR", e2e_dir())
        .status()
        .expect("run cluster.sh");
    assert!(status.success(), "cluster.sh {command} failed");
}

fn create_priority_class(name: &str, value: i32) {
    let class = format!(
        r#"{{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {{"name": "{name}"}}, "value": {value}}}"#
    );
    kubectl_stdin(&["create", "-f", "-"], &class).must();
}

#[test]
fn the_watches_recover_after_the_api_server_restarts() {
    let _serial = serial();
    webhook_up();
    let node_agent = Identity::node_agent();
    let gone = unique("e2e-gone");
    create_priority_class(&gone, 3000);
    serve_config(&format!(r#"{{"podLabels": {{"team": "before-restart"}}, "priorityClassName": "{gone}"}}"#));
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (_, stored) = create_pod(Some(&node_agent), &pod);
    assert_eq!(stored["spec"]["priorityClassName"], gone.as_str());
    delete_pods(&[name], NS);

    cluster_sh("stop-apiserver");
    // Long enough for both watches to notice and back off.
    std::thread::sleep(Duration::from_secs(3));
    cluster_sh("start-apiserver");

    // At once, while our watches are still reconnecting: the class the config names goes away.
    // Setting it now would make the Priority plugin reject the pod, failing the backup.
    kubectl(&["delete", "priorityclass", &gone]).must();
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (run, stored) = create_pod(Some(&node_agent), &pod);
    assert_eq!(stored["spec"].get("priorityClassName"), None, "{}", run.stderr);
    assert!(run.warnings().iter().any(|w| w.contains(&gone)), "kubectl says why: {}", run.stderr);
    delete_pods(&[name], NS);

    // A new class, and an edit that names it, made before the watches are back.
    let class = unique("e2e-after-restart");
    create_priority_class(&class, 2000);
    let since = Instant::now();
    let config = format!(r#"{{"podLabels": {{"team": "after-restart"}}, "priorityClassName": "{class}"}}"#);
    let applied = apply_config_as(|m| kubectl_stdin(&["apply", "-f", "-"], m), &config);
    assert!(applied.ok, "{}", applied.stderr);
    let (delay, created) = until_a_pod_gets_team("after-restart", since, Duration::from_secs(60));
    eprintln!("API server restarted: the next edit reached a pod after {delay:?}");
    let (name, pod) = pod_fixture("v1.18", "dataupload");
    let (run, stored) = create_pod(Some(&node_agent), &pod);
    assert_eq!(stored["spec"]["priorityClassName"], class.as_str(), "the new class is known: {}", run.stderr);
    assert_eq!(stored["spec"]["priority"], 2000);
    delete_pods(&created, NS);
    delete_pods(&[name], NS);
    kubectl(&["delete", "priorityclass", &class]).must();
}

#[test]
fn rotating_the_certificate_while_the_api_server_calls_fails_no_call() {
    let _serial = serial();
    webhook_up();
    serve_config(r#"{"podLabels": {"team": "rotation"}}"#);
    let fail_open = apiserver_webhook_count("apiserver_admission_webhook_fail_open_count", MUTATING);
    let reloads =
        || metric_sum(&our_metrics(), "node_agent_webhook_certificate_reloads_total", &["result=\"success\""]);
    let reloads_before = reloads();
    let node_agent = Identity::node_agent();

    let mut created = Vec::new();
    let mut unpatched = Vec::new();
    for round in 0..3 {
        if round > 0 {
            // A new serving certificate from the same CA, written where the server reads it.
            let status = Command::new("bash")
                .arg(repo_path("certs/generate.sh"))
                .env("OUT_DIR", serving_cert_dir())
                .stdout(std::process::Stdio::null())
                .status()
                .expect("certs/generate.sh");
            assert!(status.success());
        }
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let (name, pod) = pod_fixture("v1.18", "dataupload");
            let (_, stored) = create_pod(Some(&node_agent), &pod);
            if stored["metadata"]["labels"]["team"] != "rotation" {
                unpatched.push(name.clone());
            }
            created.push(name);
        }
    }
    wait_until("both rotations are loaded", Duration::from_secs(10), || reloads() >= reloads_before + 2.0);
    eprintln!("{} pods created across two certificate rotations", created.len());
    assert_eq!(unpatched, Vec::<String>::new(), "every pod was patched");
    assert_eq!(apiserver_webhook_count("apiserver_admission_webhook_fail_open_count", MUTATING), fail_open);
    delete_pods(&created, NS);
}
