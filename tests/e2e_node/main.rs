//! End to end on a real node: hack/node/node.sh starts etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, containerd (runc, the CNI bridge), kubelet and
//! kube-proxy (nftables) in a network and a mount namespace of the node's own, all built from their
//! Go modules, every image made locally. These tests drive that cluster with kubectl inside the
//! node's namespaces and assert what the programs did, and that the machine's settings, processes,
//! mounts and cgroups are as they were before.
//!
//! Run with `make e2e-node` (hack/node/e2e.sh) under the machine-wide lock: each test brings the
//! node up and tears it down itself, so one runs at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod datamover;
mod faults;
mod install;

const NODE_NAME: &str = "naw-node-0";
/// The node's cgroups, in every hierarchy (hack/node/node.sh CGROUP).
const CGROUP: &str = "naw-node";
/// The machine-wide settings a kubelet rewrites on start-up by default (setupKernelTunables,
/// k8s.io/kubernetes v1.37.2 pkg/kubelet/cm/container_manager_linux.go:478-485), and the one the
/// CNI bridge plugin sets (in the node's network namespace only): none may change.
const MACHINE_SETTINGS: [&str; 7] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
];

/// The machine's files a container runtime puts into every pod (containerd copies them into a
/// sandbox; runc makes mount points for them): the node's mount namespace shares the machine's
/// /etc, so a write meant for a pod's copy would change the machine's name resolution.
const MACHINE_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"];

fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn node_dir() -> PathBuf {
    std::env::var_os("NODE_DIR").map_or_else(|| repo_path("_out/node/run"), PathBuf::from)
}

fn node_sh(args: &[&str]) -> Output {
    Command::new(repo_path("hack/node/node.sh"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("hack/node/node.sh {args:?}: {e}"))
}

/// CMD in the node's namespaces (`node.sh exec`); its stdout, or a panic with its stderr.
#[track_caller]
fn in_node(args: &[&str]) -> String {
    let out = node_sh(&[&["exec"], args].concat());
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn kubectl_json(args: &[&str]) -> Value {
    let stdout = in_node(&[&["kubectl"], args, &["-o", "json"]].concat());
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("kubectl {args:?} is not JSON ({e}): {stdout}"))
}

/// The running node; dropping it tears everything down, also when a test fails.
struct Node;

impl Node {
    fn up() -> Node {
        Node::up_nodes(1)
    }

    /// `nodes` kubelet nodes (`NODES=n node.sh up`): naw-node-0, naw-node-1, ...
    fn up_nodes(nodes: u32) -> Node {
        let started = Instant::now();
        let out = Command::new(repo_path("hack/node/node.sh"))
            .arg("up")
            .env("NODES", nodes.to_string())
            .output()
            .expect("hack/node/node.sh up");
        let node = Node;
        assert!(out.status.success(), "node.sh up failed: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("node up in {} ms", started.elapsed().as_millis());
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let out = node_sh(&["down"]);
        if !out.status.success() {
            eprintln!("node.sh down failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The machine's own network state: its interfaces and its nftables ruleset (the node's bridge,
/// veths and kube-proxy's tables must stay in the node's namespace).
fn machine_network() -> (Vec<String>, String) {
    let mut interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    interfaces.sort();
    let ruleset = Command::new("nft").args(["list", "ruleset"]).output().expect("nft list ruleset");
    assert!(ruleset.status.success(), "nft list ruleset: {}", String::from_utf8_lossy(&ruleset.stderr));
    (interfaces, String::from_utf8_lossy(&ruleset.stdout).into_owned())
}

fn machine_settings() -> Vec<(String, String)> {
    MACHINE_SETTINGS
        .iter()
        .map(|key| {
            let value = std::fs::read_to_string(Path::new("/proc/sys").join(key))
                .unwrap_or_else(|e| panic!("/proc/sys/{key}: {e}"));
            (key.to_string(), value.trim().to_string())
        })
        .collect()
}

/// A file as its mode and content; None when it is missing.
type FileState = Option<(u32, Vec<u8>)>;

/// Each of [`MACHINE_FILES`] and its state.
fn machine_files() -> Vec<(&'static str, FileState)> {
    use std::os::unix::fs::PermissionsExt;
    MACHINE_FILES
        .iter()
        .map(|path| {
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode());
            (*path, mode.ok().zip(std::fs::read(path).ok()))
        })
        .collect()
}

/// What the node left on the machine: processes started from its directory, mounts under it, its
/// cgroups, the directory itself.
fn leftovers() -> Vec<String> {
    let dir = node_dir();
    let dir = dir.to_string_lossy();
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(dir.as_ref()) {
            left.push(format!(
                "process {}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline)
            ));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    left.extend(
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount| mount.starts_with(dir.as_ref()))
            .map(|mount| format!("mount {mount}")),
    );
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let cgroup = hierarchy.path().join(CGROUP);
        if cgroup.exists() {
            left.push(format!("cgroup {}", cgroup.display()));
        }
    }
    if Path::new(dir.as_ref()).exists() {
        left.push(format!("directory {dir}"));
    }
    left
}

/// The processes in the node's pod cgroups (the kubelet's cgroupRoot), containers and sandboxes.
fn pod_processes() -> Vec<u32> {
    fn walk(dir: &Path, pids: &mut Vec<u32>) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                walk(&entry.path(), pids);
            }
        }
    }
    let mut pids = Vec::new();
    walk(&Path::new("/sys/fs/cgroup/pids").join(CGROUP).join("kubepods"), &mut pids);
    pids
}

/// The line of /proc/PID/status named `field`, without the name.
fn proc_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
}

