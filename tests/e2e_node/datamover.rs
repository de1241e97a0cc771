//! Issue 23, item 5: data-mover pods that Velero's real node-agent makes go through our webhook
//! and start on the node with the live config's resources and priority: a DataDownload pod,
//! which kube-scheduler places, and a PodVolumeBackup and a PodVolumeRestore pod, which
//! node-agent pins to their client pod's node.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::install::{install_node_agent, node_agent_config, velero_processes};
use crate::{
    apply, in_node, install_the_shipped_deployment, kubectl_json, kubectl_with_stdin, repo_path, Machine, Node,
};

const NS: &str = "velero";
/// The namespace of the volume being restored (the DataDownload's target PVC) or backed up (the
/// PodVolumeBackup's client pod).
const APP_NS: &str = "naw-e2e-app";
/// node-agent's ConfigMap, as the shipped Deployment names it (`NODE_AGENT_CONFIGMAP`).
const CONFIGMAP: &str = "node-agent-config";
/// The DataDownload; node-agent names its pod and its restore PVC after it.
const DD: &str = "naw-e2e-dd";
/// The PodVolumeBackup; node-agent names its pod after it.
const PVB: &str = "naw-e2e-pvb";
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
    on_node_with_live_config("e2e-node-datamover", |live, work| {
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
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "target", "namespace": APP_NS},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
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
        let mover = Mover { resource: "datadownloads.velero.io", name: DD, label: "velero.io/data-download" };
        let pod = wait_for_started_pod(&live.daemonset, &mover);
        eprintln!("DataDownload created -> its pod's container running: {:?}", created.elapsed());
        assert_started_with_live_config(live, &pod, &mover, Placement::Scheduler, ["data-mover", "restore"]);
        assert_waits_for_repository(&mover);
    });
}

/// The client pod of the PodVolumeBackup or PodVolumeRestore and its volume.
const APP_POD: &str = "app";
const APP_VOLUME: &str = "data";
/// What the test writes through one pod's view of the client's volume and reads through the
/// other's.
const MARKER: &str = "naw-e2e: one volume, two pods";

