//! The end-to-end harness: kubectl against the real kube-apiserver that `make e2e` starts
//! (hack/controlplane/cluster.sh), tokens from its TokenRequest API, and our server as a local
//! process that the API server reaches through the ExternalName Service of hack/e2e/overlay.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const NS: &str = "velero";
pub const CONFIGMAP: &str = "node-agent-config";
/// The Pod object that stands for node-agent on the node; tokens bound to it carry its name.
pub const NODE_AGENT_POD: &str = "node-agent-e2e01";
/// Where the API server dials our server: the ExternalName Service's address, the port of
/// `clientConfig.service` (hack/e2e/overlay).
pub const WEBHOOK_BIND: &str = "127.0.0.1:443";
pub const BINARY: &str = env!("CARGO_BIN_EXE_node-agent-webhook");

/// The name of an install's cluster-scoped objects (both webhook configurations, the ClusterRole
/// and its binding): `<name>.<Velero namespace>`, as manifests/base names them.
pub fn cluster_scoped_name(namespace: &str) -> String {
    format!("node-agent-webhook.{namespace}")
}

/// The config most mutating scenarios serve: every setting the webhook applies (the
/// PriorityClass `e2e-backup` is one of the objects the install creates).
pub const FULL_CONFIG: &str = r#"{
  "loadAffinity": [{"nodeSelector": {"matchLabels": {"node-role.example.com/backup": "true"}}}],
  "podResources": {"cpuRequest": "500m", "cpuLimit": "2", "memoryRequest": "512Mi", "memoryLimit": "2Gi"},
  "priorityClassName": "e2e-backup",
  "podLabels": {"team": "platform"},
  "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role"}
}"#;

/// The state directory of the running control plane (`cluster.sh env`).
pub fn e2e_dir() -> PathBuf {
    match std::env::var_os("E2E_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "E2E_DIR is not set: the end-to-end tests need the real control plane; run `make e2e` \
             (hack/e2e/run.sh builds and starts it)"
        ),
    }
}

pub fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// One test at a time: they share the API server, our server and the node-agent ConfigMap.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a kubectl run returned, as a user sees it.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// kubectl's `Warning: ...` lines, without the prefix.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr.lines().filter_map(|l| l.strip_prefix("Warning: ")).map(str::to_string).collect()
    }

    pub fn json(&self) -> Value {
        assert!(self.ok, "kubectl failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("kubectl output is not JSON ({e}): {}", self.stdout))
    }

    #[track_caller]
    pub fn must(self) -> Self {
        assert!(self.ok, "kubectl failed:\n{}", self.stderr);
        self
    }
}

fn run(mut command: Command, stdin: Option<&str>) -> Run {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write kubectl's stdin");
    }
    let output = child.wait_with_output().expect("kubectl output");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// kubectl as the cluster admin (the control plane's kubeconfig).
pub fn kubectl(args: &[&str]) -> Run {
    kubectl_in(&e2e_dir().join("kubeconfig"), args, None)
}

pub fn kubectl_stdin(args: &[&str], stdin: &str) -> Run {
    kubectl_in(&e2e_dir().join("kubeconfig"), args, Some(stdin))
}

pub fn kubectl_in(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new("kubectl");
    command.env("KUBECONFIG", kubeconfig).args(args);
    run(command, stdin)
}

/// A client identity: a kubeconfig holding a ServiceAccount token from the TokenRequest API.
pub struct Identity {
    pub kubeconfig: PathBuf,
}

