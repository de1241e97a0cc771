//! The validating webhook: a review of one of Velero's ConfigMaps in, the decision out. Velero
//! reads three ConfigMaps in its namespace; the name tells which kind a review is for.
//!
//! A review's walk is [`ValidatingWebhook::review`]: [`triage`] decides most reviews at once;
//! the others need the config check of the new contents (and, for an UPDATE's warnings, of the
//! old ones), taken from the kept checks (`kept`) or made on the blocking pool, so that a large
//! ConfigMap never holds an async worker and the API server's timeout holds; [`verdict`] then
//! words the outcome, with the UPDATE warnings of `warnings`. What the review reads of the
//! cluster comes in as [`Watched`], a snapshot of the server's watches: no API call is made.

mod kept;
mod warnings;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::{AcquireError, Semaphore};

use crate::admission::{Decision, Operation, Request};
use crate::config::by_kind;
use crate::config::configmap::{check_node_agent, ConfigMapData};
use crate::config::diagnostics::Severity;
use crate::config::kind::{Kind, Names};
use crate::config::model::NodeAgentConfig;
use crate::config::placement::{ClusterView, DaemonSetPlacement, NodeSnapshot};
use crate::config::third_party::{dropped_template_keys, TemplateKeys};
use crate::config::validate::Environment;
use crate::config::version::VeleroVersion;
use kept::KeptChecks;

/// Which ConfigMaps are Velero's: only those are checked, each as its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub names: Names,
}

impl Target {
    /// The kind of ConfigMap `namespace/name`, if it is one of Velero's.
    pub fn kind_of(&self, namespace: &str, name: &str) -> Option<Kind> {
        (self.namespace == namespace).then(|| self.names.kind_of(name)).flatten()
    }
}

/// What the config check reads of the cluster, as the watches last saw it: a change of any of
/// it makes every kept check stale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckEnv {
    pub velero_version: Option<VeleroVersion>,
    /// The PriorityClasses and StorageClasses the watches have seen (`None`: not listed yet).
    pub priority_classes: Option<Arc<HashSet<String>>>,
    /// Each StorageClass's `reclaimPolicy` by name (`Delete` where the class sets none).
    pub storage_classes: Option<Arc<BTreeMap<String, String>>>,
    /// The Nodes and node-agent's pod template's placement, for the placement warnings.
    pub nodes: Option<NodeSnapshot>,
    pub node_agent_placement: Option<Arc<DaemonSetPlacement>>,
}

impl CheckEnv {
    pub fn environment(&self) -> Environment<'_> {
        Environment {
            velero_version: self.velero_version,
            priority_classes: self.priority_classes.as_deref(),
            storage_classes: self.storage_classes.as_deref(),
            cluster: self.nodes.as_deref().map(|nodes| ClusterView {
                nodes,
                node_agent: self.node_agent_placement.as_deref(),
                reclaim_policies: self.storage_classes.as_deref(),
            }),
        }
    }
}

/// What a review reads of the cluster: the check's environment, and the in-tree third-party
/// keys of node-agent's DaemonSet pod template when it was seen (a config that supersedes one
/// gets a warning).
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub check: CheckEnv,
    pub node_agent_template: Option<Arc<TemplateKeys>>,
}

/// The config check, as the server makes it ([`check_contents`]); a test hands in a slow one.
pub type Check = fn(Kind, &ConfigMapData, &Environment) -> ContentsCheck;

/// The validating webhook of one server: which ConfigMaps it checks, its kept checks, and the
/// slots for checks on the blocking pool.
pub struct ValidatingWebhook {
    target: Target,
    kept: Mutex<KeptChecks>,
    check: Check,
    /// One per CPU: more checks at once would not finish sooner, and each blocking thread costs
    /// memory (its stack, and an allocator arena). A check waits for a slot asynchronously, so
    /// the deadline cuts off the wait too; the slot is held until the check itself ends, even
    /// when its review was cut off.
    slots: Arc<Semaphore>,
}

/// How many contents a review checked, and how many it took from the kept checks: the
/// `config_checks` metric.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub checked: u32,
    pub reused: u32,
}

/// A review's decision, and the checks it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub decision: Decision,
    pub checks: Checks,
}

/// Contents up to this many bytes are checked on the worker that decoded their review: such a
/// check costs about what decoding the review did (a 1.2 KB node-agent config: about 110k
/// instructions), less than handing it to the blocking pool and back. Larger ones go to the pool,
/// where the API server's timeout can cut them off.
const INLINE_CHECK_BYTES: usize = 4096;

