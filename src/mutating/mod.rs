//! The mutating webhook: a pod CREATE in, the decision out, with what was decided and why.
//!
//! A review's walk is [`MutatingWebhook::review`]: [`submission`] gives the core the review as
//! plain values; `mutate::identity` tells whether the pod is one of node-agent's data-mover
//! pods; the storage class and the PriorityClasses the plan needs come from [`Lookups`] (the
//! cluster's API, behind a trait so the flow knows nothing of a client); `mutate::plan` and
//! `mutate::verified_mutation` make the patch; [`decision`] gives the wire format's answer. The
//! core (`mutate`) never sees the review.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use crate::admission::{Decision, Operation, Request};
use crate::config::load::LiveConfig;
use crate::mutate::identity::{DataMover, MoverKind, NodeAgentIdentity, SkipReason, Submission};
use crate::mutate::plan::{self, Notes, PlanInput, Setting, StorageClass};
use crate::mutate::{self, Mutation};

/// `authentication.kubernetes.io/pod-name`: bound tokens name the pod that holds them.
const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// What the core needs of a review: who submitted which object, where.
pub fn submission(request: &Request) -> Submission<'_> {
    submission_with(request, request.object.as_ref())
}

/// [`submission`] with `pod`, the request's object, taken out of it.
fn submission_with<P>(request: &Request, pod: Option<P>) -> Submission<'_, P> {
    Submission {
        creates_a_pod: request.operation == Operation::Create
            && request.kind.kind == "Pod"
            && request.kind.group.is_empty(),
        namespace: &request.namespace,
        name: &request.name,
        username: &request.user_info.username,
        token_pod_name: request.user_info.extra_value(POD_NAME_EXTRA),
        pod,
    }
}

/// Why a lookup failed, as the `storage_class_lookups` metric counts it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum LookupFailure {
    Timeout,
    NotFound,
    Forbidden,
    Other,
}

/// A lookup that failed: why, and the text for the log (it names the object).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LookupError {
    pub failure: LookupFailure,
    pub message: String,
}

/// The reads of the cluster the mutating webhook makes for a pod, each bounded by its caller's
/// implementation (the server's: `cluster::Cluster`, with a timeout and a cache).
pub trait Lookups: Sync {
    /// The storage class of PVC `namespace/name` (`None`: no class).
    fn storage_class_of_pvc(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, LookupError>> + Send;
    /// The storage class of the PVC DataDownload `namespace/name` restores into.
    fn data_download_target_class(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, LookupError>> + Send;
    /// Whether PriorityClass `name` exists now.
    fn priority_class_exists(&self, name: &str) -> impl Future<Output = Result<bool, LookupError>> + Send;
}

/// What a review reads of the server's state: the live config, and the PriorityClass names as
/// the watch last saw them (`interrupted`: the watch failed since, so a class may have come or
/// gone unseen).
#[derive(Debug, Clone)]
pub struct PodContext {
    pub live: Arc<LiveConfig>,
    pub priority_classes: Option<Arc<HashSet<String>>>,
    pub priority_watch_interrupted: bool,
}

/// The storage-class lookup's result.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StorageClassLookup {
    Success,
    /// The server has no Kubernetes API (a config file, no kubeconfig).
    NoCluster,
    Failed(LookupFailure),
}

/// Why a pod was admitted as it is.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Skipped {
    /// Not one of node-agent's data-mover pods.
    NotADataMover(SkipReason),
    /// A data-mover pod the live config has nothing to change in.
    NothingToChange,
}

/// What the mutating webhook did with one pod and why: what its metrics and its log line say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodOutcome {
    pub skipped: Option<Skipped>,
    /// When the plan needed the storage class.
    pub storage_class_lookup: Option<StorageClassLookup>,
    /// What the plan noted (a conflict, a missing class, annotations left out).
    pub notes: Notes,
    /// The patch did not apply to its own pod and was dropped.
    pub self_check_failed: bool,
    /// The settings the patch applies.
    pub applied: Vec<Setting>,
    /// The identity of the config the patch comes from (as in the pod's `applied` annotation);
    /// empty without a patch.
    pub config: String,
}

/// A review's decision, and the outcome behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub decision: Decision,
    pub outcome: PodOutcome,
}

/// The mutating webhook of one server: whose pods it mutates.
pub struct MutatingWebhook {
    identity: NodeAgentIdentity,
}

impl MutatingWebhook {
    pub fn new(identity: NodeAgentIdentity) -> Self {
        Self { identity }
    }

    pub fn identity(&self) -> &NodeAgentIdentity {
        &self.identity
    }

