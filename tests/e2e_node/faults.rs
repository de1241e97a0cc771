//! The failures a webhook in a cluster must survive (issue 23, item 4), each on the shipped
//! Deployment (2 replicas, `maxSurge: 1` / `maxUnavailable: 0`, the PodDisruptionBudget, the
//! shutdown delay) under one steady load: data-mover pod creates as node-agent's ServiceAccount
//! (`velero`, which the mutating webhook's matchConditions select) and `kubectl apply` of valid
//! node-agent ConfigMaps (the validating webhook, `failurePolicy: Fail`). Counted from the
//! clients' results and from the API server's own metrics.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::SystemTime;

use super::*;

const NS: &str = "velero";
const SELECTOR: &str = "app.kubernetes.io/name=node-agent-webhook";
const CONFIGURATION: &str = "node-agent-webhook.velero";
/// The label the load's node-agent ConfigMaps have the mutating webhook put on every pod.
const LOAD_LABEL: &str = "naw-e2e-load";
/// Requests that must start while a fault lasts for the fault to count as tested under load.
const MIN_STARTED: usize = 50;
/// The API server's webhook families the tests read (k8s.io/apiserver v0.37.2
/// pkg/admission/metrics/metrics.go).
const APISERVER_FAMILIES: [&str; 3] = [
    "apiserver_admission_webhook_rejection_count",
    "apiserver_admission_webhook_fail_open_count",
    "apiserver_admission_webhook_request_total",
];

/// The load, run in the node's namespaces: `once` creates one pod and prints its HTTP code and
/// whether our webhook mutated it; `run` loops two pod creators and one ConfigMap writer until
/// `$dir/stop` exists, appending `pod START END CODE MUTATED` and `cm START END EXIT` (ms since
/// the epoch) to `$dir/results`. Pods are created with `dryRun=All`: admission (our webhook
/// included) runs exactly as for a stored pod, and no pod piles up for the scheduler and the
/// kubelet on this two-core machine.
const LOAD_SH: &str = r#"
set -u
mode=$1 dir=$2 api=$3 ca=$4 label=$5
now() { date +%s%3N; }
create_pod() { # OUT: prints "CODE MUTATED"
  local code
  code=$(curl -sS -m 30 -o "$1" -w '%{http_code}' --cacert "$ca" \
    -H "Authorization: Bearer $(cat "$dir/token")" -H 'Content-Type: application/json' \
    --data-binary @"$dir/pod.json" "$api/api/v1/namespaces/velero/pods?dryRun=All" 2>>"$dir/pod.err")
  if grep -Eq "\"$label\": ?\"" "$1"; then echo "$code 1"; else echo "$code 0"; fi
}
pods() {
  while [ ! -e "$dir/stop" ]; do
    s=$(now); r=$(create_pod "$dir/pod-$1.out"); e=$(now)
    echo "pod $s $e $r" >>"$dir/results"
    case $r in 201\ 1) ;; *) { echo "pod $s: $r"; cat "$dir/pod-$1.out"; echo; } >>"$dir/pod.err" ;; esac
  done
}
configmaps() {
  i=0
  while [ ! -e "$dir/stop" ]; do
    i=$((i + 1)); s=$(now)
    kubectl apply -f "$dir/cm-$((i % 2)).json" >/dev/null 2>>"$dir/cm.err"; r=$?; e=$(now)
    echo "cm $s $e $r" >>"$dir/results"
    [ $r = 0 ] || echo "cm $s: exit $r" >>"$dir/cm.err"
  done
}
case $mode in
  once) create_pod "$dir/once.out" ;;
  run) pods 1 & pods 2 & configmaps & wait ;;
esac
"#;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One request of the load, as its client saw it.
#[derive(Debug, Clone, Copy)]
struct Request {
    pod: bool,
    start: u64,
    ok: bool,
    /// A pod created without our webhook's patch: the API server failed open.
    fail_open: bool,
}

fn parse_results(text: &str) -> Vec<Request> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let start = f.get(1)?.parse().ok()?;
            match f[0] {
                "pod" => Some(Request {
                    pod: true,
                    start,
                    ok: f.get(3) == Some(&"201"),
                    fail_open: f.get(3) == Some(&"201") && f.get(4) != Some(&"1"),
                }),
                "cm" => Some(Request { pod: false, start, ok: f.get(3) == Some(&"0"), fail_open: false }),
                _ => None,
            }
        })
        .collect()
}