/// A PodVolumeBackup pod (fs-backup's data path, which runs in a pod of its own since Velero
/// v1.17) of Velero v1.18.3's own making, on the node. The flow, in Velero's source
/// (github.com/vmware-tanzu/velero@v1.18.3):
///
/// - The PodVolumeBackup is created as the Velero server's backupper makes one
///   (pkg/podvolume/backupper.go:545-585): `spec.node` the client pod's nodeName, `spec.pod` its
///   reference, `spec.volume`, `backupStorageLocation` the Backup's (`default`), `uploaderType`
///   kopia and `repoIdentifier` "" (only restic repositories have one: :311-314; the CRD requires
///   the key), labelled with and owned by a Backup (an object only; node-agent reads the owner
///   only to log it, pkg/controller/pod_volume_backup_controller.go:139-144, and for a metric on
///   completion, :566).
/// - pod_volume_backup_controller.go:226-259: node-agent on `spec.node` accepts it (:405-417) and
///   exposes it with its live settings (setupExposeParam, :813-880: the label
///   `velero.io/pod-volume-backup`, podResources and priorityClassName as node-agent read them at
///   start-up); pkg/exposer/pod_volume.go:128-210 finds the volume's directory under node-agent's
///   `/host_pods` (pkg/exposer/host_path.go:41-95: `/var/lib/kubelet/pods/<uid>/volumes/*/<volume>`
///   on the host) and creates the pod `velero/<pvb>` (createHostingPod, :346-542) with that
///   directory as a hostPath volume mounted HostToContainer at `/<pvb uid>`, node-agent's own
///   volumes inherited, the PodVolumeBackup as controlling owner and `nodeName` set to the client
///   pod's node (:196, :531): node-agent pins it there, kube-scheduler never places it (the kubelet
///   then reports PodScheduled itself: k8s.io/kubernetes v1.37.2
///   pkg/kubelet/kubelet_pods.go:2014-2018).
/// - pod_volume_backup_controller.go:697-762: the pod Running makes the PodVolumeBackup
///   Prepared, then InProgress (:277-367); the pod's `velero pod-volume backup` waits for that
///   (pkg/podvolume/backup_micro_service.go:129-161), reads the BackupStorageLocation and asks for
///   a BackupRepository for the client pod's namespace (:179-187; pkg/datapath/file_system.go:
///   101-114), which it creates and waits for (pkg/repository/ensurer.go:83-91). No Velero server
///   runs here to make it ready, so the container keeps waiting (its `--resource-timeout`, 10
///   minutes) and no data moves: expected, and asserted (the repository is not Ready, the
///   PodVolumeBackup stays InProgress), not a failure.
///
/// The test also asserts that the pod's volume is the client pod's: a file written through the
/// client's container is read through the data mover's.
#[test]
fn a_pod_volume_backup_pod_made_by_node_agent_starts_on_the_node_with_the_live_config_s_resources_and_priority() {
    on_node_with_live_config("e2e-node-pvb", |live, _| {
        // The client pod, Running.
        create(&client_pod());
        in_node(&[
            "kubectl",
            "-n",
            APP_NS,
            "wait",
            "--for=condition=Ready",
            &format!("pod/{APP_POD}"),
            "--timeout=60s",
        ]);
        let app = kubectl_json(&["-n", APP_NS, "get", "pod", APP_POD]);
        let app_uid = app["metadata"]["uid"].as_str().expect("uid");
        std::fs::write(format!("/proc/{}/root/data/marker", probe_process(app_uid)), MARKER)
            .expect("write into the client's volume");

        // The PodVolumeBackup, as the Velero server's backupper makes it, for a Backup object.
        let backup =
            create(&json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": PVB, "namespace": NS},
        "spec": {"storageLocation": "default", "includedNamespaces": [APP_NS]}}));
        let created = Instant::now();
        apply(
            &json!({"apiVersion": "velero.io/v1", "kind": "PodVolumeBackup",
            "metadata": {"name": PVB, "namespace": NS,
                "labels": {"velero.io/backup-name": PVB, "velero.io/backup-uid": backup["metadata"]["uid"]},
                "ownerReferences": [{"apiVersion": "velero.io/v1", "kind": "Backup", "name": PVB,
                                     "uid": backup["metadata"]["uid"], "controller": true}]},
            "spec": {"node": app["spec"]["nodeName"], "volume": APP_VOLUME, "backupStorageLocation": "default",
                     "repoIdentifier": "", "uploaderType": "kopia",
                     "pod": {"kind": "Pod", "namespace": APP_NS, "name": APP_POD, "uid": app_uid}}})
            .to_string(),
        );
        let mover = Mover { resource: "podvolumebackups.velero.io", name: PVB, label: "velero.io/pod-volume-backup" };
        let pod = wait_for_started_pod(&live.daemonset, &mover);
        eprintln!("PodVolumeBackup created -> its pod's container running: {:?}", created.elapsed());
        let pid = assert_started_with_live_config(live, &pod, &mover, Placement::Creator, ["pod-volume", "backup"]);

        // The client's volume, as the data mover sees it, holds what the client's container wrote.
        let volume = assert_mounts_client_volume(&pod, app_uid, pid);
        let read = std::fs::read_to_string(format!("{volume}/marker"));
        assert_eq!(read.ok().as_deref(), Some(MARKER), "the data mover's view of the client's volume");

        assert_waits_for_repository(&mover);
    });
}

/// The Restore that owns the PodVolumeRestore; the PodVolumeRestore's generated name, and so its
/// pod's, starts with it.
const RESTORE: &str = "naw-e2e-pvr";
/// The init container a restore adds to pods whose volumes it restores, which node-agent waits
/// for (pkg/restorehelper/util.go:25 at v1.18.3).
const RESTORE_WAIT: &str = "restore-wait";

