//! The few Kubernetes API calls the server makes: watches (node-agent's ConfigMap, the
//! PriorityClass names, the StorageClasses and their reclaim policies, node-agent's DaemonSet
//! template), given as streams of what changed, and the reads the mutating webhook needs
//! (storage classes for loadAffinity, the Velero version). It knows nothing of the
//! server: what the data means is decided by the core, and where it goes by `source`; this
//! module only fetches, bounds, caches and hands over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PersistentVolumeClaim};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::core::ClusterResourceScope;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::config::configmap::ConfigMapData;
use crate::config::placement::DaemonSetPlacement;
use crate::config::third_party::TemplateKeys;
use crate::config::version::VeleroVersion;
use crate::mutating::{LookupError, LookupFailure, Lookups};

/// Bounds one storage-class lookup. It runs inside an admission review that the API server
/// gives 10-30 s in all; a slow API must cost the pod its loadAffinity, never the review.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a lookup result is reused: the pods of one backup arrive in bursts, and a PVC's
/// storage class does not change under it.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// At most this many cached lookups, so a flood of distinct pods cannot grow memory.
const CACHE_CAPACITY: usize = 512;
/// Bounds the Deployment read behind [`Cluster::velero_server_args`]; it runs at start-up,
/// when the API server may be slow and nothing is waiting on the answer.
const ARGS_TIMEOUT: Duration = Duration::from_secs(5);
/// Name of Velero's node-agent DaemonSet and of its container.
/// node-agent's DaemonSet, and its container, as `velero install` and Velero's chart name them.
pub(crate) const NODE_AGENT: &str = "node-agent";
/// Name of the Velero server Deployment and of its container.
const VELERO: &str = "velero";

/// Why a read from the API failed. [`ClusterError::reason`] gives the bounded metric label;
/// the text, which names the object, is for the log only.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no Kubernetes client configuration (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::Error),
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0} not found")]
    NotFound(String),
    #[error("forbidden to read {what}: {message}")]
    Forbidden { what: String, message: String },
    #[error("{what} has no spec.targetVolume.{field}")]
    Incomplete { what: String, field: &'static str },
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

impl ClusterError {
    /// Why, as the mutating webhook's metrics count it.
    pub fn failure(&self) -> LookupFailure {
        match self {
            Self::Timeout(_) => LookupFailure::Timeout,
            Self::NotFound(_) => LookupFailure::NotFound,
            Self::Forbidden { .. } => LookupFailure::Forbidden,
            Self::Config(_) | Self::Incomplete { .. } | Self::Api { .. } => LookupFailure::Other,
        }
    }

    /// Classifies by HTTP code as well as by reason: an error body that is not a `Status`
    /// (e.g. "404 page not found" when the DataDownload CRD is not installed) has no reason.
    fn from_api(what: String, err: kube::Error) -> Self {
        match &err {
            kube::Error::Api(status) if status.is_not_found() || status.code == 404 => Self::NotFound(what),
            kube::Error::Api(status) if status.is_forbidden() || status.code == 403 => {
                Self::Forbidden { what, message: status.message.clone() }
            }
            _ => Self::Api { what, source: err },
        }
    }
}

/// A handle on the cluster: a client plus the lookup cache. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    recent: Arc<Recent>,
}

impl Cluster {
    pub fn new(client: kube::Client) -> Self {
        Self { client, recent: Arc::default() }
    }

    /// The client, for the watches of other modules (`nodes`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Connects the way kubectl would: the kubeconfig if there is one, else the in-cluster
    /// service account.
    pub async fn infer() -> Result<Self, ClusterError> {
        kube::Client::try_default().await.map(Self::new).map_err(ClusterError::Config)
    }

