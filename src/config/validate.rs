//! Semantic rules for a decoded config: what node-agent would silently drop, what would
//! make the API server reject data-mover pods later, and what a given Velero version ignores.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::decode::Decoded;
use super::diagnostics::{Diagnostic, Diagnostics, Severity};
use super::model::{
    is_velero_key, BackupPvc, CopiedObjects, LabelSelector, NodeAgentConfig, PodResources, SelectorRequirement,
    APPLIED_ANNOTATION, APPLIED_ANNOTATION_MAX_BYTES,
};
use super::placement::{self, ClusterView};
use super::version::{self, VeleroVersion};
use crate::k8s::field::{self, go_quote, FieldError, FieldErrorKind, Path};
use crate::k8s::names;
use crate::k8s::quantity::Quantity;
use crate::k8s::resources;
use crate::k8s::selector::{
    self, EntryPaths, LabelSelectorOptions, NodeSelectorTerm, Requirement, LABEL_SELECTOR_OPERATORS,
    NODE_SELECTOR_OPERATORS, TOTAL_ANNOTATION_SIZE_LIMIT_B,
};
use crate::k8s::toleration;

/// What is known about the cluster the config is for. Everything is optional: the
/// offline checker knows nothing, the server knows what its watches have seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment<'a> {
    pub velero_version: Option<VeleroVersion>,
    /// The PriorityClasses that exist, when the server can see them.
    pub priority_classes: Option<&'a HashSet<String>>,
    /// The StorageClasses that exist, each with its `reclaimPolicy`, when the server can see them.
    pub storage_classes: Option<&'a BTreeMap<String, String>>,
    /// The Nodes (and node-agent's DaemonSet, the classes' reclaim policies) for the placement
    /// warnings (`placement`), when the server's watches or `check --kubeconfig` see them.
    pub cluster: Option<ClusterView<'a>>,
}

/// Adds every semantic finding about `decoded.config` to `decoded.diagnostics`.
pub fn add_rule_findings(decoded: &mut Decoded, env: &Environment) {
    let shared: &Decoded = decoded;
    let config = &shared.config;
    let mut v = Validator { decoded: shared, found: Diagnostics::default() };
    v.load_concurrency(config);
    v.load_affinity(config, env.velero_version);
    v.pod_resources(
        config.pod_resources.as_ref(),
        "node-agent ignores the whole podResources section unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given",
    );
    v.priority_class(
        &config.priority_class_name,
        env,
        "node-agent drops it and the webhook leaves pod priority alone until it does",
    );
    v.pod_metadata(config);
    v.backup_pvcs(&config.backup_pvc, env);
    v.restore_pvc(config);
    v.cache_pvc(config, env);
    for err in toleration::validate_tolerations(&config.tolerations, "tolerations") {
        // The API server would refuse every data-mover pod the webhook gives these to.
        v.error(err);
    }
    let mut found = v.found;
    if let Some(view) = &env.cluster {
        found.0.extend(placement::placement_warnings(decoded, view, env.velero_version));
    }
    decoded.diagnostics.0.extend(found.0);
}

/// The rules' findings about one decoded value; the rules that do not depend on the ConfigMap
/// kind (`C`) are shared with Velero's other ConfigMaps.
pub(super) struct Validator<'d, C = NodeAgentConfig> {
    pub(super) decoded: &'d Decoded<C>,
    pub(super) found: Diagnostics,
}