/// A PodVolumeRestore pod (fs-restore's data path, in a pod of its own since Velero v1.17) of
/// Velero v1.18.3's own making, on the node. The flow, in Velero's source
/// (github.com/vmware-tanzu/velero@v1.18.3):
///
/// - The target pod is created as a restore leaves it (pkg/restore/actions/
///   pod_volume_restore_action.go:82-248): the init container `restore-wait` first (:236-239),
///   with the Restore's UID as its argument (:333-335), the restored volume mounted at
///   `/restores/<volume>` (:228-234), POD_NAMESPACE and POD_NAME (:336-353), 100m/128Mi
///   (:152-166) and the first container's securityContext (:196-200). Velero runs
///   `/velero-restore-helper` there (:51, :235), which waits until each volume holds its done
///   file (cmd/velero-restore-helper/velero-restore-helper.go:26-81): the node's Velero image
///   has only `/velero` (hack/node/velero.Dockerfile), so the test runs the node's probe image,
///   whose process also never exits (hack/node/runtime/probe/main.go:21-26); the app's container
///   thus never starts, as in a restore whose data has not arrived.
/// - The PodVolumeRestore is created as the Velero server's restorer makes one
///   (pkg/podvolume/restorer.go:188-189, newPodVolumeRestore :261-307): generateName
///   `<restore>-`, the Restore (an object only; node-agent reads the owner only to log it,
///   pkg/controller/pod_volume_restore_controller.go:146-148) as controlling owner, the labels
///   `velero.io/restore-name`, `velero.io/restore-uid` and `velero.io/pod-uid` (no PVC's for an
///   emptyDir, :297-300), `spec.pod` the target pod, `spec.volume`, `snapshotID`,
///   `backupStorageLocation` `default`, `repoIdentifier` "" (only restic repositories have one:
///   :170-173), `uploaderType` kopia (restic goes to the legacy controller:
///   pod_volume_restore_controller_legacy.go:362-364) and `sourceNamespace`.
/// - node-agent caches only the pods on its node (pkg/cmd/cli/nodeagent/server.go:180-187) and
///   finds the PodVolumeRestore of a target pod by its `velero.io/pod-uid` label when the pod
///   changes (pod_volume_restore_controller.go:637, :666-693); it accepts it once the pod is
///   there and `restore-wait` runs (shouldProcess, :568-591; isInitContainerRunning, :767-784)
///   and exposes it (:231-272) with its live settings (setupExposeParam, :882-964: the label
///   `velero.io/pod-volume-restore`, podResources and priorityClassName as node-agent read them
///   at start-up): pkg/exposer/pod_volume.go:128-210 finds the volume's directory on the host
///   (pkg/exposer/host_path.go:41-95) and creates the pod `velero/<pvr>` (createHostingPod,
///   :346-542; `/velero pod-volume restore`, :418-425) with that directory mounted
///   HostToContainer at `/<pvr uid>`, the PodVolumeRestore as controlling owner and `nodeName`
///   set to the target pod's node (:196, :531): kube-scheduler never places it.
/// - pod_volume_restore_controller.go:695-760: the pod Running makes the PodVolumeRestore
///   Prepared, then InProgress (:291-401); the pod's `velero pod-volume restore` waits for that
///   (pkg/podvolume/restore_micro_service.go:123-153), reads the BackupStorageLocation and asks
///   for a BackupRepository for `sourceNamespace` (:171-183; pkg/datapath/file_system.go:
///   101-114), which it creates and waits for (pkg/repository/ensurer.go:83-91). No Velero
///   server runs here to make it ready, so the container keeps waiting (its
///   `--resource-timeout`, 10 minutes), no data moves and `restore-wait` never finds its done
///   file: expected, and asserted (the repository is not Ready, the PodVolumeRestore stays
///   InProgress, the app's container has not started), not a failure.
///
/// The test also asserts that the pod's volume is the target pod's: a file written through the
/// data mover's view is read through `restore-wait`'s `/restores/<volume>`, where the restore
/// helper looks for its done file.
#[test]
fn a_pod_volume_restore_pod_made_by_node_agent_starts_on_the_node_with_the_live_config_s_resources_and_priority() {
    on_node_with_live_config("e2e-node-pvr", |live, _| {
        // The Restore (an object only) and the target pod, with `restore-wait` as the restore adds it.
        let restore = create(&json!({"apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": RESTORE, "namespace": NS}, "spec": {"backupName": RESTORE}}));
        let restore_uid = restore["metadata"]["uid"].as_str().expect("uid");
        let mut app = client_pod();
        let container = app["spec"]["containers"][0].clone();
        let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
        let helper = json!({"cpu": "100m", "memory": "128Mi"});
        app["spec"]["initContainers"] = json!([{"name": RESTORE_WAIT, "args": [restore_uid],
        "image": container["image"], "imagePullPolicy": "Never", "securityContext": container["securityContext"],
        "resources": {"requests": helper, "limits": helper},
        "env": [{"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                {"name": "POD_NAME", "valueFrom": field("metadata.name")}],
        "volumeMounts": [{"name": APP_VOLUME, "mountPath": format!("/restores/{APP_VOLUME}")}]}]);
        let app = create(&app);
        let app_uid = app["metadata"]["uid"].as_str().expect("uid");

        // The PodVolumeRestore, as the Velero server's restorer makes it right after the pod.
        let created = Instant::now();
        let pvr = create(&json!({"apiVersion": "velero.io/v1", "kind": "PodVolumeRestore",
        "metadata": {"generateName": format!("{RESTORE}-"), "namespace": NS,
            "labels": {"velero.io/restore-name": RESTORE, "velero.io/restore-uid": restore_uid,
                       "velero.io/pod-uid": app_uid},
            "ownerReferences": [{"apiVersion": "velero.io/v1", "kind": "Restore", "name": RESTORE,
                                 "uid": restore_uid, "controller": true}]},
        "spec": {"pod": {"kind": "Pod", "namespace": APP_NS, "name": APP_POD, "uid": app_uid}, "volume": APP_VOLUME,
                 "snapshotID": "naw-e2e", "backupStorageLocation": "default", "repoIdentifier": "",
                 "uploaderType": "kopia", "sourceNamespace": APP_NS}}));
        let name = pvr["metadata"]["name"].as_str().expect("the generated name");
        let mover = Mover { resource: "podvolumerestores.velero.io", name, label: "velero.io/pod-volume-restore" };
        let pod = wait_for_started_pod(&live.daemonset, &mover);
        eprintln!("PodVolumeRestore created -> its pod's container running: {:?}", created.elapsed());
        let pid = assert_started_with_live_config(live, &pod, &mover, Placement::Creator, ["pod-volume", "restore"]);

        // The target pod as the restore leaves it until its data is in: `restore-wait` running, the
        // app's container not started.
        let app = kubectl_json(&["-n", APP_NS, "get", "pod", APP_POD]);
        let init = &app["status"]["initContainerStatuses"][0];
        assert_eq!((&init["name"], init["state"]["running"].is_object()), (&json!(RESTORE_WAIT), true), "{app:#}");
        assert_eq!(app["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing", "{app:#}");

        // The target's volume: what the data mover writes is where `restore-wait` looks.
        let volume = assert_mounts_client_volume(&pod, app_uid, pid);
        std::fs::write(format!("{volume}/marker"), MARKER).expect("write through the data mover's view");
        let read =
            std::fs::read_to_string(format!("/proc/{}/root/restores/{APP_VOLUME}/marker", probe_process(app_uid)));
        assert_eq!(read.ok().as_deref(), Some(MARKER), "restore-wait's view of the target's volume");

        assert_waits_for_repository(&mover);
    });
}

/// The client pod of a PodVolumeBackup or PodVolumeRestore: the node's probe workload with the
/// emptyDir volume `APP_VOLUME` at /data.
fn client_pod() -> Value {
    let mut app: Value = serde_json::from_str(crate::PROBE_POD).expect("PROBE_POD is JSON");
    app["metadata"] = json!({"name": APP_POD, "namespace": APP_NS});
    app["spec"]["volumes"] = json!([{"name": APP_VOLUME, "emptyDir": {}}]);
    app["spec"]["containers"][0]["volumeMounts"] = json!([{"name": APP_VOLUME, "mountPath": "/data"}]);
    app
}

/// `kubectl create` of `object`; the object as the API server stored it.
#[track_caller]
fn create(object: &Value) -> Value {
    let out = kubectl_with_stdin(&["create", "-o", "json", "-f", "-"], &object.to_string());
    assert!(out.status.success(), "kubectl create: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the stored object is JSON")
}

/// The one probe process running in the pod `pod_uid` (its container, or an init container).
#[track_caller]
fn probe_process(pod_uid: &str) -> u32 {
    let in_pod = format!("pod{pod_uid}");
    let probes: Vec<u32> = crate::pod_processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"/probe\0"))
                && process_cgroup(*pid, "memory").contains(&in_pod)
        })
        .collect();
    assert_eq!(probes.len(), 1, "the probe process of pod {pod_uid}: {probes:?}");
    probes[0]
}