    /// What node-agent would read from ConfigMap `namespace/name`, each time that changes
    /// (see [`distinct_changes`]); an edit of labels only is sent, for its new resourceVersion,
    /// which names the config the same way on every replica.
    pub fn configmap_changes(&self, namespace: &str, name: &str) -> impl Stream<Item = Observed> + Send + 'static {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        distinct_changes(api, name, format!("the node-agent ConfigMap {namespace}/{name}"), Observed::of)
    }

    /// The names of all PriorityClasses, each time the set changes (see [`class_changes`]).
    pub fn priority_class_changes(&self) -> impl Stream<Item = WatchedNames> + Send + 'static {
        let api: Api<PartialObjectMeta<PriorityClass>> = Api::all(self.client.clone());
        class_changes(api, "PriorityClasses", |_| ())
            .map(|(classes, interrupted)| WatchedNames { names: classes.into_keys().collect(), interrupted })
    }

    /// Each StorageClass's `reclaimPolicy` by name, each time a class comes, goes or changes
    /// its policy (see [`class_changes`]): the names for the checks that a class exists, the
    /// policies for the `cachePVC` one. Whole objects, as the policy is no metadata; a
    /// cluster has a handful of classes.
    pub fn storage_class_changes(&self) -> impl Stream<Item = BTreeMap<String, String>> + Send + 'static {
        let api: Api<StorageClass> = Api::all(self.client.clone());
        class_changes(api, "StorageClasses", reclaim_policy).map(|(classes, _)| classes)
    }

    /// Whether PriorityClass `name` exists now: one GET of its metadata within
    /// [`LOOKUP_TIMEOUT`], never cached. The watched name set can lag (a class deleted while the
    /// watch reconnects after an API server restart), and a pod given a class that does not
    /// exist is rejected by the Priority plugin whatever the webhook's failurePolicy.
    pub async fn priority_class_exists(&self, name: &str) -> Result<bool, ClusterError> {
        let api: Api<PriorityClass> = Api::all(self.client.clone());
        within(LOOKUP_TIMEOUT, async {
            let found = api.get_metadata_opt(name).await;
            found.map(|meta| meta.is_some()).map_err(|err| ClusterError::from_api(format!("priorityclass {name}"), err))
        })
        .await
    }

    /// The storage class of PVC `namespace/name`. For a DataUpload pod this is the PVC named
    /// like the pod in the Velero namespace, which exists before the pod (`backupPVCName :=
    /// ownerObject.Name` in Velero's `pkg/exposer/csi_snapshot.go`, v1.18.3);
    /// its class is the final backupPVC class loadAffinity is keyed by. An unset or empty
    /// `storageClassName` is `None`, which Velero matches against the global entry.
    pub async fn storage_class_of_pvc(&self, namespace: &str, name: &str) -> Result<Option<String>, ClusterError> {
        self.cached(Key::Pvc(namespace.to_string(), name.to_string()), async {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
            let pvc = get(&api, "persistentvolumeclaim", namespace, name).await?;
            Ok(pvc.spec.and_then(|spec| spec.storage_class_name).filter(|class| !class.is_empty()))
        })
        .await
    }

    /// The storage class of the PVC a DataDownload restores into (`dd.Spec.TargetVolume` in
    /// Velero's `pkg/controller/data_download_controller.go`, v1.18.3). The
    /// pod's own PVC does not exist yet at admission, so this reads the DataDownload's
    /// `spec.targetVolume.{namespace,pvc}` (as a dynamic object: no CRD types to keep in step
    /// with Velero) and looks that PVC up.
    pub async fn data_download_target_class(
        &self,
        velero_namespace: &str,
        data_download: &str,
    ) -> Result<Option<String>, ClusterError> {
        self.cached(Key::DataDownload(velero_namespace.to_string(), data_download.to_string()), async {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), velero_namespace, &data_download_resource());
            let object = get(&api, "datadownload", velero_namespace, data_download).await?;
            let target = |field: &'static str| {
                object.data["spec"]["targetVolume"][field].as_str().filter(|value| !value.is_empty()).ok_or_else(|| {
                    ClusterError::Incomplete { what: format!("datadownload {velero_namespace}/{data_download}"), field }
                })
            };
            self.storage_class_of_pvc(target("namespace")?, target("pvc")?).await
        })
        .await
    }

    /// What the server reads from the `node-agent` DaemonSet, each time it changes (see
    /// [`distinct_changes`]); `None` while the DaemonSet does not exist. A watch of the one
    /// object rather than a read per review: a ConfigMap review then costs the API server
    /// nothing more, and an edit (a template key added, Velero upgraded) arrives within
    /// milliseconds.
    pub fn node_agent_changes(
        &self,
        namespace: &str,
    ) -> impl Stream<Item = Option<NodeAgentDaemonSet>> + Send + 'static {
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
        distinct_changes(api, NODE_AGENT, format!("the node-agent DaemonSet in {namespace}"), |daemonset| {
            daemonset.map(NodeAgentDaemonSet::of)
        })
    }

    /// The args of the Velero server Deployment's container, which name the ConfigMaps the
    /// server reads; `None` when it cannot be read.
    pub async fn velero_server_args(&self, namespace: &str) -> Option<Vec<String>> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let server = within(ARGS_TIMEOUT, get(&deployments, "deployment", namespace, VELERO)).await;
        let server = server
            .inspect_err(|err| tracing::warn!(error = %err, "cannot read the Velero server Deployment; its ConfigMap names are not compared"))
            .ok()?;
        let containers = server.spec?.template.spec?.containers;
        Some(container(&containers, VELERO)?.args.clone().unwrap_or_default())
    }

    /// Answers from the cache, or runs `lookup` within [`LOOKUP_TIMEOUT`] and caches a success.
    /// Errors are not cached: the next pod tries again.
    async fn cached(
        &self,
        key: Key,
        lookup: impl Future<Output = Result<Option<String>, ClusterError>>,
    ) -> Result<Option<String>, ClusterError> {
        if let Some(class) = self.recent.get(&key, Instant::now()) {
            return Ok(class);
        }
        let class = within(LOOKUP_TIMEOUT, lookup).await?;
        self.recent.put(key, class.clone(), Instant::now());
        Ok(class)
    }
}

