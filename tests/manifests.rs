//! Tests over the rendered deployment manifests (`manifests/`), the certificate generator
//! (`certs/generate.sh`) and the container build (`Dockerfile`).
//!
//! Every overlay is rendered with `kubectl kustomize` (kustomize v5; `KUBECTL` overrides the
//! binary) from a temporary copy of `manifests/` and `certs/`, after `certs/generate.sh` has
//! written fresh certificates into that copy: the tests work from a clean clone and never touch
//! the working tree. The rendered multi-document YAML is parsed with saphyr.
//!
//! Schema validation of the built-in objects and the CEL evaluation of the webhooks'
//! matchConditions live in `hack/validate-manifests.sh`; this file checks the decisions the
//! manifests encode (failure policies, narrowing, RBAC, security context, namespaces) and the
//! required fields of the custom resources that no published schema covers.

mod support;

use base64::Engine as _;
use saphyr::{LoadableYamlNode, YamlOwned};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::run;

const CERT_MANAGER: &str = "cert-manager";
const SELF_SIGNED: &str = "self-signed";
const OPENSHIFT_ADP: &str = "openshift-adp";
/// A second install for a second Velero namespace, as docs/deploy.md tells users to write it:
/// `namespace: velero-b`, the cert-manager overlay, and transformers/follow-namespace.
const SECOND_NAMESPACE: &str = "velero-b (cert-manager moved)";
/// Overlays that deploy into the default Velero namespace with the base's settings.
const DEFAULT_OVERLAYS: [&str; 2] = [CERT_MANAGER, SELF_SIGNED];

const SERVICE: &str = "node-agent-webhook";
const TLS_SECRET: &str = "node-agent-webhook-tls";
const DATA_MOVER_LABELS: [&str; 4] =
    ["velero.io/data-upload", "velero.io/data-download", "velero.io/pod-volume-backup", "velero.io/pod-volume-restore"];

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Copies a directory tree, leaving out generated keys and certificates (`*.key`, `*.pem`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory in the temporary copy");
    for entry in std::fs::read_dir(from).expect("read source directory") {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&path, &target);
        } else if !matches!(path.extension().and_then(|e| e.to_str()), Some("key" | "pem")) {
            std::fs::copy(&path, &target).expect("copy file into the temporary copy");
        }
    }
}

struct Rendered {
    /// Overlay name -> `kubectl kustomize` output.
    overlays: BTreeMap<String, String>,
    /// The CA certificate certs/generate.sh wrote for the self-signed overlay.
    ca_pem: String,
}

fn render_all() -> Rendered {
    let tmp = tempfile::tempdir().expect("temporary directory");
    copy_tree(&repo().join("manifests"), &tmp.path().join("manifests"));
    copy_tree(&repo().join("certs"), &tmp.path().join("certs"));
    let certs = tmp.path().join("certs");
    run(Command::new("bash")
        .arg(certs.join("generate.sh"))
        .env("OUT_DIR", &certs)
        .env_remove("SERVICE")
        .env_remove("NAMESPACE")
        .env_remove("FORCE_CA"));
    let ca_pem = std::fs::read_to_string(certs.join("ca.pem")).expect("generated ca.pem");

    let mut overlays = BTreeMap::new();
    let dir = tmp.path().join("manifests/overlays");
    for entry in std::fs::read_dir(&dir).expect("manifests/overlays") {
        let path = entry.expect("overlay entry").path();
        if !path.join("kustomization.yaml").is_file() {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).expect("overlay name").to_string();
        let out = run(Command::new(kubectl()).arg("kustomize").arg(&path));
        overlays.insert(name, String::from_utf8(out.stdout).expect("kustomize output is UTF-8"));
    }
    let second = tmp.path().join("second-namespace");
    std::fs::create_dir_all(&second).expect("second-namespace directory");
    std::fs::write(
        second.join("kustomization.yaml"),
        "namespace: velero-b\nresources: [../manifests/overlays/cert-manager]\n\
         transformers: [../manifests/transformers/follow-namespace]\n",
    )
    .expect("second-namespace kustomization");
    let out = run(Command::new(kubectl()).arg("kustomize").arg(&second));
    overlays.insert(SECOND_NAMESPACE.to_string(), String::from_utf8(out.stdout).expect("kustomize output is UTF-8"));
    Rendered { overlays, ca_pem }
}

fn rendered() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(render_all)
}

fn objects(overlay: &str) -> Vec<YamlOwned> {
    let text = rendered().overlays.get(overlay).unwrap_or_else(|| panic!("overlay {overlay} was not rendered"));
    YamlOwned::load_from_str(text)
        .unwrap_or_else(|e| panic!("{overlay}: rendered YAML does not parse: {e}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn all_overlays() -> Vec<String> {
    rendered().overlays.keys().cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// YAML access
// ---------------------------------------------------------------------------------------------

/// Follows `path` through mappings (by key) and sequences (by index).
fn get<'a>(node: &'a YamlOwned, path: &[&str]) -> Option<&'a YamlOwned> {
    let mut cur = node;
    for seg in path {
        cur = match cur {
            YamlOwned::Mapping(_) => cur.as_mapping_get(seg)?,
            YamlOwned::Sequence(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn str_at<'a>(node: &'a YamlOwned, path: &[&str]) -> Option<&'a str> {
    get(node, path).and_then(YamlOwned::as_str)
}

fn int_at(node: &YamlOwned, path: &[&str]) -> Option<i64> {
    get(node, path).and_then(YamlOwned::as_integer)
}

fn bool_at(node: &YamlOwned, path: &[&str]) -> Option<bool> {
    get(node, path).and_then(YamlOwned::as_bool)
}

fn seq_at<'a>(node: &'a YamlOwned, path: &[&str]) -> &'a [YamlOwned] {
    get(node, path).and_then(YamlOwned::as_sequence).map(Vec::as_slice).unwrap_or(&[])
}

fn strings_at(node: &YamlOwned, path: &[&str]) -> Vec<String> {
    seq_at(node, path).iter().map(|v| v.as_str().expect("a list of strings").to_string()).collect()
}

fn kind(obj: &YamlOwned) -> &str {
    str_at(obj, &["kind"]).expect("every object has a kind")
}

fn name(obj: &YamlOwned) -> &str {
    str_at(obj, &["metadata", "name"]).expect("every object has a name")
}

fn namespace(obj: &YamlOwned) -> Option<&str> {
    str_at(obj, &["metadata", "namespace"])
}

fn of_kind<'a>(objs: &'a [YamlOwned], k: &str) -> Vec<&'a YamlOwned> {
    objs.iter().filter(|o| kind(o) == k).collect()
}

fn one<'a>(objs: &'a [YamlOwned], k: &str) -> &'a YamlOwned {
    let found = of_kind(objs, k);
    assert_eq!(found.len(), 1, "expected exactly one {k}, found {}", found.len());
    found[0]
}

fn named<'a>(objs: &'a [YamlOwned], k: &str, n: &str) -> &'a YamlOwned {
    objs.iter().find(|o| kind(o) == k && name(o) == n).unwrap_or_else(|| panic!("no {k} named {n}"))
}

fn container(objs: &[YamlOwned]) -> &YamlOwned {
    let deployment = one(objs, "Deployment");
    let containers = seq_at(deployment, &["spec", "template", "spec", "containers"]);
    assert_eq!(containers.len(), 1, "the webhook pod runs exactly one container");
    &containers[0]
}

fn env(objs: &[YamlOwned]) -> BTreeMap<String, String> {
    seq_at(container(objs), &["env"])
        .iter()
        .map(|e| {
            let n = str_at(e, &["name"]).expect("env name").to_string();
            let v = str_at(e, &["value"]).unwrap_or_else(|| panic!("env {n} has a literal value")).to_string();
            (n, v)
        })
        .collect()
}

