//! `cluster` against a test double: an in-process fake of the API calls it makes (GET of single
//! objects, LIST and WATCH of collections). The end-to-end suite (tests/e2e) runs these calls
//! against the real kube-apiserver; the fake stays only for what the real one cannot produce on
//! demand: counting the requests (a cached lookup makes none, a forbidden watch backs off rather
//! than spin), a slow answer (the lookup timeout), failures by status code, and two replicas
//! watching one ConfigMap (the end-to-end suite runs one server).

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

use node_agent_webhook::cluster::{Cluster, ClusterError, LOOKUP_TIMEOUT};
use node_agent_webhook::config::kind::Names;
use node_agent_webhook::mutating::LookupFailure;
use node_agent_webhook::server::state::{AppState, Settings};
use node_agent_webhook::source;
use node_agent_webhook::validating::Target;

type Body = UnsyncBoxBody<Bytes, Infallible>;

const PRIORITY_CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";
const VELERO_PVCS: &str = "/api/v1/namespaces/velero/persistentvolumeclaims";
const APP_PVCS: &str = "/api/v1/namespaces/shop/persistentvolumeclaims";
const VELERO_CONFIGMAPS: &str = "/api/v1/namespaces/velero/configmaps";
const DATA_DOWNLOADS: &str = "/apis/velero.io/v2alpha1/namespaces/velero/datadownloads";
/// The last path segment of every collection the fake serves; anything else is an object.
const PLURALS: &[&str] = &["priorityclasses", "persistentvolumeclaims", "datadownloads", "configmaps"];

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

fn new_state() -> Arc<AppState> {
    let target = Target { namespace: "velero".to_string(), names: Names::default() };
    Arc::new(AppState::new(
        Settings { target, velero_version: None, service_accounts: vec!["velero".to_string()] },
        None,
    ))
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

    let reason = |result: Result<Option<String>, ClusterError>| result.map_err(|err| err.failure());
    assert_eq!(reason(cluster.storage_class_of_pvc("velero", "absent").await), Err(LookupFailure::NotFound));
    assert_eq!(reason(cluster.data_download_target_class("velero", "absent").await), Err(LookupFailure::NotFound));
    assert_eq!(
        reason(cluster.data_download_target_class("velero", "restore-missing-pvc").await),
        Err(LookupFailure::NotFound)
    );
    let incomplete = cluster.data_download_target_class("velero", "restore-no-target").await;
    assert!(
        matches!(&incomplete, Err(ClusterError::Incomplete { field: "pvc", .. })),
        "{:?}",
        incomplete.map_err(|e| e.to_string())
    );
    assert_eq!(reason(cluster.storage_class_of_pvc("velero", "secret").await), Err(LookupFailure::Forbidden));

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
    assert_eq!(result.map_err(|e| e.failure()), Err(LookupFailure::Timeout));
    let waited = started.elapsed();
    assert!(waited >= LOOKUP_TIMEOUT && waited < LOOKUP_TIMEOUT * 2, "{waited:?}");

    lock(&fake).delays.clear();
    assert_eq!(cluster.storage_class_of_pvc("velero", "backup-slow").await.ok(), Some(Some("gp3".to_string())));
    assert_eq!(fake.calls(&path), 2, "a timeout is not cached");
}

fn node_agent_configmap(value: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "node-agent-config", "namespace": "velero", "labels": labels},
           "data": {"node-agent-config.json": value}})
}

/// Two replicas watching one ConfigMap name the config they serve by its resourceVersion: the
/// same whatever each lived through (one saw two edits, the other started after them), and a
/// new version, labels only included, names it anew on both.
#[tokio::test]
async fn replicas_watching_the_configmap_name_the_config_by_its_resource_version() {
    let fake = FakeApi::new();
    fake.put(VELERO_CONFIGMAPS, node_agent_configmap(r#"{"podLabels": {"team": "one"}}"#, json!({})));
    let source = |state: Arc<AppState>| {
        let source = source::Source::ConfigMap {
            cluster: fake.cluster(),
            namespace: "velero".to_string(),
            name: "node-agent-config".to_string(),
        };
        tokio::spawn(source::run(source, state))
    };
    let id = |state: &AppState| state.live_config().id.clone();
    let stored = || {
        let inner = lock(&fake);
        let version = &inner.objects[&format!("{VELERO_CONFIGMAPS}/node-agent-config")]["metadata"]["resourceVersion"];
        format!("resourceVersion:{}", version.as_str().unwrap_or_default())
    };
    let veteran = new_state();
    let veteran_task = source(veteran.clone());
    eventually("the first version", WITHIN_A_SECOND, || id(&veteran) == stored()).await;
    fake.put(VELERO_CONFIGMAPS, node_agent_configmap(r#"{"podLabels": {"team": "two"}}"#, json!({})));
    fake.put(VELERO_CONFIGMAPS, node_agent_configmap(r#"{"podLabels": {"team": "three"}}"#, json!({})));
    eventually("the third version", WITHIN_A_SECOND, || veteran.live_config().generation == 3).await;
    assert_eq!(id(&veteran), stored());

    let newcomer = new_state();
    let newcomer_task = source(newcomer.clone());
    eventually("the newcomer's first load", WITHIN_A_SECOND, || newcomer.live_config().generation == 1).await;
    assert_eq!(id(&newcomer), id(&veteran));
    assert_eq!(newcomer.live_config().config, veteran.live_config().config);
    assert_eq!((veteran.live_config().generation, newcomer.live_config().generation), (3, 1), "per process");

    fake.put(
        VELERO_CONFIGMAPS,
        node_agent_configmap(r#"{"podLabels": {"team": "three"}}"#, json!({"gitops": "synced"})),
    );
    let relabelled = stored();
    assert_ne!(relabelled, id(&veteran));
    for state in [&veteran, &newcomer] {
        eventually("the relabelled version", WITHIN_A_SECOND, || id(state) == relabelled).await;
    }
    veteran_task.abort();
    newcomer_task.abort();
}