/// Asserts that the data-mover pod `pod` mounts its client's volume as node-agent exposes it
/// (pkg/exposer/pod_volume.go:378-393 at v1.18.3): the directory of the client pod
/// `client_uid`'s emptyDir `APP_VOLUME` on the node, as a hostPath volume named after the pod's
/// owner's UID, mounted HostToContainer at `/<owner uid>`. Returns that mount as the data
/// mover's process `pid` sees it.
#[track_caller]
fn assert_mounts_client_volume(pod: &Value, client_uid: &str, pid: u32) -> String {
    let owner_uid = pod["metadata"]["ownerReferences"][0]["uid"].as_str().expect("owner uid");
    let volume = pod["spec"]["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == owner_uid);
    let host_path = format!("/var/lib/kubelet/pods/{client_uid}/volumes/kubernetes.io~empty-dir/{APP_VOLUME}");
    assert_eq!(volume.map(|v| &v["hostPath"]["path"]), Some(&json!(host_path)), "{pod:#}");
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].as_array().cloned().unwrap_or_default();
    let mount = mounts.iter().find(|m| m["name"] == owner_uid).expect("the client volume's mount");
    assert_eq!(
        (&mount["mountPath"], &mount["mountPropagation"]),
        (&json!(format!("/{owner_uid}")), &json!("HostToContainer"))
    );
    format!("/proc/{pid}/root/{owner_uid}")
}

