//! Two Velero namespaces, one node-agent-webhook install each (Velero's docs: one node-agent
//! ConfigMap per Velero namespace, for that namespace's node-agent only). The second install is
//! `kubectl apply -k hack/e2e/overlay/velero-b`, the shipped self-signed overlay moved to
//! `velero-b` as docs/deploy.md says, with its own server on 127.0.0.2:443 (the first holds
//! 127.0.0.1:443), its own certificate and its own ServiceAccount's token.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::install::rendered;
use crate::*;

const NS_B: &str = "velero-b";
const OVERLAY_A: &str = "hack/e2e/overlay";
const OVERLAY_B: &str = "hack/e2e/overlay/velero-b";
/// Where the ExternalName Service of the second install points (the overlay's patch).
const BIND_B: &str = "127.0.0.2:443";
const VALIDATING_WEBHOOK: &str = "validate-config.node-agent-webhook.io";
const MUTATING_WEBHOOK: &str = "mutate-datamover-pods.node-agent-webhook.io";
const BAD: &str = r#"{"podAnotations": {"team": "platform"}}"#;

/// The objects of a YAML file as kubectl reads them, without a cluster.
fn objects_of_file(path: &str) -> Vec<Value> {
    let json = kubectl(&["create", "--dry-run=client", "-o", "json", "-f", &repo_path(path).display().to_string()])
        .must()
        .stdout;
    json_stream(&json)
}

/// velero-b's Velero: the first stand-in's node-agent ServiceAccount, its binding, DaemonSet and
/// Pod (hack/e2e/velero.yaml, cluster-objects.yaml) moved to `velero-b`.
fn velero_b_stand_in() -> Vec<Value> {
    let mut out = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_B}})];
    let first = [objects_of_file("hack/e2e/velero.yaml"), objects_of_file("hack/e2e/cluster-objects.yaml")].concat();
    for mut object in first {
        let wanted = matches!(
            (object["kind"].as_str(), object["metadata"]["namespace"].as_str(), object["metadata"]["name"].as_str()),
            (Some("ClusterRoleBinding"), None, Some("velero"))
                | (Some("ServiceAccount"), Some(NS), Some("velero"))
                | (Some("DaemonSet"), Some(NS), Some("node-agent"))
                | (Some("Pod"), Some(NS), Some(NODE_AGENT_POD))
        );
        if !wanted {
            continue;
        }
        if object["kind"] == "ClusterRoleBinding" {
            object["metadata"]["name"] = json!(format!("velero-{NS_B}"));
            object["subjects"][0]["namespace"] = json!(NS_B);
        } else {
            object["metadata"]["namespace"] = json!(NS_B);
        }
        out.push(object);
    }
    assert_eq!(out.len(), 5, "the stand-in lost an object: {}", json_of(&json!(out)));
    out
}

/// `<kind> <name> <namespace or (cluster)>` of every object an overlay renders, with its
/// resourceVersion as stored (None when the API server has no such object).
fn stored_versions(overlay: &str) -> Vec<(String, Option<String>)> {
    rendered(overlay)
        .iter()
        .map(|object| {
            let (kind, name) =
                (object["kind"].as_str().expect("kind"), object["metadata"]["name"].as_str().expect("name"));
            let mut args = vec!["get", kind, name, "-o", "jsonpath={.metadata.resourceVersion}"];
            if let Some(namespace) = object["metadata"]["namespace"].as_str() {
                args.extend(["-n", namespace]);
            }
            let run = kubectl(&args);
            let what = format!("{kind} {name} {}", object["metadata"]["namespace"].as_str().unwrap_or("(cluster)"));
            (what, run.ok.then(|| run.stdout.trim().to_string()))
        })
        .collect()
}

/// The second install, removed again when dropped (also when an assertion failed). Its namespace
/// and stand-in stay: the control plane runs no namespace controller to finish a deletion.
struct SecondInstall {
    server: Webhook,
}

impl SecondInstall {
    fn up() -> Self {
        kubectl_stdin(
            &["apply", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "List", "items": velero_b_stand_in()}).to_string(),
        )
        .must();
        let certs = repo_path(OVERLAY_B).join("certs");
        let generate = std::process::Command::new("bash")
            .arg(repo_path("certs/generate.sh"))
            .env("NAMESPACE", NS_B)
            .env("OUT_DIR", &certs)
            .output()
            .expect("certs/generate.sh");
        assert!(generate.status.success(), "{}", String::from_utf8_lossy(&generate.stderr));
        kubectl(&["apply", "-k", &repo_path(OVERLAY_B).display().to_string()]).must();
        // The server as velero-b's Deployment runs it: its environment, its ServiceAccount.
        let deployment = kubectl(&["get", "deployment", "node-agent-webhook", "-n", NS_B, "-o", "json"]).json();
        let env: Vec<(String, String)> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
            .filter(|(name, _)| name.ends_with("CONFIGMAP") || name == "NAW_VELERO_NAMESPACE")
            .collect();
        assert!(env.contains(&("NAW_VELERO_NAMESPACE".into(), NS_B.into())), "{env:?}");
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let identity = Identity::service_account(NS_B, "node-agent-webhook", None);
        let server = Webhook::start(BIND_B, &identity, &certs, &env, "node-agent-webhook-velero-b.log");
        Self { server }
    }
}