/// The mutating webhook's lookups, through the API with [`Cluster`]'s timeout and cache.
impl Lookups for Cluster {
    async fn storage_class_of_pvc(&self, namespace: &str, name: &str) -> Result<Option<String>, LookupError> {
        Cluster::storage_class_of_pvc(self, namespace, name).await.map_err(lookup_error)
    }

    async fn data_download_target_class(&self, namespace: &str, name: &str) -> Result<Option<String>, LookupError> {
        Cluster::data_download_target_class(self, namespace, name).await.map_err(lookup_error)
    }

    async fn priority_class_exists(&self, name: &str) -> Result<bool, LookupError> {
        Cluster::priority_class_exists(self, name).await.map_err(lookup_error)
    }
}

fn lookup_error(err: ClusterError) -> LookupError {
    LookupError { failure: err.failure(), message: err.to_string() }
}

/// What node-agent reads from its ConfigMap (the data, and which keys hold binary data), and
/// the version of the object it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Missing,
    Present { data: ConfigMapData, resource_version: String },
}

impl Observed {
    fn of(configmap: Option<&ConfigMap>) -> Self {
        match configmap {
            None => Self::Missing,
            Some(cm) => Self::Present {
                data: ConfigMapData {
                    data: cm.data.clone().unwrap_or_default(),
                    binary_keys: cm.binary_data.iter().flat_map(|binary| binary.keys().cloned()).collect(),
                },
                resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
            },
        }
    }
}

/// The names of a watched kind as last seen, and whether the watch failed since: then a name
/// may have come or gone unseen until the watch is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedNames {
    pub names: HashSet<String>,
    pub interrupted: bool,
}

/// A set folded from watcher events: a relist replaces it whole, so it never shows a partial
/// set. `C` is the set (names, or what the placement checks keep of each Node).
#[derive(Debug)]
pub(crate) struct Relisted<C> {
    /// The last complete set; `None` until the first list completes.
    pub(crate) known: Option<C>,
    /// A list in progress; it replaces `known` when complete.
    listing: Option<C>,
}

impl<C> Default for Relisted<C> {
    fn default() -> Self {
        Self { known: None, listing: None }
    }
}