/// Runs `test` on a node set up by [`install_with_live_config`], with the directory
/// `CARGO_TARGET_TMPDIR/name` (emptied of a previous run's files) for its files; then tears the
/// node down (also when `test` fails) and asserts the machine is as it was.
fn on_node_with_live_config(name: &str, test: impl FnOnce(&LiveConfig, &Path)) {
    let machine = Machine::record();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if work.exists() {
        std::fs::remove_dir_all(&work).expect("remove the last run's files");
    }
    let live = install_with_live_config(&work);
    test(&live, &work);
    drop(live);
    std::fs::remove_dir_all(&work).expect("remove the test's files");
    machine.assert_restored();
}

/// The node with the shipped Deployment and node-agent, node-agent's ConfigMap edited after
/// node-agent started.
struct LiveConfig {
    /// Dropping it tears the node down.
    _node: Node,
    daemonset: Value,
    /// The edited ConfigMap's identity, as our webhook's annotation names it.
    config_id: String,
}

/// The shipped Deployment; node-agent as `velero install --node-agent-configmap` runs it, started
/// on a config with neither podResources nor priorityClassName; then the edit that sets both (and
/// a PriorityClass of the test's), once our servers apply it. Also the application namespace and
/// the BackupStorageLocation `default` (an object only) that the data movers read.
fn install_with_live_config(work: &Path) -> LiveConfig {
    let (node, _) = install_the_shipped_deployment(1);
    apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NS}},
            {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
             "metadata": {"name": PRIORITY_CLASS}, "value": PRIORITY}
        ]})
        .to_string(),
    );
    apply(&node_agent_config(&json!({"loadConcurrency": {"globalConfig": 1}})));
    let daemonset = install_node_agent(&work.join("velero"), &["--node-agent-configmap", CONFIGMAP]);
    let flag = format!("--node-agent-configmap={CONFIGMAP}");
    let args = &daemonset["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().is_some_and(|a| a.iter().any(|a| a == flag.as_str())), "{args}");
    apply(
        &json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": {"name": "default", "namespace": NS},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "naw-e2e"}}})
        .to_string(),
    );

    // The edit: podResources and the PriorityClass.
    let (cpu, memory) = (format!("{CPU_MILLIS}m"), format!("{MEMORY_MIB}Mi"));
    apply(&node_agent_config(&json!({"loadConcurrency": {"globalConfig": 1}, "priorityClassName": PRIORITY_CLASS,
        "podResources": {"cpuRequest": cpu, "cpuLimit": cpu, "memoryRequest": memory, "memoryLimit": memory}})));
    let edited = kubectl_json(&["-n", NS, "get", "configmap", CONFIGMAP]);
    let config_id =
        format!("resourceVersion:{}", edited["metadata"]["resourceVersion"].as_str().expect("resourceVersion"));
    wait_until_applied(&config_id);
    LiveConfig { _node: node, daemonset, config_id }
}