/// The API server's admission webhook series of our two configurations, by their full name.
fn apiserver_webhook_series() -> BTreeMap<String, f64> {
    in_node(&["kubectl", "get", "--raw", "/metrics"])
        .lines()
        .filter(|l| APISERVER_FAMILIES.iter().any(|f| l.starts_with(&format!("{f}{{"))))
        .filter(|l| l.contains("node-agent-webhook.io\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

/// What changed between two readings of the series: the series that grew, by how much.
fn grown(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// The webhook's pods that are not terminating.
fn live_webhook_pods() -> Vec<Value> {
    let pods = kubectl_json(&["-n", NS, "get", "pods", "-l", SELECTOR]);
    let items = pods["items"].as_array().into_iter().flatten();
    items.filter(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned().collect()
}

/// The webhook's pods: (name, pod IP, Ready, the first container's ID and restart count).
fn webhook_pods() -> Vec<(String, String, bool, String, u64)> {
    live_webhook_pods()
        .iter()
        .map(|p| {
            let container = &p["status"]["containerStatuses"][0];
            (
                p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
                condition(p, "Ready") == "True",
                container["containerID"].as_str().unwrap_or_default().to_string(),
                container["restartCount"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until `what` holds, polling every 500 ms; panics after `timeout`.
#[track_caller]
fn wait_for(what: &str, timeout: Duration, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !holds() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until two Ready pods serve, none of them in `gone` (pods the fault replaced), and every
/// terminating one has left.
fn wait_for_two_ready_pods_besides(gone: &[String]) {
    wait_for("two Ready webhook pods, none of the replaced ones", Duration::from_secs(180), || {
        let all = kubectl_json(&["-n", NS, "get", "pods", "-l", SELECTOR]);
        let pods = webhook_pods();
        all["items"].as_array().map(Vec::len) == Some(2)
            && pods.iter().filter(|p| p.2 && !gone.contains(&p.0)).count() == 2
    });
}

/// The serial of the certificate `ip`:8443 presents (hex, upper case, no leading zeros), read
/// from the wire by openssl in the node's network namespace.
fn served_serial(ip: &str) -> String {
    let script = format!(
        "openssl s_client -connect {ip}:8443 -servername node-agent-webhook.velero.svc </dev/null 2>/dev/null \
         | openssl x509 -noout -serial"
    );
    let out = node_sh(&["exec", "bash", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("serial=").trim_start_matches('0').to_uppercase()
}

/// Waits until every webhook pod serves the certificate of `serial`.
fn wait_until_served(serial: &str) {
    wait_for(&format!("both pods to serve certificate {serial}"), Duration::from_secs(240), || {
        let pods = webhook_pods();
        pods.len() == 2 && pods.iter().all(|p| served_serial(&p.1) == serial)
    });
}

/// A serving certificate for the webhook's Service, signed by the CA `ca_pem`/`ca_key`, in
/// `dir` as `serving-NAME.{pem,key}`; returns its serial as served_serial writes it.
fn issue(dir: &Path, name: &str, ca_pem: &Path, ca_key: &Path) -> String {
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    let (key, csr, pem, ext) =
        (format!("serving-{name}.key"), format!("{name}.csr"), format!("serving-{name}.pem"), format!("{name}.ext"));
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
    openssl(&["req", "-new", "-key", &key, "-subj", "/CN=node-agent-webhook.velero.svc", "-out", &csr]);
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=DNS:node-agent-webhook.velero.svc,DNS:node-agent-webhook.velero.svc.cluster.local\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    let serial = run(Command::new("openssl").args(["rand", "-hex", "16"]));
    let serial = String::from_utf8_lossy(&serial.stdout).trim().to_uppercase();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem.to_string_lossy(),
        "-CAkey",
        &ca_key.to_string_lossy(),
        "-set_serial",
        &format!("0x{serial}"),
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &pem,
    ]);
    serial.trim_start_matches('0').to_string()
}

/// A new self-signed CA in `dir` as `NAME.pem`/`NAME.key`.
fn new_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (pem, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={name}"), "-addext", "basicConstraints=critical,CA:TRUE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem));
    (pem, key)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces the TLS Secret (as `kubectl apply` of a renewed Secret does): the kubelet updates the
/// mounted files atomically, the server reloads them.
fn replace_tls_secret(dir: &Path, name: &str, ca_pem: &[u8]) {
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
    "metadata": {"name": "node-agent-webhook-tls", "namespace": NS},
    "data": {
        "tls.crt": base64(&read(&dir.join(format!("serving-{name}.pem")))),
        "tls.key": base64(&read(&dir.join(format!("serving-{name}.key")))),
        "ca.crt": base64(ca_pem),
    }});
    apply(&secret.to_string());
}

/// Puts `bundle` (PEM, one CA or more) into every caBundle of our two webhook configurations.
fn set_ca_bundle(bundle: &[u8]) {
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        let count = kubectl_json(&["get", kind, CONFIGURATION])["webhooks"].as_array().map_or(0, Vec::len);
        let patch: Vec<Value> = (0..count)
            .map(|i| {
                serde_json::json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                    "value": base64(bundle)})
            })
            .collect();
        in_node(&["kubectl", "patch", kind, CONFIGURATION, "--type=json", "-p", &Value::from(patch).to_string()]);
    }
}

/// How long the API server takes to use a changed webhook configuration: its informer's event
/// (milliseconds here); the margin is for the shared machine.
const CONFIGURATION_PROPAGATION: Duration = Duration::from_secs(5);

/// The cluster a fault runs in, under load; what the fault may need of it.
struct Faulted {
    dir: tempfile::TempDir,
}

/// A node-agent ConfigMap that has our webhook label every data-mover pod with `value`.
fn node_agent_config(value: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "node-agent-config", "namespace": NS},
        "data": {"config.json": serde_json::json!({"podLabels": {LOAD_LABEL: value}}).to_string()}})
    .to_string()
}

fn load_command(mode: &str, dir: &Path) -> Command {
    let api = in_node(&["kubectl", "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let mut command = Command::new(repo_path("hack/node/node.sh"));
    command
        .args(["exec", "bash", "-c", LOAD_SH, "load", mode])
        .arg(dir)
        .arg(api)
        .arg(node_dir().join("pki/ca.crt"))
        .arg(LOAD_LABEL);
    command
}

/// The running load, in a process group of its own. A test that fails mid-fault unwinds without
/// reaching the stop file: dropping this ends the whole group, or its loops would outlive the
/// test (and keep the machine-wide lock a test run holds through inherited descriptors).
struct Load(Child);

impl Load {
    fn start(dir: &Path) -> Load {
        let child = load_command("run", dir).process_group(0).stdout(Stdio::null()).spawn().expect("start the load");
        Load(child)
    }

    /// Waits for the loops to see the stop file; panics if the script failed.
    fn finish(mut self) {
        let status = self.0.wait().expect("the load");
        assert!(status.success(), "the load script failed: {status}");
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let group = format!("-{}", self.0.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = self.0.wait();
        }
    }
}

/// What a fault did to the load: the report line, and the assertions every fault shares.
struct Outcome {
    name: &'static str,
    during: Vec<Request>,
    all: Vec<Request>,
    apiserver: BTreeMap<String, f64>,
    /// When the fault began (ms since the epoch), for the failures' offsets.
    from: u64,
    lasted: Duration,
    run: Duration,
    errors: String,
}

impl Outcome {
    fn report(&self) -> String {
        let count = |rs: &[Request], pred: &dyn Fn(&Request) -> bool| rs.iter().filter(|r| pred(r)).count();
        let sum = |family: &str| -> u64 {
            self.apiserver.iter().filter(|(k, _)| k.starts_with(family)).map(|(_, v)| *v as u64).sum()
        };
        format!(
            "fault {}: lasted {} ms; requests started during it {} ({} pod creates, {} ConfigMap writes), \
             failed {} (pods {}, ConfigMaps {}), fail-open pods {} (client) / {} (API server); whole load {} \
             requests ({} reviews counted by the API server), {} failed, {} fail-open; test run {} s; API server series that grew: {:?}",
            self.name,
            self.lasted.as_millis(),
            self.during.len(),
            count(&self.during, &|r| r.pod),
            count(&self.during, &|r| !r.pod),
            count(&self.during, &|r| !r.ok),
            count(&self.during, &|r| r.pod && !r.ok),
            count(&self.during, &|r| !r.pod && !r.ok),
            count(&self.during, &|r| r.fail_open),
            sum("apiserver_admission_webhook_fail_open_count"),
            self.all.len(),
            sum("apiserver_admission_webhook_request_total"),
            count(&self.all, &|r| !r.ok),
            count(&self.all, &|r| r.fail_open),
            self.run.as_secs(),
            self.apiserver,
        )
    }

    /// At least MIN_STARTED requests during the fault; no failed request and no fail-open pod in
    /// the whole load, by the clients' count and by the API server's.
    #[track_caller]
    fn assert_survived(&self) {
        let report = self.report();
        eprintln!("{report}");
        assert!(self.during.len() >= MIN_STARTED, "too few requests during the fault: {report}");
        let failed: Vec<String> = self
            .all
            .iter()
            .filter(|r| !r.ok || r.fail_open)
            .map(|r| format!("{r:?} at {} ms from the fault's start", r.start as i64 - self.from as i64))
            .collect();
        assert!(failed.is_empty(), "{report}\nfailed or fail-open: {failed:#?}\nclient errors:\n{}", self.errors);
        let bad: Vec<_> = self
            .apiserver
            .iter()
            .filter(|(k, _)| !k.starts_with("apiserver_admission_webhook_request_total") || !k.contains("code=\"200\""))
            .collect();
        assert!(bad.is_empty(), "the API server counted failures: {bad:?}\n{report}");
    }
}

/// Installs the shipped Deployment on `nodes` fresh nodes, starts the load, runs `fault` (which
/// returns once the cluster has recovered from it), stops the load and returns what happened; the
/// nodes are torn down and the machine checked as every node test does.
fn under_load(nodes: u32, name: &'static str, fault: impl FnOnce(&Faulted)) -> Outcome {
    let started = Instant::now();
    let machine = Machine::record();
    let (node, _) = install_the_shipped_deployment(nodes);
    let faulted = Faulted { dir: tempfile::tempdir().expect("temp dir") };
    let dir = faulted.dir.path();

    // node-agent's identity: the ServiceAccount `velero install` creates, allowed to create pods.
    in_node(&["kubectl", "-n", NS, "create", "serviceaccount", "velero"]);
    in_node(&["kubectl", "-n", NS, "create", "role", "create-pods", "--verb=create", "--resource=pods"]);
    in_node(&[
        "kubectl",
        "-n",
        NS,
        "create",
        "rolebinding",
        "velero",
        "--role=create-pods",
        "--serviceaccount=velero:velero",
    ]);
    let token = in_node(&["kubectl", "-n", NS, "create", "token", "velero", "--duration=1h"]);
    std::fs::write(dir.join("token"), token.trim()).expect("token");
    std::fs::copy(repo_path("testdata/pods/v1.18/pod-dataupload.json"), dir.join("pod.json")).expect("pod fixture");
    for (i, value) in ["a", "b"].iter().enumerate() {
        std::fs::write(dir.join(format!("cm-{i}.json")), node_agent_config(value)).expect("ConfigMap");
    }
    apply(&node_agent_config("a"));
    // Our servers follow the ConfigMap through their watch: wait until a pod is patched.
    wait_for("a data-mover pod labelled by our webhook", Duration::from_secs(60), || {
        let out = load_command("once", dir).output().expect("load once");
        String::from_utf8_lossy(&out.stdout).trim() == "201 1"
    });

    let before = apiserver_webhook_series();
    let load = Load::start(dir);
    std::thread::sleep(Duration::from_secs(3));
    let (from, fault_started) = (now_ms(), Instant::now());
    fault(&faulted);
    let (to, lasted) = (now_ms(), fault_started.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(dir.join("stop"), "").expect("stop the load");
    load.finish();
    let after = apiserver_webhook_series();

    let all = parse_results(&std::fs::read_to_string(dir.join("results")).unwrap_or_default());
    let errors = ["pod.err", "cm.err"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let during = all.iter().filter(|r| (from..=to).contains(&r.start)).copied().collect();
    drop(node);
    machine.assert_restored();
    Outcome { name, during, all, apiserver: grown(&before, &after), from, lasted, run: started.elapsed(), errors }
}

#[test]
fn a_rollout_restart_under_load_fails_no_write_and_no_pod_fails_open() {
    under_load(1, "rollout restart", |_| {
        let old: Vec<String> = webhook_pods().into_iter().map(|p| p.0).collect();
        in_node(&["kubectl", "-n", NS, "rollout", "restart", "deployment/node-agent-webhook"]);
        in_node(&["kubectl", "-n", NS, "rollout", "status", "deployment/node-agent-webhook", "--timeout=180s"]);
        wait_for_two_ready_pods_besides(&old);
    })
    .assert_survived();
}

#[test]
fn a_deleted_replica_under_load_fails_no_write_and_no_pod_fails_open() {
    under_load(1, "one replica's pod deleted", |_| {
        let victim = webhook_pods().remove(0).0;
        in_node(&["kubectl", "-n", NS, "delete", "pod", &victim, "--wait=false"]);
        wait_for_two_ready_pods_besides(&[victim]);
    })
    .assert_survived();
}

#[test]
fn a_renewed_certificate_from_the_same_ca_is_served_without_a_failed_request() {
    under_load(1, "TLS Secret replaced (same CA)", |f| {
        let old = webhook_pods();
        let (ca_pem, ca_key) = (repo_path("certs/ca.pem"), repo_path("certs/ca.key"));
        let serial = issue(f.dir.path(), "renewed", &ca_pem, &ca_key);
        assert!(old.iter().all(|p| served_serial(&p.1) != serial));
        replace_tls_secret(f.dir.path(), "renewed", &read(&ca_pem));
        wait_until_served(&serial);
        // The same pods, the same containers: the server reloaded, nothing restarted.
        let now = webhook_pods();
        assert_eq!(
            now.iter().map(|p| (&p.0, &p.3)).collect::<Vec<_>>(),
            old.iter().map(|p| (&p.0, &p.3)).collect::<Vec<_>>()
        );
    })
    .assert_survived();
}

#[test]
fn sigterm_while_reviews_are_in_flight_fails_no_write_and_no_pod_fails_open() {
    under_load(1, "SIGTERM to one server", |_| {
        let (name, _, _, container, restarts) = webhook_pods().remove(0);
        let id = container.strip_prefix("containerd://").expect("a containerd container ID");
        in_node(&["ctr", "-n", "k8s.io", "tasks", "kill", "--signal", "SIGTERM", id]);
        wait_for("the killed container restarted and Ready", Duration::from_secs(180), || {
            webhook_pods().iter().any(|p| p.0 == name && p.4 > restarts && p.2)
        });
        wait_for_two_ready_pods_besides(&[]);
    })
    .assert_survived();
}

#[test]
fn a_ca_rotation_by_the_documented_procedure_fails_no_write() {
    under_load(1, "CA rotation (docs/deploy.md)", |f| {
        let dir = f.dir.path();
        let old_ca = read(&repo_path("certs/ca.pem"));
        let (new_pem, new_key) = new_ca(dir, "new-ca");
        let new_ca = read(&new_pem);
        // 1. Both CAs in every caBundle.
        set_ca_bundle(&[old_ca.as_slice(), new_ca.as_slice()].concat());
        std::thread::sleep(CONFIGURATION_PROPAGATION);
        // 2. The certificate of the new CA in the Secret; wait until every pod serves it.
        let serial = issue(dir, "new-ca", &new_pem, &new_key);
        replace_tls_secret(dir, "new-ca", &new_ca);
        wait_until_served(&serial);
        // 3. The old CA out.
        set_ca_bundle(&new_ca);
        std::thread::sleep(CONFIGURATION_PROPAGATION);
    })
    .assert_survived();
}

/// What docs/deploy.md warns against, measured: the new CA alone in the caBundle and its
/// certificate in the Secret at once (what `FORCE_CA=1 make certs && kubectl apply -k` does). The
/// API server trusts only the new CA at once, the pods serve the old certificate until the kubelet
/// updates their volume: writes fail (failurePolicy Fail) and pods fail open meanwhile.
#[test]
fn changing_the_ca_and_the_certificate_at_once_fails_writes_until_the_pods_catch_up() {
    let outcome = under_load(1, "CA and certificate changed at once", |f| {
        let dir = f.dir.path();
        let (new_pem, new_key) = new_ca(dir, "new-ca");
        let new_ca = read(&new_pem);
        let serial = issue(dir, "new-ca", &new_pem, &new_key);
        set_ca_bundle(&new_ca);
        replace_tls_secret(dir, "new-ca", &new_ca);
        wait_until_served(&serial);
    });
    eprintln!("{}", outcome.report());
    let failed_writes = outcome.during.iter().filter(|r| !r.pod && !r.ok).count();
    let failed_open = outcome.during.iter().filter(|r| r.fail_open).count();
    assert!(failed_writes > 0 && failed_open > 0, "{}", outcome.report());
}

/// One kubelet node per machine (hack/node/node.sh: a fixed cgroup name and state directory), so
/// `kubectl drain` of the node holding one replica cannot be run: draining the only node would ask
/// to evict both. What drain does per pod is an Eviction, which is tested here against the PDB:
/// the first is granted and loses no request, the second is refused while the first replica is
/// unavailable.
#[test]
fn an_eviction_with_the_pdb_in_force_loses_no_request_and_the_second_is_refused() {
    under_load(1, "eviction of one replica (PDB)", |f| {
        let pods = webhook_pods();
        let evict = |pod: &str| {
            let eviction = serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod, "namespace": NS}});
            let file = f.dir.path().join(format!("eviction-{pod}.json"));
            std::fs::write(&file, eviction.to_string()).expect("eviction");
            let url = format!("/api/v1/namespaces/{NS}/pods/{pod}/eviction");
            node_sh(&["exec", "kubectl", "create", "--raw", &url, "-f", &file.to_string_lossy()])
        };
        let first = evict(&pods[0].0);
        assert!(first.status.success(), "first eviction: {}", String::from_utf8_lossy(&first.stderr));
        let second = evict(&pods[1].0);
        let refused = String::from_utf8_lossy(&second.stderr);
        assert!(
            !second.status.success() && refused.contains("disruption budget"),
            "the second eviction must be refused by the PDB: {refused}"
        );
        wait_for_two_ready_pods_besides(&[pods[0].0.clone()]);
    })
    .assert_survived();
}

/// The node each webhook pod is bound to, by pod name.
fn webhook_pod_nodes() -> BTreeMap<String, String> {
    live_webhook_pods()
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            (name, p["spec"]["nodeName"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// `kubectl drain` of the node that holds one replica, on two kubelet nodes (`NODES=2`), the PDB
/// in force: drain cordons the node and evicts the replica (the PDB allows it: the other one is
/// Ready), the API server keeps calling the remaining one, and the scheduler puts the replacement
/// on the other node at once. The shipped spread counts only nodes a pod may run on
/// (`nodeTaintsPolicy: Honor`: the cordoned node's `unschedulable` taint takes it out), so two
/// replicas on one node are within its skew; with the default (Ignore) the cordoned node would
/// count as an empty domain and the replacement would stay Pending until the node came back.
#[test]
fn a_drain_of_the_node_holding_one_replica_fails_no_write_and_no_pod_fails_open() {
    under_load(2, "drain of the node holding one replica (2 nodes, PDB)", |_| {
        let placed = webhook_pod_nodes();
        let (evicted, drained) = placed.iter().find(|(_, node)| *node != NODE_NAME).expect("a replica on naw-node-1");
        in_node(&["kubectl", "drain", drained, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s"]);
        let node = kubectl_json(&["get", "node", drained]);
        assert_eq!(node["spec"]["unschedulable"], true, "{node:#}");
        wait_for_two_ready_pods_besides(std::slice::from_ref(evicted));
        let now = webhook_pod_nodes();
        assert!(now.values().all(|node| node == NODE_NAME), "both replicas on the node left: {now:?}");
    })
    .assert_survived();
}