fn velero_namespace(objs: &[YamlOwned]) -> String {
    env(objs).get("NAW_VELERO_NAMESPACE").cloned().unwrap_or_else(|| "velero".to_string())
}

/// The three ConfigMap names the server checks, quoted and listed as the CEL condition has them.
fn configmap_names(objs: &[YamlOwned]) -> String {
    let env = env(objs);
    let name = |var: &str, default: &str| format!("'{}'", env.get(var).map_or(default, String::as_str));
    [
        name("NAW_CONFIGMAP", "node-agent-config"),
        name("NAW_REPO_MAINTENANCE_CONFIGMAP", "velero-repo-maintenance"),
        name("NAW_BACKUP_REPOSITORY_CONFIGMAP", "backup-repository-config"),
    ]
    .join(", ")
}

fn webhooks<'a>(objs: &'a [YamlOwned], k: &str) -> &'a [YamlOwned] {
    seq_at(one(objs, k), &["webhooks"])
}

fn all_webhooks(objs: &[YamlOwned]) -> Vec<&YamlOwned> {
    webhooks(objs, "ValidatingWebhookConfiguration")
        .iter()
        .chain(webhooks(objs, "MutatingWebhookConfiguration"))
        .collect()
}

fn hook_name(hook: &YamlOwned) -> &str {
    str_at(hook, &["name"]).expect("webhook name")
}

fn operations(hook: &YamlOwned) -> BTreeSet<String> {
    seq_at(hook, &["rules"]).iter().flat_map(|r| strings_at(r, &["operations"])).collect()
}

fn conditions(hook: &YamlOwned) -> Vec<(String, String)> {
    seq_at(hook, &["matchConditions"])
        .iter()
        .map(|c| {
            (
                str_at(c, &["name"]).expect("condition name").to_string(),
                str_at(c, &["expression"]).expect("condition expression").to_string(),
            )
        })
        .collect()
}

fn namespace_selector_values(hook: &YamlOwned) -> Vec<String> {
    let exprs = seq_at(hook, &["namespaceSelector", "matchExpressions"]);
    assert_eq!(exprs.len(), 1, "{}: one namespace selector expression", hook_name(hook));
    assert_eq!(str_at(&exprs[0], &["key"]), Some("kubernetes.io/metadata.name"), "{}", hook_name(hook));
    assert_eq!(str_at(&exprs[0], &["operator"]), Some("In"), "{}", hook_name(hook));
    assert!(get(hook, &["namespaceSelector", "matchLabels"]).is_none(), "{}", hook_name(hook));
    strings_at(&exprs[0], &["values"])
}

/// Every scalar string in a document, with its path.
fn walk_strings(node: &YamlOwned, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    match node {
        YamlOwned::Mapping(map) => {
            for (k, v) in map {
                path.push(k.as_str().unwrap_or("?").to_string());
                walk_strings(v, path, out);
                path.pop();
            }
        }
        YamlOwned::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                walk_strings(v, path, out);
                path.pop();
            }
        }
        _ => {
            if let Some(s) = node.as_str() {
                out.push((path.join("."), s.to_string()));
            }
        }
    }
}

/// `5s`, `500ms`, `1m30s`, `1h` as the server's flags take them, in milliseconds.
fn duration_ms(text: &str) -> u64 {
    let mut total = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).expect("a unit after the number");
        let n: u64 = rest[..digits].parse().unwrap_or_else(|_| panic!("duration {text:?}"));
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        total += n * match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            u => panic!("duration {text:?}: unit {u:?}"),
        };
        rest = &rest[unit_len..];
    }
    total
}

/// A Kubernetes quantity in milli-units (enough for the cpu/memory values of a Deployment).
fn quantity_milli(text: &str) -> u128 {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let n: u128 = text[..split].parse().unwrap_or_else(|_| panic!("quantity {text:?}"));
    let factor: u128 = match &text[split..] {
        "m" => 1,
        "" => 1_000,
        "k" => 1_000_000,
        "M" => 1_000_000_000,
        "G" => 1_000_000_000_000,
        "Ki" => 1_024_000,
        "Mi" => 1_048_576_000,
        "Gi" => 1_073_741_824_000,
        s => panic!("quantity {text:?}: suffix {s:?}"),
    };
    n * factor
}

// ---------------------------------------------------------------------------------------------
// Rendering and placement
// ---------------------------------------------------------------------------------------------

#[test]
fn every_overlay_renders_with_kubectl_kustomize_from_a_clean_checkout() {
    let names = all_overlays();
    for expected in [CERT_MANAGER, SELF_SIGNED, OPENSHIFT_ADP] {
        assert!(names.iter().any(|n| n == expected), "overlay {expected} missing from {names:?}");
    }
    for overlay in &names {
        let objs = objects(overlay);
        assert!(objs.len() >= 11, "{overlay}: only {} objects", objs.len());
        for obj in &objs {
            assert!(str_at(obj, &["apiVersion"]).is_some(), "{overlay}: object without apiVersion");
            assert!(!name(obj).is_empty(), "{overlay}: {} without a name", kind(obj));
        }
        for k in [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "NetworkPolicy",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            one(&objs, k);
        }
    }
}

