//! The real node-agent (`velero node-agent server`, built from Velero's Go module by
//! hack/velero/build.sh) as a plain process against the loopback API server, with the identity
//! a cluster would give it: the ServiceAccount `velero` and a token bound to its Pod
//! `velero/node-agent-n1x2z` on node `e2e-node-1` (hack/velero/cluster-objects.yaml).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// node-agent's Pod on the node: tokens bound to it carry its name.
pub const POD: &str = "node-agent-n1x2z";
pub const NODE: &str = "e2e-node-1";
/// controller-runtime's metrics server inside node-agent binds this, and no flag moves it.
const CONTROLLER_RUNTIME_METRICS: &str = "0.0.0.0:8080";

/// The Velero release under test (`VELERO_VERSION`, set by hack/velero/e2e.sh).
pub fn version() -> String {
    std::env::var("VELERO_VERSION").unwrap_or_else(|_| "v1.18.3".to_string())
}

/// The minor release: 16, 17, 18.
pub fn minor() -> u32 {
    let version = version();
    version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("VELERO_VERSION v1.MINOR.PATCH")
}

fn binary() -> PathBuf {
    match std::env::var_os("VELERO_BIN") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "VELERO_BIN is not set: run the suite with `make e2e-velero` (hack/velero/e2e.sh builds \
             Velero {} and starts the control plane)",
            version()
        ),
    }
}

/// A running node-agent; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct NodeAgent {
    child: Child,
    pub log: PathBuf,
}

impl NodeAgent {
    /// Starts node-agent with `--node-agent-configmap node-agent-config` and waits until its
    /// DataDownload controller runs. Panics with its log if it exits first.
    pub fn start() -> Self {
        wait_for_port_8080();
        let identity = Identity::service_account(NS, "velero", Some(POD));
        let home = e2e_dir().join("node-agent-home");
        std::fs::create_dir_all(&home).expect("node-agent home");
        let log = e2e_dir().join(format!("{}.log", unique("node-agent")));
        let file = std::fs::File::create(&log).expect("node-agent log");
        let metrics = free_port();
        let child = Command::new(binary())
            .args(["node-agent", "server", "-n", NS, "--node-agent-configmap", CONFIGMAP])
            .arg("--kubeconfig")
            .arg(&identity.kubeconfig)
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{metrics}"))
            // A user's ~/.config/velero/config.json must not change the namespace or features.
            .env("HOME", &home)
            .env("NODE_NAME", NODE)
            .env_remove("KUBECONFIG")
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        record_pid(child.id());
        let mut agent = Self { child, log };
        agent.wait_for_log("the DataDownload controller's workers", Duration::from_secs(60), |log| {
            log.lines().any(|l| l.contains("Starting workers") && l.contains("controller=datadownload"))
        });
        agent
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    pub fn wait_for_log(&mut self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let text = self.log_text();
            if done(&text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("node-agent {} exited ({status}) before {what}; its log:\n{text}", version());
            }
            if start.elapsed() > limit {
                panic!("node-agent {}: {what} not seen within {limit:?}; its log:\n{text}", version());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// node-agent dies at start-up when 8080 is taken: wait a little for an earlier one to go, then
/// say who holds it.
fn wait_for_port_8080() {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpListener::bind(CONTROLLER_RUNTIME_METRICS).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let holder = Command::new("ss")
        .args(["-ltnp", "sport = :8080"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    panic!(
        "port 8080 is taken: controller-runtime inside node-agent binds :8080 for its metrics and no \
         flag changes it, so only one node-agent can run at a time; stop whatever listens there:\n{}",
        holder.unwrap_or_default()
    );
}

/// Lets `cluster.sh down` stop what the tests started, whatever happens to this process.
fn record_pid(pid: u32) {
    let mut pids =
        std::fs::OpenOptions::new().create(true).append(true).open(e2e_dir().join("pids")).expect("pids file");
    writeln!(pids, "{pid}").expect("record pid");
}