/// The check could not run to its end: it panicked (a bug of ours), or its slots are gone.
#[derive(Debug, thiserror::Error)]
enum CheckFailed {
    #[error("the config check failed: {0}")]
    Panicked(#[from] tokio::task::JoinError),
    #[error("the config check panicked")]
    PanickedInline,
    #[error("no slot for the config check: {0}")]
    NoSlot(#[from] AcquireError),
}

impl ValidatingWebhook {
    pub fn new(target: Target) -> Self {
        Self::with_check(target, check_contents)
    }

    /// A webhook that checks contents with `check`.
    pub fn with_check(target: Target, check: Check) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self { target, kept: Mutex::new(KeptChecks::default()), check, slots: Arc::new(Semaphore::new(cpus)) }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Decides a ConfigMap review in the cluster the watches saw.
    pub async fn review(&self, request: &Request, watched: &Watched) -> Reviewed {
        let mut checks = Checks::default();
        let inputs = match triage(request, &self.target) {
            Review::Decided(decision) => return Reviewed { decision, checks },
            Review::NeedsCheck(inputs) => inputs,
        };
        let decision = match self.checked_verdict(&inputs, watched, &mut checks).await {
            Ok(decision) => decision,
            Err(err) => {
                tracing::error!(uid = %request.uid, error = %err, "no config check; admitting unchecked");
                Decision::allow_with_warnings(vec![format!(
                    "node-agent-webhook could not check this ConfigMap ({err}); admitted unchecked, please report this"
                )])
            }
        };
        Reviewed { decision, checks }
    }

    async fn checked_verdict(
        &self,
        inputs: &CheckInputs,
        watched: &Watched,
        checks: &mut Checks,
    ) -> Result<Decision, CheckFailed> {
        let new = self.checked(inputs.kind, &inputs.new, &watched.check, checks).await?;
        let old = match inputs.old.as_ref().filter(|_| old_check_needed(inputs, &new)) {
            Some(old) => Some(self.checked(inputs.kind, old, &watched.check, checks).await?),
            None => None,
        };
        let template = watched.node_agent_template.as_deref();
        Ok(verdict(&self.target, inputs, &new, old.as_deref(), template, watched.check.velero_version))
    }

    /// The check of `contents` in `env`: a kept one, or one made now (on the blocking pool unless
    /// the contents are small).
    async fn checked(
        &self,
        kind: Kind,
        contents: &Arc<ConfigMapData>,
        env: &CheckEnv,
        checks: &mut Checks,
    ) -> Result<Arc<ContentsCheck>, CheckFailed> {
        let hash = kept::hash(kind, contents);
        let kept = self.kept().get(env, hash, kind, contents);
        if let Some(check) = kept {
            checks.reused += 1;
            return Ok(check);
        }
        let made = if contents.bytes() <= INLINE_CHECK_BYTES {
            let check = || (self.check)(kind, contents, &env.environment());
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).map_err(|_| CheckFailed::PanickedInline)?
        } else {
            let slot = self.slots.clone().acquire_owned().await?;
            let (check, owned_contents, owned_env) = (self.check, contents.clone(), env.clone());
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                check(kind, &owned_contents, &owned_env.environment())
            })
            .await?
        };
        let made = Arc::new(made);
        checks.checked += 1;
        self.kept().keep(env, hash, kind, contents, &made);
        Ok(made)
    }

    /// A poisoned lock only means a check panicked mid-update of the cache: keep using it.
    fn kept(&self) -> std::sync::MutexGuard<'_, KeptChecks> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Decides a ConfigMap review with a fresh check, on the calling thread: the decision
/// [`ValidatingWebhook::review`] makes, without kept checks (a fuzz target's oracle).
pub fn review_configmap(request: &Request, target: &Target, env: &Environment) -> Decision {
    match triage(request, target) {
        Review::Decided(decision) => decision,
        Review::NeedsCheck(inputs) => {
            let new = check_contents(inputs.kind, &inputs.new, env);
            let old = inputs
                .old
                .as_ref()
                .filter(|_| old_check_needed(&inputs, &new))
                .map(|old| check_contents(inputs.kind, old, env));
            verdict(target, &inputs, &new, old.as_ref(), None, env.velero_version)
        }
    }
}

/// A ConfigMap review before the config check: most are decided at once; the others carry
/// everything the check's verdict depends on besides the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    Decided(Decision),
    NeedsCheck(CheckInputs),
}

/// The new `data` and `binaryData` keys and, for an UPDATE, the old ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInputs {
    kind: Kind,
    name: String,
    new: Arc<ConfigMapData>,
    old: Option<Arc<ConfigMapData>>,
}

/// The first step of a review: everything but the config check.
pub fn triage(request: &Request, target: &Target) -> Review {
    let kind = match target.kind_of(&request.namespace, &request.name) {
        Some(kind) if request.kind.kind == "ConfigMap" => kind,
        _ => return Review::Decided(Decision::allow()),
    };
    match request.operation {
        Operation::Delete => {
            Review::Decided(Decision::allow_with_warnings(vec![kind.delete_warning(&request.namespace, &request.name)]))
        }
        Operation::Connect => Review::Decided(Decision::allow()),
        Operation::Create | Operation::Update => {
            let Some(object) = &request.object else {
                return Review::Decided(Decision::deny_invalid("request.object is missing".to_string(), Vec::new()));
            };
            let new = match configmap_data(object) {
                Ok(contents) => Arc::new(contents),
                Err(message) => return Review::Decided(Decision::deny_invalid(message, Vec::new())),
            };
            let old = match (request.operation, &request.old_object) {
                (Operation::Update, Some(old)) => configmap_data(old).ok().map(Arc::new),
                _ => None,
            };
            Review::NeedsCheck(CheckInputs { kind, name: request.name.clone(), new, old })
        }
    }
}