#[test]
fn every_namespaced_object_lands_in_the_velero_namespace_and_no_namespace_object_ships() {
    const CLUSTER_SCOPED: [&str; 4] =
        ["ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"];
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let expected = match overlay.as_str() {
            OPENSHIFT_ADP => "openshift-adp",
            SECOND_NAMESPACE => "velero-b",
            _ => "velero",
        };
        assert_eq!(velero_namespace(&objs), expected, "{overlay}: NAW_VELERO_NAMESPACE");
        for obj in &objs {
            // `kubectl delete -k` would delete Velero with it.
            assert_ne!(kind(obj), "Namespace", "{overlay}: ships a Namespace");
            if CLUSTER_SCOPED.contains(&kind(obj)) {
                assert_eq!(
                    namespace(obj),
                    None,
                    "{overlay}: cluster-scoped {} {} has a namespace",
                    kind(obj),
                    name(obj)
                );
                // One install per Velero namespace: the cluster-scoped names carry it.
                assert_eq!(name(obj), format!("{SERVICE}.{expected}"), "{overlay}: {}", kind(obj));
            } else {
                assert_eq!(namespace(obj), Some(expected), "{overlay}: {} {}", kind(obj), name(obj));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------

#[test]
fn rbac_has_no_wildcards_anywhere() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        for role in objs.iter().filter(|o| matches!(kind(o), "Role" | "ClusterRole")) {
            assert!(get(role, &["aggregationRule"]).is_none(), "{overlay}: {} aggregates other roles", name(role));
            for rule in seq_at(role, &["rules"]) {
                for field in ["apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"] {
                    for value in strings_at(rule, &[field]) {
                        assert!(
                            !value.contains('*'),
                            "{overlay}: {} {}: wildcard {value:?} in {field}",
                            kind(role),
                            name(role)
                        );
                    }
                }
            }
        }
    }
}

/// (apiGroup, resource, verb, resourceName or "") for every permission a role grants.
fn grants(role: &YamlOwned) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in seq_at(role, &["rules"]) {
        assert!(strings_at(rule, &["nonResourceURLs"]).is_empty(), "{}: nonResourceURLs", name(role));
        let names = strings_at(rule, &["resourceNames"]);
        let names = if names.is_empty() { vec![String::new()] } else { names };
        for g in strings_at(rule, &["apiGroups"]) {
            for r in strings_at(rule, &["resources"]) {
                for v in strings_at(rule, &["verbs"]) {
                    for n in &names {
                        out.insert((g.clone(), r.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

fn grant_set(items: &[(&str, &str, &str, &str)]) -> BTreeSet<(String, String, String, String)> {
    items.iter().map(|(g, r, v, n)| (g.to_string(), r.to_string(), v.to_string(), n.to_string())).collect()
}

#[test]
fn rbac_grants_exactly_the_documented_read_only_permissions() {
    let role = grant_set(&[
        ("", "configmaps", "get", ""),
        ("", "configmaps", "list", ""),
        ("", "configmaps", "watch", ""),
        ("velero.io", "datadownloads", "get", ""),
        ("apps", "daemonsets", "get", "node-agent"),
        ("apps", "daemonsets", "list", "node-agent"),
        ("apps", "daemonsets", "watch", "node-agent"),
        ("apps", "deployments", "get", "velero"),
    ]);
    let cluster_role = grant_set(&[
        ("scheduling.k8s.io", "priorityclasses", "get", ""),
        ("scheduling.k8s.io", "priorityclasses", "list", ""),
        ("scheduling.k8s.io", "priorityclasses", "watch", ""),
        ("storage.k8s.io", "storageclasses", "get", ""),
        ("storage.k8s.io", "storageclasses", "list", ""),
        ("storage.k8s.io", "storageclasses", "watch", ""),
        ("", "nodes", "list", ""),
        ("", "nodes", "watch", ""),
        ("", "persistentvolumeclaims", "get", ""),
    ]);
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        assert_eq!(grants(one(&objs, "Role")), role, "{overlay}: Role");
        assert_eq!(grants(one(&objs, "ClusterRole")), cluster_role, "{overlay}: ClusterRole");
        assert_eq!(namespace(one(&objs, "Role")), Some(velero_namespace(&objs).as_str()), "{overlay}: Role namespace");
    }
}

#[test]
fn rbac_bindings_grant_the_roles_to_the_webhook_service_account_only() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let sa = one(&objs, "ServiceAccount");
        let deployment = one(&objs, "Deployment");
        assert_eq!(
            str_at(deployment, &["spec", "template", "spec", "serviceAccountName"]),
            Some(name(sa)),
            "{overlay}"
        );
        for (binding, role_kind) in [("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")] {
            let b = one(&objs, binding);
            assert_eq!(str_at(b, &["roleRef", "kind"]), Some(role_kind), "{overlay}: {binding}");
            assert_eq!(str_at(b, &["roleRef", "name"]), Some(name(one(&objs, role_kind))), "{overlay}: {binding}");
            let subjects = seq_at(b, &["subjects"]);
            assert_eq!(subjects.len(), 1, "{overlay}: {binding} has one subject");
            assert_eq!(str_at(&subjects[0], &["kind"]), Some("ServiceAccount"), "{overlay}: {binding}");
            assert_eq!(str_at(&subjects[0], &["name"]), Some(name(sa)), "{overlay}: {binding}");
            assert_eq!(str_at(&subjects[0], &["namespace"]), namespace(sa), "{overlay}: {binding} subject namespace");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook configurations
// ---------------------------------------------------------------------------------------------

#[test]
fn every_webhook_declares_side_effects_none_v1_reviews_and_a_timeout_well_under_ten_seconds() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        for hook in all_webhooks(&objs) {
            let n = hook_name(hook);
            assert_eq!(str_at(hook, &["sideEffects"]), Some("None"), "{overlay}: {n}: sideEffects");
            assert_eq!(
                strings_at(hook, &["admissionReviewVersions"]),
                ["v1"],
                "{overlay}: {n}: admissionReviewVersions"
            );
            let timeout = int_at(hook, &["timeoutSeconds"]).unwrap_or_else(|| panic!("{overlay}: {n}: timeoutSeconds"));
            assert!((1..=5).contains(&timeout), "{overlay}: {n}: timeoutSeconds {timeout} not well under 10");
            assert_eq!(str_at(hook, &["matchPolicy"]), Some("Equivalent"), "{overlay}: {n}: matchPolicy");
            assert!(n.split('.').count() >= 3, "{overlay}: {n}: webhook names are fully qualified");
        }
    }
}

#[test]
fn configmap_webhooks_fail_closed_on_create_and_update_and_open_on_delete() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let hooks = webhooks(&objs, "ValidatingWebhookConfiguration");
        assert_eq!(hooks.len(), 2, "{overlay}: one webhook per failure policy");
        let mut covered = BTreeSet::new();
        for hook in hooks {
            let n = hook_name(hook);
            let ops = operations(hook);
            let policy =
                str_at(hook, &["failurePolicy"]).unwrap_or_else(|| panic!("{overlay}: {n}: explicit failurePolicy"));
            if ops.contains("DELETE") {
                // A Fail policy on DELETE would leave `velero uninstall` stuck on the namespace.
                assert_eq!(ops, BTreeSet::from(["DELETE".to_string()]), "{overlay}: {n}: DELETE stands alone");
                assert_eq!(policy, "Ignore", "{overlay}: {n}: DELETE must fail open");
            } else {
                // A bad ConfigMap must not slip in while the webhook is down.
                assert_eq!(ops, BTreeSet::from(["CREATE".to_string(), "UPDATE".to_string()]), "{overlay}: {n}");
                assert_eq!(policy, "Fail", "{overlay}: {n}: CREATE/UPDATE must fail closed");
            }
            covered.extend(ops);
            for rule in seq_at(hook, &["rules"]) {
                assert_eq!(strings_at(rule, &["apiGroups"]), [""], "{overlay}: {n}");
                assert_eq!(strings_at(rule, &["apiVersions"]), ["v1"], "{overlay}: {n}");
                assert_eq!(strings_at(rule, &["resources"]), ["configmaps"], "{overlay}: {n}");
                assert_eq!(str_at(rule, &["scope"]), Some("Namespaced"), "{overlay}: {n}");
            }
            assert_eq!(str_at(hook, &["clientConfig", "service", "path"]), Some("/validate"), "{overlay}: {n}");
        }
        let expected: BTreeSet<String> = ["CREATE", "UPDATE", "DELETE"].map(String::from).into();
        assert_eq!(covered, expected, "{overlay}: validating operations");
    }
}

#[test]
fn configmap_webhooks_are_narrowed_to_velero_configmaps_by_cel_and_namespace_selector() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let cm = configmap_names(&objs);
        for hook in webhooks(&objs, "ValidatingWebhookConfiguration") {
            let n = hook_name(hook);
            assert_eq!(namespace_selector_values(hook), [velero_namespace(&objs)], "{overlay}: {n}");
            assert!(get(hook, &["objectSelector"]).is_none(), "{overlay}: {n}: no objectSelector");
            let conds = conditions(hook);
            assert!(
                conds.iter().any(|(_, e)| e == &format!("request.name in [{cm}]")),
                "{overlay}: {n}: no condition on request.name in [{cm}] in {conds:?}"
            );
            for (cname, expr) in &conds {
                // `object` is null on DELETE: reading it errors, and errors reject under Fail.
                assert!(!expr.contains("object."), "{overlay}: {n}: {cname} reads object: {expr}");
            }
        }
    }
}

#[test]
fn pod_webhook_fails_open_never_reinvokes_and_sees_only_pod_creates() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let hooks = webhooks(&objs, "MutatingWebhookConfiguration");
        assert_eq!(hooks.len(), 1, "{overlay}: one mutating webhook");
        let hook = &hooks[0];
        let n = hook_name(hook);
        // An outage must not fail every backup: pods are admitted as node-agent built them.
        assert_eq!(str_at(hook, &["failurePolicy"]), Some("Ignore"), "{overlay}: {n}: failurePolicy");
        assert_eq!(str_at(hook, &["reinvocationPolicy"]), Some("Never"), "{overlay}: {n}: reinvocationPolicy");
        assert_eq!(operations(hook), BTreeSet::from(["CREATE".to_string()]), "{overlay}: {n}");
        for rule in seq_at(hook, &["rules"]) {
            assert_eq!(strings_at(rule, &["apiGroups"]), [""], "{overlay}: {n}");
            assert_eq!(strings_at(rule, &["apiVersions"]), ["v1"], "{overlay}: {n}");
            assert_eq!(strings_at(rule, &["resources"]), ["pods"], "{overlay}: {n}: pods only, no subresources");
            assert_eq!(str_at(rule, &["scope"]), Some("Namespaced"), "{overlay}: {n}");
        }
        assert_eq!(str_at(hook, &["clientConfig", "service", "path"]), Some("/mutate"), "{overlay}: {n}");
    }
}

