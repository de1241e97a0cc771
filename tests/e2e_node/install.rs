//! The chart installed as users do (`helm install` with only the image named, the chart's own
//! generated certificates), on the node; and the live config, which the installed servers read
//! from the ConfigMap watch with the ServiceAccount tokens the kubelet projects into their pods.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    apply, assert_invalid_configmap_denied, assert_rolled_out, assert_servers_confined, in_node, kubectl_json,
    kubectl_with_stdin, repo_path, run, webhook_image, Machine, Node,
};

const IMAGE: &str = "naw.local/node-agent-webhook:helm";
const RELEASE: &str = "node-agent-webhook";
const NS: &str = "velero";
/// Where the servers' in-cluster client reads its credentials (kube-client's in-cluster config).
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `helm install` of charts/node-agent-webhook into the running node's namespace `velero`, with
/// only the image named (the chart's default certificate mode, `generate`), from the helm that
/// hack/helm/build.sh makes. The image is built and imported first. Returns the Deployment and
/// its pods once rolled out.
fn helm_install(work: &Path) -> (Value, Vec<Value>) {
    let archive = webhook_image(&work.join("image"), IMAGE);
    let built = run(Command::new("bash").arg(repo_path("hack/helm/build.sh")));
    let helm = PathBuf::from(String::from_utf8_lossy(&built.stdout).lines().last().expect("helm's path").trim());
    run(Command::new(repo_path("hack/node/node.sh")).arg("import").arg(&archive));
    in_node(&["kubectl", "create", "namespace", NS]);
    let (repository, tag) = IMAGE.rsplit_once(':').expect("name:tag");
    // helm keeps its caches and config under the run's directory, not the user's home.
    let home = work.join("helm-home");
    run(Command::new(repo_path("hack/node/node.sh"))
        .arg("exec")
        .arg(&helm)
        .args(["install", RELEASE])
        .arg(repo_path("charts/node-agent-webhook"))
        .args(["--namespace", NS, "--set", &format!("image.repository={repository}"), "--set"])
        .arg(format!("image.tag={tag}"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data")));
    assert_rolled_out(NS, RELEASE, IMAGE)
}

/// The chart with only the image named: both replicas Ready through the chart's probes, each
/// server confined as the chart's securityContext says (65532, read-only root, no capabilities,
/// seccomp), its certificate the chart generated (its CA every webhook's caBundle), and an invalid
/// ConfigMap denied by the API server calling the pods through the chart's Service.
#[test]
fn helm_install_runs_on_the_node_and_reviews_through_its_service() {
    let machine = Machine::record();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-node-helm");
    let node = Node::up();
    let (deployment, pods) = helm_install(&work);
    for pod in &pods {
        let probes = &pod["spec"]["containers"][0];
        assert!(probes["readinessProbe"].is_object() && probes["livenessProbe"].is_object(), "{probes:#}");
    }
    let user = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_u64();
    assert_eq!(user, Some(65532), "the chart's runAsUser");
    assert_servers_confined(&deployment);

    let secret = kubectl_json(&["-n", NS, "get", "secret", &format!("{RELEASE}-tls")]);
    let ca = secret["data"]["ca.crt"].as_str().expect("the generated Secret's ca.crt");
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        let configuration = kubectl_json(&["get", kind, &format!("{RELEASE}.{NS}")]);
        for webhook in configuration["webhooks"].as_array().expect("webhooks") {
            assert_eq!(webhook["clientConfig"]["caBundle"], ca, "{kind} {}", webhook["name"]);
            assert_eq!(webhook["clientConfig"]["service"]["name"], RELEASE, "{kind} {}", webhook["name"]);
        }
    }
    assert_invalid_configmap_denied(&format!("{RELEASE}.{NS}"));

    drop(node);
    machine.assert_restored();
}

/// node-agent's ConfigMap holding `config` (its one key, as node-agent reads it).
pub(crate) fn node_agent_config(config: &Value) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "node-agent-config", "namespace": NS},
        "data": {"node-agent-config.json": config.to_string()}})
    .to_string()
}

/// What node-agent's ServiceAccount needs to create data-mover pods (`velero install` gives it
/// cluster-admin; pods in the Velero namespace are all this test creates).
const NODE_AGENT_ACCOUNT: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "velero", "namespace": "velero"}},
  {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
   "metadata": {"name": "data-mover-pods", "namespace": "velero"},
   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get"]}]},
  {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
   "metadata": {"name": "data-mover-pods", "namespace": "velero"},
   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "data-mover-pods"},
   "subjects": [{"kind": "ServiceAccount", "name": "velero", "namespace": "velero"}]}
]}"#;

