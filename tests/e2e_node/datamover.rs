//! Issue 23, item 5: a data-mover pod that Velero's real node-agent makes goes through our
//! webhook, is scheduled, and starts on the node with the live config's resources and priority.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::install::{install_node_agent, node_agent_config, velero_processes};
use crate::{apply, in_node, install_the_shipped_deployment, kubectl_json, kubectl_with_stdin, repo_path, Machine};

const NS: &str = "velero";
/// The namespace of the volume being restored (the DataDownload's target PVC).
const APP_NS: &str = "naw-e2e-app";
/// node-agent's ConfigMap, as the shipped Deployment names it (`NODE_AGENT_CONFIGMAP`).
const CONFIGMAP: &str = "node-agent-config";
/// The DataDownload; node-agent names its pod and its restore PVC after it.
const DD: &str = "naw-e2e-dd";
const PRIORITY_CLASS: &str = "naw-e2e-data-mover";
const PRIORITY: i64 = 100_000;
/// The live config's podResources, requests equal to limits (so QoS Guaranteed).
const CPU_MILLIS: u64 = 250;
const MEMORY_MIB: u64 = 256;
/// The annotation our mutating webhook puts on the pods it changed (src/config/model.rs).
const APPLIED: &str = "node-agent-webhook.io/applied";

