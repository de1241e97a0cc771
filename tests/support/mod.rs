//! Test harness: throw-away certificates, the real binary on 127.0.0.1, and HTTPS clients.

#![allow(dead_code)] // each test crate uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A CA and a serving certificate for 127.0.0.1 and localhost, written to a temp dir.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    ca_key_pem: String,
    ca_params: rcgen::CertificateParams,
}

impl Certs {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "node-agent-webhook test CA");
        let ca_cert = params.self_signed(&ca_key).expect("ca cert");
        let ca_pem = ca_cert.pem();
        std::fs::write(dir.path().join("ca.crt"), &ca_pem).expect("write ca");
        let certs = Self { dir, ca_pem, ca_key_pem: ca_key.serialize_pem(), ca_params: params };
        certs.write_serving("tls.crt", "tls.key", "first");
        certs
    }

    /// Issues a serving certificate signed by the CA; `tag` goes into its CN to tell them apart.
    pub fn issue(&self, tag: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("node-agent-webhook {tag}"));
        let ca_key = rcgen::KeyPair::from_pem(&self.ca_key_pem).expect("ca key");
        let issuer = rcgen::Issuer::new(self.ca_params.clone(), ca_key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    pub fn write_serving(&self, cert_name: &str, key_name: &str, tag: &str) {
        let (cert, key) = self.issue(tag);
        std::fs::write(self.dir.path().join(cert_name), cert).expect("write cert");
        std::fs::write(self.dir.path().join(key_name), key).expect("write key");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The real binary, serving on 127.0.0.1; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub metrics_port: u16,
    pub logs: Arc<Mutex<Vec<String>>>,
}

pub const BINARY: &str = env!("CARGO_BIN_EXE_node-agent-webhook");

impl Server {
    /// Starts `serve` with the given certificate files and extra flags, and waits until ready.
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> Self {
        Self::start_logging_to(cert, key, extra, Stdio::piped())
    }

    /// [`Server::start`] with the server's log (stderr) sent to `log`; [`Server::logs`]
    /// collects it only when `log` is a pipe.
    pub fn start_logging_to(cert: &Path, key: &Path, extra: &[&str], log: impl Into<Stdio>) -> Self {
        let port = free_port();
        let metrics_port = free_port();
        let mut child = Command::new(BINARY)
            .arg("serve")
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--metrics-bind", &format!("127.0.0.1:{metrics_port}")])
            .args(["--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let server = Self { child, port, metrics_port, logs };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.get_admin("/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server not ready; logs:\n{}", self.logs.lock().expect("logs").join("\n"));
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// A plain-HTTP GET on the metrics listener.
    pub fn get_admin(&self, path: &str) -> Result<(u16, String), String> {
        let response = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.metrics_port))
            .timeout(Duration::from_secs(5))
            .send()
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().map_err(|e| e.to_string())?))
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server on an empty config file, with `extra` flags, and a client trusting its CA.
pub fn start_with(extra: &[&str]) -> (Certs, Server, reqwest::blocking::Client) {
    let certs = Certs::new();
    std::fs::write(certs.path("config.json"), "{}").expect("config");
    let config = certs.path("config.json");
    let mut args = vec!["--config-file", config.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let server = Server::start(&certs.path("tls.crt"), &certs.path("tls.key"), &args);
    let client = client(&certs.ca_pem);
    (certs, server, client)
}

/// The strings of a JSON array, such as a review's `warnings`.
pub fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// An HTTPS client trusting only the test CA.
pub fn client(ca_pem: &str) -> reqwest::blocking::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// POSTs a body and returns the status and body.
pub fn post(client: &reqwest::blocking::Client, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = client.post(url).header("content-type", "application/json").body(body).send().expect("request");
    let status = response.status().as_u16();
    (status, response.bytes().expect("body").to_vec())
}

/// POSTs a review and returns its decoded `response`.
pub fn review(client: &reqwest::blocking::Client, url: &str, review: &Value) -> Value {
    let (status, body) = post(client, url, serde_json::to_vec(review).expect("json"));
    assert_eq!(status, 200, "body: {}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("response is JSON");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], review["request"]["uid"], "uid echoed");
    answer["response"].clone()
}

/// An AdmissionReview for a ConfigMap, as kube-apiserver sends it.
pub fn configmap_review(operation: &str, object: Option<&Value>, old_object: Option<&Value>) -> Value {
    let meta = object.or(old_object).map(|o| o["metadata"].clone()).unwrap_or(json!({}));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{operation}-{}", meta["name"].as_str().unwrap_or("x")),
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "requestKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "requestResource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": meta["name"],
            "namespace": meta["namespace"],
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Runs a command to its end and returns its output; panics with both streams if it failed.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads a file of the repository (`testdata/...`, `examples/...`), by its path from the root.
pub fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// [`repo_file`], parsed as JSON.
pub fn repo_json(path: &str) -> Value {
    let text = repo_file(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What admission plugins and defaulting add before webhooks run (velero/README.md).
pub fn as_admitted(mut pod: Value) -> Value {
    let spec = &mut pod["spec"];
    spec["priority"] = json!(0);
    spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    spec["schedulerName"] = json!("default-scheduler");
    spec["enableServiceLinks"] = json!(true);
    spec["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    ]);
    if let Some(volumes) = spec["volumes"].as_array_mut() {
        volumes.push(json!({"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}));
    }
    if let Some(containers) = spec["containers"].as_array_mut() {
        for c in containers {
            c["terminationMessagePath"] = json!("/dev/termination-log");
            c["terminationMessagePolicy"] = json!("File");
            if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                mounts.push(json!({"name": "kube-api-access-x7k2p", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}));
            }
        }
    }
    pod
}