#[test]
fn pod_webhook_is_narrowed_to_data_mover_pods_in_the_velero_namespace_with_guarded_cel() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let ns = velero_namespace(&objs);
        let hook = &webhooks(&objs, "MutatingWebhookConfiguration")[0];
        let n = hook_name(hook);
        assert_eq!(namespace_selector_values(hook), std::slice::from_ref(&ns), "{overlay}: {n}");
        let conds = conditions(hook);
        let sa = format!("request.userInfo.username.startsWith('system:serviceaccount:{ns}:')");
        assert!(conds.iter().any(|(_, e)| e == &sa), "{overlay}: {n}: no ServiceAccount condition {sa} in {conds:?}");
        let (_, labels) = conds
            .iter()
            .find(|(_, e)| e.contains("velero.io/data-upload"))
            .unwrap_or_else(|| panic!("{overlay}: {n}: no data-mover label condition"));
        for label in DATA_MOVER_LABELS {
            assert!(labels.contains(&format!("'{label}'")), "{overlay}: {n}: label {label} missing from {labels}");
        }
        // A pod may have no labels at all: has() must come before anything reads the map.
        let guard =
            labels.find("has(object.metadata.labels)").unwrap_or_else(|| panic!("{overlay}: {n}: no has() guard"));
        let null_guard = labels.find("object != null").unwrap_or_else(|| panic!("{overlay}: {n}: no null guard"));
        let first_read = labels.find("in object.metadata.labels").expect("the condition reads the labels");
        assert!(null_guard < guard && guard < first_read, "{overlay}: {n}: guards must precede the read: {labels}");
        for (cname, expr) in &conds {
            assert!(
                !expr.contains("oldObject"),
                "{overlay}: {n}: {cname} reads oldObject, which is null on CREATE: {expr}"
            );
        }
    }
}

#[test]
fn webhooks_call_the_service_on_443_and_the_service_maps_443_to_the_tls_port() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let service = one(&objs, "Service");
        assert_eq!(name(service), SERVICE, "{overlay}");
        for hook in all_webhooks(&objs) {
            let n = hook_name(hook);
            assert!(get(hook, &["clientConfig", "url"]).is_none(), "{overlay}: {n}: url instead of service");
            assert_eq!(str_at(hook, &["clientConfig", "service", "name"]), Some(name(service)), "{overlay}: {n}");
            assert_eq!(str_at(hook, &["clientConfig", "service", "namespace"]), namespace(service), "{overlay}: {n}");
            assert_eq!(int_at(hook, &["clientConfig", "service", "port"]), Some(443), "{overlay}: {n}");
        }
        let ports = seq_at(service, &["spec", "ports"]);
        let https = ports.iter().find(|p| int_at(p, &["port"]) == Some(443)).expect("Service port 443");
        let metrics = ports.iter().find(|p| str_at(p, &["name"]) == Some("metrics")).expect("Service metrics port");
        let c = container(&objs);
        let container_port = |port_name: &str| {
            seq_at(c, &["ports"])
                .iter()
                .find(|p| str_at(p, &["name"]) == Some(port_name))
                .and_then(|p| int_at(p, &["containerPort"]))
                .unwrap_or_else(|| panic!("{overlay}: container port {port_name}"))
        };
        assert_eq!(str_at(https, &["targetPort"]), Some("webhook"), "{overlay}: 443 targets the TLS port");
        assert_eq!(str_at(metrics, &["targetPort"]), Some("metrics"), "{overlay}");
        let e = env(&objs);
        let bind_port = |var: &str| -> i64 {
            e[var].rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{overlay}: {var}"))
        };
        assert_eq!(container_port("webhook"), bind_port("NAW_BIND"), "{overlay}: NAW_BIND vs containerPort");
        assert_eq!(
            container_port("metrics"),
            bind_port("NAW_METRICS_BIND"),
            "{overlay}: NAW_METRICS_BIND vs containerPort"
        );
        let selector = get(service, &["spec", "selector"]).expect("Service selector");
        let pod_labels =
            get(one(&objs, "Deployment"), &["spec", "template", "metadata", "labels"]).expect("pod labels");
        for (k, v) in selector.as_mapping().expect("selector map") {
            assert_eq!(
                pod_labels.as_mapping_get(k.as_str().expect("key")),
                Some(v),
                "{overlay}: Service selects the pods"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment
// ---------------------------------------------------------------------------------------------

fn assert_restricted_security_context(overlay: &str, objs: &[YamlOwned], numeric_uid: bool) {
    let pod = get(one(objs, "Deployment"), &["spec", "template", "spec"]).expect("pod spec");
    let c = container(objs);
    assert_eq!(bool_at(pod, &["securityContext", "runAsNonRoot"]), Some(true), "{overlay}: pod runAsNonRoot");
    assert_eq!(bool_at(c, &["securityContext", "runAsNonRoot"]), Some(true), "{overlay}: container runAsNonRoot");
    assert_eq!(str_at(pod, &["securityContext", "seccompProfile", "type"]), Some("RuntimeDefault"), "{overlay}");
    assert_eq!(str_at(c, &["securityContext", "seccompProfile", "type"]), Some("RuntimeDefault"), "{overlay}");
    assert_eq!(bool_at(c, &["securityContext", "readOnlyRootFilesystem"]), Some(true), "{overlay}: read-only root");
    assert_eq!(bool_at(c, &["securityContext", "allowPrivilegeEscalation"]), Some(false), "{overlay}");
    assert_ne!(bool_at(c, &["securityContext", "privileged"]), Some(true), "{overlay}: privileged");
    assert_eq!(strings_at(c, &["securityContext", "capabilities", "drop"]), ["ALL"], "{overlay}: drop ALL");
    assert!(strings_at(c, &["securityContext", "capabilities", "add"]).is_empty(), "{overlay}: capabilities added");
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(bool_at(pod, &[host]), Some(true), "{overlay}: {host}");
    }
    for volume in seq_at(pod, &["volumes"]) {
        assert!(get(volume, &["secret"]).is_some(), "{overlay}: only Secret volumes (no hostPath, no writable dirs)");
    }
    if numeric_uid {
        for sc in [get(pod, &["securityContext"]), get(c, &["securityContext"])].into_iter().flatten() {
            assert_eq!(int_at(sc, &["runAsUser"]), Some(65532), "{overlay}: numeric non-root UID");
            assert_eq!(int_at(sc, &["runAsGroup"]), Some(65532), "{overlay}: numeric GID");
        }
        assert_eq!(int_at(pod, &["securityContext", "fsGroup"]), Some(65532), "{overlay}: fsGroup owns the TLS files");
    } else {
        for sc in [get(pod, &["securityContext"]), get(c, &["securityContext"])].into_iter().flatten() {
            for field in ["runAsUser", "runAsGroup", "fsGroup"] {
                assert!(get(sc, &[field]).is_none(), "{overlay}: {field} pinned; OpenShift's SCC assigns it");
            }
        }
    }
}

#[test]
fn deployment_runs_as_uid_65532_non_root_read_only_without_capabilities_under_runtime_default_seccomp() {
    for overlay in DEFAULT_OVERLAYS {
        assert_restricted_security_context(overlay, &objects(overlay), true);
    }
}

#[test]
fn openshift_adp_overlay_leaves_the_uid_to_the_scc_but_stays_non_root_and_restricted() {
    assert_restricted_security_context(OPENSHIFT_ADP, &objects(OPENSHIFT_ADP), false);
}

#[test]
fn deployment_runs_two_replicas_spread_across_nodes_behind_a_disruption_budget() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let deployment = one(&objs, "Deployment");
        let replicas = int_at(deployment, &["spec", "replicas"]).expect("replicas");
        assert_eq!(replicas, 2, "{overlay}: replicas");
        assert_eq!(int_at(deployment, &["spec", "strategy", "rollingUpdate", "maxUnavailable"]), Some(0), "{overlay}");
        let selector = get(deployment, &["spec", "selector", "matchLabels"]).expect("Deployment selector");
        let spread = seq_at(deployment, &["spec", "template", "spec", "topologySpreadConstraints"]);
        let by_node = spread
            .iter()
            .find(|c| str_at(c, &["topologyKey"]) == Some("kubernetes.io/hostname"))
            .unwrap_or_else(|| panic!("{overlay}: no spread over kubernetes.io/hostname"));
        assert_eq!(str_at(by_node, &["whenUnsatisfiable"]), Some("DoNotSchedule"), "{overlay}: hard node spread");
        assert_eq!(int_at(by_node, &["maxSkew"]), Some(1), "{overlay}");
        // Tainted (control-plane, cordoned) nodes must not count as empty domains.
        assert_eq!(str_at(by_node, &["nodeTaintsPolicy"]), Some("Honor"), "{overlay}: nodeTaintsPolicy");
        assert_eq!(
            get(by_node, &["labelSelector", "matchLabels"]),
            Some(selector),
            "{overlay}: spread selects the pods"
        );
        let pdb = one(&objs, "PodDisruptionBudget");
        assert_eq!(get(pdb, &["spec", "selector", "matchLabels"]), Some(selector), "{overlay}: PDB selects the pods");
        let min = int_at(pdb, &["spec", "minAvailable"]).expect("minAvailable");
        assert!(min >= 1 && min < replicas, "{overlay}: minAvailable {min} must keep one up and allow drains");
    }
}