    /// Gives a data-mover pod the live config's settings; every other pod passes untouched.
    /// `lookups` is the cluster's API, when the server can reach one: without it, the
    /// loadAffinity entry without a storage class applies and the watched classes stand.
    pub async fn review(&self, mut request: Request, context: &PodContext, lookups: Option<&impl Lookups>) -> Reviewed {
        let mut outcome = PodOutcome::default();
        let object = request.object.take();
        let (mover, pod) = match self.identity.identify_owning(submission_with(&request, object)) {
            Ok(identified) => identified,
            Err(reason) => {
                outcome.skipped = Some(Skipped::NotADataMover(reason));
                return Reviewed { decision: Decision::allow(), outcome };
            }
        };
        let config = &context.live.config;
        let storage_class = if plan::needs_storage_class(&pod, &mover, config) {
            let (class, lookup) = storage_class(&self.identity.namespace, &mover, lookups).await;
            outcome.storage_class_lookup = Some(lookup);
            class
        } else {
            StorageClass::Known(None)
        };
        let classes = priority_classes_now(context, &config.priority_class_name, lookups).await;
        let plan = plan::plan(&PlanInput {
            pod: &pod,
            mover: &mover,
            config,
            config_id: &context.live.id,
            storage_class,
            priority_classes: classes.as_deref(),
        });
        outcome.notes = plan.notes;
        if plan.ops.is_empty() {
            outcome.skipped = Some(Skipped::NothingToChange);
        }
        let mutation = mutate::verified_mutation(pod, plan);
        match &mutation {
            Mutation::Dropped { .. } => {
                outcome.self_check_failed = true;
                tracing::error!(uid = %request.uid, pod = %mover.name, "patch did not apply to its own pod; admitted unchanged");
            }
            Mutation::Patch { applied, .. } => {
                outcome.applied.clone_from(applied);
                outcome.config.clone_from(&context.live.id);
            }
            Mutation::Unchanged { .. } => {}
        }
        Reviewed { decision: decision(mutation), outcome }
    }
}

/// The class that chooses the loadAffinity entry: the DataUpload's PVC (named like the pod),
/// or the DataDownload's target PVC in the application's namespace; with the lookup's result.
async fn storage_class(
    namespace: &str,
    mover: &DataMover,
    lookups: Option<&impl Lookups>,
) -> (StorageClass, StorageClassLookup) {
    let Some(lookups) = lookups else { return (StorageClass::Unknown, StorageClassLookup::NoCluster) };
    // Boxed, as below: a lookup's future (a kube request under a timeout) is kilobytes, and
    // awaited inline it would make every review's future that large, copied whole at each of
    // axum's layers (24k instructions of `memcpy` per `/mutate` review in file mode, which never
    // looks anything up).
    let looked_up = match mover.kind {
        MoverKind::DataUpload => Box::pin(lookups.storage_class_of_pvc(namespace, &mover.name)).await,
        _ => Box::pin(lookups.data_download_target_class(namespace, &mover.name)).await,
    };
    match looked_up {
        Ok(class) => (StorageClass::Known(class), StorageClassLookup::Success),
        Err(err) => {
            tracing::warn!(pod = %mover.name, error = %err, "storage class lookup failed; using the loadAffinity entry without storageClass");
            (StorageClass::Unknown, StorageClassLookup::Failed(err.failure))
        }
    }
}

/// The PriorityClasses the mutating webhook may set. The watched set answers when it holds
/// `wanted` and its watch is live (a deletion reaches it in milliseconds); otherwise the API
/// server is asked for this pod: a class missing from the set may be newer than the set, and
/// after a watch failure (an API server restart) a listed class may be gone, which would make
/// the Priority plugin reject the pod. The watched set stands only when that GET fails.
async fn priority_classes_now(
    context: &PodContext,
    wanted: &str,
    lookups: Option<&impl Lookups>,
) -> Option<Arc<HashSet<String>>> {
    let watched = context.priority_classes.clone();
    let live = !context.priority_watch_interrupted;
    if wanted.is_empty() || (live && watched.as_ref().is_some_and(|set| set.contains(wanted))) {
        return watched;
    }
    let Some(lookups) = lookups else { return watched };
    match Box::pin(lookups.priority_class_exists(wanted)).await {
        Ok(true) => Some(Arc::new(HashSet::from([wanted.to_string()]))),
        Ok(false) => Some(Arc::new(HashSet::new())),
        Err(err) => {
            tracing::warn!(class = wanted, error = %err, "PriorityClass lookup failed; using the watched set");
            watched
        }
    }
}

/// The admission decision for a mutation: always allowed, with the patch when there is one.
pub fn decision(mutation: Mutation) -> Decision {
    match mutation {
        Mutation::Unchanged { warnings } | Mutation::Dropped { warnings } => Decision::allow_with_warnings(warnings),
        Mutation::Patch { patch, warnings, .. } => {
            Decision { patch: Some(patch), ..Decision::allow_with_warnings(warnings) }
        }
    }
}