/// The Velero resource a data-mover pod serves: its API resource, its name (also the pod's),
/// and the label node-agent puts on the pod.
struct Mover<'a> {
    resource: &'static str,
    name: &'a str,
    label: &'static str,
}

/// Who put the data-mover pod on the node.
enum Placement {
    /// kube-scheduler bound it: its `Scheduled` event.
    Scheduler,
    /// Its creator set `spec.nodeName`: the create request's managed fields hold it, and
    /// kube-scheduler, which only takes pods without one, reported nothing.
    Creator,
}

/// Asserts what the programs did with `pod`, the running pod of `mover`: node-agent made it (its
/// label, `mover` as controlling owner; it had read neither setting), our webhook applied the
/// edited config to it (the annotation, the container's resources, the class and the priority
/// the API server resolved), it was put on the node as `placement` says, and the kubelet started
/// it as Guaranteed (with node-agent's HostToContainer mount) in a cgroup with the config's
/// limits. Returns the pid of its process, `/velero COMMAND SUBCOMMAND`.
#[track_caller]
fn assert_started_with_live_config(
    live: &LiveConfig,
    pod: &Value,
    mover: &Mover,
    placement: Placement,
    command: [&str; 2],
) -> u32 {
    let owner_object = kubectl_json(&["-n", NS, "get", mover.resource, mover.name]);
    let name = pod["metadata"]["name"].as_str().expect("pod name");

    // Made by node-agent: its label and the owner as controlling owner.
    assert_eq!(pod["metadata"]["labels"][mover.label], mover.name, "{pod:#}");
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["uid"], &owner["controller"]),
        (&owner_object["kind"], &json!(mover.name), &owner_object["metadata"]["uid"], &json!(true)),
        "{pod:#}"
    );
    // node-agent read no resources nor class at start-up (it logs them when it does: server.go:304, :348).
    let log = in_node(&[
        "kubectl",
        "-n",
        NS,
        "logs",
        &format!("daemonset/{}", live.daemonset["metadata"]["name"].as_str().unwrap_or_default()),
    ]);
    for line in ["Using priority class for data mover pods", "Using customized pod resource requirements"] {
        assert!(!log.contains(line), "node-agent read a config with them: {line}");
    }

    // Through our webhook, with the edited config: the settings it applied, and the values.
    let applied = pod["metadata"]["annotations"][APPLIED].as_str().unwrap_or_default();
    let settings: Vec<&str> = applied.split(" (").next().unwrap_or_default().split(',').collect();
    assert!(settings.contains(&"podResources") && settings.contains(&"priorityClassName"), "{applied:?}");
    assert!(applied.ends_with(&format!("(config {})", live.config_id)), "{applied:?}, want {}", live.config_id);
    let (cpu, memory) = (format!("{CPU_MILLIS}m"), format!("{MEMORY_MIB}Mi"));
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

    // On the node, admitted and started by the kubelet as Guaranteed.
    assert_eq!(pod["spec"]["nodeName"], crate::NODE_NAME, "{pod:#}");
    assert_eq!(crate::condition(pod, "PodScheduled"), "True", "{pod:#}");
    let events = kubectl_json(&[
        "-n",
        NS,
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name},reason=Scheduled"),
    ]);
    let scheduled = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["reportingComponent"] == "default-scheduler" || e["source"]["component"] == "default-scheduler");
    match placement {
        Placement::Scheduler => assert!(scheduled, "no Scheduled event of kube-scheduler: {events:#}"),
        Placement::Creator => {
            assert!(!scheduled, "kube-scheduler placed it: {events:#}");
            let fields = pod["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
            let create = fields.iter().find(|f| f["fieldsV1"]["f:metadata"]["f:ownerReferences"].is_object());
            let pinned = create.is_some_and(|f| f["fieldsV1"]["f:spec"]["f:nodeName"].is_object());
            assert!(pinned, "the create request did not set nodeName: {fields:#?}");
        }
    }
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
    let movers = velero_processes(command);
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
    movers[0]
}

