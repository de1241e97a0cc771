//! Velero's own Helm chart (charts/velero 12.1.0, the pinned copy in testdata/velero-chart)
//! applied to the real API server beside our installation, configured with the names our chart
//! takes for it (testdata/velero-chart/ours-values.yaml, what NOTES.txt tells that user): the
//! ConfigMaps the Velero chart makes from its values reach our server and are admitted, a mistake
//! in those values is refused by `kubectl apply` with our message, and the args the chart gives
//! the Velero server and node-agent line up with our names (the server's start-up comparison).
//!
//! The Velero chart's objects replace the stand-in's node-agent DaemonSet for one test; the
//! stand-in, our webhook configuration and our server's names are put back afterwards.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::DENIED_BY;

/// The ConfigMaps release `velero` makes: `configMaps.<key>` as `<fullname>-<key>`, and the
/// repository maintenance one under its own default name.
const CHART_CONFIGMAPS: [&str; 3] =
    ["velero-backup-repository-config", "velero-node-agent-config", "velero-repo-maintenance"];
/// Our server's names, as our Deployment passes them.
const NAME_VARIABLES: [&str; 3] =
    ["NAW_CONFIGMAP", "NAW_REPO_MAINTENANCE_CONFIGMAP", "NAW_BACKUP_REPOSITORY_CONFIGMAP"];
/// Whose CRDs the chart's BackupStorageLocation needs (its upgrade Job needs a kubelet).
const VELERO_VERSION: &str = "v1.18.3";
const VALIDATE_CONFIG: &str = "validate-config.node-agent-webhook.io";

/// `hack/helm/velero-chart.sh ARGS`: rendered YAML.
fn render(args: &[&str]) -> String {
    let output = Command::new(repo_path("hack/helm/velero-chart.sh")).args(args).output().expect("run velero-chart.sh");
    assert!(output.status.success(), "velero-chart.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 YAML")
}

/// Our chart with ours-values.yaml, as JSON objects (kubectl reads the YAML and prints one
/// object after another).
fn our_chart() -> Vec<Value> {
    let run = kubectl_stdin(&["create", "--dry-run=client", "-o", "json", "-f", "-"], &render(&["ours"])).must();
    let objects = serde_json::Deserializer::from_str(&run.stdout).into_iter::<Value>();
    objects.collect::<Result<_, _>>().expect("kubectl prints JSON objects")
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in our chart"))
}

/// The ConfigMap names our chart's Deployment gives the server.
fn our_names(objects: &[Value]) -> Vec<(&'static str, String)> {
    let env = &of_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        let found = env.as_array().and_then(|vars| vars.iter().find(|v| v["name"] == name));
        found.and_then(|v| v["value"].as_str()).unwrap_or_else(|| panic!("no {name} in our Deployment")).to_string()
    };
    NAME_VARIABLES.into_iter().map(|name| (name, value(name))).collect()
}

/// The installed validating webhook configuration (found by its webhook's name) and its
/// webhooks' names in order.
fn installed_validating() -> (String, Vec<String>) {
    let all = kubectl(&["get", "validatingwebhookconfigurations", "-o", "json"]).json();
    let names = |c: &Value| -> Vec<String> {
        c["webhooks"].as_array().into_iter().flatten().filter_map(|w| w["name"].as_str().map(str::to_string)).collect()
    };
    let ours = all["items"].as_array().into_iter().flatten().find(|c| names(c).iter().any(|n| n == VALIDATE_CONFIG));
    let ours = ours.expect("our validating webhook configuration is installed");
    (ours["metadata"]["name"].as_str().expect("name").to_string(), names(ours))
}

/// A JSON patch that sets each installed webhook's matchConditions to those of the webhook of the
/// same name in `source`.
fn conditions_patch(installed: &[String], source: &Value) -> Value {
    let ops: Vec<Value> = installed
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let webhooks = source["webhooks"].as_array().expect("webhooks");
            let webhook = webhooks.iter().find(|w| w["name"] == name.as_str()).expect("the same webhook in both");
            json!({"op": "replace", "path": format!("/webhooks/{i}/matchConditions"), "value": webhook["matchConditions"]})
        })
        .collect();
    Value::Array(ops)
}