impl<C: Default + PartialEq> Relisted<C> {
    /// Applies one event, with `insert` and `remove` saying whether they changed the set;
    /// whether the complete set changed.
    pub(crate) fn apply<K>(
        &mut self,
        event: Event<K>,
        insert: impl Fn(&mut C, K) -> bool,
        remove: impl Fn(&mut C, K) -> bool,
    ) -> bool {
        match event {
            Event::Init => {
                self.listing = Some(C::default());
                false
            }
            Event::InitApply(object) => {
                insert(self.listing.get_or_insert_with(C::default), object);
                false
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = self.known.as_ref() != Some(&listed);
                self.known = Some(listed);
                changed
            }
            Event::Apply(object) => self.known.as_mut().is_some_and(|known| insert(known, object)),
            Event::Delete(object) => self.known.as_mut().is_some_and(|known| remove(known, object)),
        }
    }
}

/// The objects of a watched kind by name, each with what a check reads of it (`V`), folded
/// from watcher events.
#[derive(Debug)]
struct ClassSet<V> {
    set: Relisted<BTreeMap<String, V>>,
    /// The watch failed after the set was complete, and no event has shown it back since.
    interrupted: bool,
}

impl<V> Default for ClassSet<V> {
    fn default() -> Self {
        Self { set: Relisted::default(), interrupted: false }
    }
}

impl<V: PartialEq> ClassSet<V> {
    /// Applies one event, `value` reading what is kept of an object; returns the set when it
    /// changed, or when the watch is back after an interruption (a completed list, or any
    /// event of a resumed watch).
    fn apply<K: ResourceExt>(&mut self, event: Event<K>, value: impl Fn(&K) -> V) -> Option<&BTreeMap<String, V>> {
        let resumed = !matches!(event, Event::Init | Event::InitApply(_)) && std::mem::take(&mut self.interrupted);
        let changed = self.set.apply(
            event,
            |classes, object| {
                let kept = value(&object);
                let name = object.name_any();
                let changed = classes.get(&name) != Some(&kept);
                classes.insert(name, kept);
                changed
            },
            |classes, object| classes.remove(&object.name_any()).is_some(),
        );
        if changed || resumed {
            self.set.known.as_ref()
        } else {
            None
        }
    }

    /// Marks the set as possibly stale after a watch error; returns it the first time.
    fn interrupt(&mut self) -> Option<&BTreeMap<String, V>> {
        if self.interrupted || self.set.known.is_none() {
            return None;
        }
        self.interrupted = true;
        self.set.known.as_ref()
    }
}

/// What a storage-class lookup was about: a PVC, or a DataDownload (namespace, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pvc(String, String),
    DataDownload(String, String),
}

/// Recent lookup results, "no class" included, so a burst of pods for one backup costs one
/// API call per volume. Bounded by [`CACHE_CAPACITY`]; entries live [`CACHE_TTL`].
#[derive(Debug, Default)]
struct Recent {
    entries: Mutex<HashMap<Key, (Instant, Option<String>)>>,
}

impl Recent {
    fn get(&self, key: &Key, now: Instant) -> Option<Option<String>> {
        let entries = lock(&self.entries);
        entries.get(key).filter(|(at, _)| now.duration_since(*at) < CACHE_TTL).map(|(_, class)| class.clone())
    }

    /// Stores a result; when full, drops the expired entries, and then the oldest if need be.
    fn put(&self, key: Key, class: Option<String>, now: Instant) {
        let mut entries = lock(&self.entries);
        if entries.len() >= CACHE_CAPACITY && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
            let oldest = entries.iter().min_by_key(|(_, (at, _))| *at).map(|(key, _)| key.clone());
            if let (true, Some(oldest)) = (entries.len() >= CACHE_CAPACITY, oldest) {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now, class));
    }
}