/// It got as far as Velero gets without a Velero server: the data mover asked for the
/// repository, which nothing makes ready, and `mover` stays InProgress.
#[track_caller]
fn assert_waits_for_repository(mover: &Mover) {
    let repository = wait_for_repository();
    assert_ne!(repository["status"]["phase"], "Ready", "{repository:#}");
    assert_eq!(kubectl_json(&["-n", NS, "get", mover.resource, mover.name])["status"]["phase"], "InProgress");
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

/// `mover`'s pod once its container runs; on a timeout or a failed `mover`, what node-agent saw.
#[track_caller]
fn wait_for_started_pod(daemonset: &Value, mover: &Mover) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let get = [
            "kubectl",
            "-n",
            NS,
            "get",
            "pod",
            mover.name,
            "-o",
            "json",
            "--show-managed-fields",
            "--ignore-not-found",
        ];
        let out = in_node(&get);
        let pod: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if pod["status"]["containerStatuses"][0]["state"]["running"].is_object() {
            return pod;
        }
        let phase =
            in_node(&["kubectl", "-n", NS, "get", mover.resource, mover.name, "-o", "jsonpath={.status.phase}"]);
        if Instant::now() > deadline || phase == "Failed" {
            let owner = in_node(&["kubectl", "-n", NS, "get", mover.resource, mover.name, "-o", "yaml"]);
            let name = daemonset["metadata"]["name"].as_str().unwrap_or_default();
            let log = in_node(&["kubectl", "-n", NS, "logs", &format!("daemonset/{name}")]);
            let pvcs = in_node(&["kubectl", "get", "pv,pvc", "-A"]);
            panic!("no running data-mover pod: {pod:#}\n{owner}\n{pvcs}\nnode-agent's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The BackupRepository the data mover asked for, for the application namespace.
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