impl Identity {
    /// A token of `namespace/account`, bound to a pod when `pod` is given (the API server then
    /// adds the `authentication.kubernetes.io/pod-name` extra to every request it authenticates).
    pub fn service_account(namespace: &str, account: &str, pod: Option<&str>) -> Self {
        let mut args = vec!["create", "token", account, "-n", namespace, "--duration", "2h"];
        if let Some(pod) = pod {
            args.extend(["--bound-object-kind", "Pod", "--bound-object-name", pod]);
        }
        let token = kubectl(&args).must().stdout.trim().to_string();
        let admin = std::fs::read_to_string(e2e_dir().join("kubeconfig")).expect("admin kubeconfig");
        let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).expect("server in kubeconfig");
        let ca = e2e_dir().join("pki/ca.crt");
        let name = format!("{namespace}-{account}-{}", pod.unwrap_or("unbound"));
        let kubeconfig = e2e_dir().join(format!("kubeconfig-{name}"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
                 users:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {name}}}\n\
                 current-context: e2e\n",
                ca.display()
            ),
        )
        .expect("write kubeconfig");
        Self { kubeconfig }
    }

    /// node-agent's identity: its ServiceAccount, from its pod on the node.
    pub fn node_agent() -> Self {
        Self::service_account(NS, "velero", Some(NODE_AGENT_POD))
    }

    pub fn kubectl(&self, args: &[&str]) -> Run {
        kubectl_in(&self.kubeconfig, args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Run {
        kubectl_in(&self.kubeconfig, args, Some(stdin))
    }
}

/// Our server, as the Deployment would run it: `serve` with no --config-file (the live config
/// comes from the ConfigMap watch) and the credentials of its own ServiceAccount.
pub struct Webhook {
    child: Child,
    pub metrics_port: u16,
}

impl Webhook {
    /// Starts `serve` on `bind` with `identity`'s credentials, the serving certificate in
    /// `cert_dir` and `env` (NAW_* variables) added, logging to `log` in the state directory, and
    /// waits for /readyz.
    pub fn start(bind: &str, identity: &Identity, cert_dir: &Path, env: &[(&str, &str)], log: &str) -> Self {
        let metrics_port = free_port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(e2e_dir().join(log)).expect("log file");
        let child = Command::new(BINARY)
            .args(["serve", "--log-format", "json", "--bind", bind])
            .arg("--metrics-bind")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--tls-cert")
            .arg(cert_dir.join("serving.pem"))
            .arg("--tls-key")
            .arg(cert_dir.join("serving.key"))
            .env("KUBECONFIG", &identity.kubeconfig)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node-agent-webhook");
        record_pid(child.id());
        let webhook = Webhook { child, metrics_port };
        wait_until("node-agent-webhook /readyz", Duration::from_secs(30), || {
            admin_get(metrics_port, "/readyz").map(|(status, _)| status == 200).unwrap_or(false)
        });
        webhook
    }

    /// Stops it (SIGKILL: an outage, not a drain).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its /metrics text.
    pub fn metrics(&self) -> String {
        admin_get(self.metrics_port, "/metrics").expect("our /metrics").1
    }
}

static WEBHOOK: Mutex<Option<Webhook>> = Mutex::new(None);

fn webhook_slot() -> MutexGuard<'static, Option<Webhook>> {
    WEBHOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The serving certificate the server reads: a copy of certs/ (the overlay's Secret), so the
/// rotation test can replace it without touching the user's certs/.
pub fn serving_cert_dir() -> PathBuf {
    e2e_dir().join("serving")
}

/// Starts the server unless it runs, and waits for /readyz.
pub fn webhook_up() -> u16 {
    webhook_up_with(&[])
}

/// Starts the server with these environment variables (`NAW_*`, as a Deployment sets them) unless
/// it runs, and waits for /readyz.
pub fn webhook_up_with(env: &[(&str, &str)]) -> u16 {
    let mut slot = webhook_slot();
    if let Some(webhook) = slot.as_mut() {
        if webhook.child.try_wait().ok().flatten().is_none() {
            return webhook.metrics_port;
        }
    }
    let dir = serving_cert_dir();
    if !dir.join("serving.pem").exists() {
        std::fs::create_dir_all(&dir).expect("serving dir");
        for file in ["ca.pem", "ca.key", "serving.pem", "serving.key"] {
            std::fs::copy(repo_path("certs").join(file), dir.join(file)).expect("copy certs/");
        }
    }
    // A server an earlier, interrupted test run left behind.
    let pid_file = e2e_dir().join("node-agent-webhook.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").args(["-KILL", pid.trim()]).stderr(Stdio::null()).status();
    }
    let free = std::iter::repeat_with(|| {
        let free = std::net::TcpListener::bind(WEBHOOK_BIND).is_ok();
        if !free {
            std::thread::sleep(Duration::from_millis(100));
        }
        free
    })
    .take(50)
    .any(|free| free);
    assert!(
        free,
        "{WEBHOOK_BIND} is taken (or this user may not bind it): the API server reaches the webhook there \
         through the ExternalName Service; stop whatever listens on it"
    );
    let identity = Identity::service_account(NS, "node-agent-webhook", None);
    let webhook = Webhook::start(WEBHOOK_BIND, &identity, &dir, env, "node-agent-webhook.log");
    std::fs::write(&pid_file, webhook.child.id().to_string()).expect("pid file");
    let metrics_port = webhook.metrics_port;
    *slot = Some(webhook);
    metrics_port
}

/// Stops the server (SIGKILL: an outage, not a drain).
pub fn webhook_down() {
    if let Some(mut webhook) = webhook_slot().take() {
        webhook.stop();
    }
}

/// Lets `cluster.sh down` stop what the tests started, whatever happens to this process.
pub fn record_pid(pid: u32) {
    let mut pids =
        std::fs::OpenOptions::new().create(true).append(true).open(e2e_dir().join("pids")).expect("pids file");
    writeln!(pids, "{pid}").expect("record pid");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn admin_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let response = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.text().map_err(|e| e.to_string())?))
}

