//! The shipped objects as the API server stores them, and what the server's own identity may do.

use serde_json::Value;

use crate::harness::*;

/// `kubectl kustomize DIR` as JSON objects.
pub fn rendered(dir: &str) -> Vec<Value> {
    let yaml = std::process::Command::new("kubectl")
        .args(["kustomize", &repo_path(dir).display().to_string()])
        .output()
        .expect("kubectl kustomize");
    assert!(yaml.status.success(), "{}", String::from_utf8_lossy(&yaml.stderr));
    // kubectl turns the YAML stream into JSON objects, one after another, without a cluster.
    let json = kubectl_in(
        &e2e_dir().join("kubeconfig"),
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(&String::from_utf8_lossy(&yaml.stdout)),
    )
    .must()
    .stdout;
    json_stream(&json)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among the rendered objects"))
}

/// Every field `want` sets has the same value in `got` (the API server adds defaults).
fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, value) in want {
                let child = format!("{path}.{key}");
                let other = got.get(key).unwrap_or_else(|| panic!("{child}: missing in the stored object"));
                assert_subset(value, other, &child);
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            assert_eq!(want.len(), got.len(), "{path}: length");
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                assert_subset(w, g, &format!("{path}[{i}]"));
            }
        }
        // kustomize wraps the base64 of a caBundle over several lines; the API server stores bytes.
        (Value::String(want), Value::String(got)) if path.ends_with(".caBundle") => {
            let unwrapped: String = want.split_whitespace().collect();
            assert_eq!(&unwrapped, got, "{path}");
        }
        _ => assert_eq!(want, got, "{path}"),
    }
}

#[test]
fn registered_webhook_configurations_are_the_shipped_ones() {
    let _serial = serial();
    let shipped = rendered("manifests/overlays/self-signed");
    for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        let want = find(&shipped, kind, &cluster_scoped_name(NS));
        let stored = kubectl(&["get", kind, &cluster_scoped_name(NS), "-o", "json"]).json();
        // Rules, selectors, matchConditions, failure policies, timeouts and clientConfig
        // (service reference and caBundle) exactly as rendered; only defaults are added.
        assert_subset(&want["webhooks"], &stored["webhooks"], kind);
        for webhook in stored["webhooks"].as_array().expect("webhooks") {
            assert_eq!(webhook["clientConfig"]["service"]["name"], "node-agent-webhook", "{kind}");
            assert!(webhook["clientConfig"].get("url").is_none(), "{kind}: no url, the Service is used");
        }
    }
}

#[test]
fn the_e2e_overlay_differs_from_the_shipped_one_only_in_the_service() {
    let _serial = serial();
    let shipped = rendered("manifests/overlays/self-signed");
    let installed = rendered("hack/e2e/overlay");
    assert_eq!(shipped.len(), installed.len());
    for (want, got) in shipped.iter().zip(&installed) {
        if want["kind"] == "Service" {
            assert_eq!(got["spec"]["type"], "ExternalName");
            assert_eq!(got["spec"]["ports"], want["spec"]["ports"], "same ports: the API server dials port 443");
        } else {
            assert_eq!(want, got, "{} {}", want["kind"], want["metadata"]["name"]);
        }
    }
}

/// The server's identity is the shipped ServiceAccount, bound only by the shipped RBAC: it can do
/// what the server does and nothing more (the webhook scenarios prove the calls succeed).
#[test]
fn the_server_account_may_do_what_the_server_does_and_no_more() {
    let _serial = serial();
    let account = "system:serviceaccount:velero:node-agent-webhook";
    let can = |args: &[&str]| {
        let mut full = vec!["auth", "can-i", "--as", account];
        full.extend_from_slice(args);
        kubectl(&full).stdout.trim() == "yes"
    };
    for allowed in [
        &["watch", "configmaps", "-n", "velero"][..],
        &["list", "configmaps", "-n", "velero"],
        &["get", "datadownloads.velero.io", "-n", "velero"],
        &["get", "daemonsets/node-agent", "-n", "velero"],
        &["watch", "daemonsets/node-agent", "-n", "velero"],
        &["watch", "priorityclasses"],
        &["watch", "storageclasses"],
        &["watch", "nodes"],
        &["list", "nodes"],
        &["get", "persistentvolumeclaims", "-n", "some-app"],
    ] {
        assert!(can(allowed), "{account} should be allowed: {allowed:?}");
    }
    for denied in [
        &["watch", "configmaps", "-n", "default"][..],
        &["update", "configmaps", "-n", "velero"],
        &["get", "secrets", "-n", "velero"],
        &["get", "daemonsets/other", "-n", "velero"],
        &["watch", "daemonsets", "-n", "velero"],
        &["create", "pods", "-n", "velero"],
        &["list", "persistentvolumeclaims", "-n", "some-app"],
        &["patch", "nodes"],
        &["get", "nodes/proxy"],
    ] {
        assert!(!can(denied), "{account} should not be allowed: {denied:?}");
    }
    // And the server really works under it: the ConfigMap watch delivered a config, and no
    // storage-class lookup was ever forbidden.
    let metrics = our_metrics();
    assert!(metric_sum(&metrics, "node_agent_webhook_config_reloads_total", &[]) >= 1.0, "{metrics}");
    assert_eq!(metric_sum(&metrics, "node_agent_webhook_storage_class_lookups_total", &["result=\"forbidden\""]), 0.0);
}