/// Creates a DataUpload pod (testdata/pods/v1.18, renamed `name`) as node-agent's ServiceAccount
/// would, and returns the pod as the API server stored it.
fn create_data_mover_pod(name: &str) -> Value {
    let fixture = std::fs::read_to_string(repo_path("testdata/pods/v1.18/pod-dataupload.json")).expect("fixture");
    let original: Value = serde_json::from_str(&fixture).expect("fixture is JSON");
    let original = original["metadata"]["name"].as_str().expect("fixture name");
    let manifest = fixture.replace(original, name);
    let out =
        kubectl_with_stdin(&["create", "--as=system:serviceaccount:velero:velero", "-o", "json", "-f", "-"], &manifest);
    assert!(out.status.success(), "pod {name} not created: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the stored pod is JSON")
}

/// Creates data-mover pods until one is stored with `team`; that pod.
fn next_pod_with_team(team: &str, created: &mut u32) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        *created += 1;
        let pod = create_data_mover_pod(&format!("live-config-{created}"));
        if pod["metadata"]["labels"]["team"] == team || Instant::now() > deadline {
            return pod;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Each replica's UID and restart count.
fn replicas_identity(pods: &[Value]) -> Vec<(Value, Value)> {
    let mut ids: Vec<(Value, Value)> = pods
        .iter()
        .map(|p| (p["metadata"]["uid"].clone(), p["status"]["containerStatuses"][0]["restartCount"].clone()))
        .collect();
    ids.sort_by_key(|(uid, _)| uid.to_string());
    ids
}

/// The live config: the helm-installed servers watch node-agent's ConfigMap with their pods' own
/// projected ServiceAccount tokens (the only credentials in their containers), and a data-mover
/// pod created as node-agent is stored with the ConfigMap's settings; an edit reaches the next pod
/// with no restart of the servers.
#[test]
fn the_installed_servers_apply_the_live_configmap_with_their_projected_tokens() {
    let machine = Machine::record();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-node-live-config");
    let node = Node::up();
    let (deployment, pods) = helm_install(&work);
    let before = replicas_identity(&pods);
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str().expect("serviceAccountName");

    // Each server's credentials: the projected volume the API server's ServiceAccount admission
    // added (a bound serviceAccountToken source), mounted by the kubelet where kube-client's
    // in-cluster config reads it; the token the kubelet wrote there is, per the API server's own
    // TokenReview, the chart's ServiceAccount bound to that very pod.
    let servers = assert_servers_confined(&deployment);
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().expect("pod name");
        let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
        let projected = volumes
            .iter()
            .find(|v| {
                v["projected"]["sources"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["serviceAccountToken"]["path"] == "token"))
            })
            .unwrap_or_else(|| panic!("{name} has no projected ServiceAccount token: {volumes:#?}"));
        let mounted = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == projected["name"] && m["mountPath"] == TOKEN_DIR));
        assert!(mounted, "{name} does not mount {} at {TOKEN_DIR}", projected["name"]);
    }
    let mut reviewed = Vec::new();
    for pid in &servers {
        let user = token_review(*pid);
        assert_eq!(user["username"], format!("system:serviceaccount:{NS}:{account}"), "server {pid}: {user:#}");
        reviewed
            .push(user["extra"]["authentication.kubernetes.io/pod-name"][0].as_str().unwrap_or_default().to_string());
    }
    let mut names: Vec<String> =
        pods.iter().filter_map(|p| p["metadata"]["name"].as_str()).map(str::to_string).collect();
    reviewed.sort();
    names.sort();
    assert_eq!(reviewed, names, "each server's token is bound to its own pod");

    // node-agent's ConfigMap, then a data-mover pod created as node-agent (its ServiceAccount,
    // which the shipped matchConditions select): stored with the ConfigMap's settings.
    apply(NODE_AGENT_ACCOUNT);
    let mut created = 0;
    let first = serde_json::json!({"podLabels": {"team": "first"},
        "podResources": {"cpuRequest": "100m", "cpuLimit": "1", "memoryRequest": "64Mi", "memoryLimit": "128Mi"}});
    apply(&node_agent_config(&first));
    let pod = next_pod_with_team("first", &mut created);
    assert_eq!(pod["metadata"]["labels"]["team"], "first", "{pod:#}");
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"], serde_json::json!({"cpu": "100m", "memory": "64Mi"}), "{pod:#}");
    assert_eq!(resources["limits"], serde_json::json!({"cpu": "1", "memory": "128Mi"}), "{pod:#}");

    // An edit reaches the next pod.
    let edited = serde_json::json!({"podLabels": {"team": "edited"},
        "podResources": {"cpuRequest": "200m", "cpuLimit": "2", "memoryRequest": "96Mi", "memoryLimit": "256Mi"}});
    let since = Instant::now();
    apply(&node_agent_config(&edited));
    let pod = next_pod_with_team("edited", &mut created);
    eprintln!("edit -> first pod with the new setting: {:?} ({created} pods created in all)", since.elapsed());
    assert_eq!(pod["metadata"]["labels"]["team"], "edited", "{pod:#}");
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"], serde_json::json!({"cpu": "200m", "memory": "96Mi"}), "{pod:#}");
    assert_eq!(resources["limits"], serde_json::json!({"cpu": "2", "memory": "256Mi"}), "{pod:#}");

    // With no restart: the same pods, no container restarted.
    let (_, after) = assert_rolled_out(NS, RELEASE, IMAGE);
    assert_eq!(replicas_identity(&after), before, "the servers were restarted");

    drop(node);
    machine.assert_restored();
}

/// The Velero release whose node-agent runs on the node (hack/velero/build.sh's default).
const VELERO_VERSION: &str = "v1.18.3";

/// Velero's image for the node: the binary hack/velero/build.sh makes, assembled by
/// hack/image/oci.py from hack/node/velero.Dockerfile as `make image` assembles ours; the archive.
fn velero_image(work: &Path, image: &str) -> PathBuf {
    let built = run(Command::new(repo_path("hack/velero/build.sh")).arg(VELERO_VERSION));
    let velero = String::from_utf8_lossy(&built.stdout).lines().last().expect("velero's path").trim().to_string();
    std::fs::create_dir_all(work).expect("mkdir");
    let archive = work.join("velero.oci.tar");
    run(Command::new("python3")
        .arg(repo_path("hack/image/oci.py"))
        .arg("--dockerfile")
        .arg(repo_path("hack/node/velero.Dockerfile"))
        .arg("--binary")
        .arg(&velero)
        .arg("--out")
        .arg(&archive)
        .args(["--name", image, "--source-date-epoch", "0"]));
    archive
}

/// Velero's node-agent installed on the running node as users do: its image (velero_image)
/// imported, Velero's CRDs (from its Go module), then what the real `velero install --dry-run -o
/// json --use-node-agent …` prints with `flags` added, less the CRDs and the server Deployment
/// (not under test), applied. Returns the DaemonSet once rolled out and node-agent has started
/// its DataDownload controller (it lists and watches through the API server with its token).
pub(crate) fn install_node_agent(work: &Path, flags: &[&str]) -> Value {
    let image = format!("naw.local/velero:{VELERO_VERSION}");
    if work.exists() {
        std::fs::remove_dir_all(work).expect("remove the last run's files");
    }
    let archive = velero_image(work, &image);
    run(Command::new(repo_path("hack/node/node.sh")).arg("import").arg(&archive));

    let crds = run(Command::new(repo_path("hack/velero/build.sh")).args(["crds", VELERO_VERSION]));
    for dir in String::from_utf8_lossy(&crds.stdout).split_whitespace() {
        in_node(&["kubectl", "apply", "--server-side", "-f", dir]);
    }
    std::fs::write(work.join("credentials"), "[default]\naws_access_key_id = e2e\naws_secret_access_key = e2e\n")
        .expect("credentials");
    let rendered = Command::new(repo_path("hack/node/node.sh"))
        .arg("exec")
        .arg(repo_path(&format!("_out/velero/{VELERO_VERSION}/bin/velero")))
        .args(["install", "--dry-run", "-o", "json", "--use-node-agent", "--use-volume-snapshots=false"])
        .args(["--no-default-backup-location", "--namespace", NS, "--image", &image])
        .args(flags)
        .arg("--secret-file")
        .arg(work.join("credentials"))
        // A user's ~/.config/velero/config.json must not change the namespace or features.
        .env("HOME", work)
        .output()
        .expect("velero install");
    assert!(rendered.status.success(), "velero install: {}", String::from_utf8_lossy(&rendered.stderr));
    let mut install: Value = serde_json::from_slice(&rendered.stdout).expect("velero install -o json");
    let items = install["items"].as_array_mut().expect("items");
    items.retain(|o| o["kind"] != "CustomResourceDefinition" && o["kind"] != "Deployment");
    let daemonset = items.iter().find(|o| o["kind"] == "DaemonSet").expect("the DaemonSet").clone();
    apply(&install.to_string());

    let name = daemonset["metadata"]["name"].as_str().expect("DaemonSet name");
    in_node(&["kubectl", "-n", NS, "rollout", "status", &format!("daemonset/{name}"), "--timeout=120s"]);
    let started =
        |log: &str| log.lines().any(|l| l.contains("Starting workers") && l.contains("controller=datadownload"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = in_node(&["kubectl", "-n", NS, "logs", &format!("daemonset/{name}")]);
        if started(&log) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(started(&log), "node-agent did not start its DataDownload controller: {log}");
    daemonset
}

/// The processes in the node's pod cgroups that run `/velero COMMAND SUBCOMMAND`.
pub(crate) fn velero_processes(command: [&str; 2]) -> Vec<u32> {
    crate::pod_processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).split('\0').take(3).eq(["/velero", command[0], command[1]]))
        })
        .collect()
}

