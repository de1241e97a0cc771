//! The load client of `make bench-e2e` (bench/e2e/run.sh). One block of one point per run:
//!
//!   e2e-load pods|mix|configmaps|configmap-creates --concurrency N --count N [--warmup N] [--tag T] [--raw FILE]
//!   e2e-load probe-pods none|ours|noop        # until the API server calls what it should
//!   e2e-load probe-configmaps none|webhook
//!   e2e-load probe-configmap-creates none|webhook
//!   e2e-load set-config full|no-priority-class  # the node-agent ConfigMap's value
//!
//! Environment: NODE_AGENT_KUBECONFIG (a token of the `velero` ServiceAccount bound to
//! node-agent's pod, as node-agent authenticates), ADMIN_KUBECONFIG (the control plane's admin:
//! a user's `kubectl apply`, and the stand-in for the controllers that create Velero's other
//! pods), FIXTURE (testdata/pods/v1.18/pod-dataupload.json), RUN_ID (a prefix for names).
//!
//! - `pods`: the v1.18 DataUpload pod created as node-agent creates it (its bound token, the
//!   owner reference, a fresh name that is also the data-upload label value and the owner's
//!   name), deleted in the background (4 deletes in flight, as node-agent's identity) while
//!   the next ones are created.
//! - `mix`: pods in the Velero namespace of which one in four is a data-mover pod: per four,
//!   one DataUpload pod by node-agent, one pod by node-agent's ServiceAccount without a
//!   data-mover label, two by another user (as the Deployment, DaemonSet and Job controllers
//!   create Velero's own pods). The other three are the same pod without the velero.io labels
//!   and the owner reference, so the bodies are the same size.
//! - `configmaps`: a strategic-merge PATCH of the node-agent ConfigMap as `kubectl apply` sends
//!   it, as the admin, with a config value that differs on every write (no check to reuse).
//! - `configmap-creates`: a server-side dry-run create of the node-agent ConfigMap
//!   (`kubectl apply --dry-run=server` on a cluster without it, as GitOps tools diff), a
//!   different value each time: a CREATE review and a fresh check per request, no conflicts.
//!   The ConfigMap must not exist (bench/e2e/run.sh deletes it for this load).
//!
//! Prints one JSON line: count, failures, elapsed, rate, percentiles per class, and the change
//! of every `apiserver_admission_*` series of our webhooks' names over the timed part
//! (the API server's /metrics before and after it). `--raw` writes `class<TAB>micros` lines.
//!
//! BENCH_CPU_PIDS="name=PID ..." (kube-apiserver, etcd, the webhook server under test) adds
//! `cpu_ms`: each process's user+system CPU over the timed part, read from /proc/PID/stat in
//! the same instants as the metrics, and this client's own (`client`, its deletes included).
//! BENCH_CLK_TCK (default 100) is the kernel's tick, `getconf CLK_TCK`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};

const NS: &str = "velero";
const CONFIGMAP: &str = "node-agent-config";
const MUTATING: &str = "mutate-datamover-pods.node-agent-webhook.io";
const VALIDATING: &str = "validate-config.node-agent-webhook.io";
/// Every request of the load has this long; none should come near it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The same without priorityClassName: the server then makes no API call per pod (the
/// PriorityClass GET it makes whenever the config names a class), for the diagnostic point.
const CONFIG_WITHOUT_PRIORITY_CLASS: &str = r#"{
  "loadAffinity": [{"nodeSelector": {"matchLabels": {"node-role.example.com/backup": "true"}}}],
  "podResources": {"cpuRequest": "500m", "cpuLimit": "2", "memoryRequest": "512Mi", "memoryLimit": "2Gi"},
  "podLabels": {"team": "platform"},
  "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role"}
}"#;

/// The config the pods get (every setting), as in tests/e2e; `{SEQ}` makes each write differ.
const CONFIG_TEMPLATE: &str = r#"{
  "loadAffinity": [{"nodeSelector": {"matchLabels": {"node-role.example.com/backup": "true"}}}],
  "podResources": {"cpuRequest": "500m", "cpuLimit": "2", "memoryRequest": "512Mi", "memoryLimit": "2Gi"},
  "priorityClassName": "e2e-backup",
  "podLabels": {"team": "platform", "bench-seq": "{SEQ}"},
  "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role"}
}"#;