impl Drop for SecondInstall {
    fn drop(&mut self) {
        self.server.stop();
        let _ = kubectl(&["delete", "-k", &repo_path(OVERLAY_B).display().to_string(), "--ignore-not-found"]);
        let _ = kubectl(&["delete", "cm", CONFIGMAP, "-n", NS_B, "--ignore-not-found"]);
    }
}

/// `kubectl apply` of node-agent's ConfigMap in `namespace`.
fn apply_config(namespace: &str, value: &str) -> Run {
    apply_config_in(namespace, |m| kubectl_stdin(&["apply", "-f", "-"], m), value)
}

/// Reviews a server answered, by webhook (`validate`, `mutate`).
fn reviews(metrics: &str, webhook: &str) -> f64 {
    metric_sum(metrics, "node_agent_webhook_admission_requests_total", &[&format!("webhook=\"{webhook}\"")])
}

/// Calls the API server made to webhooks of this name, over every configuration that has one.
fn apiserver_calls(webhook: &str) -> f64 {
    metric_sum(&apiserver_metrics(), "apiserver_admission_webhook_request_total", &[&format!("name=\"{webhook}\"")])
}

/// The config a server serves, as its `config_info` names it: `resourceVersion:N`.
fn served_config(metrics: &str) -> Option<String> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("node_agent_webhook_config_info{config=\""))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

fn configmap_version(namespace: &str) -> String {
    let run = kubectl(&["get", "cm", CONFIGMAP, "-n", namespace, "-o", "jsonpath={.metadata.resourceVersion}"]);
    format!("resourceVersion:{}", run.must().stdout.trim())
}

#[test]
fn a_second_install_keeps_the_first_installs_objects_and_removing_it_leaves_them() {
    let _serial = serial();
    webhook_up();
    let first_before = stored_versions(OVERLAY_A);
    assert!(first_before.iter().all(|(_, v)| v.is_some()), "the first install is incomplete: {first_before:?}");
    {
        let _second = SecondInstall::up();
        // Every object of the second install exists, and the first's were not touched (same
        // resourceVersion: `kubectl apply -k` of the second overlay wrote none of them).
        let second = stored_versions(OVERLAY_B);
        let missing: Vec<_> = second.iter().filter(|(_, v)| v.is_none()).collect();
        assert!(missing.is_empty(), "not stored: {missing:?}");
        assert_eq!(stored_versions(OVERLAY_A), first_before, "the second install changed the first's objects");
        let names = |list: &[(String, Option<String>)]| list.iter().map(|(w, _)| w.clone()).collect::<Vec<_>>();
        let shared: Vec<_> = names(&second).into_iter().filter(|w| names(&first_before).contains(w)).collect();
        assert!(shared.is_empty(), "objects both installs own: {shared:?}");
        for (namespace, overlay) in [(NS, OVERLAY_A), (NS_B, OVERLAY_B)] {
            for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
                let stored = kubectl(&["get", kind, &cluster_scoped_name(namespace), "-o", "json"]).json();
                for webhook in stored["webhooks"].as_array().expect("webhooks") {
                    let what = format!("{overlay}: {kind} {}", webhook["name"]);
                    assert_eq!(webhook["clientConfig"]["service"]["namespace"], namespace, "{what}");
                    assert_eq!(
                        webhook["namespaceSelector"]["matchExpressions"][0]["values"],
                        json!([namespace]),
                        "{what}"
                    );
                }
            }
        }
    }
    // `kubectl delete -k` of the second overlay removed all of its objects and none of the first's.
    let second_after = stored_versions(OVERLAY_B);
    let left: Vec<_> = second_after.iter().filter(|(_, v)| v.is_some()).collect();
    assert!(left.is_empty(), "left behind by delete -k: {left:?}");
    assert_eq!(stored_versions(OVERLAY_A), first_before, "removing the second install touched the first");
    let run = apply_config_as(|m| kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], m), BAD);
    assert!(denial_lines(&run)[0].starts_with("ConfigMap velero/node-agent-config is not a valid"), "{}", run.stderr);
}