/// Item 5's first step: Velero's real node-agent (`velero node-agent server`) as the DaemonSet
/// `velero install --use-node-agent` renders, from an image assembled here, runs on the node:
/// its `/var/lib/kubelet/pods` volume (HostToContainer) mounted, its controllers started with the
/// ServiceAccount token the kubelet projected into its pod, and no restart.
#[test]
fn velero_install_runs_node_agent_as_a_daemonset_pod_with_its_projected_token() {
    let machine = Machine::record();
    let node = Node::up();
    let daemonset = install_node_agent(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-node-velero"), &[]);
    let pods = kubectl_json(&["-n", NS, "get", "pods", "-l", &crate::selector(&daemonset)]);
    let pods = pods["items"].as_array().expect("items");
    assert_eq!(pods.len(), 1, "one node-agent pod on the one node: {pods:#?}");
    let pod = &pods[0];
    let pod_name = pod["metadata"]["name"].as_str().expect("pod name");
    assert_eq!(pod["spec"]["nodeName"], crate::NODE_NAME);
    assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{pod:#}");
    let account = daemonset["spec"]["template"]["spec"]["serviceAccountName"].as_str().expect("serviceAccountName");

    // Its process on the node: the token at the mount the kubelet made is node-agent's
    // ServiceAccount's, bound to this pod.
    let agents = velero_processes(["node-agent", "server"]);
    assert_eq!(agents.len(), 1, "node-agent's process: {agents:?}");
    let user = token_review(agents[0]);
    assert_eq!(user["username"], format!("system:serviceaccount:{NS}:{account}"), "{user:#}");
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-name"][0], pod_name, "{user:#}");

    drop(node);
    machine.assert_restored();
}

/// The user the API server authenticates (TokenReview) for the ServiceAccount token process `pid`
/// has at `TOKEN_DIR`, read through `/proc/PID/root` at the mount point its mountinfo shows (as the
/// kernel resolved it: an image may make /var/run a link to /run). Asserts it is authenticated.
#[track_caller]
fn token_review(pid: u32) -> Value {
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let suffix = TOKEN_DIR.trim_start_matches("/var/run");
    let mount_point = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|m| m.ends_with(suffix))
        .unwrap_or_else(|| panic!("no mount at {TOKEN_DIR} in process {pid}"));
    let token = std::fs::read_to_string(format!("/proc/{pid}/root{mount_point}/token"))
        .unwrap_or_else(|e| panic!("process {pid}'s token: {e}"));
    let review = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token.trim()}});
    let out = kubectl_with_stdin(&["create", "-o", "json", "-f", "-"], &review.to_string());
    assert!(out.status.success(), "TokenReview: {}", String::from_utf8_lossy(&out.stderr));
    let review: Value = serde_json::from_slice(&out.stdout).expect("TokenReview is JSON");
    assert_eq!(review["status"]["authenticated"], true, "process {pid}'s token: {review:#}");
    review["status"]["user"].clone()
}