async fn client(var: &str) -> Result<Client> {
    let path = std::env::var(var).with_context(|| format!("{var} is not set"))?;
    let kubeconfig = Kubeconfig::read_from(Path::new(&path)).with_context(|| format!("read {path}"))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    Ok(Client::try_from(config)?)
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    /// A DataUpload pod by node-agent: reaches the mutating webhook.
    DataMover,
    /// node-agent's ServiceAccount, no data-mover label: the second matchCondition excludes it.
    SaPlain,
    /// Another user: the first matchCondition excludes it.
    OtherUser,
    ConfigMap,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::DataMover => "datamover",
            Class::SaPlain => "sa-plain",
            Class::OtherUser => "other-user",
            Class::ConfigMap => "configmap",
        }
    }
}

/// One request of the load, built before the clock starts.
enum Op {
    CreatePod { class: Class, pod: Box<Pod> },
    PatchConfigMap { patch: Value },
    DryRunCreateConfigMap { configmap: Box<ConfigMap> },
}

impl Op {
    fn class(&self) -> Class {
        match self {
            Op::CreatePod { class, .. } => *class,
            Op::PatchConfigMap { .. } | Op::DryRunCreateConfigMap { .. } => Class::ConfigMap,
        }
    }
}

struct Fixture {
    text: String,
    original_name: String,
}

impl Fixture {
    fn load() -> Result<Self> {
        let path = std::env::var("FIXTURE").context("FIXTURE is not set")?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let pod: Value = serde_json::from_str(&text)?;
        let original_name = pod["metadata"]["name"].as_str().context("fixture name")?.to_string();
        Ok(Self { text, original_name })
    }

    /// The fixture renamed: pod name = data-upload label value = owner name = PVC name.
    fn data_mover(&self, name: &str) -> Result<Pod> {
        Ok(serde_json::from_str(&self.text.replace(&self.original_name, name))?)
    }

    /// The same pod as another workload of the namespace: no velero.io labels, no owner.
    fn plain(&self, name: &str) -> Result<Pod> {
        let mut pod: Value = serde_json::from_str(&self.text.replace(&self.original_name, name))?;
        pod["metadata"]["labels"] = json!({"app.kubernetes.io/name": "bench-other", "bench/name": name});
        if let Some(meta) = pod["metadata"].as_object_mut() {
            meta.remove("ownerReferences");
        }
        Ok(serde_json::from_value(pod)?)
    }
}

fn config_patch(seq: &str) -> Value {
    json!({"data": {CONFIGMAP: CONFIG_TEMPLATE.replace("{SEQ}", seq)}})
}

fn config_object(seq: &str) -> Result<ConfigMap> {
    let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP, "namespace": NS}});
    object["data"] = config_patch(seq)["data"].take();
    Ok(serde_json::from_value(object)?)
}

fn is_configmap_load(kind: &str) -> bool {
    kind == "configmaps" || kind == "configmap-creates"
}

const DRY_RUN: PostParams = PostParams { dry_run: true, field_manager: None };

fn build_ops(kind: &str, prefix: &str, count: usize) -> Result<Vec<Op>> {
    let fixture = if is_configmap_load(kind) { None } else { Some(Fixture::load()?) };
    (0..count)
        .map(|i| {
            let name = format!("{prefix}-{i}");
            Ok(match (kind, fixture.as_ref()) {
                ("configmaps", _) => Op::PatchConfigMap { patch: config_patch(&name) },
                ("configmap-creates", _) => Op::DryRunCreateConfigMap { configmap: Box::new(config_object(&name)?) },
                ("pods", Some(f)) => Op::CreatePod { class: Class::DataMover, pod: Box::new(f.data_mover(&name)?) },
                ("mix", Some(f)) => match i % 4 {
                    0 => Op::CreatePod { class: Class::DataMover, pod: Box::new(f.data_mover(&name)?) },
                    1 => Op::CreatePod { class: Class::SaPlain, pod: Box::new(f.plain(&name)?) },
                    _ => Op::CreatePod { class: Class::OtherUser, pod: Box::new(f.plain(&name)?) },
                },
                _ => bail!("unknown load {kind}"),
            })
        })
        .collect()
}

struct Clients {
    node_agent: Client,
    admin: Client,
}