/// A poisoned lock only means another thread panicked mid-update of a cache: keep using it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What `seen` makes of object `name` of `api`, each time that changes; the stream never ends.
/// The first item comes from the first successful list, whatever it finds (a missing object
/// included). A relist after a watch expires repeats what was already sent and is not sent
/// again. API errors (RBAC included) are logged, naming `what`, and retried with backoff; the
/// last item stands meanwhile.
fn distinct_changes<K, T>(
    api: Api<K>,
    name: &str,
    what: String,
    seen: impl Fn(Option<&K>) -> T + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: Clone + PartialEq + Send + 'static,
{
    let mut last: Option<T> = None;
    watcher::watch_object(api, name).default_backoff().filter_map(move |event| {
        let change = match event {
            Ok(object) => {
                let now = seen(object.as_ref());
                (last.as_ref() != Some(&now)).then(|| {
                    last = Some(now.clone());
                    now
                })
            }
            Err(err) => {
                tracing::warn!(error = %err, "watching {what}; retrying");
                None
            }
        };
        std::future::ready(change)
    })
}

/// Every object of a cluster-scoped kind by name, with what `value` reads of it, each time
/// that changes, and whether the watch failed since; the stream never ends. The first item
/// comes when the first list completes, so until then the set is unknown and nothing is called
/// missing on a guess. Errors (RBAC included) are logged, naming `kind`, retried with backoff,
/// and mark the set interrupted.
fn class_changes<K, V>(
    api: Api<K>,
    kind: &'static str,
    value: impl Fn(&K) -> V + Send + 'static,
) -> impl Stream<Item = (BTreeMap<String, V>, bool)> + Send + 'static
where
    K: Resource<Scope = ClusterResourceScope> + Clone + DeserializeOwned + Debug + Send + 'static,
    V: Clone + PartialEq + Send + 'static,
{
    let mut classes = ClassSet::default();
    watcher::watcher(api, watcher::Config::default()).default_backoff().filter_map(move |event| {
        let change = match event {
            Ok(event) => classes.apply(event, &value).cloned(),
            Err(err) => {
                tracing::warn!(error = %err, "watching {kind}; retrying");
                classes.interrupt().cloned()
            }
        };
        std::future::ready(change.map(|known| (known, classes.interrupted)))
    })
}

/// A StorageClass's `reclaimPolicy`, `Delete` when unset: the API server defaults it so
/// (`SetDefaults_StorageClass`, Kubernetes' `pkg/apis/storage/v1/defaults.go`, v1.37.2).
pub(crate) fn reclaim_policy(class: &StorageClass) -> String {
    class.reclaim_policy.clone().unwrap_or_else(|| "Delete".to_string())
}

/// Runs `work`, or gives up with [`ClusterError::Timeout`] after `limit`.
async fn within<T>(limit: Duration, work: impl Future<Output = Result<T, ClusterError>>) -> Result<T, ClusterError> {
    tokio::time::timeout(limit, work).await.unwrap_or(Err(ClusterError::Timeout(limit)))
}

/// GETs one object, naming it in the error as `kind namespace/name`.
async fn get<K>(api: &Api<K>, kind: &str, namespace: &str, name: &str) -> Result<K, ClusterError>
where
    K: Clone + DeserializeOwned + Debug,
{
    api.get(name).await.map_err(|err| ClusterError::from_api(format!("{kind} {namespace}/{name}"), err))
}

/// Velero's DataDownload, `datadownloads.velero.io/v2alpha1`.
fn data_download_resource() -> ApiResource {
    ApiResource {
        group: "velero.io".to_string(),
        version: "v2alpha1".to_string(),
        api_version: "velero.io/v2alpha1".to_string(),
        kind: "DataDownload".to_string(),
        plural: "datadownloads".to_string(),
    }
}

/// What the `node-agent` DaemonSet tells the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgentDaemonSet {
    /// The in-tree third-party labels and annotations of its pod template (Velero's
    /// `pkg/install/daemonset.go`), for the warning that a config drops one.
    pub template_keys: TemplateKeys,
    /// The Velero version of its container's image tag; `None` for an image without one
    /// (digest only), or without the container.
    pub version: Option<VeleroVersion>,
    /// Its container's args, which name the ConfigMaps node-agent reads; `None` without the
    /// container.
    pub args: Option<Vec<String>>,
    /// Where the DaemonSet controller places its pods, for the placement warnings.
    pub placement: DaemonSetPlacement,
}