#[test]
fn deployment_probes_healthz_and_readyz_on_the_plain_http_metrics_port() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let c = container(&objs);
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(str_at(c, &[probe, "httpGet", "path"]), Some(path), "{overlay}: {probe}");
            assert_eq!(str_at(c, &[probe, "httpGet", "port"]), Some("metrics"), "{overlay}: {probe} port");
            assert_ne!(str_at(c, &[probe, "httpGet", "scheme"]), Some("HTTPS"), "{overlay}: {probe} is plain HTTP");
        }
    }
}

#[test]
fn termination_grace_period_exceeds_shutdown_delay_plus_grace() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let e = env(&objs);
        let delay = duration_ms(e.get("NAW_SHUTDOWN_DELAY").map_or("5s", String::as_str));
        let grace = duration_ms(e.get("NAW_SHUTDOWN_GRACE").map_or("10s", String::as_str));
        let tgps = int_at(one(&objs, "Deployment"), &["spec", "template", "spec", "terminationGracePeriodSeconds"])
            .expect("terminationGracePeriodSeconds");
        let tgps_ms = u64::try_from(tgps).expect("positive") * 1000;
        assert!(tgps_ms > delay + grace, "{overlay}: {tgps}s <= shutdown delay {delay}ms + grace {grace}ms");
    }
}

#[test]
fn deployment_sets_cpu_and_memory_requests_and_limits() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let c = container(&objs);
        for resource in ["cpu", "memory"] {
            let request =
                str_at(c, &["resources", "requests", resource]).unwrap_or_else(|| panic!("{overlay}: request"));
            let limit = str_at(c, &["resources", "limits", resource]).unwrap_or_else(|| panic!("{overlay}: limit"));
            assert!(
                quantity_milli(request) <= quantity_milli(limit),
                "{overlay}: {resource} request {request} above limit {limit}"
            );
        }
    }
}

#[test]
fn tls_secret_is_mounted_read_only_where_the_server_reads_it_and_the_overlay_provides_it() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let c = container(&objs);
        let pod = get(one(&objs, "Deployment"), &["spec", "template", "spec"]).expect("pod spec");
        let volume = seq_at(pod, &["volumes"])
            .iter()
            .find(|v| str_at(v, &["secret", "secretName"]) == Some(TLS_SECRET))
            .unwrap_or_else(|| panic!("{overlay}: no volume from {TLS_SECRET}"));
        let mode = int_at(volume, &["secret", "defaultMode"]).expect("defaultMode");
        assert_eq!(mode & 0o007, 0, "{overlay}: the key is not world-readable (mode {mode:o})");
        let mount = seq_at(c, &["volumeMounts"])
            .iter()
            .find(|m| str_at(m, &["name"]) == str_at(volume, &["name"]))
            .unwrap_or_else(|| panic!("{overlay}: TLS volume not mounted"));
        assert_eq!(bool_at(mount, &["readOnly"]), Some(true), "{overlay}: TLS mount read-only");
        let dir = str_at(mount, &["mountPath"]).expect("mountPath");
        let e = env(&objs);
        assert_eq!(e["NAW_TLS_CERT"], format!("{dir}/tls.crt"), "{overlay}");
        assert_eq!(e["NAW_TLS_KEY"], format!("{dir}/tls.key"), "{overlay}");
        let from_cert_manager =
            of_kind(&objs, "Certificate").iter().any(|c| str_at(c, &["spec", "secretName"]) == Some(TLS_SECRET));
        let generated = objs.iter().any(|o| kind(o) == "Secret" && name(o) == TLS_SECRET);
        assert!(from_cert_manager ^ generated, "{overlay}: exactly one source for {TLS_SECRET}");
    }
}

#[test]
fn network_policy_admits_only_the_webhook_and_metrics_ports() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let policy = one(&objs, "NetworkPolicy");
        let selector = get(one(&objs, "Deployment"), &["spec", "selector", "matchLabels"]).expect("selector");
        assert_eq!(get(policy, &["spec", "podSelector", "matchLabels"]), Some(selector), "{overlay}: selects the pods");
        assert_eq!(strings_at(policy, &["spec", "policyTypes"]), ["Ingress"], "{overlay}");
        let c = container(&objs);
        let container_ports: BTreeSet<i64> =
            seq_at(c, &["ports"]).iter().map(|p| int_at(p, &["containerPort"]).expect("containerPort")).collect();
        let mut admitted = BTreeSet::new();
        let rules = seq_at(policy, &["spec", "ingress"]);
        assert!(!rules.is_empty(), "{overlay}: no ingress rule admits the API server");
        for rule in rules {
            let ports = seq_at(rule, &["ports"]);
            assert!(!ports.is_empty(), "{overlay}: an ingress rule without ports admits every port");
            for p in ports {
                assert_eq!(str_at(p, &["protocol"]), Some("TCP"), "{overlay}");
                assert!(get(p, &["endPort"]).is_none(), "{overlay}: port ranges");
                admitted.insert(int_at(p, &["port"]).expect("numeric port"));
            }
        }
        assert_eq!(admitted, BTreeSet::from([8443, 9090]), "{overlay}: admitted ports");
        assert_eq!(admitted, container_ports, "{overlay}: policy ports are the container's ports");
    }
}

#[test]
fn image_defaults_to_node_agent_webhook_latest_pulled_only_if_not_present() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        let c = container(&objs);
        assert_eq!(str_at(c, &["image"]), Some("node-agent-webhook:latest"), "{overlay}");
        assert_eq!(str_at(c, &["imagePullPolicy"]), Some("IfNotPresent"), "{overlay}");
        assert_eq!(strings_at(c, &["args"]), ["serve"], "{overlay}");
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

