//! `cluster` against an in-process fake of exactly the API calls it makes: GET of single
//! objects, LIST (with `fieldSelector=metadata.name=…`) and WATCH (newline-delimited events,
//! replayed from the requested resourceVersion, then streamed live) of whole collections.
//! The fake counts the requests per path, and can delay, fail or expire them.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::time::Instant;

mod support;

use node_agent_webhook::admission::Request as Review;
use node_agent_webhook::cluster::{Cluster, ClusterError, LOOKUP_TIMEOUT};
use node_agent_webhook::config::check_value;
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::config::version::VeleroVersion;
use node_agent_webhook::metrics::ResultLabels;
use node_agent_webhook::server::state::LiveConfig;
use node_agent_webhook::server::state::{AppState, Settings};
use node_agent_webhook::source::{self, Source};
use node_agent_webhook::validating::Target;

type Body = UnsyncBoxBody<Bytes, Infallible>;

const CONFIGMAPS: &str = "/api/v1/namespaces/velero/configmaps";
const PRIORITY_CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";
const VELERO_PVCS: &str = "/api/v1/namespaces/velero/persistentvolumeclaims";
const APP_PVCS: &str = "/api/v1/namespaces/shop/persistentvolumeclaims";
const DATA_DOWNLOADS: &str = "/apis/velero.io/v2alpha1/namespaces/velero/datadownloads";
const DAEMONSETS: &str = "/apis/apps/v1/namespaces/velero/daemonsets";
/// The last path segment of every collection the fake serves; anything else is an object.
const PLURALS: &[&str] = &["configmaps", "priorityclasses", "persistentvolumeclaims", "datadownloads", "daemonsets"];

/// One watch event, as the fake streams it.
#[derive(Clone)]
struct Line {
    resource_version: u64,
    /// `None` goes to every watch (an expiry).
    collection: Option<String>,
    name: String,
    text: String,
}

#[derive(Default)]
struct Inner {
    resource_version: u64,
    objects: BTreeMap<String, Value>,
    log: Vec<Line>,
    delays: HashMap<String, Duration>,
    failures: HashMap<String, u16>,
    calls: Vec<String>,
}

struct FakeApi {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Line>,
}

fn lock(fake: &FakeApi) -> MutexGuard<'_, Inner> {
    fake.inner.lock().expect("fake API lock")
}