/// Our server's /metrics text.
pub fn our_metrics() -> String {
    let port = webhook_up();
    admin_get(port, "/metrics").expect("our /metrics").1
}

/// The API server's own /metrics (as the admin).
pub fn apiserver_metrics() -> String {
    kubectl(&["get", "--raw", "/metrics"]).must().stdout
}

/// The sum of every sample of `family` whose labels include all of `labels` (`k="v"` pairs).
pub fn metric_sum(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_and_labels, value) = l.rsplit_once(' ')?;
            let (name, rest) = match name_and_labels.split_once('{') {
                Some((name, rest)) => (name, rest),
                None => (name_and_labels, ""),
            };
            (name == family && labels.iter().all(|want| rest.contains(want))).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not reached within {limit:?}");
}

/// Polls `get` until it returns `want` (a watch catching up); past `limit`, fails showing the
/// last value against the wanted one.
pub fn eventually_eq<T: PartialEq + std::fmt::Debug>(what: &str, limit: Duration, mut get: impl FnMut() -> T, want: T) {
    let start = Instant::now();
    loop {
        let got = get();
        if got == want {
            return;
        }
        if start.elapsed() >= limit {
            assert_eq!(got, want, "{what}: not reached within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A name no other test run used: pods and ConfigMaps are never reused between tests.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{prefix}-{:x}{n}", stamp % 0xffff_ffff)
}

/// The ConfigMap as Velero's docs make it: `kubectl create cm --from-file`, piped through
/// `--dry-run=client -o yaml` into `kubectl apply` so that it also works as an update.
pub fn apply_config_as(kubectl_apply: impl Fn(&str) -> Run, value: &str) -> Run {
    apply_config_in(NS, kubectl_apply, value)
}

/// The same in another Velero namespace.
pub fn apply_config_in(namespace: &str, kubectl_apply: impl Fn(&str) -> Run, value: &str) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("node-agent-config.json");
    std::fs::write(&file, value).expect("write config");
    let from_file = format!("--from-file=node-agent-config.json={}", file.display());
    let manifest = kubectl(&["create", "cm", CONFIGMAP, "-n", namespace, &from_file, "--dry-run=client", "-o", "yaml"])
        .must()
        .stdout;
    kubectl_apply(&manifest)
}

/// Applies a config the validating webhook admits and waits until our server serves it.
pub fn serve_config(value: &str) {
    let before = config_generation();
    let run = apply_config_as(|manifest| kubectl_stdin(&["apply", "-f", "-"], manifest), value);
    assert!(run.ok, "config not admitted: {}", run.stderr);
    if run.stdout.contains("unchanged") {
        return;
    }
    wait_until("the config edit reaches the server", std::time::Duration::from_secs(10), || {
        config_generation() > before
    });
}

pub fn config_generation() -> f64 {
    metric_sum(&our_metrics(), "node_agent_webhook_config_generation", &[])
}

pub fn applied_annotation(pod: &Value) -> Option<String> {
    pod["metadata"]["annotations"]["node-agent-webhook.io/applied"].as_str().map(str::to_string)
}

/// The objects of a stream of JSON documents, as `kubectl create --dry-run=client -o json` of a
/// multi-object file prints them.
/// Warnings without the placement ones (`config::placement`: a selection no node, no node-agent,
/// no toleration or no allocatable can serve), which follow the cluster's Nodes and have tests of
/// their own (tests/e2e/placement.rs).
pub fn without_placement(warnings: Vec<String>) -> Vec<String> {
    const PLACEMENT: [&str; 5] = [
        "nodeSelector: selects none of the ",
        ", none running node-agent: ",
        " have a taint data-mover pods do not tolerate ",
        "podResources requests exceed the allocatable of all ",
        " has reclaimPolicy ",
    ];
    warnings.into_iter().filter(|w| !PLACEMENT.iter().any(|p| w.contains(p))).collect()
}

pub fn json_stream(json: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("kubectl's JSON: {e}"))
}