#[test]
fn cert_manager_overlays_inject_the_serving_certificates_ca_into_both_webhook_configurations() {
    for overlay in [CERT_MANAGER, OPENSHIFT_ADP] {
        let objs = objects(overlay);
        let serving = of_kind(&objs, "Certificate")
            .into_iter()
            .find(|c| str_at(c, &["spec", "secretName"]) == Some(TLS_SECRET))
            .unwrap_or_else(|| panic!("{overlay}: no Certificate for {TLS_SECRET}"));
        let expected = format!("{}/{}", namespace(serving).expect("namespace"), name(serving));
        for k in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
            let config = one(&objs, k);
            assert_eq!(
                str_at(config, &["metadata", "annotations", "cert-manager.io/inject-ca-from"]),
                Some(expected.as_str()),
                "{overlay}: {k}"
            );
            for hook in seq_at(config, &["webhooks"]) {
                assert!(get(hook, &["clientConfig", "caBundle"]).is_none(), "{overlay}: {k}: static caBundle");
            }
        }
        let service = one(&objs, "Service");
        let fqdn = format!("{}.{}.svc", name(service), namespace(service).expect("namespace"));
        assert_eq!(
            strings_at(serving, &["spec", "dnsNames"]),
            [fqdn.clone(), format!("{fqdn}.cluster.local")],
            "{overlay}"
        );
        // The serving certificate is issued by a CA Issuer whose CA is itself a Certificate.
        let issuer = named(&objs, "Issuer", str_at(serving, &["spec", "issuerRef", "name"]).expect("issuerRef"));
        let ca_secret = str_at(issuer, &["spec", "ca", "secretName"]).expect("serving cert comes from a CA issuer");
        let ca = of_kind(&objs, "Certificate")
            .into_iter()
            .find(|c| str_at(c, &["spec", "secretName"]) == Some(ca_secret))
            .unwrap_or_else(|| panic!("{overlay}: no Certificate for the CA Secret {ca_secret}"));
        assert_eq!(bool_at(ca, &["spec", "isCA"]), Some(true), "{overlay}: CA certificate");
        named(&objs, "Issuer", str_at(ca, &["spec", "issuerRef", "name"]).expect("CA issuerRef"));
    }
}

fn pem_cert(pem: &[u8]) -> Vec<u8> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem).expect("PEM certificate");
    assert_eq!(parsed.label, "CERTIFICATE");
    parsed.contents
}

fn dns_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("X.509 certificate");
    let san = cert.subject_alternative_name().expect("valid SAN extension").expect("a SAN extension");
    san.value
        .general_names
        .iter()
        .map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[test]
fn self_signed_overlay_fills_every_ca_bundle_with_the_generated_ca_and_ships_the_serving_pair() {
    let objs = objects(SELF_SIGNED);
    let ca_pem = &rendered().ca_pem;
    let b64 = base64::engine::general_purpose::STANDARD;
    for k in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        for hook in webhooks(&objs, k) {
            let bundle = str_at(hook, &["clientConfig", "caBundle"]).unwrap_or_else(|| panic!("{k}: no caBundle"));
            let compact: String = bundle.split_whitespace().collect();
            let decoded = b64.decode(compact).expect("caBundle is base64");
            assert_eq!(String::from_utf8(decoded).expect("PEM"), *ca_pem, "{k}: {}", hook_name(hook));
        }
    }
    let secret = named(&objs, "Secret", TLS_SECRET);
    assert_eq!(str_at(secret, &["type"]), Some("kubernetes.io/tls"));
    let field = |key: &str| -> Vec<u8> {
        let text: String =
            str_at(secret, &["data", key]).unwrap_or_else(|| panic!("Secret key {key}")).split_whitespace().collect();
        b64.decode(text).expect("Secret data is base64")
    };
    assert_eq!(field("ca.crt"), ca_pem.as_bytes(), "ca.crt is the CA");
    assert!(String::from_utf8(field("tls.key")).expect("PEM key").starts_with("-----BEGIN PRIVATE KEY-----"));
    let service = one(&objs, "Service");
    let fqdn = format!("{}.{}.svc", name(service), namespace(service).expect("namespace"));
    assert_eq!(dns_names(&pem_cert(&field("tls.crt"))), [fqdn.clone(), format!("{fqdn}.cluster.local")]);
    let leaf_der = pem_cert(&field("tls.crt"));
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
    let ca_der = pem_cert(ca_pem.as_bytes());
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("CA");
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw(), "the serving certificate is issued by the CA");
}