impl FakeApi {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner { resource_version: 1, ..Default::default() }),
            events: broadcast::channel(64).0,
        })
    }

    fn cluster(self: &Arc<Self>) -> Cluster {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(request).await) }
        });
        Cluster::new(kube::Client::new(service, "default"))
    }

    /// Creates or replaces `object` in `collection`, and tells the watches.
    fn put(&self, collection: &str, mut object: Value) {
        let name = object["metadata"]["name"].as_str().expect("object name").to_string();
        let mut inner = lock(self);
        inner.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        let path = format!("{collection}/{name}");
        let kind = if inner.objects.contains_key(&path) { "MODIFIED" } else { "ADDED" };
        let text = json!({"type": kind, "object": object}).to_string();
        inner.objects.insert(path, object);
        self.publish(&mut inner, Some(collection), &name, text);
    }

    fn delete(&self, collection: &str, name: &str) {
        let mut inner = lock(self);
        let mut object = inner.objects.remove(&format!("{collection}/{name}")).expect("object to delete");
        inner.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        let text = json!({"type": "DELETED", "object": object}).to_string();
        self.publish(&mut inner, Some(collection), name, text);
    }

    /// Ends every open watch with "410 Gone", as an API server does when its history is
    /// compacted: the client must list again.
    fn expire_watches(&self) {
        let mut inner = lock(self);
        let text = json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}).to_string();
        let _ = self.events.send(Line {
            resource_version: inner.resource_version,
            collection: None,
            name: String::new(),
            text,
        });
        inner.log.clear();
    }

    /// Sent under the lock that watches subscribe under, so a watch sees each event exactly once.
    fn publish(&self, inner: &mut Inner, collection: Option<&str>, name: &str, text: String) {
        let line = Line {
            resource_version: inner.resource_version,
            collection: collection.map(str::to_string),
            name: name.to_string(),
            text,
        };
        inner.log.push(line.clone());
        let _ = self.events.send(line);
    }

    fn fail(&self, path: &str, code: u16) {
        lock(self).failures.insert(path.to_string(), code);
    }

    fn heal(&self, path: &str) {
        lock(self).failures.remove(path);
    }

    fn delay(&self, path: &str, delay: Duration) {
        lock(self).delays.insert(path.to_string(), delay);
    }

    fn calls(&self, path: &str) -> usize {
        lock(self).calls.iter().filter(|call| *call == path).count()
    }

    async fn handle(self: Arc<Self>, request: Request<kube::client::Body>) -> Response<Body> {
        let path = request.uri().path().to_string();
        let query = parse_query(request.uri().query().unwrap_or_default());
        let (delay, failure) = {
            let mut inner = lock(&self);
            inner.calls.push(path.clone());
            (inner.delays.get(&path).copied(), inner.failures.get(&path).copied())
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(code) = failure {
            return respond(code, status(code, "Forbidden", "the fake says no"));
        }
        if request.method() != hyper::Method::GET {
            return respond(405, status(405, "MethodNotAllowed", "the fake only reads"));
        }
        let name = query.get("fieldSelector").and_then(|s| s.strip_prefix("metadata.name=")).map(str::to_string);
        let is_collection = path.rsplit('/').next().is_some_and(|last| PLURALS.contains(&last));
        match (is_collection, query.get("watch").map(String::as_str)) {
            (true, Some("true" | "1")) => {
                let since = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
                self.watch(path, name, since)
            }
            (true, _) => self.list(&path, name.as_deref()),
            (false, _) => match lock(&self).objects.get(&path) {
                Some(object) => respond(200, object.clone()),
                None => respond(404, status(404, "NotFound", &format!("{path} not found"))),
            },
        }
    }

    fn list(&self, collection: &str, name: Option<&str>) -> Response<Body> {
        let inner = lock(self);
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|(path, object)| {
                path.rsplit_once('/').is_some_and(|(parent, _)| parent == collection)
                    && name.is_none_or(|name| object["metadata"]["name"] == name)
            })
            .map(|(_, object)| object.clone())
            .collect();
        let rv = inner.resource_version.to_string();
        respond(200, json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}))
    }

    fn watch(&self, collection: String, name: Option<String>, since: u64) -> Response<Body> {
        let (replay, receiver) = {
            let inner = lock(self);
            let replay: Vec<Line> = inner.log.iter().filter(|line| line.resource_version > since).cloned().collect();
            (replay, self.events.subscribe())
        };
        let live = futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(line) => Some((line, receiver)),
                Err(_) => None,
            }
        });
        let lines = futures::stream::iter(replay)
            .chain(live)
            .filter(move |line| {
                let wanted = line.collection.as_ref().is_none_or(|c| *c == collection)
                    && name.as_ref().is_none_or(|name| line.collection.is_none() || *name == line.name);
                futures::future::ready(wanted)
            })
            .map(|line| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{}\n", line.text)))));
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(StreamBody::new(lines).boxed_unsync())
            .expect("watch response")
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn respond(code: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .expect("response")
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

/// Percent-decoding, as `application/x-www-form-urlencoded` query strings need.
fn decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&byte) = text.as_bytes().get(i) {
        let escaped = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8 query")
}

fn configmap(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "velero"}, "data": {"node-agent-config.json": value}})
}

fn new_state() -> Arc<AppState> {
    let target = Target { namespace: "velero".to_string(), name: "node-agent-config".to_string() };
    Arc::new(AppState::new(
        Settings { target, velero_version: None, service_accounts: vec!["velero".to_string()] },
        None,
    ))
}

fn reloads(state: &AppState, result: &'static str) -> u64 {
    state.metrics.config_reloads.get_or_create(&ResultLabels { result }).get()
}

fn start_configmap_source(fake: &Arc<FakeApi>, state: &Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let source = Source::ConfigMap {
        cluster: fake.cluster(),
        namespace: "velero".to_string(),
        name: "node-agent-config".to_string(),
    };
    tokio::spawn(source::run(source, state.clone()))
}