impl<C> Validator<'_, C> {
    fn report(&mut self, severity: Severity, err: FieldError) {
        if self.decoded.is_unusable(&err.path) {
            return;
        }
        let pos = self.decoded.positions.lookup(&err.path);
        self.found.push(Diagnostic::from_field_error(severity, &err, pos));
    }

    pub(super) fn error(&mut self, err: FieldError) {
        self.report(Severity::Error, err);
    }

    pub(super) fn warn(&mut self, path: &str, message: impl Into<String>) {
        if self.decoded.is_unusable(path) {
            return;
        }
        let pos = self.decoded.positions.lookup(path);
        self.found.push(Diagnostic::warning(path, message, pos));
    }

    fn is_present(&self, path: &str) -> bool {
        self.decoded.positions.contains(path)
    }

    fn load_concurrency(&mut self, config: &NodeAgentConfig) {
        let Some(lc) = &config.load_concurrency else { return };
        if self.is_present("loadConcurrency.globalConfig") {
            if lc.global_config < 1 {
                self.error(FieldError::invalid_raw(
                    "loadConcurrency.globalConfig",
                    lc.global_config.to_string(),
                    "must be at least 1 (node-agent replaces it with 1)",
                ));
            }
        } else {
            self.warn(
                "loadConcurrency",
                "globalConfig is not set: node-agent logs that 0 is invalid and uses 1; set it explicitly",
            );
        }
        for (i, rule) in lc.per_node_config.iter().enumerate() {
            let path = field::index("loadConcurrency.perNodeConfig", i);
            self.label_selector(&rule.node_selector, &field::child(&path, "nodeSelector"));
            if rule.number < 1 {
                self.error(FieldError::invalid_raw(
                    field::child(&path, "number"),
                    rule.number.to_string(),
                    "must be at least 1 (node-agent skips this rule)",
                ));
            }
        }
        if lc.prepare_queue_length < 0 {
            self.error(FieldError::invalid_raw(
                "loadConcurrency.prepareQueueLength",
                lc.prepare_queue_length.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }

    /// `perNodeConfig` selectors go through `LabelSelectorAsSelector`: label-selector rules.
    fn label_selector(&mut self, selector: &LabelSelector, path: &str) {
        let expressions = requirements_of(&selector.match_expressions);
        let errs = selector::validate_label_selector(
            &selector.match_labels,
            &expressions,
            path,
            LabelSelectorOptions::default(),
            EntryPaths::AtEntry,
        );
        if errs.is_empty() {
            self.report_unsatisfiable(selector, path, "node-agent never applies this rule");
        }
        self.selector_errors(errs, &LABEL_SELECTOR_OPERATORS);
    }

    /// A `loadAffinity` selector: Velero copies `matchLabels` (as `In`) and `matchExpressions`
    /// into the pod's node affinity, so the labels follow label rules, the expressions
    /// Kubernetes' node-selector rules, and `Gt`/`Lt` values must be integers to ever match.
    pub(super) fn node_affinity_selector(&mut self, selector: &LabelSelector, path: &str) {
        let mut errs =
            selector::validate_labels(&selector.match_labels, &field::child(path, "matchLabels"), EntryPaths::AtEntry);
        let term = NodeSelectorTerm {
            match_expressions: requirements_of(&selector.match_expressions),
            match_fields: Vec::new(),
        };
        errs.extend(selector::validate_node_selector_term(&term, path, false));
        errs.extend(selector::validate_gt_lt_values(&term.match_expressions, &field::child(path, "matchExpressions")));
        if errs.is_empty() {
            self.report_unsatisfiable(
                selector,
                path,
                "the data-mover pods it is applied to stay Pending until Velero cancels them (after 30 minutes)",
            );
        }
        self.selector_errors(errs, &NODE_SELECTOR_OPERATORS);
    }

    /// A valid selector no node can match is an error naming the requirements that conflict
    /// (`matchLabels` read as `In`, as Velero and `LabelSelectorAsSelector` both do).
    fn report_unsatisfiable(&mut self, selector: &LabelSelector, path: &str, consequence: &str) {
        // Each requirement's path, written out only if it is named in a conflict.
        const MATCH_LABELS: Path = Path::Text("matchLabels");
        const MATCH_EXPRESSIONS: Path = Path::Text("matchExpressions");
        let mut requirements: Vec<(Path, Requirement)> = selector
            .match_labels
            .iter()
            .map(|(key, value)| {
                let values = std::slice::from_ref(value);
                (Path::Key(&MATCH_LABELS, key), Requirement { key, operator: selector::OP_IN, values })
            })
            .collect();
        requirements.extend(
            requirements_of(&selector.match_expressions)
                .into_iter()
                .enumerate()
                .map(|(i, requirement)| (Path::Index(&MATCH_EXPRESSIONS, i), requirement)),
        );
        let reqs: Vec<Requirement> = requirements.iter().map(|(_, r)| *r).collect();
        let Some(conflict) = selector::conflicting_requirements(&reqs) else { return };
        let named: Vec<String> = conflict
            .iter()
            .filter_map(|&i| requirements.get(i))
            .map(|(at, requirement)| format!("{requirement} ({at})"))
            .collect();
        let what = match named.as_slice() {
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last} together", init.join(", ")),
            [] => return,
        };
        self.error(FieldError::forbidden(path, format!("no node can satisfy {what}: {consequence}")));
    }

    /// A selector's errors, with an unknown operator said as `Unsupported value` and the
    /// operators this selector takes (the API server only says "not a valid selector operator").
    fn selector_errors(&mut self, errs: Vec<FieldError>, operators: &[&str]) {
        for err in errs {
            self.error(with_supported_operators(err, operators));
        }
    }

    /// Checks labels (`podLabels`) with the entry's own path, so the position is exact.
    fn labels(&mut self, labels: &BTreeMap<String, String>, path: &str) {
        for err in selector::validate_labels(labels, path, EntryPaths::AtEntry) {
            self.error(err);
        }
    }

    /// Checks one label key and value, reporting at the entry's own path so the position is exact.
    pub(super) fn label_entry(&mut self, entry: &str, key: &str, value: &str) {
        for msg in names::is_qualified_name(key) {
            self.error(FieldError::invalid(entry, key, msg));
        }
        for msg in names::is_label_value(value) {
            self.error(FieldError::invalid(entry, value, msg));
        }
    }

    fn load_affinity(&mut self, config: &NodeAgentConfig, version: Option<VeleroVersion>) {
        let by_class = version::chooses_affinity_by_storage_class(version);
        let mut global_entry: Option<usize> = None;
        let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
        let remapped: BTreeMap<&str, &str> = config
            .backup_pvc
            .iter()
            .filter(|(source, pvc)| !pvc.storage_class.is_empty() && pvc.storage_class != **source)
            .map(|(source, pvc)| (source.as_str(), pvc.storage_class.as_str()))
            .collect();
        for (i, entry) in config.load_affinity.iter().enumerate() {
            let path = field::index("loadAffinity", i);
            let selector_path = field::child(&path, "nodeSelector");
            match (entry.node_selector.is_empty(), version) {
                (false, _) => {}
                (true, Some(v)) if !version::empty_selector_matches_no_node(version) => self.warn(
                    &selector_path,
                    format!("an empty selector restricts nothing: node-agent {v} gives the pods only its own OS requirement; give it matchLabels or matchExpressions, or remove the entry"),
                ),
                (true, _) => self.error(FieldError::required(
                    &selector_path,
                    "must have matchLabels or matchExpressions: Velero 1.17 turns an empty selector into a term that matches no node",
                )),
            }
            self.node_affinity_selector(&entry.node_selector, &selector_path);
            if let (false, Some(v), 1..) = (by_class, version, i) {
                self.warn(
                    &path,
                    format!(
                        "node-agent of Velero {v} reads only loadAffinity[0] and gives it to every data-mover pod, whatever its storage class; the webhook ANDs this entry into it for the pods this entry is for, so they need nodes matching both, and restarting node-agent does not change that: keep one entry, or upgrade to Velero 1.17+"
                    ),
                );
            }
            if entry.storage_class.is_empty() {
                if let Some(first) = global_entry {
                    let who = match version {
                        Some(v) if !by_class => {
                            format!(
                                "the webhook uses loadAffinity[{first}] (node-agent {v} reads only loadAffinity[0])"
                            )
                        }
                        _ => format!("node-agent uses loadAffinity[{first}]"),
                    };
                    self.error(FieldError::forbidden(
                        &path,
                        format!(
                            "only one entry may omit storageClass: {who} and ignores this one; merge their selectors"
                        ),
                    ));
                } else {
                    global_entry = Some(i);
                }
                continue;
            }
            let class_path = field::child(&path, "storageClass");
            for msg in names::is_dns1123_subdomain(&entry.storage_class) {
                self.error(FieldError::invalid(&class_path, &entry.storage_class, msg));
            }
            if let Some(first) = classes.insert(&entry.storage_class, i) {
                self.error(FieldError::duplicate(&class_path, &entry.storage_class));
                classes.insert(&entry.storage_class, first);
                continue;
            }
            if let Some(backup_class) = remapped.get(entry.storage_class.as_str()) {
                self.warn(
                    &class_path,
                    format!(
                        "DataUpload pods look up the backup PVC's class {}, not {}: this entry applies to restores only",
                        go_quote(backup_class),
                        go_quote(&entry.storage_class)
                    ),
                );
            }
        }
    }

    /// `partial` says what Velero does with a section that lacks one of the four quantities.
    pub(super) fn pod_resources(&mut self, resources: Option<&PodResources>, partial: &str) {
        let Some(r) = resources else { return };
        let pairs = r.pairs();
        let fields: Vec<(&str, &str, &str)> = pairs
            .iter()
            .flat_map(|p| [(p.resource, p.request_key, p.request), (p.resource, p.limit_key, p.limit)])
            .collect();
        let mut parsed: BTreeMap<&str, Quantity> = BTreeMap::new();
        for &(resource, name, text) in &fields {
            if text.is_empty() {
                continue;
            }
            let path = field::child("podResources", name);
            match text.parse::<Quantity>() {
                Ok(q) => {
                    let errs = resources::quantity_value_errors(resource, &q);
                    if errs.is_empty() {
                        parsed.insert(name, q);
                    }
                    for msg in errs {
                        self.error(FieldError::invalid(&path, text, msg));
                    }
                }
                Err(err) => self.error(FieldError::invalid(path, text, err.to_string())),
            }
        }
        let missing: Vec<&str> = fields[..4]
            .iter()
            .filter(|(_, name, text)| text.is_empty() && !self.decoded.is_unusable(&field::child("podResources", name)))
            .map(|(_, name, _)| *name)
            .collect();
        if !missing.is_empty() {
            self.error(FieldError::required(
                "podResources",
                format!("{} not set: {partial}; use \"0\" for no limit", missing.join(", ")),
            ));
        }
        for pair in &pairs {
            let (resource, request, limit, limit_text) = (pair.resource, pair.request_key, pair.limit_key, pair.limit);
            let (Some(req), Some(lim)) = (parsed.get(request), parsed.get(limit)) else { continue };
            // Velero reads the literal "0" as no limit, not as a limit of zero.
            if limit_text == "0" {
                continue;
            }
            let Some(detail) = resources::request_limit_error(resource, req, lim) else { continue };
            let zero_hint = if lim.is_zero() {
                format!(" ({limit} {} is a real zero: only the literal \"0\" means no limit)", go_quote(limit_text))
            } else {
                String::new()
            };
            self.error(FieldError::invalid(field::child("podResources", request), pair.request, detail + &zero_hint));
        }
    }

    /// `missing` says what Velero does with a class the cluster does not have.
    pub(super) fn priority_class(&mut self, name: &str, env: &Environment, missing: &str) {
        if name.is_empty() {
            return;
        }
        let messages = names::is_dns1123_subdomain(name);
        let valid = messages.is_empty();
        for msg in messages {
            self.error(FieldError::invalid("priorityClassName", name, msg));
        }
        if let (true, Some(classes)) = (valid, env.priority_classes) {
            if !classes.contains(name) {
                self.warn("priorityClassName", format!("PriorityClass {} does not exist: {missing}", go_quote(name)));
            }
        }
    }

    fn pod_metadata(&mut self, config: &NodeAgentConfig) {
        self.labels(&config.pod_labels, "podLabels");
        for key in config.pod_labels.keys() {
            if is_velero_key(key) {
                self.error(FieldError::forbidden(
                    field::key("podLabels", key),
                    "keys under velero.io/ are Velero's own: overriding them breaks how Velero finds its data-mover pods",
                ));
            }
        }
        let total = self.annotations(&config.pod_annotations, "podAnnotations");
        // The planner never writes these (the same rule as for labels), so the checker says so
        // instead of admitting a setting that silently does nothing.
        for key in config.pod_annotations.keys().filter(|key| is_velero_key(key)) {
            self.error(FieldError::forbidden(
                field::key("podAnnotations", key),
                "keys under velero.io/ are Velero's own: node-agent-webhook never writes them to data-mover pods; use a prefix of your own",
            ));
        }
        if total <= TOTAL_ANNOTATION_SIZE_LIMIT_B
            && total + APPLIED_ANNOTATION_MAX_BYTES > TOTAL_ANNOTATION_SIZE_LIMIT_B
        {
            self.warn(
                "podAnnotations",
                format!("take {total} of the {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes a pod's annotations may take, leaving no room for {APPLIED_ANNOTATION} (up to {APPLIED_ANNOTATION_MAX_BYTES} bytes): data-mover pods will not say what the webhook applied"),
            );
        }
        if config.pod_annotations.contains_key(APPLIED_ANNOTATION) {
            self.error(FieldError::forbidden(
                format!("podAnnotations[{APPLIED_ANNOTATION}]"),
                "this annotation is written by node-agent-webhook itself to say what it applied",
            ));
        }
    }

    /// Keys are reported at their entry (so each error points at its key), the size at the map;
    /// the size is returned, for the room left to the `applied` annotation.
    pub(super) fn annotations(&mut self, annotations: &BTreeMap<String, String>, path: &str) -> usize {
        for err in selector::validate_annotations(annotations, path, EntryPaths::AtEntry) {
            self.error(err);
        }
        annotations.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// A warning when the server sees the cluster's StorageClasses and `class` is not among them.
    fn missing_storage_class(&mut self, path: &str, class: &str, env: &Environment, consequence: &str) {
        if env.storage_classes.is_some_and(|classes| !classes.contains_key(class)) {
            self.warn(path, format!("StorageClass {} does not exist: {consequence}", go_quote(class)));
        }
    }

    fn backup_pvcs(&mut self, pvcs: &BTreeMap<String, BackupPvc>, env: &Environment) {
        for (source, pvc) in pvcs {
            let path = field::key("backupPVC", source);
            // Keyed by the source PVC's storage class: a key no class can be named never applies.
            for msg in names::is_dns1123_subdomain(source) {
                self.error(FieldError::invalid(&path, source, msg));
            }
            if !pvc.storage_class.is_empty() {
                let class_path = field::child(&path, "storageClass");
                let messages = names::is_dns1123_subdomain(&pvc.storage_class);
                let valid = messages.is_empty();
                for msg in messages {
                    self.error(FieldError::invalid(&class_path, &pvc.storage_class, msg));
                }
                if valid {
                    self.missing_storage_class(
                        &class_path,
                        &pvc.storage_class,
                        env,
                        "node-agent would create backup PVCs of it that stay Pending, until the DataUpload times out",
                    );
                }
            }
            if pvc.spc_no_relabeling && !pvc.read_only {
                self.warn(
                    &field::child(&path, "spcNoRelabeling"),
                    "has no effect without readOnly: true (node-agent ignores it)",
                );
            }
            self.annotations(&pvc.annotations, &field::child(&path, "annotations"));
            self.copied_objects(&pvc.copied, &path, "DataUpload");
        }
    }

    fn restore_pvc(&mut self, config: &NodeAgentConfig) {
        if let Some(restore) = &config.restore_pvc {
            self.copied_objects(&restore.copied, "restorePVC", "DataDownload");
        }
    }

    /// The Secrets and ConfigMaps node-agent copies into Velero's namespace for a data movement
    /// (`kube.CopySecret`/`CopyConfigMap`, pkg/util/kube at v1.18.3): it reads each by name from
    /// the PVC's namespace, so a name no object can have fails the `movement`, and a repeat is
    /// copied once (the second copy finds the first, equal and with the same labels).
    fn copied_objects(&mut self, copied: &CopiedObjects, path: &str, movement: &str) {
        let lists = [
            ("secretNames", "Secret", &copied.secret_names),
            ("configMapNames", "ConfigMap", &copied.config_map_names),
        ];
        for (field_name, kind, object_names) in lists {
            let list_path = field::child(path, field_name);
            let mut seen = BTreeSet::new();
            for (i, name) in object_names.iter().enumerate() {
                let item = field::index(&list_path, i);
                if name.is_empty() {
                    self.error(FieldError::required(
                        &item,
                        format!("a {kind} name: node-agent fails the {movement} when it copies a {kind} with no name"),
                    ));
                } else if !seen.insert(name) {
                    self.warn(
                        &item,
                        format!("Duplicate value: {}: node-agent copies it once; remove the repeat", go_quote(name)),
                    );
                } else {
                    for msg in names::name_is_dns_subdomain(name, false) {
                        self.error(FieldError::invalid(
                            &item,
                            name,
                            format!("{msg}: no {kind} can have this name, so node-agent fails the {movement} when it copies it"),
                        ));
                    }
                }
            }
        }
    }

    fn cache_pvc(&mut self, config: &NodeAgentConfig, env: &Environment) {
        let Some(cache) = &config.cache_pvc else { return };
        if cache.storage_class.is_empty() {
            self.error(FieldError::required(
                "cachePVC.storageClass",
                "node-agent ignores the whole cachePVC section without a storage class",
            ));
        } else {
            let messages = names::is_dns1123_subdomain(&cache.storage_class);
            let valid = messages.is_empty();
            for msg in messages {
                self.error(FieldError::invalid("cachePVC.storageClass", &cache.storage_class, msg));
            }
            if valid {
                self.missing_storage_class(
                    "cachePVC.storageClass",
                    &cache.storage_class,
                    env,
                    "node-agent drops the whole cachePVC section at start-up (\"Ignore cache config\"); create the class, then restart node-agent",
                );
            }
        }
        if cache.resident_threshold_in_mb < 0 {
            self.error(FieldError::invalid_raw(
                "cachePVC.residentThresholdInMB",
                cache.resident_threshold_in_mb.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// The model's requirements as the selector rules read them.
fn requirements_of(expressions: &[SelectorRequirement]) -> Vec<Requirement<'_>> {
    expressions.iter().map(|r| Requirement { key: &r.key, operator: &r.operator, values: &r.values }).collect()
}

/// The selector rules' "not a valid selector operator" (the one error at a requirement's
/// `operator`) as `Unsupported value`, which lists the operators a user may write instead.
fn with_supported_operators(err: FieldError, operators: &[&str]) -> FieldError {
    match err.kind {
        FieldErrorKind::Invalid { value, .. } if err.path.ends_with(".operator") => {
            let mut supported: Vec<String> = operators.iter().map(|op| op.to_string()).collect();
            supported.sort();
            FieldError { path: err.path, kind: FieldErrorKind::NotSupported { value, supported } }
        }
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::check_value;

    fn findings_with(text: &str, env: &Environment) -> Vec<String> {
        check_value(text, env).diagnostics.0.iter().map(|d| format!("{}: {}", d.severity, d.render())).collect()
    }

    fn findings(text: &str) -> Vec<String> {
        findings_with(text, &Environment::default())
    }

    /// Each case: a config value and exactly the findings it must produce.
    fn assert_cases(cases: &[(&str, &[&str])]) {
        for (input, want) in cases {
            assert_eq!(findings(input), want.to_vec(), "input: {input}");
        }
    }

    #[test]
    fn load_concurrency_rules() {
        assert_cases(&[
            (r#"{"loadConcurrency": {"globalConfig": 1, "prepareQueueLength": 0}}"#, &[]),
            (
                r#"{"loadConcurrency": {"globalConfig": -1}}"#,
                &["error: loadConcurrency.globalConfig: Invalid value: -1: must be at least 1 (node-agent replaces it with 1) (line 1, column 38)"],
            ),
            (
                r#"{"loadConcurrency": {}}"#,
                &["warning: loadConcurrency: globalConfig is not set: node-agent logs that 0 is invalid and uses 1; set it explicitly (line 1, column 21)"],
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 1, "prepareQueueLength": -2}}"#,
                &["error: loadConcurrency.prepareQueueLength: Invalid value: -2: must be greater than or equal to 0 (line 1, column 63)"],
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 1, "perNodeConfig": [{"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}, "number": 2}]}}"#,
                &[r#"error: loadConcurrency.perNodeConfig[0].nodeSelector.matchExpressions[0].operator: Unsupported value: "Gt": supported values: "DoesNotExist", "Exists", "In", "NotIn" (line 1, column 123)"#],
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 1, "perNodeConfig": [{"nodeSelector": {"matchLabels": {"a/b/c": "x"}}, "number": 1}]}}"#,
                &[r#"error: loadConcurrency.perNodeConfig[0].nodeSelector.matchLabels[a/b/c]: Invalid value: "a/b/c": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName') (line 1, column 93)"#],
            ),
        ]);
    }

    #[test]
    fn load_affinity_rules() {
        assert_cases(&[
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "n", "operator": "Gt", "values": ["3"]}]}}]}"#,
                &[],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "n", "operator": "Lt", "values": ["x"]}]}}]}"#,
                &[r#"error: loadAffinity[0].nodeSelector.matchExpressions[0].values[0]: Invalid value: "x": for 'Gt', 'Lt' operators, the value must be an integer (line 1, column 100)"#],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "n", "operator": "Gt", "values": ["1", "2"]}]}}]}"#,
                &["error: loadAffinity[0].nodeSelector.matchExpressions[0].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt' (line 1, column 99)"],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "n", "operator": "In"}]}}]}"#,
                &["error: loadAffinity[0].nodeSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn' (line 1, column 58)"],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b"}}, "storageClass": "Bad_Class"}]}"#,
                &[r#"error: loadAffinity[0].storageClass: Invalid value: "Bad_Class": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*') (line 1, column 81)"#],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b"}}, "storageClass": "x"}, {"nodeSelector": {"matchLabels": {"a": "c"}}, "storageClass": "x"}]}"#,
                &[r#"error: loadAffinity[1].storageClass: Duplicate value: "x" (line 1, column 149)"#],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b!"}}}]}"#,
                &[r#"error: loadAffinity[0].nodeSelector.matchLabels[a]: Invalid value: "b!": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?') (line 1, column 53)"#],
            ),
        ]);
    }

    #[test]
    fn an_unknown_operator_does_not_hide_the_other_errors_of_its_requirement() {
        // As the API server would, the key and values are checked too (findings in file order).
        assert_cases(&[
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "-k", "operator": "in", "values": ["v"]}]}}]}"#,
                &[
                    r#"error: loadAffinity[0].nodeSelector.matchExpressions[0].key: Invalid value: "-k": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') (line 1, column 66)"#,
                    r#"error: loadAffinity[0].nodeSelector.matchExpressions[0].operator: Unsupported value: "in": supported values: "DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn" (line 1, column 84)"#,
                ],
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 1, "perNodeConfig": [{"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Lt", "values": ["-1"]}]}, "number": 1}]}}"#,
                &[
                    r#"error: loadConcurrency.perNodeConfig[0].nodeSelector.matchExpressions[0].operator: Unsupported value: "Lt": supported values: "DoesNotExist", "Exists", "In", "NotIn" (line 1, column 123)"#,
                    r#"error: loadConcurrency.perNodeConfig[0].nodeSelector.matchExpressions[0].values[0]: Invalid value: "-1": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?') (line 1, column 140)"#,
                ],
            ),
        ]);
    }

    #[test]
    fn selectors_no_node_can_satisfy_are_errors() {
        assert_cases(&[
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"k": "a"}, "matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["a"]}]}}]}"#,
                &["error: loadAffinity[0].nodeSelector: Forbidden: no node can satisfy k In [a] (matchLabels[k]) and k NotIn [a] (matchExpressions[0]) together: the data-mover pods it is applied to stay Pending until Velero cancels them (after 30 minutes) (line 1, column 36)"],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "z", "operator": "In", "values": ["a"]}, {"key": "n", "operator": "Gt", "values": ["5"]}, {"key": "n", "operator": "Lt", "values": ["6"]}]}, "storageClass": "gp3"}]}"#,
                &["error: loadAffinity[0].nodeSelector: Forbidden: no node can satisfy n Gt 5 (matchExpressions[1]) and n Lt 6 (matchExpressions[2]) together: the data-mover pods it is applied to stay Pending until Velero cancels them (after 30 minutes) (line 1, column 36)"],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "n", "operator": "Lt", "values": ["0"]}]}}]}"#,
                &["error: loadAffinity[0].nodeSelector: Forbidden: no node can satisfy n Lt 0 (matchExpressions[0]): the data-mover pods it is applied to stay Pending until Velero cancels them (after 30 minutes) (line 1, column 36)"],
            ),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Exists"}, {"key": "k", "operator": "In", "values": ["a", "b"]}, {"key": "k", "operator": "NotIn", "values": ["a"]}]}}]}"#,
                &[],
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 1, "perNodeConfig": [{"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Exists"}, {"key": "k", "operator": "DoesNotExist"}]}, "number": 2}]}}"#,
                &["error: loadConcurrency.perNodeConfig[0].nodeSelector: Forbidden: no node can satisfy k Exists (matchExpressions[0]) and k DoesNotExist (matchExpressions[1]) together: node-agent never applies this rule (line 1, column 76)"],
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 1, "perNodeConfig": [{"nodeSelector": {"matchLabels": {"a": "1", "b": "2"}, "matchExpressions": [{"key": "b", "operator": "In", "values": ["3", "4"]}]}, "number": 2}]}}"#,
                &["error: loadConcurrency.perNodeConfig[0].nodeSelector: Forbidden: no node can satisfy b In [2] (matchLabels[b]) and b In [3, 4] (matchExpressions[0]) together: node-agent never applies this rule (line 1, column 76)"],
            ),
            // An invalid selector gets the rules' errors only.
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}, {"key": "k", "operator": "DoesNotExist"}]}}]}"#,
                &["error: loadAffinity[0].nodeSelector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist' (line 1, column 103)"],
            ),
        ]);
    }

    #[test]
    fn pod_resources_rules() {
        assert_cases(&[
            (
                r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "0", "memoryRequest": "1Gi", "memoryLimit": "0"}}"#,
                &[],
            ),
            (
                r#"{"podResources": {"cpuRequest": "1000m", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "1024Mi"}}"#,
                &[],
            ),
            (
                r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "0m", "memoryRequest": "1Gi", "memoryLimit": "0"}}"#,
                &[
                    r#"error: podResources.cpuRequest: Invalid value: "1": must be less than or equal to cpu limit of 0 (cpuLimit "0m" is a real zero: only the literal "0" means no limit) (line 1, column 33)"#,
                ],
            ),
            (
                r#"{"podResources": {"cpuRequest": "2", "cpuLimit": "1", "memoryRequest": "2Gi", "memoryLimit": "1Gi"}}"#,
                &[
                    r#"error: podResources.cpuRequest: Invalid value: "2": must be less than or equal to cpu limit of 1 (line 1, column 33)"#,
                    r#"error: podResources.memoryRequest: Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi (line 1, column 72)"#,
                ],
            ),
            (
                r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "-1Gi"}}"#,
                &[
                    r#"error: podResources.memoryLimit: Invalid value: "-1Gi": must be greater than or equal to 0 (line 1, column 94)"#,
                ],
            ),
            (
                r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "1", "memoryRequest": "1 Gi", "memoryLimit": "1Gi"}}"#,
                &[
                    r#"error: podResources.memoryRequest: Invalid value: "1 Gi": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (line 1, column 72)"#,
                ],
            ),
            (
                r#"{"podResources": {"memoryRequest": "1Gi"}}"#,
                &[
                    r#"error: podResources: Required value: cpuRequest, cpuLimit, memoryLimit not set: node-agent ignores the whole podResources section unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given; use "0" for no limit (line 1, column 18)"#,
                ],
            ),
            (
                r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "0", "memoryRequest": "1Gi", "memoryLimit": "0", "ephemeralStorageRequest": "2Gi", "ephemeralStorageLimit": "1Gi"}}"#,
                &[
                    r#"error: podResources.ephemeralStorageRequest: Invalid value: "2Gi": must be less than or equal to ephemeral-storage limit of 1Gi (line 1, column 126)"#,
                ],
            ),
        ]);
    }

    #[test]
    fn metadata_and_pvc_rules() {
        assert_cases(&[
            (r#"{"podLabels": {"x.velero.io/a": "b"}, "podAnnotations": {"x.velero.io/ok": "someone else's"}}"#, &[]),
            (
                r#"{"podAnnotations": {"velero.io/team": "a", "example.com/velero.io": "b"}}"#,
                &["error: podAnnotations[velero.io/team]: Forbidden: keys under velero.io/ are Velero's own: node-agent-webhook never writes them to data-mover pods; use a prefix of your own (line 1, column 21)"],
            ),
            (
                r#"{"podAnnotations": {"velero.io/a": "1", "velero.io/b": "2"}}"#,
                &[
                    "error: podAnnotations[velero.io/a]: Forbidden: keys under velero.io/ are Velero's own: node-agent-webhook never writes them to data-mover pods; use a prefix of your own (line 1, column 21)",
                    "error: podAnnotations[velero.io/b]: Forbidden: keys under velero.io/ are Velero's own: node-agent-webhook never writes them to data-mover pods; use a prefix of your own (line 1, column 41)",
                ],
            ),
            (
                r#"{"podAnnotations": {"node-agent-webhook.io/applied": "x"}}"#,
                &["error: podAnnotations[node-agent-webhook.io/applied]: Forbidden: this annotation is written by node-agent-webhook itself to say what it applied (line 1, column 21)"],
            ),
            (
                r#"{"podLabels": {"velero.io/data-upload": "shared"}}"#,
                &["error: podLabels[velero.io/data-upload]: Forbidden: keys under velero.io/ are Velero's own: overriding them breaks how Velero finds its data-mover pods (line 1, column 16)"],
            ),
            (
                r#"{"podAnnotations": {"bad key": "v"}}"#,
                &[r#"error: podAnnotations[bad key]: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') (line 1, column 21)"#],
            ),
            (
                r#"{"backupPVC": {"GP3": {"storageClass": "b"}, "gp3.example.com": {"storageClass": "c"}}}"#,
                &[r#"error: backupPVC[GP3]: Invalid value: "GP3": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*') (line 1, column 23)"#],
            ),
            (
                r#"{"backupPVC": {"gp3": {"storageClass": "b", "spcNoRelabeling": true}}}"#,
                &["warning: backupPVC[gp3].spcNoRelabeling: has no effect without readOnly: true (node-agent ignores it) (line 1, column 64)"],
            ),
            (
                r#"{"cachePVC": {"residentThresholdInMB": -1}}"#,
                &[
                    "error: cachePVC.storageClass: Required value: node-agent ignores the whole cachePVC section without a storage class (line 1, column 14)",
                    "error: cachePVC.residentThresholdInMB: Invalid value: -1: must be greater than or equal to 0 (line 1, column 40)",
                ],
            ),
            (
                r#"{"priorityClassName": "Not_Valid"}"#,
                &[r#"error: priorityClassName: Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*') (line 1, column 23)"#],
            ),
        ]);
        let big = format!(r#"{{"podAnnotations": {{"a": "{}"}}}}"#, "x".repeat(262_144));
        assert_eq!(
            findings(&big),
            vec!["error: podAnnotations: Too long: may not be more than 262144 bytes (line 1, column 20)".to_string()]
        );
        // Within the limit, but without room for the webhook's own annotation: a warning.
        let room = |taken: usize| format!(r#"{{"podAnnotations": {{"a": "{}"}}}}"#, "x".repeat(taken - 1));
        let no_room = |taken: usize| {
            format!("warning: podAnnotations: take {taken} of the 262144 bytes a pod's annotations may take, leaving no room for node-agent-webhook.io/applied")
        };
        let tight = 262_144 - APPLIED_ANNOTATION_MAX_BYTES;
        for (taken, want) in
            [(262_144, Some(no_room(262_144))), (tight + 1, Some(no_room(tight + 1))), (tight, None), (10, None)]
        {
            let found = findings(&room(taken));
            match want {
                Some(want) => assert!(found.len() == 1 && found[0].starts_with(&want), "{taken}: {found:?}"),
                None => assert!(found.is_empty(), "{taken}: {found:?}"),
            }
        }
    }

    #[test]
    fn values_go_cannot_decode_are_reported_once() {
        assert_cases(&[
            (
                r#"{"loadConcurrency": {"globalConfig": "4", "prepareQueueLength": 1.5}}"#,
                &[
                    r#"error: loadConcurrency.globalConfig: Invalid value: "4": must be an integer, not a string (node-agent fails to start on this) (line 1, column 38)"#,
                    "error: loadConcurrency.prepareQueueLength: Invalid value: 1.5: must be an integer written without a fraction or exponent (Go rejects it) (line 1, column 65)",
                ],
            ),
            (
                r#"{"podResources": {"cpuRequest": 1, "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}}"#,
                &["error: podResources.cpuRequest: Invalid value: 1: must be a string (quote it), not a number (node-agent fails to start on this) (line 1, column 33)"],
            ),
        ]);
    }

    #[test]
    fn storage_classes_node_agent_creates_pvcs_of_must_exist() {
        let classes: BTreeMap<String, String> = [("gp3".to_string(), "Delete".to_string())].into();
        let seen = Environment { storage_classes: Some(&classes), ..Environment::default() };
        let cache_gone = r#"warning: cachePVC.storageClass: StorageClass "gone" does not exist: node-agent drops the whole cachePVC section at start-up ("Ignore cache config"); create the class, then restart node-agent (line 1, column 31)"#;
        let backup_gone = r#"warning: backupPVC[gp3].storageClass: StorageClass "gone" does not exist: node-agent would create backup PVCs of it that stay Pending, until the DataUpload times out (line 1, column 40)"#;
        let cases: &[(&str, &Environment, &[&str])] = &[
            (r#"{"cachePVC": {"storageClass": "gp3"}}"#, &seen, &[]),
            (r#"{"cachePVC": {"storageClass": "gone"}}"#, &seen, &[cache_gone]),
            // Offline, or before the first list: nothing is called missing on a guess.
            (r#"{"cachePVC": {"storageClass": "gone"}}"#, &Environment::default(), &[]),
            (r#"{"backupPVC": {"gp3": {"storageClass": "gp3"}}}"#, &seen, &[]),
            (r#"{"backupPVC": {"gp3": {"storageClass": "gone"}}}"#, &seen, &[backup_gone]),
        ];
        for (config, env, want) in cases {
            assert_eq!(findings_with(config, env), *want, "{config}");
        }
    }

    #[test]
    fn cluster_and_version_aware_warnings() {
        let classes: HashSet<String> = ["present".to_string()].into();
        let env = Environment { priority_classes: Some(&classes), ..Environment::default() };
        assert_eq!(findings_with(r#"{"priorityClassName": "present"}"#, &env), Vec::<String>::new());
        assert_eq!(
            findings_with(r#"{"priorityClassName": "absent"}"#, &env),
            vec![
                r#"warning: priorityClassName: PriorityClass "absent" does not exist: node-agent drops it and the webhook leaves pod priority alone until it does (line 1, column 23)"#
            ]
        );
        let old = Environment { velero_version: Some(VeleroVersion::new(1, 16, 0)), ..Environment::default() };
        assert_eq!(
            findings_with(r#"{"priorityClassName": "p", "restorePVC": {"ignoreDelayBinding": true}, "cachePVC": {"storageClass": "c"}}"#, &old),
            vec![
                "warning: priorityClassName: node-agent of Velero 1.16.0 ignores this (supported since 1.17.0); the mutating webhook applies it to new data-mover pods (line 1, column 23)",
                "warning: cachePVC: node-agent of Velero 1.16.0 ignores this (supported since 1.18.0) (line 1, column 84)",
            ]
        );
        let two_entries = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a"}}, "storageClass": "gp3"}, {"nodeSelector": {"matchLabels": {"zone": "b"}}}, {"nodeSelector": {"matchLabels": {"zone": "c"}}}]}"#;
        let up_to_1_16 = "node-agent of Velero 1.16.0 reads only loadAffinity[0] and gives it to every data-mover pod, whatever its storage class; the webhook ANDs this entry into it for the pods this entry is for, so they need nodes matching both, and restarting node-agent does not change that: keep one entry, or upgrade to Velero 1.17+";
        assert_eq!(
            findings_with(two_entries, &old),
            vec![
                "error: loadAffinity[2]: Forbidden: only one entry may omit storageClass: the webhook uses loadAffinity[1] (node-agent 1.16.0 reads only loadAffinity[0]) and ignores this one; merge their selectors (line 1, column 142)".to_string(),
                "warning: loadAffinity[0].storageClass: node-agent of Velero 1.16.0 ignores this (supported since 1.17.0); the mutating webhook applies it to new data-mover pods (line 1, column 84)".to_string(),
                format!("warning: loadAffinity[1]: {up_to_1_16} (line 1, column 92)"),
                format!("warning: loadAffinity[2]: {up_to_1_16} (line 1, column 142)"),
            ]
        );
        let v1_17 = Environment { velero_version: Some(VeleroVersion::new(1, 17, 0)), ..old };
        assert_eq!(
            findings_with(two_entries, &v1_17),
            vec!["error: loadAffinity[2]: Forbidden: only one entry may omit storageClass: node-agent uses loadAffinity[1] and ignores this one; merge their selectors (line 1, column 142)"]
        );
        let current = Environment { velero_version: Some(VeleroVersion::new(1, 18, 1)), ..old };
        let empty = r#"{"loadAffinity": [{"nodeSelector": {}}]}"#;
        assert_eq!(
            findings_with(empty, &current),
            vec!["warning: loadAffinity[0].nodeSelector: an empty selector restricts nothing: node-agent 1.18.1 gives the pods only its own OS requirement; give it matchLabels or matchExpressions, or remove the entry (line 1, column 36)"]
        );
        assert_eq!(
            findings_with(empty, &v1_17),
            vec!["error: loadAffinity[0].nodeSelector: Required value: must have matchLabels or matchExpressions: Velero 1.17 turns an empty selector into a term that matches no node (line 1, column 36)"]
        );
        assert_eq!(
            findings_with(r#"{"podLabels": {"a": "b"}, "cachePVC": {"storageClass": "c"}}"#, &current),
            Vec::<String>::new()
        );
    }

    #[test]
    fn tolerations_are_validated_as_a_pod_s_and_worded_for_every_version() {
        assert_cases(&[
            (r#"{"tolerations": [{"key": "backup", "operator": "Exists", "effect": "NoSchedule"}]}"#, &[]),
            (
                r#"{"tolerations": [{"key": "backup", "operator": "Exists", "value": "x", "effect": "NoSchedule", "tolerationSeconds": 5}]}"#,
                &[
                    "error: tolerations[0].operator: Invalid value: \"x\": value must be empty when `operator` is 'Exists' (line 1, column 48)",
                    "error: tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set (line 1, column 82)",
                ],
            ),
            (
                r#"{"tolerations": [{"key": "k", "operator": "In"}]}"#,
                &["error: tolerations[0].operator: Unsupported value: \"In\": supported values: \"Equal\", \"Exists\" (line 1, column 43)"],
            ),
            (
                r#"{"tolerations": [{"key": "k", "tolerationSeconds": "5"}]}"#,
                &["error: tolerations[0].tolerationSeconds: Invalid value: \"5\": must be an int64, not a string (node-agent ignores the key; the webhook cannot apply it on this) (line 1, column 52)"],
            ),
        ]);
        let tolerations = r#"{"tolerations": [{"key": "backup", "operator": "Exists"}]}"#;
        for (major, minor, patch) in [(1, 16, 2), (1, 17, 2), (1, 18, 3), (1, 19, 0)] {
            let version = VeleroVersion::new(major, minor, patch);
            let env = Environment { velero_version: Some(version), ..Environment::default() };
            assert_eq!(
                findings_with(tolerations, &env),
                vec![format!("warning: tolerations: node-agent of Velero {version} ignores this (no Velero release reads it); the mutating webhook applies it to new data-mover pods (line 1, column 17)")]
            );
        }
    }
}