#[test]
fn certificate_generator_honours_service_namespace_and_out_dir_and_keeps_its_ca() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("temporary directory");
    let out = tmp.path().join("certs");
    let generate = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("certs/generate.sh")).env("OUT_DIR", &out).env("SERVICE", "naw").env("NAMESPACE", "backup");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        run(&mut cmd);
    };
    generate(&[]);
    let read = |f: &str| std::fs::read(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    assert_eq!(dns_names(&pem_cert(&read("serving.pem"))), ["naw.backup.svc", "naw.backup.svc.cluster.local"]);
    for key in ["ca.key", "serving.key"] {
        let mode = std::fs::metadata(out.join(key)).expect("key file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key} mode {mode:o}");
    }
    let serving_der = pem_cert(&read("serving.pem"));
    let (_, serving) = x509_parser::parse_x509_certificate(&serving_der).expect("serving cert");
    let eku = serving.extended_key_usage().expect("valid EKU").expect("an EKU extension");
    assert!(eku.value.server_auth, "serving certificate is for server auth");
    let bc = serving.basic_constraints().expect("valid basicConstraints").expect("basicConstraints");
    assert!(!bc.value.ca, "the serving certificate is not a CA");
    let ca_der = pem_cert(&read("ca.pem"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("CA cert");
    assert!(ca.basic_constraints().expect("valid").expect("basicConstraints").value.ca, "the CA is a CA");
    run(Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(out.join("ca.pem"))
        .arg(out.join("serving.pem")));

    // A second run keeps the CA (the caBundle in the cluster stays valid) but re-issues the leaf.
    let (ca_before, leaf_before) = (read("ca.pem"), read("serving.pem"));
    generate(&[]);
    assert_eq!(read("ca.pem"), ca_before, "an existing CA is reused");
    assert_ne!(read("serving.pem"), leaf_before, "the serving certificate is re-issued");
    generate(&[("FORCE_CA", "1")]);
    assert_ne!(read("ca.pem"), ca_before, "FORCE_CA=1 replaces the CA");

    let bad = Command::new("bash")
        .arg(repo().join("certs/generate.sh"))
        .env("OUT_DIR", tmp.path().join("bad"))
        .env("NAMESPACE", "Not_A_Namespace")
        .output()
        .expect("run generate.sh");
    assert!(!bad.status.success(), "an invalid namespace is refused");
    assert!(!tmp.path().join("bad/serving.pem").exists(), "nothing written for an invalid namespace");
}

// ---------------------------------------------------------------------------------------------
// Custom resources and monitoring
// ---------------------------------------------------------------------------------------------

#[test]
fn custom_resources_carry_their_required_fields() {
    for overlay in all_overlays() {
        let objs = objects(&overlay);
        for obj in &objs {
            let api = str_at(obj, &["apiVersion"]).expect("apiVersion");
            let group = api.split_once('/').map_or("", |(g, _)| g);
            if !group.contains('.') || group.ends_with(".k8s.io") {
                continue; // built in: schema-validated by hack/validate-manifests.sh
            }
            let what = format!("{overlay}: {} {}", kind(obj), name(obj));
            match (api, kind(obj)) {
                ("cert-manager.io/v1", "Certificate") => {
                    assert!(str_at(obj, &["spec", "secretName"]).is_some_and(|s| !s.is_empty()), "{what}: secretName");
                    assert!(str_at(obj, &["spec", "issuerRef", "name"]).is_some(), "{what}: issuerRef.name");
                    let kind_ref = str_at(obj, &["spec", "issuerRef", "kind"]).unwrap_or("Issuer");
                    assert!(matches!(kind_ref, "Issuer" | "ClusterIssuer"), "{what}: issuerRef.kind");
                    let is_ca = bool_at(obj, &["spec", "isCA"]) == Some(true);
                    let names = strings_at(obj, &["spec", "dnsNames"]);
                    assert!(is_ca || !names.is_empty(), "{what}: a serving certificate needs dnsNames");
                    assert!(is_ca || str_at(obj, &["spec", "commonName"]).is_none(), "{what}: no CN on the leaf");
                    if let Some(algo) = str_at(obj, &["spec", "privateKey", "algorithm"]) {
                        assert!(matches!(algo, "RSA" | "ECDSA" | "Ed25519"), "{what}: privateKey.algorithm");
                    }
                    for d in ["duration", "renewBefore"] {
                        if let Some(v) = str_at(obj, &["spec", d]) {
                            duration_ms(v);
                        }
                    }
                }
                ("cert-manager.io/v1", "Issuer" | "ClusterIssuer") => {
                    let spec = get(obj, &["spec"]).and_then(YamlOwned::as_mapping).expect("Issuer spec");
                    let types: Vec<&str> = spec
                        .keys()
                        .filter_map(|k| k.as_str())
                        .filter(|k| matches!(*k, "selfSigned" | "ca" | "acme" | "vault" | "venafi"))
                        .collect();
                    assert_eq!(types.len(), 1, "{what}: exactly one issuer type, got {types:?}");
                    if types[0] == "ca" {
                        assert!(str_at(obj, &["spec", "ca", "secretName"]).is_some(), "{what}: ca.secretName");
                    }
                }
                ("monitoring.coreos.com/v1", "ServiceMonitor") => {
                    assert!(get(obj, &["spec", "selector"]).is_some(), "{what}: selector");
                    let endpoints = seq_at(obj, &["spec", "endpoints"]);
                    assert!(!endpoints.is_empty(), "{what}: endpoints");
                    for e in endpoints {
                        assert!(
                            str_at(e, &["port"]).is_some() || get(e, &["targetPort"]).is_some(),
                            "{what}: endpoint port"
                        );
                    }
                }
                ("monitoring.coreos.com/v1", "PrometheusRule") => {
                    let groups = seq_at(obj, &["spec", "groups"]);
                    assert!(!groups.is_empty(), "{what}: groups");
                    for g in groups {
                        assert!(str_at(g, &["name"]).is_some(), "{what}: group name");
                        let rules = seq_at(g, &["rules"]);
                        assert!(!rules.is_empty(), "{what}: group rules");
                        for r in rules {
                            let alert = str_at(r, &["alert"]);
                            assert!(alert.is_some() ^ str_at(r, &["record"]).is_some(), "{what}: alert xor record");
                            assert!(str_at(r, &["expr"]).is_some_and(|e| !e.trim().is_empty()), "{what}: expr");
                            if let Some(a) = alert {
                                assert!(str_at(r, &["labels", "severity"]).is_some(), "{what}: {a}: severity");
                                assert!(str_at(r, &["annotations", "summary"]).is_some(), "{what}: {a}: summary");
                                if let Some(f) = str_at(r, &["for"]) {
                                    duration_ms(f);
                                }
                            }
                        }
                    }
                }
                _ => panic!("{what}: {api} has no required-field check here; add one"),
            }
        }
    }
}

fn alert_exprs(objs: &[YamlOwned]) -> BTreeMap<String, String> {
    let rule = one(objs, "PrometheusRule");
    seq_at(rule, &["spec", "groups"])
        .iter()
        .flat_map(|g| seq_at(g, &["rules"]))
        .filter_map(|r| Some((str_at(r, &["alert"])?.to_string(), str_at(r, &["expr"])?.to_string())))
        .collect()
}

#[test]
fn prometheus_rule_alerts_on_reload_failures_cert_expiry_self_check_failures_and_latency() {
    let objs = objects(OPENSHIFT_ADP);
    let exprs = alert_exprs(&objs);
    let find = |needle: &str| {
        exprs.values().find(|e| e.contains(needle)).unwrap_or_else(|| panic!("no alert on {needle} in {exprs:?}"))
    };
    assert!(find("node_agent_webhook_config_reloads_total").contains("result=\"error\""));
    let expiry = find("node_agent_webhook_certificate_expiry_timestamp_seconds");
    assert!(expiry.contains("14 * 24 * 3600"), "certificate expiry within 14 days: {expiry}");
    find("node_agent_webhook_patch_self_check_failures_total");
    let latency = find("node_agent_webhook_admission_duration_seconds_bucket");
    assert!(latency.contains("histogram_quantile"), "latency alert on a quantile: {latency}");
    let mutating = hook_name(&webhooks(&objs, "MutatingWebhookConfiguration")[0]).to_string();
    assert!(find("apiserver_admission_webhook_fail_open_count").contains(&format!("name=\"{mutating}\"")));
    let monitor = one(&objs, "ServiceMonitor");
    let service = one(&objs, "Service");
    for (k, v) in get(monitor, &["spec", "selector", "matchLabels"]).and_then(YamlOwned::as_mapping).expect("labels") {
        assert_eq!(
            get(service, &["metadata", "labels"]).and_then(|l| l.as_mapping_get(k.as_str().expect("key"))),
            Some(v)
        );
    }
    let port = str_at(&seq_at(monitor, &["spec", "endpoints"])[0], &["port"]).expect("endpoint port");
    assert!(
        seq_at(service, &["spec", "ports"]).iter().any(|p| str_at(p, &["name"]) == Some(port)),
        "ServiceMonitor port"
    );
}

/// Every `*.rs` file under `dir`, recursively.
fn rust_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

#[test]
fn prometheus_rule_uses_only_metrics_the_server_registers() {
    let mut sources = String::new();
    rust_sources(&repo().join("src"), &mut sources);
    let exprs = alert_exprs(&objects(OPENSHIFT_ADP));
    let mut checked = 0;
    for expr in exprs.values() {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("node_agent_webhook_") {
            let tail = &rest[at + "node_agent_webhook_".len()..];
            let end =
                tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
            let metric = &tail[..end];
            let base = ["_total", "_bucket", "_count", "_sum", "_created"]
                .iter()
                .find_map(|s| metric.strip_suffix(s))
                .unwrap_or(metric);
            assert!(
                sources.contains(&format!("\"{base}\"")),
                "alert metric node_agent_webhook_{metric}: no metric \"{base}\" registered in src/"
            );
            checked += 1;
            rest = &tail[end..];
        }
    }
    assert!(checked >= 5, "only {checked} server metrics referenced");
}

// ---------------------------------------------------------------------------------------------
// Another Velero namespace
// ---------------------------------------------------------------------------------------------

#[test]
fn openshift_adp_overlay_moves_every_namespace_bound_string() {
    let objs = objects(OPENSHIFT_ADP);
    let ns = "openshift-adp";
    let e = env(&objs);
    assert_eq!(e["NAW_VELERO_NAMESPACE"], ns, "--velero-namespace");
    assert_eq!(e["NAW_CONFIGMAP"], "node-agent-dpa-sample", "OADP's ConfigMap is node-agent-<DPA name>");
    for hook in all_webhooks(&objs) {
        assert_eq!(namespace_selector_values(hook), [ns], "{}: namespaceSelector", hook_name(hook));
        assert_eq!(
            str_at(hook, &["clientConfig", "service", "namespace"]),
            Some(ns),
            "{}: clientConfig",
            hook_name(hook)
        );
    }
    for hook in webhooks(&objs, "ValidatingWebhookConfiguration") {
        assert!(
            conditions(hook).iter().any(|(_, x)| x
                == "request.name in ['node-agent-dpa-sample', 'velero-repo-maintenance', 'backup-repository-config']"),
            "{}",
            hook_name(hook)
        );
    }
    let mutating = &webhooks(&objs, "MutatingWebhookConfiguration")[0];
    assert!(conditions(mutating)
        .iter()
        .any(|(_, x)| x == "request.userInfo.username.startsWith('system:serviceaccount:openshift-adp:')"));
    for k in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        assert_eq!(
            str_at(one(&objs, k), &["metadata", "annotations", "cert-manager.io/inject-ca-from"]),
            Some("openshift-adp/node-agent-webhook-serving-cert"),
            "{k}"
        );
    }
    let serving = named(&objs, "Certificate", "node-agent-webhook-serving-cert");
    assert_eq!(
        strings_at(serving, &["spec", "dnsNames"]),
        ["node-agent-webhook.openshift-adp.svc", "node-agent-webhook.openshift-adp.svc.cluster.local"]
    );
    for binding in ["RoleBinding", "ClusterRoleBinding"] {
        assert_eq!(str_at(&seq_at(one(&objs, binding), &["subjects"])[0], &["namespace"]), Some(ns), "{binding}");
    }
    // Another install's targets must not keep this one's NodeAgentWebhookDown quiet.
    assert_eq!(
        alert_exprs(&objs)["NodeAgentWebhookDown"],
        "absent(up{job=\"node-agent-webhook\", namespace=\"openshift-adp\"} == 1)"
    );
}

/// Strings that still name the `velero` namespace: the exact value outside labels, or the
/// namespace inside a DNS name, a ServiceAccount username or a `<namespace>/<name>` reference.
fn velero_namespace_leftovers(objs: &[YamlOwned]) -> Vec<String> {
    let mut found = Vec::new();
    for obj in objs {
        let mut strings = Vec::new();
        walk_strings(obj, &mut Vec::new(), &mut strings);
        for (path, value) in strings {
            // `app.kubernetes.io/part-of: velero` names the product, not a namespace.
            let label = path.contains("labels.") || path.ends_with(".labels");
            // RBAC's `resourceNames: [velero]` is the Velero server Deployment's name (OADP's too).
            let object_name = path.contains("resourceNames.");
            let hit = (value == "velero" && !label && !object_name)
                || value.contains(".velero.svc")
                || value.contains(":velero:")
                || value.starts_with("velero/")
                || value.ends_with(".velero")
                || value.contains("namespace=\"velero\"");
            if hit {
                found.push(format!("{} {}: {path} = {value:?}", kind(obj), name(obj)));
            }
        }
    }
    found
}

#[test]
fn a_second_namespace_overlay_leaves_no_velero_namespace_string_behind_and_shares_no_cluster_scoped_name() {
    let second = objects(SECOND_NAMESPACE);
    let leftovers = velero_namespace_leftovers(&second);
    assert!(leftovers.is_empty(), "namespace-bound strings still naming velero:\n{}", leftovers.join("\n"));
    let cluster_scoped = |objs: &[YamlOwned]| -> BTreeSet<(String, String)> {
        objs.iter().filter(|o| namespace(o).is_none()).map(|o| (kind(o).to_string(), name(o).to_string())).collect()
    };
    let first = cluster_scoped(&objects(CERT_MANAGER));
    let moved = cluster_scoped(&second);
    assert_eq!(first.len(), 4, "{first:?}");
    assert_eq!(moved.len(), 4, "{moved:?}");
    assert!(first.is_disjoint(&moved), "both installs would own {:?}", first.intersection(&moved).collect::<Vec<_>>());
    // Everything else is the same install: each string that differs is the first install's with
    // its namespace swapped (what the leftovers check above cannot see: nothing lost on the way).
    let strings = |objs: &[YamlOwned]| {
        objs.iter()
            .map(|o| {
                let mut out = Vec::new();
                walk_strings(o, &mut vec![kind(o).to_string()], &mut out);
                out
            })
            .collect::<Vec<_>>()
    };
    let (before, after) = (strings(&objects(CERT_MANAGER)), strings(&second));
    assert_eq!(before.len(), after.len(), "same objects");
    let mut moved_places = 0;
    for (a, b) in before.iter().flatten().zip(after.iter().flatten()) {
        assert_eq!(a.0, b.0, "same structure");
        if a.1 != b.1 {
            assert_eq!(a.1.replace("velero", "velero-b"), b.1, "{}", a.0);
            moved_places += 1;
        }
    }
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), after.iter().map(Vec::len).sum::<usize>());
    assert!(moved_places >= 20, "only {moved_places} strings moved");
}