/// Polls `check` until it holds, failing the test after `limit`.
async fn eventually(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const WITHIN_A_SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn configmap_source_against_fake_api_server_reloads_and_keeps_last_valid() {
    let fake = FakeApi::new();
    fake.put(CONFIGMAPS, configmap("node-agent-config", r#"{"podLabels": {"team": "backup"}}"#));
    // Another ConfigMap in the namespace must not be mistaken for it.
    fake.put(CONFIGMAPS, configmap("other", r#"{"podLabels": {"team": "other"}}"#));
    let state = new_state();
    let task = start_configmap_source(&fake, &state);

    eventually("generation 1", WITHIN_A_SECOND, || state.live_config().generation == 1).await;
    assert_eq!(state.readiness.check(), Ok(()));
    assert_eq!(state.live_config().config.pod_labels.get("team").map(String::as_str), Some("backup"));

    let started = Instant::now();
    fake.put(CONFIGMAPS, configmap("node-agent-config", r#"{"podLabels": {"team": "restore"}}"#));
    eventually("the edit", WITHIN_A_SECOND, || state.live_config().generation == 2).await;
    assert!(started.elapsed() < WITHIN_A_SECOND);
    let second = state.live_config();
    assert_eq!(second.config.pod_labels.get("team").map(String::as_str), Some("restore"));

    // Unrelated objects changing does not reload.
    fake.put(CONFIGMAPS, configmap("other", r#"{"podLabels": {"team": "again"}}"#));
    fake.put(CONFIGMAPS, configmap("node-agent-config", r#"{"podLabels": 5}"#));
    eventually("the invalid edit is rejected", WITHIN_A_SECOND, || reloads(&state, "error") == 1).await;
    assert_eq!(state.live_config(), second, "the last valid config keeps serving");
    assert_eq!(reloads(&state, "success"), 2);

    // After the watch expires the ConfigMap is listed again; seeing the same data again is
    // neither a new generation nor a new rejection.
    let lists = fake.calls(CONFIGMAPS);
    fake.expire_watches();
    eventually("the relist", Duration::from_secs(5), || fake.calls(CONFIGMAPS) >= lists + 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state.live_config(), second);
    assert_eq!((reloads(&state, "success"), reloads(&state, "error")), (2, 1));

    fake.put(CONFIGMAPS, configmap("node-agent-config", r#"{"podLabels": {"team": "fixed"}}"#));
    eventually("the fix", WITHIN_A_SECOND, || state.live_config().generation == 3).await;
    assert_eq!(state.live_config().config.pod_labels.get("team").map(String::as_str), Some("fixed"));
    assert_eq!(reloads(&state, "success"), 3);
    task.abort();
}

#[tokio::test]
async fn configmap_source_against_fake_api_server_is_ready_when_missing_and_follows_create_and_delete() {
    let fake = FakeApi::new();
    let state = new_state();
    assert!(state.readiness.check().is_err());
    let task = start_configmap_source(&fake, &state);

    eventually("ready without a ConfigMap", WITHIN_A_SECOND, || state.readiness.check().is_ok()).await;
    assert_eq!(state.live_config().generation, 0, "no settings, nothing loaded");
    assert_eq!(reloads(&state, "missing"), 1);

    fake.put(CONFIGMAPS, configmap("node-agent-config", r#"{"priorityClassName": "backup"}"#));
    eventually("the created ConfigMap", WITHIN_A_SECOND, || state.live_config().generation == 1).await;
    assert_eq!(state.live_config().config.priority_class_name, "backup");

    fake.delete(CONFIGMAPS, "node-agent-config");
    eventually("the deletion", WITHIN_A_SECOND, || state.live_config().generation == 2).await;
    assert_eq!(state.live_config().config, Default::default(), "a deleted ConfigMap asks for nothing");
    assert_eq!(state.readiness.check(), Ok(()));

    // Still missing after a relist: no new generation.
    let lists = fake.calls(CONFIGMAPS);
    fake.expire_watches();
    eventually("the relist", Duration::from_secs(5), || fake.calls(CONFIGMAPS) >= lists + 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state.live_config().generation, 2);
    assert_eq!(reloads(&state, "missing"), 1);
    task.abort();
}

#[tokio::test]
async fn configmap_source_against_fake_api_server_is_ready_with_an_invalid_configmap_at_start() {
    let fake = FakeApi::new();
    fake.put(CONFIGMAPS, configmap("node-agent-config", "podLabels: {}"));
    let state = new_state();
    let task = start_configmap_source(&fake, &state);
    eventually("ready with an invalid ConfigMap", WITHIN_A_SECOND, || state.readiness.check().is_ok()).await;
    assert_eq!(state.live_config().generation, 0);
    assert_eq!(reloads(&state, "error"), 1);
    task.abort();
}

fn priority_class(name: &str) -> Value {
    json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": 1000})
}

fn names(state: &AppState) -> Option<Vec<String>> {
    state.priority_classes().map(|set| {
        let mut names: Vec<String> = set.iter().cloned().collect();
        names.sort();
        names
    })
}

#[tokio::test]
async fn priority_class_watch_against_fake_api_server_fills_and_follows_the_set() {
    let fake = FakeApi::new();
    fake.put(PRIORITY_CLASSES, priority_class("system-node-critical"));
    fake.put(PRIORITY_CLASSES, priority_class("velero-critical"));
    let state = new_state();
    assert_eq!(names(&state), None, "unknown until listed");
    let cluster = fake.cluster();
    let task = tokio::spawn(source::watch_priority_classes(cluster, state.clone()));

    let want = |list: &[&str]| Some(list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    eventually("the first list", WITHIN_A_SECOND, || names(&state).is_some()).await;
    assert_eq!(names(&state), want(&["system-node-critical", "velero-critical"]));

    fake.put(PRIORITY_CLASSES, priority_class("data-mover"));
    eventually("an added class", WITHIN_A_SECOND, || names(&state).is_some_and(|n| n.len() == 3)).await;
    fake.delete(PRIORITY_CLASSES, "velero-critical");
    eventually("a deleted class", WITHIN_A_SECOND, || names(&state) == want(&["data-mover", "system-node-critical"]))
        .await;
    task.abort();
}

#[tokio::test]
async fn priority_class_watch_against_fake_api_server_retries_after_forbidden() {
    let fake = FakeApi::new();
    fake.put(PRIORITY_CLASSES, priority_class("velero-critical"));
    fake.fail(PRIORITY_CLASSES, 403);
    let state = new_state();
    let cluster = fake.cluster();
    let task = tokio::spawn(source::watch_priority_classes(cluster, state.clone()));

    eventually("a forbidden list", WITHIN_A_SECOND, || fake.calls(PRIORITY_CLASSES) >= 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(names(&state), None, "still unknown while forbidden");
    assert!(fake.calls(PRIORITY_CLASSES) <= 2, "retries back off rather than spin");

    fake.heal(PRIORITY_CLASSES);
    // The watcher's backoff starts at 0.8 s with jitter.
    eventually("the list after RBAC is fixed", Duration::from_secs(5), || names(&state).is_some()).await;
    assert_eq!(names(&state), Some(vec!["velero-critical".to_string()]));
    task.abort();
}

fn pvc(namespace: &str, name: &str, class: Option<&str>) -> Value {
    let spec = match class {
        Some(class) => json!({"storageClassName": class, "accessModes": ["ReadWriteOnce"]}),
        None => json!({"accessModes": ["ReadWriteOnce"]}),
    };
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

fn data_download(name: &str, target: Value) -> Value {
    json!({
        "apiVersion": "velero.io/v2alpha1",
        "kind": "DataDownload",
        "metadata": {"name": name, "namespace": "velero"},
        "spec": {"targetVolume": target, "operationTimeout": "10m"},
    })
}

#[tokio::test]
async fn storage_class_lookups_against_fake_api_server_read_du_and_dd_pvcs_and_cache_them() {
    let fake = FakeApi::new();
    fake.put(VELERO_PVCS, pvc("velero", "backup-1-abcde", Some("gp3")));
    fake.put(VELERO_PVCS, pvc("velero", "backup-2-fghij", None));
    fake.put(APP_PVCS, pvc("shop", "db-data", Some("fast-ssd")));
    fake.put(DATA_DOWNLOADS, data_download("restore-1-xyz", json!({"namespace": "shop", "pvc": "db-data"})));
    let cluster = fake.cluster();

    // DataUpload: the PVC named like the pod, in the Velero namespace.
    assert_eq!(cluster.storage_class_of_pvc("velero", "backup-1-abcde").await.ok(), Some(Some("gp3".to_string())));
    assert_eq!(cluster.storage_class_of_pvc("velero", "backup-2-fghij").await.ok(), Some(None), "no class");
    // DataDownload: its target PVC, in the application's namespace.
    assert_eq!(
        cluster.data_download_target_class("velero", "restore-1-xyz").await.ok(),
        Some(Some("fast-ssd".to_string()))
    );
    let dd_path = format!("{DATA_DOWNLOADS}/restore-1-xyz");
    let calls = [
        fake.calls(&format!("{VELERO_PVCS}/backup-1-abcde")),
        fake.calls(&format!("{VELERO_PVCS}/backup-2-fghij")),
        fake.calls(&dd_path),
        fake.calls(&format!("{APP_PVCS}/db-data")),
    ];
    assert_eq!(calls, [1, 1, 1, 1]);

    // Asked again: answered from the cache, "no class" included, without any API call;
    // clones of the Cluster share it.
    let clone = cluster.clone();
    assert_eq!(clone.storage_class_of_pvc("velero", "backup-1-abcde").await.ok(), Some(Some("gp3".to_string())));
    assert_eq!(clone.storage_class_of_pvc("velero", "backup-2-fghij").await.ok(), Some(None));
    assert_eq!(
        clone.data_download_target_class("velero", "restore-1-xyz").await.ok(),
        Some(Some("fast-ssd".to_string()))
    );
    assert_eq!(clone.storage_class_of_pvc("shop", "db-data").await.ok(), Some(Some("fast-ssd".to_string())));
    assert_eq!(lock(&fake).calls.len(), 4, "no API call for cached lookups");
}

#[tokio::test]
async fn storage_class_lookups_against_fake_api_server_report_bounded_failure_reasons() {
    let fake = FakeApi::new();
    fake.put(DATA_DOWNLOADS, data_download("restore-missing-pvc", json!({"namespace": "shop", "pvc": "gone"})));
    fake.put(DATA_DOWNLOADS, data_download("restore-no-target", json!({"namespace": "shop"})));
    fake.put(VELERO_PVCS, pvc("velero", "secret", Some("gp3")));
    fake.fail(&format!("{VELERO_PVCS}/secret"), 403);
    let cluster = fake.cluster();

    let reason = |result: Result<Option<String>, ClusterError>| result.map_err(|err| err.reason());
    assert_eq!(reason(cluster.storage_class_of_pvc("velero", "absent").await), Err("not_found"));
    assert_eq!(reason(cluster.data_download_target_class("velero", "absent").await), Err("not_found"));
    assert_eq!(reason(cluster.data_download_target_class("velero", "restore-missing-pvc").await), Err("not_found"));
    let incomplete = cluster.data_download_target_class("velero", "restore-no-target").await;
    assert!(
        matches!(&incomplete, Err(ClusterError::Incomplete { field: "pvc", .. })),
        "{:?}",
        incomplete.map_err(|e| e.to_string())
    );
    assert_eq!(reason(cluster.storage_class_of_pvc("velero", "secret").await), Err("forbidden"));

    // Failures are not cached: once the PVC exists, the next lookup finds it.
    fake.put(VELERO_PVCS, pvc("velero", "absent", Some("standard")));
    assert_eq!(cluster.storage_class_of_pvc("velero", "absent").await.ok(), Some(Some("standard".to_string())));
    assert_eq!(fake.calls(&format!("{VELERO_PVCS}/absent")), 2);
}

#[tokio::test]
async fn storage_class_lookup_against_slow_fake_api_server_times_out_and_is_not_cached() {
    let fake = FakeApi::new();
    let path = format!("{VELERO_PVCS}/backup-slow");
    fake.put(VELERO_PVCS, pvc("velero", "backup-slow", Some("gp3")));
    fake.delay(&path, LOOKUP_TIMEOUT * 2);
    let cluster = fake.cluster();

    let started = Instant::now();
    let result = cluster.storage_class_of_pvc("velero", "backup-slow").await;
    assert!(matches!(result, Err(ClusterError::Timeout(_))), "{:?}", result.map_err(|e| e.to_string()));
    assert_eq!(result.map_err(|e| e.reason()), Err("timeout"));
    let waited = started.elapsed();
    assert!(waited >= LOOKUP_TIMEOUT && waited < LOOKUP_TIMEOUT * 2, "{waited:?}");

    lock(&fake).delays.clear();
    assert_eq!(cluster.storage_class_of_pvc("velero", "backup-slow").await.ok(), Some(Some("gp3".to_string())));
    assert_eq!(fake.calls(&path), 2, "a timeout is not cached");
}

fn daemonset(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "node-agent", "namespace": "velero"},
        "spec": {
            "selector": {"matchLabels": {"name": "node-agent"}},
            "template": {"metadata": {"labels": {"name": "node-agent"}}, "spec": {"containers": containers}},
        },
    })
}

#[tokio::test]
async fn node_agent_version_against_fake_api_server_reads_the_daemonset_image() {
    let fake = FakeApi::new();
    let cluster = fake.cluster();
    assert_eq!(cluster.node_agent_version("velero").await, None, "no DaemonSet");

    fake.put(
        DAEMONSETS,
        daemonset(json!([
            {"name": "log-shipper", "image": "fluent/fluent-bit:3.0.0"},
            {"name": "node-agent", "image": "velero/velero:v1.18.1@sha256:4b6f7d4e8ad54c1e25f5b0a5b8f3e0d3c6a1d2e3f4a5b6c7d8e9f0a1b2c3d4e5"},
        ])),
    );
    assert_eq!(cluster.node_agent_version("velero").await, Some(VeleroVersion::new(1, 18, 1)));

    fake.put(DAEMONSETS, daemonset(json!([{"name": "agent", "image": "registry.local:5000/velero/velero:v1.17.0"}])));
    assert_eq!(cluster.node_agent_version("velero").await, Some(VeleroVersion::new(1, 17, 0)), "first container");

    fake.put(DAEMONSETS, daemonset(json!([{"name": "node-agent", "image": "velero/velero@sha256:4b6f7d4e"}])));
    assert_eq!(cluster.node_agent_version("velero").await, None, "digest only");
}

/// A pod CREATE by node-agent, as the mutating webhook receives it.
fn pod_create(pod: &Value) -> Review {
    serde_json::from_value(json!({
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "velero",
        "name": pod["metadata"]["name"], "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:velero:velero"}, "object": pod
    }))
    .expect("review")
}

/// The requirements the mutating webhook added to the pod's first required term.
async fn added_requirements(state: &AppState, pod: &Value) -> Vec<Value> {
    let decision = state.mutate(pod_create(pod)).await;
    let Some(patch) = decision.patch else { return Vec::new() };
    let ops: Vec<Value> = serde_json::from_slice(&patch).expect("patch");
    ops.iter()
        .filter(|op| op["path"].as_str().is_some_and(|p| p.contains("nodeSelectorTerms")))
        .map(|op| op["value"].clone())
        .collect()
}

#[tokio::test]
async fn mutating_webhook_against_fake_api_server_selects_the_load_affinity_entry_by_storage_class() {
    let fake = FakeApi::new();
    let upload = support::as_admitted(support::repo_json("testdata/pods/v1.18/pod-dataupload.json"));
    let upload_name = upload["metadata"]["name"].as_str().expect("name").to_string();
    fake.put(VELERO_PVCS, pvc("velero", &upload_name, Some("gp3-backup")));
    // A restore into an Immediate-binding PVC: no selected node, so loadAffinity applies.
    let mut download = support::as_admitted(support::repo_json("testdata/pods/v1.18/pod-datadownload.json"));
    download["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
    let download_name = download["metadata"]["name"].as_str().expect("name").to_string();
    fake.put(APP_PVCS, pvc("shop", "db-data", Some("fast-ssd")));
    fake.put(DATA_DOWNLOADS, data_download(&download_name, json!({"namespace": "shop", "pvc": "db-data"})));

    let target = Target { namespace: "velero".to_string(), name: "node-agent-config".to_string() };
    let settings = Settings { target, velero_version: None, service_accounts: vec!["velero".to_string()] };
    let state = AppState::new(settings, Some(fake.cluster()));
    let checked = check_value(
        r#"{"loadAffinity": [
            {"nodeSelector": {"matchLabels": {"role": "backup"}}},
            {"nodeSelector": {"matchLabels": {"zone": "a"}}, "storageClass": "gp3-backup"},
            {"nodeSelector": {"matchLabels": {"disk": "ssd"}}, "storageClass": "fast-ssd"}]}"#,
        &Environment::default(),
    );
    assert!(!checked.diagnostics.has_errors(), "{:?}", checked.diagnostics);
    state.set_live_config(LiveConfig { generation: 1, config: checked.config });

    let zone = json!({"key": "zone", "operator": "In", "values": ["a"]});
    assert_eq!(added_requirements(&state, &upload).await, vec![zone], "DataUpload: the backup PVC's class");
    let disk = json!({"key": "disk", "operator": "In", "values": ["ssd"]});
    assert_eq!(added_requirements(&state, &download).await, vec![disk], "DataDownload: the target PVC's class");

    // No PVC for this DataUpload: the lookup fails and the entry without storageClass applies.
    let mut orphan = upload.clone();
    orphan["metadata"]["name"] = json!("orphan-1");
    orphan["metadata"]["labels"]["velero.io/data-upload"] = json!("orphan-1");
    orphan["metadata"]["ownerReferences"][0]["name"] = json!("orphan-1");
    let role = json!({"key": "role", "operator": "In", "values": ["backup"]});
    assert_eq!(added_requirements(&state, &orphan).await, vec![role]);
    let lookups =
        |result: &'static str| state.metrics.storage_class_lookups.get_or_create(&ResultLabels { result }).get();
    assert_eq!((lookups("success"), lookups("not_found")), (2, 1));
}