/// Runs one request; Ok(name of a created pod) or the error's text.
async fn run_op(clients: &Clients, op: &Op) -> Result<Option<String>, String> {
    match op {
        Op::CreatePod { class, pod } => {
            let client = if *class == Class::OtherUser { &clients.admin } else { &clients.node_agent };
            let api: Api<Pod> = Api::namespaced(client.clone(), NS);
            let created = api.create(&PostParams::default(), pod).await.map_err(|e| e.to_string())?;
            Ok(created.metadata.name)
        }
        Op::PatchConfigMap { patch } => {
            let api: Api<ConfigMap> = Api::namespaced(clients.admin.clone(), NS);
            api.patch(CONFIGMAP, &PatchParams::default(), &Patch::Strategic(patch)).await.map_err(|e| e.to_string())?;
            Ok(None)
        }
        Op::DryRunCreateConfigMap { configmap } => {
            let api: Api<ConfigMap> = Api::namespaced(clients.admin.clone(), NS);
            api.create(&DRY_RUN, configmap).await.map_err(|e| e.to_string())?;
            Ok(None)
        }
    }
}

struct Sample {
    class: Class,
    micros: u64,
}

struct Outcome {
    samples: Vec<Sample>,
    errors: Vec<String>,
    elapsed: Duration,
}

/// `concurrency` workers take the ops in order; created pods go to the deleter.
async fn drive(
    clients: Arc<Clients>,
    ops: Arc<Vec<Op>>,
    concurrency: usize,
    deletes: tokio::sync::mpsc::UnboundedSender<String>,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (clients, ops, next, deletes) = (clients.clone(), ops.clone(), next.clone(), deletes.clone());
            tokio::spawn(async move {
                let (mut samples, mut errors) = (Vec::new(), Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(op) = ops.get(i) else { break };
                    let began = Instant::now();
                    let result = run_op(&clients, op).await;
                    let micros = began.elapsed().as_micros() as u64;
                    match result {
                        Ok(created) => {
                            samples.push(Sample { class: op.class(), micros });
                            if let Some(name) = created {
                                let _ = deletes.send(name);
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                }
                (samples, errors)
            })
        })
        .collect();
    let (mut samples, mut errors) = (Vec::new(), Vec::new());
    for worker in workers {
        match worker.await {
            Ok((s, e)) => {
                samples.extend(s);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("worker panicked: {e}")),
        }
    }
    Outcome { samples, errors, elapsed: start.elapsed() }
}

/// Deletes pods as they are created (background propagation; no kubelet, so at once).
fn deleter(client: Client) -> (tokio::sync::mpsc::UnboundedSender<String>, tokio::task::JoinHandle<(usize, usize)>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let handle = tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, NS);
        let params = DeleteParams::background();
        let results: Vec<bool> = tokio_stream(rx)
            .map(|name| {
                let (api, params) = (api.clone(), params.clone());
                async move { api.delete(&name, &params).await.is_ok() }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let ok = results.iter().filter(|ok| **ok).count();
        (ok, results.len() - ok)
    });
    (tx, handle)
}

fn tokio_stream(mut rx: tokio::sync::mpsc::UnboundedReceiver<String>) -> impl futures::Stream<Item = String> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Every `apiserver_admission_*` sample of our webhooks' names: series text -> value.
async fn admission_metrics(admin: &Client) -> Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = admin.request_text(request).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("apiserver_admission_") && l.contains("node-agent-webhook.io"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// User+system CPU ticks of the processes of BENCH_CPU_PIDS, and of this one as `client`.
fn cpu_ticks() -> BTreeMap<String, u64> {
    let mut pids: Vec<(String, String)> = std::env::var("BENCH_CPU_PIDS")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pair| pair.split_once('=').map(|(name, pid)| (name.to_string(), pid.to_string())))
        .collect();
    pids.push(("client".into(), "self".into()));
    pids.into_iter()
        .filter_map(|(name, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the parenthesised command: state is the 3rd field, utime the 14th.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
            Some((name, utime + stime))
        })
        .collect()
}