#[test]
fn openshift_adp_overlay_leaves_no_velero_namespace_string_behind() {
    let leftovers = velero_namespace_leftovers(&objects(OPENSHIFT_ADP));
    assert!(leftovers.is_empty(), "namespace-bound strings still naming velero:\n{}", leftovers.join("\n"));
    // The detector is not vacuous: the default overlay has those strings in all the same places.
    let baseline = velero_namespace_leftovers(&objects(CERT_MANAGER));
    for needle in [
        "metadata.namespace",
        "containers.0.env.",
        "namespaceSelector",
        "matchConditions",
        "inject-ca-from",
        "dnsNames",
        "clientConfig.service.namespace",
        "subjects.0.namespace",
        "roleRef.name",
    ] {
        assert!(
            baseline.iter().any(|l| l.contains(needle)),
            "the detector misses {needle} in:\n{}",
            baseline.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Container build and scripts (no Docker engine here: checked as text)
// ---------------------------------------------------------------------------------------------

#[test]
fn dockerfile_builds_a_locked_profile_guided_release_and_runs_it_as_numeric_non_root_on_distroless() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let stages: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.starts_with("FROM ")).map(|(i, _)| i).collect();
    assert!(stages.len() >= 2, "multi-stage build");
    let builder = lines[..*stages.last().expect("a stage")].join("\n");
    // The build stage runs the profile-guided release build, which builds exactly Cargo.lock.
    assert!(builder.contains("hack/pgo/build.sh"), "the build stage runs hack/pgo/build.sh");
    let pgo = std::fs::read_to_string(repo().join("hack/pgo/build.sh")).expect("hack/pgo/build.sh");
    assert!(pgo.contains("--release --locked"), "hack/pgo/build.sh: a locked release build");
    let runtime = &lines[*stages.last().expect("a stage")..];
    assert!(
        runtime[0].contains("gcr.io/distroless/") && runtime[0].contains(":nonroot"),
        "distroless nonroot: {}",
        runtime[0]
    );
    assert!(runtime.contains(&"USER 65532:65532"), "numeric USER 65532:65532 in the runtime stage");
    let copies: Vec<&&str> = runtime.iter().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(copies.len(), 1, "the runtime image holds only the binary: {copies:?}");
    assert!(copies[0].contains("--from=") && copies[0].contains("node-agent-webhook"), "{}", copies[0]);
    for label in ["title", "description", "source", "licenses", "version", "revision", "created"] {
        assert!(text.contains(&format!("org.opencontainers.image.{label}")), "OCI label {label}");
    }
    assert!(runtime.iter().any(|l| l.starts_with("ENTRYPOINT")), "ENTRYPOINT");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "*"), ".dockerignore allow-lists the build context");
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src"] {
        assert!(ignore.lines().any(|l| l.trim().trim_end_matches('/') == needed), ".dockerignore keeps {needed}");
    }
}

#[test]
fn deployment_scripts_parse_with_bash_n() {
    // hack/e2e-kind.sh cannot run here (no Docker engine): at least it must parse.
    for script in ["certs/generate.sh", "hack/render-manifests.sh", "hack/validate-manifests.sh", "hack/e2e-kind.sh"] {
        run(Command::new("bash").arg("-n").arg(repo().join(script)));
    }
}