#[test]
fn each_webhook_sees_only_its_own_namespace_and_applies_its_own_config() {
    let _serial = serial();
    webhook_up();
    let second = SecondInstall::up();
    let metrics_a = our_metrics;
    let metrics_b = || second.server.metrics();
    let before_a = (reviews(&metrics_a(), "validate"), reviews(&metrics_a(), "mutate"));
    let before_b = (reviews(&metrics_b(), "validate"), reviews(&metrics_b(), "mutate"));

    // A malformed ConfigMap in each namespace: denied by that namespace's webhook, which names
    // that namespace's ConfigMap; the API server called one webhook per request, not two.
    for namespace in [NS, NS_B] {
        let calls = apiserver_calls(VALIDATING_WEBHOOK);
        let run = apply_config(namespace, BAD);
        let lines = denial_lines(&run);
        assert!(
            lines[0].starts_with(&format!("ConfigMap {namespace}/{CONFIGMAP} is not a valid node-agent config")),
            "{namespace}: {}",
            run.stderr
        );
        assert!(lines.iter().any(|l| l.contains("podAnotations")), "{namespace}: {lines:?}");
        assert_eq!(apiserver_calls(VALIDATING_WEBHOOK), calls + 1.0, "{namespace}: one webhook called");
    }
    assert_eq!(reviews(&metrics_a(), "validate"), before_a.0 + 1.0, "velero's server: velero's ConfigMap only");
    assert_eq!(reviews(&metrics_b(), "validate"), before_b.0 + 1.0, "velero-b's server: velero-b's ConfigMap only");

    // A valid ConfigMap in each, different: each server serves its own namespace's.
    let config = |namespace: &str| json!({"podLabels": {"e2e-install": namespace}}).to_string();
    for namespace in [NS, NS_B] {
        let run = apply_config(namespace, &config(namespace));
        assert!(run.ok, "{namespace}: {}", run.stderr);
    }
    eventually_eq(
        "velero's server serves velero's ConfigMap",
        Duration::from_secs(10),
        || served_config(&metrics_a()),
        Some(configmap_version(NS)),
    );
    eventually_eq(
        "velero-b's server serves velero-b's ConfigMap",
        Duration::from_secs(10),
        || served_config(&metrics_b()),
        Some(configmap_version(NS_B)),
    );

    // A data-mover pod in each namespace, created by that namespace's node-agent: it gets that
    // namespace's config, from that namespace's server.
    let mut created = Vec::new();
    for (namespace, identity) in
        [(NS, Identity::node_agent()), (NS_B, Identity::service_account(NS_B, "velero", Some(NODE_AGENT_POD)))]
    {
        let calls = apiserver_calls(MUTATING_WEBHOOK);
        let (name, mut pod) = pod_fixture("v1.18", "dataupload");
        pod["metadata"]["namespace"] = json!(namespace);
        let (_, stored) = create_pod(Some(&identity), &pod);
        assert_eq!(
            stored["metadata"]["labels"]["e2e-install"],
            namespace,
            "{namespace}: {}",
            json_of(&stored["metadata"])
        );
        assert!(applied_annotation(&stored).is_some_and(|a| a.starts_with("podLabels (")), "{namespace}");
        assert_eq!(apiserver_calls(MUTATING_WEBHOOK), calls + 1.0, "{namespace}: one webhook called");
        created.push((namespace, name));
    }
    assert_eq!(reviews(&metrics_a(), "mutate"), before_a.1 + 1.0, "velero's server: velero's pod only");
    assert_eq!(reviews(&metrics_b(), "mutate"), before_b.1 + 1.0, "velero-b's server: velero-b's pod only");

    // velero's node-agent creating a pod in velero-b: velero-b's webhook is for velero-b's
    // node-agent only, velero's for pods in velero only; neither is asked.
    let calls = apiserver_calls(MUTATING_WEBHOOK);
    let (name, mut pod) = pod_fixture("v1.18", "dataupload");
    pod["metadata"]["namespace"] = json!(NS_B);
    let (_, stored) = create_pod(Some(&Identity::node_agent()), &pod);
    assert_stored_as_sent(&pod, &stored, "velero's node-agent in velero-b");
    assert_eq!(apiserver_calls(MUTATING_WEBHOOK), calls, "no webhook called");
    created.push((NS_B, name));

    // Over the whole test, each server answered exactly its own namespace's requests.
    assert_eq!(
        (reviews(&metrics_a(), "validate"), reviews(&metrics_a(), "mutate")),
        (before_a.0 + 2.0, before_a.1 + 1.0),
        "velero's server"
    );
    assert_eq!(
        (reviews(&metrics_b(), "validate"), reviews(&metrics_b(), "mutate")),
        (before_b.0 + 2.0, before_b.1 + 1.0),
        "velero-b's server"
    );
    for (namespace, name) in created {
        delete_pods(&[name], namespace);
    }
    drop(second);
}