/// When a process started (field 22 of /proc/PID/stat, after the parenthesised command name).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19).map(str::to_string)
}

fn condition(object: &Value, kind: &str) -> String {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// The pod range of the first node's CNI configuration (bridge, host-local), "a.b.c.0/24".
fn pod_subnet() -> String {
    let conflist =
        std::fs::read_to_string(node_dir().join("cni-0/10-naw-node.conflist")).expect("the node's CNI config");
    let conflist: Value = serde_json::from_str(&conflist).expect("CNI config is JSON");
    conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"].as_str().expect("a subnet").to_string()
}

fn in_subnet(ip: &str, subnet: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let (base, bits) = subnet.split_once('/').expect("a CIDR");
    let (Some(ip), Some(base), Ok(bits)) = (parse(ip), parse(base), bits.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    ip & mask == base & mask
}

/// k8s.io/kubernetes's version in hack/controlplane/go.mod: the node's must be the same.
fn control_plane_version() -> String {
    let go_mod = std::fs::read_to_string(repo_path("hack/controlplane/go.mod")).expect("hack/controlplane/go.mod");
    go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("require k8s.io/kubernetes "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("k8s.io/kubernetes in hack/controlplane/go.mod")
        .to_string()
}

/// The machine as a test found it: checked for an earlier node's remains, compared during the
/// run and after the teardown.
struct Machine {
    settings: Vec<(String, String)>,
    network: (Vec<String>, String),
    files: Vec<(&'static str, FileState)>,
}

impl Machine {
    #[track_caller]
    fn record() -> Self {
        let stale = leftovers();
        assert!(stale.is_empty(), "a previous node was not torn down: {stale:#?}");
        Machine { settings: machine_settings(), network: machine_network(), files: machine_files() }
    }

    #[track_caller]
    fn assert_unchanged(&self) {
        assert_eq!(machine_settings(), self.settings, "the machine's settings changed");
        assert_eq!(machine_network(), self.network, "the machine's interfaces or nftables ruleset changed");
        let changed: Vec<_> = machine_files()
            .into_iter()
            .zip(&self.files)
            .filter(|(now, before)| now != *before)
            .map(|((path, _), _)| path)
            .collect();
        assert!(changed.is_empty(), "the machine's files changed (mode or content): {changed:?}");
    }

    /// After the teardown: nothing of the node is left, and the machine is as it was.
    #[track_caller]
    fn assert_restored(&self) {
        let left = leftovers();
        assert!(left.is_empty(), "the node's teardown left: {left:#?}");
        self.assert_unchanged();
    }
}

const PROBE_POD: &str = r#"{
  "apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "probe", "namespace": "default"},
  "spec": {
    "containers": [{
      "name": "probe", "image": "naw.local/probe:1", "imagePullPolicy": "Never",
      "securityContext": {
        "runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
      }
    }]
  }
}"#;

/// `kubectl VERB -f -` of `manifest` in the node's namespaces.
fn kubectl_stdin(verb: &str, manifest: &str) -> Output {
    kubectl_with_stdin(&[verb, "-f", "-"], manifest)
}

/// `kubectl ARGS` in the node's namespaces, `stdin` on its standard input.
fn kubectl_with_stdin(args: &[&str], stdin: &str) -> Output {
    Command::new(repo_path("hack/node/node.sh"))
        .args(["exec", "kubectl"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(stdin.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

#[track_caller]
fn apply(manifest: &str) {
    let out = kubectl_stdin("apply", manifest);
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

/// Creates the probe pod and waits until it is Ready.
fn start_probe_pod() {
    apply(PROBE_POD);
    in_node(&["kubectl", "wait", "--for=condition=Ready", "pod/probe", "--timeout=120s"]);
}

#[test]
fn a_pod_runs_on_the_real_node_and_reaches_the_api_server_through_its_service() {
    let machine = Machine::record();
    let node = Node::up();
    let version = control_plane_version();

    // The kubelet registered a Ready Node, of the control plane's release, on containerd 2.
    let node_object = kubectl_json(&["get", "node", NODE_NAME]);
    assert_eq!(condition(&node_object, "Ready"), "True", "{node_object:#}");
    let info = &node_object["status"]["nodeInfo"];
    assert_eq!(info["kubeletVersion"], version.as_str(), "{info:#}");
    assert!(info["containerRuntimeVersion"].as_str().is_some_and(|v| v.starts_with("containerd://2.")), "{info:#}");

    // In its mount namespace the kubelet reads the values it wants (it would refuse to start
    // otherwise: protectKernelDefaults); the machine keeps its own.
    let wanted = Command::new(repo_path("_out/node/bin/kubelet-tunables")).output().expect("kubelet-tunables");
    for line in String::from_utf8_lossy(&wanted.stdout).lines() {
        let (key, value) = line.split_once(' ').expect("'path value'");
        let seen = in_node(&["cat", &format!("/proc/sys/{key}")]);
        assert_eq!(seen.trim(), value, "{key} as the kubelet reads it");
    }
    machine.assert_unchanged();

    // A pod from a locally made image: scheduled on the node, Running with an address of the pod
    // range, as the image's non-root user.
    start_probe_pod();
    let pod = kubectl_json(&["get", "pod", "probe"]);
    assert_eq!(pod["spec"]["nodeName"], NODE_NAME, "{pod:#}");
    assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
    let pod_ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_string();
    assert!(in_subnet(&pod_ip, &pod_subnet()), "pod IP {pod_ip} outside the pod range {}", pod_subnet());

    // The probe's process, as the kernel sees it: the image's user, no capabilities, and the
    // RuntimeDefault seccomp filter in force (runc is built with libseccomp).
    let processes = pod_processes();
    let statuses: Vec<[Option<String>; 3]> =
        processes.iter().map(|pid| ["Uid:", "CapEff:", "Seccomp:"].map(|field| proc_status(*pid, field))).collect();
    let confined = |[uid, caps, seccomp]: &[Option<String>; 3]| {
        uid.as_deref().is_some_and(|uid| uid.split_whitespace().all(|u| u == "65535"))
            && caps.as_deref() == Some("0000000000000000")
            && seccomp.as_deref() == Some("2")
    };
    assert!(
        statuses.iter().any(confined),
        "no process of the pod's cgroups runs as 65535 without capabilities under a seccomp filter: \
         pids {processes:?}, [uid, capabilities, seccomp mode] {statuses:?}"
    );

    // The pod called the API server as in-cluster clients do: through the `kubernetes` Service's
    // address (translated by kube-proxy's nftables rules), with its projected token.
    let service = kubectl_json(&["get", "service", "kubernetes", "-n", "default"]);
    let service_address = format!("{}:443", service["spec"]["clusterIP"].as_str().expect("clusterIP"));
    let wanted_line = format!("probe: ok {service_address} 200 ");
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = in_node(&["kubectl", "logs", "probe"]);
        if log.lines().any(|l| l.starts_with(&wanted_line)) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let line = log.lines().find(|l| l.starts_with(&wanted_line));
    assert!(
        line.is_some_and(|l| l.contains(&format!(r#""gitVersion":"{version}""#))),
        "the pod did not reach the API server at {service_address}: {log}"
    );
    let tables = in_node(&["nft", "list", "tables"]);
    assert!(tables.contains("table ip kube-proxy"), "kube-proxy's nftables table: {tables}");

    // The node's own processes (the API server calling a webhook Service among them) reach a
    // ClusterIP the same way, and the API server's certificate covers the Service address (curl
    // checks it against the node's CA).
    let ca = node_dir().join("pki/ca.crt");
    let version_json =
        in_node(&["curl", "-fsS", "--cacert", &ca.to_string_lossy(), &format!("https://{service_address}/version")]);
    assert!(version_json.contains(&format!(r#""gitVersion": "{version}""#)), "{version_json}");
    machine.assert_unchanged();

    drop(node);
    machine.assert_restored();
}

/// A run that ended without its teardown (a killed test, a crashed runner) leaves a whole node
/// running, containers included; the next `up` starts from a clean machine all the same, and its
/// teardown leaves nothing of either.
#[test]
fn a_node_left_running_is_replaced_by_the_next_run_and_leaves_nothing() {
    let machine = Machine::record();

    let first = Node::up();
    start_probe_pod();
    let first_uid = kubectl_json(&["get", "pod", "probe"])["metadata"]["uid"].clone();
    // A pid with its start time, so that a pid reused since does not count as the same process.
    let first_containers: Vec<(u32, Option<String>)> =
        pod_processes().into_iter().map(|pid| (pid, start_time(pid))).collect();
    assert!(!first_containers.is_empty(), "the probe pod has no process in the node's cgroups");
    // Forget the node as a killed run would: no teardown.
    std::mem::forget(first);

    let second = Node::up();
    for (pid, started) in &first_containers {
        assert!(start_time(*pid) != *started, "process {pid} of the first node survived");
    }
    let pods = kubectl_json(&["get", "pods", "-A"]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "the second node starts empty: {pods:#}");
    start_probe_pod();
    let second_uid = kubectl_json(&["get", "pod", "probe"])["metadata"]["uid"].clone();
    assert_ne!(first_uid, second_uid, "the second node's pod is a new one");

    drop(second);
    machine.assert_restored();
}

/// The webhook-double's objects: its pod (the locally made image, the serving certificate from
/// a Secret volume), the Service in front of it, and a ValidatingWebhookConfiguration with
/// `clientConfig.service`, as the shipped manifests have, for ConfigMaps labelled
/// `naw-node-e2e: deny`.
fn webhook_double_objects(ca_bundle: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "webhook-double", "namespace": "default", "labels": {"app": "webhook-double"}},
         "spec": {
            "containers": [{
                "name": "webhook-double", "image": "naw.local/webhook-double:1", "imagePullPolicy": "Never",
                "ports": [{"containerPort": 8443}],
                "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}]
            }],
            "volumes": [{"name": "tls", "secret": {"secretName": "webhook-double-tls"}}]
         }},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "webhook-double", "namespace": "default"},
         "spec": {"selector": {"app": "webhook-double"}, "ports": [{"port": 443, "targetPort": 8443}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "webhook-double"},
         "webhooks": [{
            "name": "webhook-double.naw-node.e2e",
            "clientConfig": {
                "service": {"namespace": "default", "name": "webhook-double", "path": "/validate", "port": 443},
                "caBundle": ca_bundle
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
            "objectSelector": {"matchLabels": {"naw-node-e2e": "deny"}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5
         }]}
    ]})
    .to_string()
}

/// A CA and a serving certificate for `name`, made with openssl in `dir`: (ca.crt, tls.crt, tls.key).
fn issue_serving_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ca_args = "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=webhook-double-ca -keyout ca.key -out ca.crt";
    openssl(&ca_args.split(' ').collect::<Vec<_>>());
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ]);
    std::fs::write(dir.join("tls.ext"), format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"))
        .expect("tls.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "tls.ext",
        "-out",
        "tls.crt",
    ]);
    (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"))
}

/// The path the shipped webhook configurations rely on: the API server (in the node's network
/// namespace) calls a webhook pod through its Service's ClusterIP, which kube-proxy translates to
/// the pod, over TLS with the certificate the kubelet mounted from a Secret.
#[test]
fn the_api_server_calls_a_webhook_pod_through_its_service() {
    let machine = Machine::record();
    let node = Node::up();

    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = issue_serving_cert(dir.path(), "webhook-double.default.svc");
    in_node(&[
        "kubectl",
        "create",
        "secret",
        "tls",
        "webhook-double-tls",
        "-n",
        "default",
        &format!("--cert={}", cert.display()),
        &format!("--key={}", key.display()),
    ]);
    let ca_bundle = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&ca).expect("ca.crt"))
    };
    apply(&webhook_double_objects(&ca_bundle));
    in_node(&["kubectl", "wait", "--for=condition=Ready", "pod/webhook-double", "--timeout=120s"]);

    // kube-proxy programs the Service once its EndpointSlice lists the ready pod: until then the
    // call fails (failurePolicy Fail) with another message, so retry for a while.
    let denied = |name: &str| {
        kubectl_stdin(
            "create",
            &serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default", "labels": {"naw-node-e2e": "deny"}},
                "data": {"k": "v"}})
            .to_string(),
        )
    };
    let wanted = "denied by webhook-double pod webhook-double";
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = denied("must-be-denied");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains(wanted) || out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(wanted), "the API server did not reach the webhook pod: {stderr}");
    // The API server dialled the Service's address: without --enable-aggregator-routing its
    // admission webhooks resolve a service reference to the ClusterIP (k8s.io/kubernetes v1.37.2
    // cmd/kube-apiserver/app/server.go:235,303-312; pkg/controlplane/apiserver/config.go:382).
    let service = kubectl_json(&["get", "service", "webhook-double", "-n", "default"]);
    assert!(service["spec"]["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty() && ip != "None"), "{service:#}");
    // A ConfigMap the webhook does not select is created as usual.
    let allowed = kubectl_stdin(
        "create",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-selected", "namespace": "default"}}"#,
    );
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));

    drop(node);
    machine.assert_restored();
}

/// `to` as a path relative to the directory `from` (kustomize refuses absolute resource paths).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    std::iter::repeat_n(std::path::Component::ParentDir, from.len() - common)
        .chain(to[common..].iter().copied())
        .collect()
}

/// `cmd`'s output; a panic with its stderr when it fails.
#[track_caller]
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The webhook's image as `make image` assembles it (hack/image/build.sh, from the debug binary
/// stripped as the Dockerfile's release build strips its own), named `image`, made in `work`
/// (emptied first): the OCI archive for `node.sh import`.
fn webhook_image(work: &Path, image: &str) -> PathBuf {
    if work.exists() {
        std::fs::remove_dir_all(work).expect("remove the last run's files");
    }
    std::fs::create_dir_all(work).expect("mkdir");
    let binary = work.join("node-agent-webhook");
    run(Command::new("strip").arg("--strip-all").arg("-o").arg(&binary).arg(env!("CARGO_BIN_EXE_node-agent-webhook")));
    let built = run(Command::new("bash")
        .arg(repo_path("hack/image/build.sh"))
        .env("BINARY", &binary)
        .env("OUT_DIR", work.join("image"))
        .env("IMG", image)
        .env("VALIDATE", "0"));
    repo_path(String::from_utf8_lossy(&built.stdout).lines().next().expect("the archive's path").trim())
}

/// Waits for the Deployment `name` in `namespace` to roll out, and asserts that each of its
/// replicas is Ready on the node running `image`. The Deployment and its pods.
#[track_caller]
fn assert_rolled_out(namespace: &str, name: &str, image: &str) -> (Value, Vec<Value>) {
    in_node(&["kubectl", "-n", namespace, "rollout", "status", &format!("deployment/{name}"), "--timeout=120s"]);
    let deployment = kubectl_json(&["-n", namespace, "get", "deployment", name]);
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    let pods = kubectl_json(&["-n", namespace, "get", "pods", "-l", &selector(&deployment)]);
    let pods = pods["items"].as_array().expect("items").clone();
    assert_eq!(pods.len() as u64, replicas, "{pods:#?}");
    let nodes: Vec<Value> = kubectl_json(&["get", "nodes"])["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["metadata"]["name"].clone())
        .collect();
    let mut placed: Vec<&Value> = pods.iter().map(|p| &p["spec"]["nodeName"]).collect();
    for pod in &pods {
        assert_eq!(condition(pod, "Ready"), "True", "{pod:#}");
        assert!(nodes.contains(&pod["spec"]["nodeName"]), "{pod:#}");
        assert_eq!(pod["spec"]["containers"][0]["image"], image);
    }
    // With a node for each replica, the shipped topologySpreadConstraints put each on its own.
    placed.sort_by_key(|n| n.to_string());
    placed.dedup();
    assert_eq!(placed.len(), pods.len().min(nodes.len()), "replicas on nodes {placed:?} of {nodes:?}");
    (deployment, pods)
}

/// A Deployment's or DaemonSet's `matchLabels` as a label selector, "k=v,k=v".
fn selector(workload: &Value) -> String {
    workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The webhook servers' processes on the node (one per replica of `deployment`); each, as the
/// kernel sees it, runs as the Deployment's user with no capabilities, no new privileges, the
/// RuntimeDefault seccomp filter and a read-only root.
#[track_caller]
fn assert_servers_confined(deployment: &Value) -> Vec<u32> {
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    let user = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_u64().expect("runAsUser");
    let servers: Vec<u32> = pod_processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("node-agent-webhook"))
        })
        .collect();
    assert_eq!(servers.len() as u64, replicas, "the servers' processes: {servers:?}");
    for pid in &servers {
        let status: Vec<Option<String>> =
            ["Uid:", "CapEff:", "NoNewPrivs:", "Seccomp:"].iter().map(|f| proc_status(*pid, f)).collect();
        let uid = status[0].as_deref().unwrap_or_default();
        assert!(uid.split_whitespace().all(|u| u == user.to_string()), "uid {uid} of {pid}, want {user}");
        assert_eq!(status[1..], [Some("0000000000000000".into()), Some("1".into()), Some("2".into())], "{pid}");
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
        let root = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/")).expect("a root mount");
        let options = root.split(' ').nth(5).unwrap_or_default();
        assert!(options.split(',').any(|o| o == "ro"), "root of {pid} mounted {options}");
    }
    servers
}

/// The API server calls the pods through the Service: an invalid node-agent ConfigMap is denied
/// by one of the webhooks of the ValidatingWebhookConfiguration `configuration`.
#[track_caller]
fn assert_invalid_configmap_denied(configuration: &str) {
    let configuration = kubectl_json(&["get", "validatingwebhookconfiguration", configuration]);
    let names: Vec<&str> =
        configuration["webhooks"].as_array().expect("webhooks").iter().filter_map(|w| w["name"].as_str()).collect();
    let invalid = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "node-agent-config", "namespace": "velero"},
        "data": {"config.json": r#"{"loadConcurrency": {"globalConfig": "x"}}"#}});
    let out = kubectl_stdin("create", &invalid.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && names.iter().any(|n| stderr.contains(&format!(r#"admission webhook "{n}" denied the request"#))),
        "the invalid ConfigMap was not denied by {names:?}: {stderr}"
    );
}

/// The image of the shipped Deployment, as `make image` names it here.
const SHIPPED_IMAGE: &str = "naw.local/node-agent-webhook:e2e";

/// Installs the shipped Deployment on `nodes` nodes it brings up, as users do: the image `make image`
/// assembles imported into the node, the certificates of `make certs` (in the repository's
/// `certs/`), and `kubectl apply -k manifests/overlays/self-signed` through an overlay that only
/// names the image. Returns once both replicas are Ready: the node and the Deployment.
fn install_the_shipped_deployment(nodes: u32) -> (Node, Value) {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-node");
    let archive = webhook_image(&work, SHIPPED_IMAGE);
    run(Command::new("bash").arg("certs/generate.sh").current_dir(repo_path("")).env("OUT_DIR", "certs"));
    let (name, tag) = SHIPPED_IMAGE.rsplit_once(':').expect("name:tag");
    std::fs::create_dir_all(work.join("overlay")).expect("mkdir");
    std::fs::write(
        work.join("overlay/kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [{}]\n\
             images: [{{name: node-agent-webhook, newName: {name}, newTag: {tag}}}]\n",
            relative(&work.join("overlay"), &repo_path("manifests/overlays/self-signed")).display()
        ),
    )
    .expect("overlay");

    let node = Node::up_nodes(nodes);
    run(Command::new(repo_path("hack/node/node.sh")).arg("import").arg(&archive));
    in_node(&["kubectl", "create", "namespace", "velero"]);
    in_node(&["kubectl", "apply", "-k", &work.join("overlay").to_string_lossy()]);
    let (deployment, _) = assert_rolled_out("velero", "node-agent-webhook", SHIPPED_IMAGE);
    (node, deployment)
}

/// The shipped Deployment on the node (install_the_shipped_deployment). Both replicas become Ready through the shipped probes, run as the Deployment says, and the API
/// server calls them through the Service.
#[test]
fn the_shipped_deployment_runs_on_the_node_and_reviews_through_its_service() {
    let machine = Machine::record();
    let (node, deployment) = install_the_shipped_deployment(1);
    assert_servers_confined(&deployment);
    assert_invalid_configmap_denied("node-agent-webhook.velero");

    drop(node);
    machine.assert_restored();
}