/// A DataDownload pod of Velero v1.18.3's own making, on the node. The flow, in Velero's source
/// (github.com/vmware-tanzu/velero@v1.18.3):
///
/// - pkg/controller/data_download_controller.go:246-292: node-agent accepts a new DataDownload
///   once its target PVC exists and exposes it; pkg/exposer/generic_restore.go:123-241 (Expose)
///   creates the pod `velero/<dd>` (createRestorePod, :510-700: no nodeName, so kube-scheduler
///   places it; node-agent's own volumes, `/var/lib/kubelet/pods` with HostToContainer among
///   them, inherited from the DaemonSet) and the restore PVC `velero/<dd>` with the target PVC's
///   class (createRestorePVC, :720-753). The test pre-creates a hostPath PV whose claimRef names
///   that PVC (class "", as the target PVC's), which kube-controller-manager's PV binder binds:
///   so the pod's volume really mounts here.
/// - data_download_controller.go:660-724: the pod Running makes the DataDownload Prepared, then
///   InProgress (:311-401); the pod's `velero data-mover restore` waits for that
///   (pkg/datamover/restore_micro_service.go:121-149), reads the BackupStorageLocation
///   (pkg/datapath/file_system.go:101-107; the test creates `default`, an object only) and asks
///   for a BackupRepository, which it creates and waits for (pkg/repository/ensurer.go:83-91). No
///   Velero server runs here to make that repository ready, so the container keeps waiting (for
///   its `--resource-timeout`, 10 minutes) and the data never moves: expected, and asserted (the
///   repository it asked for is not Ready), not a failure.
///
/// node-agent starts with a ConfigMap that sets neither podResources nor priorityClassName and
/// reads it only then (pkg/cmd/cli/nodeagent/server.go:260, :295-350); the edit that sets both
/// comes after, without a restart: what the pod gets of them, our webhook gave it.
#[test]
fn a_data_mover_pod_made_by_node_agent_starts_on_the_node_with_the_live_config_s_resources_and_priority() {
    let machine = Machine::record();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-node-datamover");
    if work.exists() {
        std::fs::remove_dir_all(&work).expect("remove the last run's files");
    }
    let (node, _) = install_the_shipped_deployment(1);

    // node-agent as `velero install --node-agent-configmap` runs it, on a config without either.
    apply(&node_agent_config(&json!({"loadConcurrency": {"globalConfig": 1}})));
    let daemonset = install_node_agent(&work.join("velero"), &["--node-agent-configmap", CONFIGMAP]);
    let flag = format!("--node-agent-configmap={CONFIGMAP}");
    let args = &daemonset["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().is_some_and(|a| a.iter().any(|a| a == flag.as_str())), "{args}");

    // The edit: podResources and a PriorityClass of the test's.
    apply(
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": PRIORITY_CLASS}, "value": PRIORITY})
        .to_string(),
    );
    let (cpu, memory) = (format!("{CPU_MILLIS}m"), format!("{MEMORY_MIB}Mi"));
    apply(&node_agent_config(&json!({"loadConcurrency": {"globalConfig": 1}, "priorityClassName": PRIORITY_CLASS,
        "podResources": {"cpuRequest": cpu, "cpuLimit": cpu, "memoryRequest": memory, "memoryLimit": memory}})));
    let edited = kubectl_json(&["-n", NS, "get", "configmap", CONFIGMAP]);
    let config_id =
        format!("resourceVersion:{}", edited["metadata"]["resourceVersion"].as_str().expect("resourceVersion"));
    wait_until_applied(&config_id);

    // A volume for the restore PVC node-agent will make: the test's directory, as a hostPath PV
    // pre-bound to that claim; the target PVC (unbound; no class, which node-agent copies to the
    // restore PVC: with no default StorageClass the binder matches it to PVs of class ""; an
    // explicit "" fails the expose, which looks that class up: pvc_pv.go:327-331) and the
    // DataDownload.
    let volume = work.join("volume");
    std::fs::create_dir_all(&volume).expect("mkdir");
    apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": DD},
             "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "persistentVolumeReclaimPolicy": "Retain",
                      "hostPath": {"path": volume.to_string_lossy(), "type": "Directory"},
                      "claimRef": {"namespace": NS, "name": DD}}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NS}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "target", "namespace": APP_NS},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
            {"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": {"name": "default", "namespace": NS},
             "spec": {"provider": "aws", "objectStorage": {"bucket": "naw-e2e"}}}
        ]})
        .to_string(),
    );
    let created = Instant::now();
    apply(
        &json!({"apiVersion": "velero.io/v2alpha1", "kind": "DataDownload", "metadata": {"name": DD, "namespace": NS},
            "spec": {"backupStorageLocation": "default", "operationTimeout": "10m", "snapshotID": "naw-e2e",
                     "sourceNamespace": APP_NS, "targetVolume": {"namespace": APP_NS, "pvc": "target", "pv": ""}}})
        .to_string(),
    );
    let pod = wait_for_started_pod(&daemonset);
    eprintln!("DataDownload created -> its pod's container running: {:?}", created.elapsed());
    let dd = kubectl_json(&["-n", NS, "get", "datadownloads.velero.io", DD]);

    // Made by node-agent: its label and the DataDownload as controlling owner.
    assert_eq!(pod["metadata"]["labels"]["velero.io/data-download"], DD, "{pod:#}");
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["uid"], &owner["controller"]),
        (&json!("DataDownload"), &json!(DD), &dd["metadata"]["uid"], &json!(true)),
        "{pod:#}"
    );
    // node-agent read no resources nor class at start-up (it logs them when it does: server.go:304, :348).
    let log = in_node(&[
        "kubectl",
        "-n",
        NS,
        "logs",
        &format!("daemonset/{}", daemonset["metadata"]["name"].as_str().unwrap_or_default()),
    ]);
    for line in ["Using priority class for data mover pods", "Using customized pod resource requirements"] {
        assert!(!log.contains(line), "node-agent read a config with them: {line}");
    }

    // Through our webhook, with the edited config: the settings it applied, and the values.
    let applied = pod["metadata"]["annotations"][APPLIED].as_str().unwrap_or_default();
    let settings: Vec<&str> = applied.split(" (").next().unwrap_or_default().split(',').collect();
    assert!(settings.contains(&"podResources") && settings.contains(&"priorityClassName"), "{applied:?}");
    assert!(applied.ends_with(&format!("(config {config_id})")), "{applied:?}, want {config_id}");
    let resources = &pod["spec"]["containers"][0]["resources"];
    for side in ["requests", "limits"] {
        assert_eq!(
            (&resources[side]["cpu"], &resources[side]["memory"]),
            (&json!(cpu), &json!(memory)),
            "{side}: {resources}"
        );
    }
    assert_eq!(pod["spec"]["priorityClassName"], PRIORITY_CLASS, "{pod:#}");
    assert_eq!(pod["spec"]["priority"], PRIORITY, "the API server's Priority admission resolved our class: {pod:#}");

    // Placed by kube-scheduler, admitted and started by the kubelet as Guaranteed.
    assert_eq!(pod["spec"]["nodeName"], crate::NODE_NAME, "{pod:#}");
    assert_eq!(crate::condition(&pod, "PodScheduled"), "True", "{pod:#}");
    let events = kubectl_json(&[
        "-n",
        NS,
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={DD},reason=Scheduled"),
    ]);
    let scheduled = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["reportingComponent"] == "default-scheduler" || e["source"]["component"] == "default-scheduler");
    assert!(scheduled, "no Scheduled event of kube-scheduler: {events:#}");
    assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed", "{pod:#}");
    // node-agent's `/var/lib/kubelet/pods` volume, inherited: the kubelet started the container
    // with that HostToContainer mount (the node's shared /var/lib/kubelet allows it).
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].as_array().cloned().unwrap_or_default();
    assert!(mounts.iter().any(|m| m["mountPropagation"] == "HostToContainer"), "{mounts:#?}");
    let status = &pod["status"]["containerStatuses"][0];
    assert!(status["state"]["running"]["startedAt"].is_string(), "{status:#}");
    assert_eq!(status["restartCount"], 0, "{status:#}");

    // The container's process in the node's pod cgroups: a Guaranteed pod's cgroup is right under
    // kubepods, and its limits are the config's.
    let cgroup = format!(
        "/{}/kubepods/pod{}/{}",
        crate::CGROUP,
        pod["metadata"]["uid"].as_str().expect("uid"),
        status["containerID"].as_str().and_then(|id| id.strip_prefix("containerd://")).expect("a containerd container")
    );
    let movers = velero_processes(["data-mover", "restore"]);
    assert_eq!(movers.len(), 1, "the data mover's process: {movers:?}");
    let limit = |controller: &str, file: &str| -> u64 {
        let path = process_cgroup(movers[0], controller);
        assert_eq!(path, cgroup, "{controller} cgroup of process {}", movers[0]);
        let value = std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{file}"))
            .unwrap_or_else(|e| panic!("{controller}{path}/{file}: {e}"));
        value.trim().parse().unwrap_or_else(|e| panic!("{file} {value:?}: {e}"))
    };
    assert_eq!(limit("memory", "memory.limit_in_bytes"), MEMORY_MIB << 20, "{cgroup}");
    let (quota, period) = (limit("cpu", "cpu.cfs_quota_us"), limit("cpu", "cpu.cfs_period_us"));
    assert_eq!(quota * 1000 / period, CPU_MILLIS, "cfs quota {quota} per period {period} in {cgroup}");

    // It got as far as Velero gets without a Velero server: it asked for the repository, which
    // nothing makes ready.
    let repository = wait_for_repository();
    assert_ne!(repository["status"]["phase"], "Ready", "{repository:#}");
    assert_eq!(kubectl_json(&["-n", NS, "get", "datadownloads.velero.io", DD])["status"]["phase"], "InProgress");

    drop(node);
    std::fs::remove_dir_all(&work).expect("remove the test's files");
    machine.assert_restored();
}