/// The check of one ConfigMap's contents: the expensive part of a review. It depends on the
/// kind, the contents and the environment only, so a server may keep it for contents that come
/// back: `kubectl apply --dry-run=server` then `apply`, GitOps re-syncs, each retry the API
/// server makes of a write after a conflict, and an UPDATE's old contents (the last write's new).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentsCheck {
    /// Every finding as `(severity, "data[key]: ...")`, errors first.
    findings: Vec<(Severity, String)>,
    /// node-agent's config as its first data key decodes, errors or not (an UPDATE's restart
    /// warning compares the old one even so); `None` for the other kinds.
    node_agent_config: Option<NodeAgentConfig>,
}

impl ContentsCheck {
    fn has_errors(&self) -> bool {
        self.findings.iter().any(|(severity, _)| *severity == Severity::Error)
    }

    /// The config node-agent would run with: without errors, a node-agent ConfigMap has
    /// exactly one data key.
    fn valid_config(&self) -> Option<&NodeAgentConfig> {
        self.node_agent_config.as_ref().filter(|_| !self.has_errors())
    }
}

/// Checks one ConfigMap's contents as `kind`.
pub fn check_contents(kind: Kind, contents: &ConfigMapData, env: &Environment) -> ContentsCheck {
    match kind {
        Kind::NodeAgent => {
            let mut typed = check_node_agent(contents, env);
            // Moved out, not cloned: the findings need only the diagnostics.
            let node_agent_config = typed.values.first_mut().map(|(_, checked)| std::mem::take(&mut checked.config));
            ContentsCheck { findings: typed.findings().rendered(), node_agent_config }
        }
        other => ContentsCheck {
            findings: by_kind::check_configmap_of(other, contents, env).rendered(),
            node_agent_config: None,
        },
    }
}

/// Whether the verdict reads the check of an UPDATE's old contents: only the warnings of an
/// admitted change to node-agent's config do.
fn old_check_needed(inputs: &CheckInputs, new: &ContentsCheck) -> bool {
    inputs.kind == Kind::NodeAgent
        && inputs.old.as_ref().is_some_and(|old| *old != inputs.new)
        && new.valid_config().is_some()
}

/// The last step of a review: the decision from the check of the new contents and, when
/// [`old_check_needed`], of the old ones. `template` holds the in-tree third-party keys of
/// node-agent's DaemonSet pod template, when the cluster told them: a config that supersedes
/// one gets a warning.
fn verdict(
    target: &Target,
    inputs: &CheckInputs,
    new_check: &ContentsCheck,
    old_check: Option<&ContentsCheck>,
    template: Option<&TemplateKeys>,
    version: Option<VeleroVersion>,
) -> Decision {
    let CheckInputs { kind, name, new, old } = inputs;
    let findings = &new_check.findings;
    if old.as_ref().is_some_and(|old| old == new) {
        // A metadata-only update (labels, GitOps annotations) must never be blocked by an older mistake.
        let warnings = findings
            .iter()
            .map(|(severity, text)| match severity {
                Severity::Error => format!("existing error (data unchanged, so admitted): {text}"),
                Severity::Warning => text.clone(),
            })
            .collect();
        return Decision::allow_with_warnings(warnings);
    }
    let mut warnings: Vec<String> =
        findings.iter().filter(|(s, _)| *s == Severity::Warning).map(|(_, text)| text.clone()).collect();
    if new_check.has_errors() {
        let errors: Vec<&str> =
            findings.iter().filter(|(s, _)| *s == Severity::Error).map(|(_, text)| text.as_str()).collect();
        let message = format!(
            "ConfigMap {}/{name} is not a valid {} config ({} error{}):\n{}",
            target.namespace,
            kind.label(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n")
        );
        return Decision::deny_invalid(message, warnings);
    }
    let new_config = new_check.valid_config();
    if let (Some(template), Some(config)) = (template, new_config) {
        warnings.extend(dropped_template_keys(&config.pod_labels, &config.pod_annotations, template));
    }
    if old.is_some() {
        warnings.extend(warnings::update_warnings(target, *kind, old_check, new_config, version));
    }
    Decision::allow_with_warnings(warnings)
}

/// `data` and the keys of `binaryData` of a ConfigMap object.
fn configmap_data(object: &Value) -> Result<ConfigMapData, String> {
    let mut data = std::collections::BTreeMap::new();
    match object.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let Value::String(text) = value else {
                    return Err(format!("data[{key}]: Invalid value: must be a string"));
                };
                data.insert(key.clone(), text.clone());
            }
        }
        Some(_) => return Err("data: Invalid value: must be an object of strings".to_string()),
    }
    let binary_keys = match object.get("binaryData") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    Ok(ConfigMapData { data, binary_keys })
}