/// Velero's CRDs the chart's objects need, created unless they exist (the stand-in's data-mover
/// CRDs are kept as they are).
fn velero_crds() {
    let output = Command::new(repo_path("hack/velero/build.sh")).args(["crds", VELERO_VERSION]).output().expect("crds");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let dirs = String::from_utf8_lossy(&output.stdout).into_owned();
    let v1 = dirs.lines().find(|l| l.ends_with("/config/crd/v1/bases")).expect("Velero's v1 CRD directory");
    let run = kubectl(&["create", "-f", v1]);
    let unexpected: Vec<&str> = run.stderr.lines().filter(|l| !l.contains("(AlreadyExists)")).collect();
    assert!(unexpected.is_empty(), "creating Velero's CRDs: {unexpected:?}");
    kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd/backupstoragelocations.velero.io"]).must();
}

/// Velero's chart beside our installation for one test; dropping it puts the suite's state back.
struct VeleroChart {
    configuration: String,
    restore: Value,
    rendered: String,
}

impl VeleroChart {
    /// Our webhook configuration and server given our chart's names, then the Velero chart
    /// rendered with `values` on top of values.yaml and applied: kubectl's run.
    fn install(values: &[&str]) -> (Self, Run) {
        let ours = our_chart();
        let (configuration, webhooks) = installed_validating();
        let stored = kubectl(&["get", "validatingwebhookconfiguration", &configuration, "-o", "json"]).json();
        let chart = Self {
            restore: conditions_patch(&webhooks, &stored),
            rendered: render(&[&["velero"], values].concat()),
            configuration,
        };
        let patch = conditions_patch(&webhooks, of_kind(&ours, "ValidatingWebhookConfiguration")).to_string();
        kubectl(&["patch", "validatingwebhookconfiguration", &chart.configuration, "--type=json", "-p", &patch]).must();
        restart_with(&our_names(&ours));
        velero_crds();
        // The chart's node-agent DaemonSet takes the stand-in's place (a selector is immutable).
        kubectl(&["delete", "daemonset", "node-agent", "-n", NS, "--ignore-not-found"]).must();
        let run = kubectl_stdin(&["apply", "-f", "-"], &chart.rendered);
        (chart, run)
    }
}

impl Drop for VeleroChart {
    fn drop(&mut self) {
        webhook_down();
        let steps = [
            kubectl_stdin(&["delete", "--ignore-not-found", "--wait=false", "-f", "-"], &self.rendered),
            kubectl(&["apply", "-f", repo_path("hack/e2e/velero.yaml").to_str().unwrap_or_default()]),
            kubectl(&[
                "patch",
                "validatingwebhookconfiguration",
                &self.configuration,
                "--type=json",
                "-p",
                &self.restore.to_string(),
            ]),
        ];
        for run in steps.iter().filter(|run| !run.ok) {
            eprintln!("velero_chart: putting the suite's state back failed: {}", run.stderr);
        }
    }
}

/// Our server started afresh with these names (they are compared with Velero's args at start).
fn restart_with(names: &[(&str, String)]) {
    webhook_down();
    let env: Vec<(&str, &str)> = names.iter().map(|(k, v)| (*k, v.as_str())).collect();
    webhook_up_with(&env);
}

fn configmap_data(name: &str) -> Option<BTreeMap<String, String>> {
    let run = kubectl(&["get", "configmap", name, "-n", NS, "-o", "json"]);
    run.ok.then(|| serde_json::from_value(run.json()["data"].clone()).expect("string data"))
}

fn checks_made() -> f64 {
    metric_sum(&our_metrics(), "node_agent_webhook_config_checks_total", &[])
}

#[test]
fn the_velero_charts_configmaps_are_the_ones_checked_and_are_admitted() {
    let _serial = serial();
    let names = our_names(&our_chart());
    let want = [CHART_CONFIGMAPS[1], CHART_CONFIGMAPS[2], CHART_CONFIGMAPS[0]];
    assert_eq!(names, NAME_VARIABLES.into_iter().zip(want.map(String::from)).collect::<Vec<_>>(), "our chart's names");
    let (_chart, run) = VeleroChart::install(&[]);
    assert!(run.ok, "the Velero chart was not applied: {}", run.stderr);
    assert_eq!(without_placement(run.warnings()), Vec::<String>::new(), "no finding in the chart's ConfigMaps");
    for name in CHART_CONFIGMAPS {
        assert!(run.stdout.contains(&format!("configmap/{name} created")), "{name}: {}", run.stdout);
    }
    // Each went through our server (started afresh by `install`): it counts three checks.
    assert_eq!(checks_made(), 3.0, "our server checked the three ConfigMaps");

    let keys = |name: &str| configmap_data(name).map(|data| data.into_keys().collect::<Vec<_>>());
    assert_eq!(keys("velero-node-agent-config"), Some(vec!["node-agent-config.json".to_string()]));
    assert_eq!(keys("velero-backup-repository-config"), Some(vec!["kopia".to_string()]));
    let maintenance = configmap_data("velero-repo-maintenance").expect("velero-repo-maintenance stored");
    assert_eq!(maintenance.keys().collect::<Vec<_>>(), ["global", "kibishii-default-kopia"]);
    assert!(
        maintenance["global"].starts_with("{\n  \"keepLatestMaintenanceJobs\": 3,\n  \"loadAffinity\": [\n"),
        "the chart's pretty-printed JSON: {}",
        maintenance["global"]
    );
    // And node-agent's is the one our server serves to data-mover pods.
    wait_until("our server loads velero-node-agent-config", Duration::from_secs(10), || config_generation() > 0.0);
}