fn cpu_ms(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let tick_ms = 1000.0 / std::env::var("BENCH_CLK_TCK").ok().and_then(|t| t.parse::<f64>().ok()).unwrap_or(100.0);
    after
        .iter()
        .filter_map(|(name, t)| Some((name.clone(), t.checked_sub(*before.get(name)?)? as f64 * tick_ms)))
        .collect()
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

/// The summed change of `family` over the series that contain every one of `parts`.
fn sum_of(delta: &BTreeMap<String, f64>, family: &str, parts: &[&str]) -> f64 {
    delta
        .iter()
        .filter(|(k, _)| k.split_once('{').map(|(name, _)| name) == Some(family) && parts.iter().all(|p| k.contains(p)))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn summary(samples: &[&Sample], elapsed: Duration) -> Value {
    let mut micros: Vec<u64> = samples.iter().map(|s| s.micros).collect();
    micros.sort_unstable();
    json!({
        "count": micros.len(),
        "rate": micros.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile(&micros, 0.50),
        "p99_ms": percentile(&micros, 0.99),
        "p999_ms": percentile(&micros, 0.999),
        "max_ms": micros.last().map(|m| *m as f64 / 1000.0),
    })
}

struct Args {
    kind: String,
    concurrency: usize,
    count: usize,
    warmup: usize,
    tag: String,
    raw: Option<String>,
}

fn parse_args(kind: String, mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut args = Args { kind, concurrency: 1, count: 100, warmup: 20, tag: String::new(), raw: None };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--concurrency" => args.concurrency = value.parse()?,
            "--count" => args.count = value.parse()?,
            "--warmup" => args.warmup = value.parse()?,
            "--tag" => args.tag = value,
            "--raw" => args.raw = Some(value),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

async fn load(args: Args) -> Result<()> {
    let clients = Arc::new(Clients {
        node_agent: client("NODE_AGENT_KUBECONFIG").await?,
        admin: client("ADMIN_KUBECONFIG").await?,
    });
    let run_id = std::env::var("RUN_ID").unwrap_or_else(|_| "bench".into());
    let prefix = format!("{run_id}-{}", args.tag);
    let warmup = Arc::new(build_ops(&args.kind, &format!("{prefix}-w"), args.warmup)?);
    let ops = Arc::new(build_ops(&args.kind, &prefix, args.count)?);

    let (deletes, deleted) = deleter(clients.node_agent.clone());
    // Warm-up: the client's and the API server's connections (a webhook server just started).
    let warm = drive(clients.clone(), warmup, args.concurrency, deletes.clone()).await;
    let before = admission_metrics(&clients.admin).await?;
    let cpu_before = cpu_ticks();
    let outcome = drive(clients.clone(), ops, args.concurrency, deletes.clone()).await;
    let cpu_after = cpu_ticks();
    let after = admission_metrics(&clients.admin).await?;
    drop(deletes);
    let (deleted_ok, deleted_failed) = deleted.await?;

    let changes = delta(&before, &after);
    if let Some(path) = &args.raw {
        let mut text = String::new();
        for s in &outcome.samples {
            text.push_str(&format!("{}\t{}\n", s.class.name(), s.micros));
        }
        std::fs::write(path, text)?;
    }
    let mut classes = serde_json::Map::new();
    for class in [Class::DataMover, Class::SaPlain, Class::OtherUser, Class::ConfigMap] {
        let of: Vec<&Sample> = outcome.samples.iter().filter(|s| s.class == class).collect();
        if !of.is_empty() {
            classes.insert(class.name().into(), summary(&of, outcome.elapsed));
        }
    }
    let all: Vec<&Sample> = outcome.samples.iter().collect();
    let webhook = if is_configmap_load(&args.kind) { VALIDATING } else { MUTATING };
    let name = format!("name=\"{webhook}\"");
    let mut errors = outcome.errors.clone();
    errors.sort();
    errors.dedup();
    let report = json!({
        "tag": args.tag,
        "kind": args.kind,
        "concurrency": args.concurrency,
        "requested": args.count,
        "ok": outcome.samples.len(),
        "failed": outcome.errors.len(),
        "warmup_failed": warm.errors.len(),
        "errors": errors.into_iter().take(5).collect::<Vec<_>>(),
        "elapsed_s": outcome.elapsed.as_secs_f64(),
        "all": summary(&all, outcome.elapsed),
        "classes": classes,
        "deleted": deleted_ok,
        "delete_failed": deleted_failed,
        "webhook_calls": sum_of(&changes, "apiserver_admission_webhook_request_total", &[&name]),
        "webhook_calls_200": sum_of(&changes, "apiserver_admission_webhook_request_total", &[&name, "code=\"200\""]),
        "webhook_duration_sum_s": sum_of(&changes, "apiserver_admission_webhook_admission_duration_seconds_sum", &[&name]),
        "webhook_duration_count": sum_of(&changes, "apiserver_admission_webhook_admission_duration_seconds_count", &[&name]),
        "match_exclusions": sum_of(&changes, "apiserver_admission_match_condition_exclusions_total", &[&name]),
        "fail_open": sum_of(&changes, "apiserver_admission_webhook_fail_open_count", &[&name]),
        "metrics_delta": changes,
        "cpu_ms": cpu_ms(&cpu_before, &cpu_after),
    });
    println!("{report}");
    Ok(())
}

/// Creates one probe object at a time until the API server's calls match `expect`:
/// `none` (no call), `ours` (a call, and the pod came back patched), `noop` (a call, no patch),
/// `webhook` (a ConfigMap write that called the validating webhook).
async fn probe(kind: &str, expect: &str) -> Result<()> {
    let clients =
        Clients { node_agent: client("NODE_AGENT_KUBECONFIG").await?, admin: client("ADMIN_KUBECONFIG").await? };
    let run_id = std::env::var("RUN_ID").unwrap_or_else(|_| "bench".into());
    let deadline = Instant::now() + Duration::from_secs(30);
    let webhook = if kind == "pods" { MUTATING } else { VALIDATING };
    let label = format!("name=\"{webhook}\"");
    let mut consecutive = 0;
    for attempt in 0.. {
        let before = admission_metrics(&clients.admin).await?;
        let tag = format!("{run_id}-probe-{}-{attempt}", std::process::id());
        let patched = if kind == "pods" {
            let pod = Fixture::load()?.data_mover(&tag)?;
            let api: Api<Pod> = Api::namespaced(clients.node_agent.clone(), NS);
            let created = api.create(&PostParams::default(), &pod).await?;
            let _ = api.delete(&tag, &DeleteParams::background()).await;
            created.metadata.annotations.unwrap_or_default().contains_key("node-agent-webhook.io/applied")
        } else if kind == "configmap-creates" {
            let api: Api<ConfigMap> = Api::namespaced(clients.admin.clone(), NS);
            api.create(&DRY_RUN, &config_object(&tag)?).await?;
            false
        } else {
            let api: Api<ConfigMap> = Api::namespaced(clients.admin.clone(), NS);
            let patch = config_patch(&tag);
            match api.patch(CONFIGMAP, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                // The first probe of a fresh control plane creates the ConfigMap.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    api.create(&PostParams::default(), &config_object(&tag)?).await?;
                }
                other => {
                    other?;
                }
            }
            false
        };
        let after = admission_metrics(&clients.admin).await?;
        let calls = sum_of(&delta(&before, &after), "apiserver_admission_webhook_request_total", &[&label]);
        let good = match expect {
            "none" => calls == 0.0,
            "ours" => calls > 0.0 && patched,
            "noop" => calls > 0.0 && !patched,
            "webhook" => calls > 0.0,
            other => bail!("unknown expectation {other}"),
        };
        // Twice in a row: the API server's webhook informer has settled.
        consecutive = if good { consecutive + 1 } else { 0 };
        if consecutive == 2 {
            eprintln!("probe {kind} {expect}: settled after {} attempts", attempt + 1);
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "probe {kind} {expect}: after {attempt} attempts the last saw {calls} webhook calls, patched={patched}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut it = std::env::args().skip(1);
    let command = it.next().context(
        "usage: e2e-load pods|mix|configmaps|configmap-creates|probe-pods|probe-configmaps|probe-configmap-creates ...",
    )?;
    match command.as_str() {
        "pods" | "mix" | "configmaps" | "configmap-creates" => load(parse_args(command, it)?).await,
        "probe-pods" => probe("pods", &it.next().context("probe-pods none|ours|noop")?).await,
        "set-config" => {
            let value = match it.next().as_deref() {
                Some("full") => CONFIG_TEMPLATE.replace("{SEQ}", "full"),
                Some("no-priority-class") => CONFIG_WITHOUT_PRIORITY_CLASS.to_string(),
                _ => bail!("set-config full|no-priority-class"),
            };
            let api: Api<ConfigMap> = Api::namespaced(client("ADMIN_KUBECONFIG").await?, NS);
            let patch = json!({"data": {CONFIGMAP: value}});
            api.patch(CONFIGMAP, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
            Ok(())
        }
        "probe-configmaps" => probe("configmaps", &it.next().context("probe-configmaps none|webhook")?).await,
        "probe-configmap-creates" => {
            probe("configmap-creates", &it.next().context("probe-configmap-creates none|webhook")?).await
        }
        other => bail!("unknown command {other}"),
    }
}