impl NodeAgentDaemonSet {
    pub(crate) fn of(daemonset: &DaemonSet) -> Self {
        let template = daemonset.spec.as_ref().map(|spec| &spec.template);
        let meta = template.and_then(|template| template.metadata.as_ref());
        let (labels, annotations) = meta.map_or((None, None), |meta| (meta.labels.as_ref(), meta.annotations.as_ref()));
        let empty = BTreeMap::new();
        let containers = template.and_then(|template| template.spec.as_ref()).map(|spec| spec.containers.as_slice());
        let node_agent = containers.and_then(|containers| container(containers, NODE_AGENT));
        Self {
            template_keys: TemplateKeys::of(labels.unwrap_or(&empty), annotations.unwrap_or(&empty)),
            version: node_agent.and_then(|c| c.image.as_deref()).and_then(version_of_image),
            args: node_agent.map(|c| c.args.clone().unwrap_or_default()),
            placement: DaemonSetPlacement::of_pod_spec(
                &daemonset
                    .spec
                    .as_ref()
                    .and_then(|spec| serde_json::to_value(&spec.template.spec).ok())
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The container named `name`, or else the first (a renamed one, with sidecars after it).
fn container<'a>(containers: &'a [Container], name: &str) -> Option<&'a Container> {
    containers.iter().find(|c| c.name == name).or_else(|| containers.first())
}

/// The version in an image reference's tag: `velero/velero:v1.18.1@sha256:…` gives 1.18.1.
/// A registry port (`host:5000/velero`) is not a tag; a digest-only or `latest` image gives `None`.
fn version_of_image(image: &str) -> Option<VeleroVersion> {
    let reference = image.split('@').next().unwrap_or_default();
    let last_part = reference.rsplit('/').next().unwrap_or_default();
    let (_, tag) = last_part.split_once(':')?;
    tag.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;
    use kube::core::PartialObjectMetaExt;

    #[test]
    fn versions_come_from_image_tags_only() {
        let cases = [
            ("velero/velero:v1.17.0", Some(VeleroVersion::new(1, 17, 0))),
            ("velero/velero:v1.18.1@sha256:0123abcd", Some(VeleroVersion::new(1, 18, 1))),
            ("registry.example:5000/velero/velero:v1.16.2", Some(VeleroVersion::new(1, 16, 2))),
            ("velero:1.18.0-rc.1", Some(VeleroVersion::new(1, 18, 0))),
            ("velero/velero@sha256:0123abcd", None),
            ("registry.example:5000/velero/velero", None),
            ("velero/velero:latest", None),
            ("velero/velero", None),
            ("", None),
        ];
        for (image, want) in cases {
            assert_eq!(version_of_image(image), want, "{image}");
        }
    }

    fn daemonset(containers: &[(&str, &str)]) -> DaemonSet {
        let containers = containers
            .iter()
            .map(|(name, image)| Container {
                name: name.to_string(),
                image: Some(image.to_string()),
                args: (*name == NODE_AGENT).then(|| vec!["node-agent-args".to_string()]),
                ..Default::default()
            })
            .collect();
        DaemonSet {
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec { spec: Some(PodSpec { containers, ..Default::default() }), metadata: None },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_agent_container_is_found_by_name_else_first() {
        let version = |ds: &DaemonSet| NodeAgentDaemonSet::of(ds).version;
        let with_sidecar = daemonset(&[("sidecar", "proxy:1.0"), ("node-agent", "velero/velero:v1.17.0")]);
        assert_eq!(version(&with_sidecar), Some(VeleroVersion::new(1, 17, 0)));
        assert_eq!(version(&daemonset(&[("agent", "velero/velero:v1.18.0")])), Some(VeleroVersion::new(1, 18, 0)));
        assert_eq!(version(&daemonset(&[])), None);
        assert_eq!(version(&DaemonSet::default()), None);
        assert_eq!(NodeAgentDaemonSet::of(&with_sidecar).args, Some(vec!["node-agent-args".to_string()]));
        assert_eq!(NodeAgentDaemonSet::of(&daemonset(&[])).args, None, "no container, no args");
    }

    fn class(name: &str) -> PartialObjectMeta<PriorityClass> {
        ObjectMeta { name: Some(name.to_string()), ..Default::default() }.into_response_partial()
    }

    fn set(names: &[&str]) -> BTreeMap<String, ()> {
        names.iter().map(|n| (n.to_string(), ())).collect()
    }

    impl ClassSet<()> {
        /// Applies a PriorityClass event, keeping its name only.
        fn see(&mut self, event: Event<PartialObjectMeta<PriorityClass>>) -> Option<&BTreeMap<String, ()>> {
            self.apply(event, |_| ())
        }
    }

    #[test]
    fn names_are_unknown_until_the_first_list_completes_and_relists_swap_atomically() {
        let mut names = ClassSet::default();
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::Init), None);
        assert_eq!(names.see(Event::InitApply(class("high"))), None);
        assert_eq!(names.set.known, None, "a partial list is not the set");
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::InitDone), Some(&set(&["high"])));
        assert_eq!(names.see(Event::Apply(class("low"))), Some(&set(&["high", "low"])));
        assert_eq!(names.see(Event::Apply(class("low"))), None, "an update of a known class changes nothing");
        assert_eq!(names.see(Event::Delete(class("high"))), Some(&set(&["low"])));
        // A relist keeps serving the old set until it completes, then replaces it.
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::Init), None);
        assert_eq!(names.see(Event::InitApply(class("other"))), None);
        assert_eq!(names.set.known, Some(set(&["low"])));
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::InitDone), Some(&set(&["other"])));
        // An identical relist is not a change.
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::Init), None);
        assert_eq!(names.see(Event::InitApply(class("other"))), None);
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::InitDone), None);
    }

    #[test]
    fn an_error_marks_the_set_interrupted_until_the_watch_shows_it_is_back() {
        let mut names = ClassSet::default();
        assert_eq!(names.interrupt(), None, "nothing known, nothing stale");
        names.see(Event::<PartialObjectMeta<PriorityClass>>::Init);
        names.see(Event::InitApply(class("high")));
        names.see(Event::<PartialObjectMeta<PriorityClass>>::InitDone);
        assert_eq!(names.interrupt(), Some(&set(&["high"])));
        assert!(names.interrupted);
        assert_eq!(names.interrupt(), None, "said once");
        // A relist in progress does not show the watch is back; its completion does.
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::Init), None);
        assert_eq!(names.see(Event::InitApply(class("high"))), None);
        assert!(names.interrupted);
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::InitDone), Some(&set(&["high"])));
        assert!(!names.interrupted);
        // A resumed watch's first event, even one that changes nothing.
        names.interrupt();
        assert_eq!(names.see(Event::Apply(class("high"))), Some(&set(&["high"])));
        assert!(!names.interrupted);
    }

    #[test]
    fn an_empty_first_list_is_known_to_be_empty() {
        let mut names = ClassSet::default();
        names.see(Event::<PartialObjectMeta<PriorityClass>>::Init);
        assert_eq!(names.see(Event::<PartialObjectMeta<PriorityClass>>::InitDone), Some(&BTreeMap::new()));
    }

    /// A class's reclaimPolicy is read with its name: a change of the policy alone is a change
    /// of the set, and a class without one has the API server's default.
    #[test]
    fn storage_classes_are_kept_with_their_reclaim_policy() {
        let storage_class = |name: &str, policy: Option<&str>| StorageClass {
            metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            reclaim_policy: policy.map(str::to_string),
            ..Default::default()
        };
        let policies = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(name, policy)| (name.to_string(), policy.to_string())).collect()
        };
        let mut classes = ClassSet::default();
        classes.apply(Event::Init, reclaim_policy);
        classes.apply(Event::InitApply(storage_class("cache", Some("Retain"))), reclaim_policy);
        let listed = classes.apply(Event::InitApply(storage_class("plain", None)), reclaim_policy).cloned();
        assert_eq!(listed, None, "a partial list is not the set");
        assert_eq!(
            classes.apply(Event::InitDone, reclaim_policy),
            Some(&policies(&[("cache", "Retain"), ("plain", "Delete")]))
        );
        let same = classes.apply(Event::Apply(storage_class("cache", Some("Retain"))), reclaim_policy).cloned();
        assert_eq!(same, None, "an update that keeps the policy changes nothing");
        // reclaimPolicy is immutable: a class is replaced by a delete and a create of its name.
        classes.apply(Event::Delete(storage_class("cache", Some("Retain"))), reclaim_policy);
        assert_eq!(
            classes.apply(Event::Apply(storage_class("cache", Some("Delete"))), reclaim_policy),
            Some(&policies(&[("cache", "Delete"), ("plain", "Delete")]))
        );
    }

    #[test]
    fn cache_entries_expire_and_the_cache_stays_bounded() {
        let recent = Recent::default();
        let start = Instant::now();
        let key = |i: usize| Key::Pvc("velero".to_string(), format!("pvc-{i}"));
        recent.put(key(0), Some("gp3".to_string()), start);
        recent.put(key(1), None, start);
        assert_eq!(recent.get(&key(0), start + CACHE_TTL / 2), Some(Some("gp3".to_string())));
        assert_eq!(recent.get(&key(1), start), Some(None), "\"no class\" is cached too");
        assert_eq!(recent.get(&key(0), start + CACHE_TTL), None, "expired");
        assert_eq!(recent.get(&Key::DataDownload("velero".to_string(), "pvc-0".to_string()), start), None);

        for i in 2..CACHE_CAPACITY + 10 {
            recent.put(key(i), None, start + Duration::from_millis(i as u64));
        }
        assert_eq!(lock(&recent.entries).len(), CACHE_CAPACITY);
        assert_eq!(recent.get(&key(0), start), None, "the oldest entries made room");
        assert!(recent.get(&key(CACHE_CAPACITY + 9), start + Duration::from_secs(1)).is_some());

        // Once everything has expired, a put clears the expired entries rather than one at a time.
        recent.put(key(0), None, start + CACHE_TTL * 2);
        assert_eq!(lock(&recent.entries).len(), 1);
    }

    #[test]
    fn observed_configmap_is_its_data_and_binary_keys() {
        assert_eq!(Observed::of(None), Observed::Missing);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("node-agent-config".to_string()),
                resource_version: Some("7".to_string()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("config".to_string(), "{}".to_string())])),
            binary_data: Some(BTreeMap::from([("blob".to_string(), ByteString(vec![1]))])),
            ..Default::default()
        };
        let relabelled = ConfigMap {
            metadata: ObjectMeta {
                labels: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
                resource_version: Some("8".to_string()),
                ..cm.metadata.clone()
            },
            ..cm.clone()
        };
        assert_eq!(
            Observed::of(Some(&cm)),
            Observed::Present {
                data: ConfigMapData {
                    data: BTreeMap::from([("config".to_string(), "{}".to_string())]),
                    binary_keys: vec!["blob".to_string()],
                },
                resource_version: "7".to_string(),
            }
        );
        assert_ne!(Observed::of(Some(&cm)), Observed::of(Some(&relabelled)), "a new version names the config anew");
        assert_eq!(
            Observed::of(Some(&cm)),
            Observed::of(Some(&cm.clone())),
            "a relist of the same version is no change"
        );
        assert_eq!(
            Observed::of(Some(&ConfigMap::default())),
            Observed::Present { data: ConfigMapData::default(), resource_version: String::new() }
        );
    }

    #[test]
    fn api_errors_map_to_bounded_reasons() {
        let status = |code: u16| kube::Error::Api(kube::core::Status::failure("nope", "").with_code(code).boxed());
        let reason = |code| ClusterError::from_api("pvc velero/x".to_string(), status(code)).failure();
        assert_eq!(reason(404), LookupFailure::NotFound);
        assert_eq!(reason(403), LookupFailure::Forbidden);
        assert_eq!(reason(500), LookupFailure::Other);
        assert_eq!(ClusterError::Timeout(LOOKUP_TIMEOUT).failure(), LookupFailure::Timeout);
        assert_eq!(ClusterError::Incomplete { what: "dd".to_string(), field: "pvc" }.failure(), LookupFailure::Other);
    }
}
