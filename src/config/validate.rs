//! Semantic rules for a decoded config: what node-agent would silently drop, what would
//! make the API server reject data-mover pods later, and what a given Velero version ignores.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::decode::Decoded;
use super::diagnostics::{Diagnostic, Diagnostics, Severity};
use super::model::{is_velero_key, BackupPvc, LabelSelector, NodeAgentConfig, PodResources, APPLIED_ANNOTATION};
use super::version::{VeleroVersion, SETTINGS};
use crate::k8s::field::{self, go_quote, FieldError};
use crate::k8s::names;
use crate::k8s::quantity::Quantity;
use crate::k8s::selector::{
    self, LabelSelectorOptions, Requirement, LABEL_SELECTOR_OPERATORS, NODE_SELECTOR_OPERATORS,
    TOTAL_ANNOTATION_SIZE_LIMIT_B,
};

/// What is known about the cluster the config is for. Everything is optional: the
/// offline checker knows nothing, the server knows what its watches have seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment<'a> {
    pub velero_version: Option<VeleroVersion>,
    /// The PriorityClasses that exist, when the server can see them.
    pub priority_classes: Option<&'a HashSet<String>>,
}

/// Adds every semantic finding about `decoded.config` to `decoded.diagnostics`.
pub fn add_rule_findings(decoded: &mut Decoded, env: &Environment) {
    let shared: &Decoded = decoded;
    let config = &shared.config;
    let mut v = Validator { decoded: shared, found: Diagnostics::default() };
    v.load_concurrency(config);
    v.load_affinity(config);
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
    v.backup_pvcs(&config.backup_pvc);
    v.cache_pvc(config);
    if let Some(version) = env.velero_version {
        v.version_support(config, version);
    }
    let found = v.found;
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
        self.match_labels(&selector.match_labels, path);
        let expressions_path = field::child(path, "matchExpressions");
        for (i, req) in selector.match_expressions.iter().enumerate() {
            let req_path = field::index(&expressions_path, i);
            if !LABEL_SELECTOR_OPERATORS.contains(&req.operator.as_str()) {
                self.error(FieldError::not_supported(
                    field::child(&req_path, "operator"),
                    &req.operator,
                    &LABEL_SELECTOR_OPERATORS,
                ));
                continue;
            }
            let requirement = Requirement { key: &req.key, operator: &req.operator, values: &req.values };
            for err in
                selector::validate_label_selector_requirement(&requirement, &req_path, LabelSelectorOptions::default())
            {
                self.error(err);
            }
        }
    }

    fn match_labels(&mut self, labels: &BTreeMap<String, String>, path: &str) {
        let labels_path = field::child(path, "matchLabels");
        for (key, value) in labels {
            let entry = field::key(&labels_path, key);
            self.label_entry(&entry, key, value);
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

    fn load_affinity(&mut self, config: &NodeAgentConfig) {
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
            if entry.node_selector.is_empty() {
                self.error(FieldError::required(
                    &selector_path,
                    "must have matchLabels or matchExpressions: Velero 1.17 turns an empty selector into a term that matches no node",
                ));
            }
            self.node_selector(&entry.node_selector, &selector_path);
            if entry.storage_class.is_empty() {
                if let Some(first) = global_entry {
                    self.error(FieldError::forbidden(
                        &path,
                        format!(
                            "only one entry may omit storageClass: node-agent uses loadAffinity[{first}] and ignores this one; merge their selectors"
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

    /// A `loadAffinity` selector: its labels and its requirements as node-selector requirements.
    pub(super) fn node_selector(&mut self, selector: &LabelSelector, path: &str) {
        self.match_labels(&selector.match_labels, path);
        let expressions_path = field::child(path, "matchExpressions");
        for (j, req) in selector.match_expressions.iter().enumerate() {
            self.node_selector_requirement(req, &field::index(&expressions_path, j));
        }
    }

    /// Velero copies requirements straight into node affinity: Kubernetes' node-selector rules.
    fn node_selector_requirement(&mut self, req: &super::model::SelectorRequirement, path: &str) {
        if !NODE_SELECTOR_OPERATORS.contains(&req.operator.as_str()) {
            self.error(FieldError::not_supported(
                field::child(path, "operator"),
                &req.operator,
                &NODE_SELECTOR_OPERATORS,
            ));
            return;
        }
        let requirement = Requirement { key: &req.key, operator: &req.operator, values: &req.values };
        let errors = selector::validate_node_selector_requirement(&requirement, path, false);
        let arity_ok = errors.is_empty();
        for err in errors {
            self.error(err);
        }
        if arity_ok && matches!(req.operator.as_str(), "Gt" | "Lt") {
            if let Some(value) = req.values.first() {
                if let Some(msg) = selector::gt_lt_value_error(value) {
                    self.error(FieldError::invalid(field::index(&field::child(path, "values"), 0), value, msg));
                }
            }
        }
    }

    /// `partial` says what Velero does with a section that lacks one of the four quantities.
    pub(super) fn pod_resources(&mut self, resources: Option<&PodResources>, partial: &str) {
        let Some(r) = resources else { return };
        let pairs = r.pairs();
        let fields: Vec<(&str, &str)> =
            pairs.iter().flat_map(|p| [(p.request_key, p.request), (p.limit_key, p.limit)]).collect();
        let mut parsed: BTreeMap<&str, Quantity> = BTreeMap::new();
        for &(name, text) in &fields {
            if text.is_empty() {
                continue;
            }
            let path = field::child("podResources", name);
            match text.parse::<Quantity>() {
                Ok(q) if q.is_negative() => {
                    self.error(FieldError::invalid(path, text, "must be greater than or equal to 0"));
                }
                Ok(q) => {
                    parsed.insert(name, q);
                }
                Err(err) => self.error(FieldError::invalid(path, text, err.to_string())),
            }
        }
        let missing: Vec<&str> = fields[..4]
            .iter()
            .filter(|(name, text)| text.is_empty() && !self.decoded.is_unusable(&field::child("podResources", name)))
            .map(|(name, _)| *name)
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
            if limit_text == "0" || req <= lim {
                continue;
            }
            let zero_hint = if lim.is_zero() {
                format!(" ({limit} {} is a real zero: only the literal \"0\" means no limit)", go_quote(limit_text))
            } else {
                String::new()
            };
            self.error(FieldError::invalid(
                field::child("podResources", request),
                pair.request,
                format!("must be less than or equal to {resource} limit of {}{zero_hint}", lim.canonical()),
            ));
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
        for (key, value) in &config.pod_labels {
            let entry = field::key("podLabels", key);
            self.label_entry(&entry, key, value);
            if is_velero_key(key) {
                self.error(FieldError::forbidden(
                    entry,
                    "keys under velero.io/ are Velero's own: overriding them breaks how Velero finds its data-mover pods",
                ));
            }
        }
        self.annotations(&config.pod_annotations, "podAnnotations");
        if config.pod_annotations.contains_key(APPLIED_ANNOTATION) {
            self.error(FieldError::forbidden(
                format!("podAnnotations[{APPLIED_ANNOTATION}]"),
                "this annotation is written by node-agent-webhook itself to say what it applied",
            ));
        }
    }

    /// Keys are checked one by one (so each error points at its key), the size as a whole.
    pub(super) fn annotations(&mut self, annotations: &BTreeMap<String, String>, path: &str) {
        for key in annotations.keys() {
            for err in selector::validate_annotations(std::iter::once((key.as_str(), "")), &field::key(path, key)) {
                self.error(err);
            }
        }
        let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
            self.error(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_B));
        }
    }

    fn backup_pvcs(&mut self, pvcs: &BTreeMap<String, BackupPvc>) {
        for (source, pvc) in pvcs {
            let path = field::key("backupPVC", source);
            if !pvc.storage_class.is_empty() {
                for msg in names::is_dns1123_subdomain(&pvc.storage_class) {
                    self.error(FieldError::invalid(field::child(&path, "storageClass"), &pvc.storage_class, msg));
                }
            }
            if pvc.spc_no_relabeling && !pvc.read_only {
                self.warn(
                    &field::child(&path, "spcNoRelabeling"),
                    "has no effect without readOnly: true (node-agent ignores it)",
                );
            }
            self.annotations(&pvc.annotations, &field::child(&path, "annotations"));
        }
    }

    fn cache_pvc(&mut self, config: &NodeAgentConfig) {
        let Some(cache) = &config.cache_pvc else { return };
        if cache.storage_class.is_empty() {
            self.error(FieldError::required(
                "cachePVC.storageClass",
                "node-agent ignores the whole cachePVC section without a storage class",
            ));
        } else {
            for msg in names::is_dns1123_subdomain(&cache.storage_class) {
                self.error(FieldError::invalid("cachePVC.storageClass", &cache.storage_class, msg));
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

    fn version_support(&mut self, config: &NodeAgentConfig, version: VeleroVersion) {
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        for setting in SETTINGS.iter().filter(|s| s.since > version && s.is_set(config)) {
            let path = setting.path.replace("[]", "");
            if reported.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            let tail = if setting.applied_by_webhook {
                "; the mutating webhook applies it to new data-mover pods"
            } else {
                ""
            };
            self.warn(
                &path,
                format!("node-agent of Velero {version} ignores this (supported since {}){tail}", setting.since),
            );
            reported.insert(setting.path);
        }
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
            (r#"{"podLabels": {"x.velero.io/a": "b"}, "podAnnotations": {"velero.io/ok": "annotations are fine"}}"#, &[]),
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
    fn cluster_and_version_aware_warnings() {
        let classes: HashSet<String> = ["present".to_string()].into();
        let env = Environment { velero_version: None, priority_classes: Some(&classes) };
        assert_eq!(findings_with(r#"{"priorityClassName": "present"}"#, &env), Vec::<String>::new());
        assert_eq!(
            findings_with(r#"{"priorityClassName": "absent"}"#, &env),
            vec![
                r#"warning: priorityClassName: PriorityClass "absent" does not exist: node-agent drops it and the webhook leaves pod priority alone until it does (line 1, column 23)"#
            ]
        );
        let old = Environment { velero_version: Some(VeleroVersion::new(1, 16, 0)), priority_classes: None };
        assert_eq!(
            findings_with(r#"{"priorityClassName": "p", "restorePVC": {"ignoreDelayBinding": true}, "cachePVC": {"storageClass": "c"}}"#, &old),
            vec![
                "warning: priorityClassName: node-agent of Velero 1.16.0 ignores this (supported since 1.17.0); the mutating webhook applies it to new data-mover pods (line 1, column 23)",
                "warning: cachePVC: node-agent of Velero 1.16.0 ignores this (supported since 1.18.0) (line 1, column 84)",
            ]
        );
        let current = Environment { velero_version: Some(VeleroVersion::new(1, 18, 1)), ..old };
        assert_eq!(
            findings_with(r#"{"podLabels": {"a": "b"}, "cachePVC": {"storageClass": "c"}}"#, &current),
            Vec::<String>::new()
        );
    }
}