/// Waits until our servers apply the config named `config_id` to node-agent's pods: a
/// server-side dry run of a DataUpload pod (testdata/pods/v1.18) as node-agent's ServiceAccount
/// answers with it five times in a row (the Service spreads the reviews over both replicas).
fn wait_until_applied(config_id: &str) {
    let fixture = std::fs::read_to_string(repo_path("testdata/pods/v1.18/pod-dataupload.json")).expect("fixture");
    let wanted = format!("(config {config_id})");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 5 {
        let args = ["create", "--dry-run=server", "--as=system:serviceaccount:velero:velero", "-o", "json", "-f", "-"];
        let out = kubectl_with_stdin(&args, &fixture);
        assert!(out.status.success(), "dry run: {}", String::from_utf8_lossy(&out.stderr));
        let pod: Value = serde_json::from_slice(&out.stdout).expect("the pod is JSON");
        let applied = pod["metadata"]["annotations"][APPLIED].as_str().unwrap_or_default().to_string();
        in_a_row = if applied.ends_with(&wanted) { in_a_row + 1 } else { 0 };
        assert!(Instant::now() < deadline, "our servers did not apply {config_id}: {applied:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The DataDownload's pod once its container runs; on a timeout, what node-agent saw.
#[track_caller]
fn wait_for_started_pod(daemonset: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = in_node(&["kubectl", "-n", NS, "get", "pod", DD, "-o", "json", "--ignore-not-found"]);
        let pod: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if pod["status"]["containerStatuses"][0]["state"]["running"].is_object() {
            return pod;
        }
        let phase =
            in_node(&["kubectl", "-n", NS, "get", "datadownloads.velero.io", DD, "-o", "jsonpath={.status.phase}"]);
        if Instant::now() > deadline || phase == "Failed" {
            let dd = in_node(&["kubectl", "-n", NS, "get", "datadownloads.velero.io", DD, "-o", "yaml"]);
            let name = daemonset["metadata"]["name"].as_str().unwrap_or_default();
            let log = in_node(&["kubectl", "-n", NS, "logs", &format!("daemonset/{name}")]);
            let pvcs = in_node(&["kubectl", "get", "pv,pvc", "-A"]);
            panic!("no running data-mover pod: {pod:#}\n{dd}\n{pvcs}\nnode-agent's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The BackupRepository the data mover asked for, for the restored namespace.
fn wait_for_repository() -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = kubectl_json(&["-n", NS, "get", "backuprepositories.velero.io"]);
        let found = list["items"].as_array().into_iter().flatten().find(|r| r["spec"]["volumeNamespace"] == APP_NS);
        if let Some(repository) = found {
            return repository.clone();
        }
        assert!(Instant::now() < deadline, "the data mover asked for no BackupRepository: {list:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Process `pid`'s cgroup in the v1 hierarchy of `controller` (from /proc/PID/cgroup).
fn process_cgroup(pid: u32, controller: &str) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    cgroups
        .lines()
        .filter_map(|l| l.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
        .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
        .map(|(_, path)| path.to_string())
        .unwrap_or_else(|| panic!("process {pid} has no {controller} cgroup: {cgroups}"))
}