/// Each of our denials in kubectl's output (one per refused object), split into lines.
fn denials(run: &Run) -> Vec<Vec<String>> {
    assert!(!run.ok, "expected denials, kubectl said: {}{}", run.stdout, run.stderr);
    run.stderr
        .split(DENIED_BY)
        .skip(1)
        .map(|denial| denial.lines().take_while(|l| !l.starts_with("Error from server")).map(str::to_string).collect())
        .collect()
}

#[test]
fn mistakes_in_the_velero_charts_values_are_refused_with_line_and_column() {
    let _serial = serial();
    let mistakes = repo_path("testdata/velero-chart/mistakes-values.yaml");
    let (_chart, run) = VeleroChart::install(&[mistakes.to_str().expect("UTF-8 path")]);
    assert_eq!(
        denials(&run),
        vec![
            vec![
                "ConfigMap velero/velero-node-agent-config is not a valid node-agent config (1 error):".to_string(),
                r#"data[node-agent-config.json]: podAnotations: Unknown field: did you mean "podAnnotations"? (node-agent ignores unknown fields silently) (line 8, column 3)"#.to_string(),
            ],
            vec![
                "ConfigMap velero/velero-repo-maintenance is not a valid repository maintenance job config (1 error):".to_string(),
                "data[global]: keepLatestMaintenanceJobs: Invalid value: -1: must be greater than or equal to 0: Velero deletes every maintenance Job and then panics, on every reconcile (line 2, column 32)".to_string(),
            ],
        ]
    );
    assert_eq!(configmap_data("velero-node-agent-config"), None, "a denied create stores nothing");
    assert_eq!(configmap_data("velero-repo-maintenance"), None, "a denied create stores nothing");
    assert!(configmap_data("velero-backup-repository-config").is_some(), "the valid one is stored");
}

/// `node_agent_webhook_configmap_name_mismatch` by kind, once the start-up comparison set it.
fn mismatches() -> Vec<(String, f64)> {
    wait_until("the names are compared", Duration::from_secs(10), || {
        our_metrics().contains("node_agent_webhook_configmap_name_mismatch{")
    });
    let metrics = our_metrics();
    ["node-agent", "repo-maintenance", "backup-repository"]
        .into_iter()
        .map(|kind| {
            let label = format!("kind=\"{kind}\"");
            (kind.to_string(), metric_sum(&metrics, "node_agent_webhook_configmap_name_mismatch", &[&label]))
        })
        .collect()
}

#[test]
fn the_velero_charts_args_line_up_with_our_names_and_other_names_are_flagged() {
    let _serial = serial();
    let (_chart, run) = VeleroChart::install(&[]);
    assert!(run.ok, "the Velero chart was not applied: {}", run.stderr);
    // The Deployment and DaemonSet exist now: the comparison at start reads their args.
    restart_with(&our_names(&our_chart()));
    let kinds = |values: [f64; 3]| {
        ["node-agent", "repo-maintenance", "backup-repository"]
            .iter()
            .map(|k| k.to_string())
            .zip(values)
            .collect::<Vec<_>>()
    };
    assert_eq!(mismatches(), kinds([0.0, 0.0, 0.0]), "our chart's names are the Velero chart's");
    // Our defaults: the repository maintenance ConfigMap is the Velero chart's; node-agent's and
    // the backup repositories' come from its `configMaps`, named after the release.
    restart_with(&[]);
    assert_eq!(mismatches(), kinds([1.0, 0.0, 1.0]), "our defaults against the Velero chart's names");
}
