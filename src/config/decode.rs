//! Decodes the parsed JSON tree into [`NodeAgentConfig`] the way Go's `encoding/json`
//! would, and reports every place where Go would fail, silently drop, or guess.
//!
//! Go matches keys case-insensitively, ignores unknown keys, keeps the last of two
//! equal keys, reads `null` as "absent" and rejects `"2"`, `2.0` or `1e3` for an `int`.
//! We accept what Go accepts (with warnings where it guesses) and report as errors what
//! Go rejects or drops, each at its path and position.

use std::collections::{BTreeMap, HashSet};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::json::{Member, Node, Pos, Value};
use super::kind::Kind;
use super::model::*;
use super::velero_types::{self, Standing, Support};
use super::version::{on_undecodable, unread_by, webhook_only, VeleroVersion};
use crate::k8s::field::{go_quote, Path};

/// Where every decoded value starts, by field path (`loadAffinity[0].storageClass`,
/// `podLabels[team]`), so later checks can point at the line and column. The paths are written
/// one after another into one buffer: a check records one per value and looks up only the few
/// it reports on, so a table of separately allocated keys would cost more than the lookups.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    text: String,
    /// The byte range of each path in `text`, and its position, in the order recorded.
    entries: Vec<(usize, usize, Pos)>,
}

impl Positions {
    fn record(&mut self, path: &Path, pos: Pos) {
        let start = self.text.len();
        path.write_to(&mut self.text);
        self.entries.push((start, self.text.len(), pos));
    }

    /// The position recorded last at exactly `path`.
    fn get(&self, path: &str) -> Option<Pos> {
        self.entries.iter().rev().find(|(start, end, _)| self.text.get(*start..*end) == Some(path)).map(|e| e.2)
    }

    /// Whether the config gave a value (not null) at exactly this path.
    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// The position of `path`, or of its nearest recorded ancestor.
    pub fn lookup(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        loop {
            if let Some(pos) = self.get(path) {
                return Some(pos);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// The outcome of decoding: the config Go would see, where its values are, and findings.
/// `C` is the config type of the ConfigMap kind; node-agent's by default.
#[derive(Debug, Clone, Default)]
pub struct Decoded<C = NodeAgentConfig> {
    pub config: C,
    pub positions: Positions,
    pub diagnostics: Diagnostics,
    /// Paths whose value Go could not decode: already reported, so later checks skip them.
    pub unusable: HashSet<String>,
}

impl<C> Decoded<C> {
    /// Whether `path` or one of its ancestors could not be decoded.
    pub fn is_unusable(&self, path: &str) -> bool {
        self.unusable.iter().any(|bad| {
            path.strip_prefix(bad.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }
}

const TOP_FIELDS: [&str; 11] = [
    "loadConcurrency",
    "loadAffinity",
    "backupPVC",
    "restorePVC",
    "priorityClassName",
    "podResources",
    "privilegedFsBackup",
    "cachePVC",
    "podLabels",
    "podAnnotations",
    "tolerations",
];

/// Fields that people put at the wrong level, and where they belong.
const BELONGS_UNDER: &[(&str, &str)] = &[
    ("globalConfig", "loadConcurrency"),
    ("perNodeConfig", "loadConcurrency"),
    ("prepareQueueLength", "loadConcurrency"),
    ("ignoreDelayBinding", "restorePVC"),
    ("cpuRequest", "podResources"),
    ("cpuLimit", "podResources"),
    ("memoryRequest", "podResources"),
    ("memoryLimit", "podResources"),
    ("ephemeralStorageRequest", "podResources"),
    ("ephemeralStorageLimit", "podResources"),
    ("residentThresholdInMB", "cachePVC"),
    ("matchLabels", "nodeSelector"),
    ("matchExpressions", "nodeSelector"),
];

/// Names that Velero's own docs use but its code does not read.
const KNOWN_MISNOMERS: &[(&str, &str, &str)] = &[(
    "thresholdInGB",
    "residentThresholdInMB",
    " (an int64 in megabytes; Velero's docs name a field that does not exist)",
)];

/// Decodes a whole config value. A top-level `null` is an empty config, as in Go. `version`
/// is the Velero version the config is for, when known: what a type error does depends on it.
pub fn decode(root: &Node, version: Option<VeleroVersion>) -> Decoded {
    let mut decoder =
        Decoder { on_undecodable: on_undecodable(version), ..Decoder::new(Kind::NodeAgent, "node-agent", version) };
    let config = decoder.top_level(root, Decoder::config);
    decoder.finish(config)
}

/// Go's `encoding/json` into a struct, one field at a time, for every ConfigMap kind whose
/// values Velero unmarshals into a struct. `reader` names who reads the value in messages.
pub(crate) struct Decoder {
    reader: &'static str,
    diagnostics: Diagnostics,
    positions: Positions,
    unusable: HashSet<String>,
    /// What the reader does with a value Go cannot decode: node-agent's depends on its version.
    on_undecodable: String,
    /// Whose keys these are, and the Velero version that reads them (`None`: any release we
    /// know): what that release does not read is a warning, what no release has an error.
    kind: Kind,
    version: Option<VeleroVersion>,
    /// Field paths already said to be unread by `version`: nothing below them is said again.
    unread: Vec<String>,
}

/// A short rendering of a bad value for messages: strings quoted, containers by type.
pub(crate) fn render(node: &Node) -> String {
    match &node.value {
        Value::String(s) if s.chars().count() > 64 => {
            let head: String = s.chars().take(61).collect();
            go_quote(&format!("{head}..."))
        }
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Array(_) => "array".to_string(),
        Value::Object(_) => "object".to_string(),
    }
}

impl Decoder {
    pub(crate) fn new(kind: Kind, reader: &'static str, version: Option<VeleroVersion>) -> Self {
        Self {
            reader,
            diagnostics: Diagnostics::default(),
            positions: Positions::default(),
            unusable: HashSet::new(),
            on_undecodable: format!("{reader} fails to start"),
            kind,
            version,
            unread: Vec::new(),
        }
    }

    /// The decoded config with everything found on the way.
    pub(crate) fn finish<C>(self, config: C) -> Decoded<C> {
        Decoded { config, positions: self.positions, diagnostics: self.diagnostics, unusable: self.unusable }
    }

    /// A whole value: `null` is an empty config as in Go, an object goes to `fields`, anything
    /// else is an error.
    pub(crate) fn top_level<C: Default>(&mut self, root: &Node, fields: impl FnOnce(&mut Self, &Node) -> C) -> C {
        match &root.value {
            Value::Null => {
                let message =
                    format!("the value is null, which {} reads as an empty config: no setting applies", self.reader);
                self.warn(&Path::ROOT, message, root.pos);
                C::default()
            }
            Value::Object(_) => fields(self, root),
            other => {
                let hint = match other {
                    Value::Array(_) => "; wrap the settings in an object: {\"loadAffinity\": [...]}",
                    _ => "",
                };
                self.error(
                    &Path::ROOT,
                    format!("Invalid value: {}: must be a JSON object{hint}", render(root)),
                    root.pos,
                );
                C::default()
            }
        }
    }

    pub(crate) fn error(&mut self, path: &Path, message: impl Into<String>, pos: Pos) {
        self.diagnostics.push(Diagnostic::error(path.render(), message, Some(pos)));
    }

    pub(crate) fn warn(&mut self, path: &Path, message: impl Into<String>, pos: Pos) {
        self.diagnostics.push(Diagnostic::warning(path.render(), message, Some(pos)));
    }

    fn type_error(&mut self, node: &Node, path: &Path, want: &str) {
        let path = path.render();
        self.unusable.insert(path.clone());
        // Go skips a key its struct lacks without looking at the value: only the webhook fails.
        let effect = match webhook_only(self.kind, &path) {
            Some(_) => "node-agent ignores the key; the webhook cannot apply it",
            None => &self.on_undecodable,
        };
        let message = format!(
            "Invalid value: {}: must be {want}, not {} ({effect} on this)",
            render(node),
            article(node.value.type_name()),
        );
        self.diagnostics.push(Diagnostic::error(path, message, Some(node.pos)));
    }

    /// Looks up `fields` in an object as Go does; `None` when the node is not an object.
    /// Null members count as absent.
    pub(crate) fn object<'n, 'a, const N: usize>(
        &mut self,
        node: &'n Node<'a>,
        path: &Path,
        fields: [&'static str; N],
    ) -> Option<[Option<&'n Node<'a>>; N]> {
        self.positions.record(path, node.pos);
        let members = match &node.value {
            Value::Object(members) => members,
            Value::Null => return Some([None; N]),
            _ => {
                self.type_error(node, path, "an object");
                return None;
            }
        };
        let mut found: [Option<&'n Node<'a>>; N] = [None; N];
        let mut first_key: [Option<&'n Member<'a>>; N] = [None; N];
        for member in members {
            let exact = fields.iter().position(|f| *f == member.key);
            let folded = exact.or_else(|| fields.iter().position(|f| go_equal_fold(f, &member.key)));
            let Some(index) = folded else {
                self.unknown_field(member, path, &fields);
                continue;
            };
            let canonical = fields[index];
            if exact.is_none() {
                self.warn(
                    &path.child(&member.key),
                    format!("non-canonical key case: Velero accepts it as {}; write it that way", go_quote(canonical)),
                    member.key_pos,
                );
            }
            if let Some(previous) = first_key[index] {
                let field_path = path.child(canonical);
                // Go decodes this occurrence too, and fails on a value of the wrong shape.
                let wrong_shape = match (go_kind(canonical), &member.value.value) {
                    (_, Value::Null) | (GoKind::Scalar, _) => None,
                    (GoKind::Slice, Value::Array(_))
                    | (GoKind::Pointer | GoKind::Struct | GoKind::Map, Value::Object(_)) => None,
                    (GoKind::Slice, _) => Some("an array"),
                    (GoKind::Pointer | GoKind::Struct | GoKind::Map, _) => Some("an object"),
                };
                let effect = match wrong_shape {
                    Some(_) => "Go cannot decode this one",
                    None => repeated_field_effect(canonical, &member.value.value),
                };
                self.error(
                    &field_path,
                    format!(
                        "Duplicate value: {}: the key is given twice (first at {}); {effect}",
                        go_quote(&member.key),
                        previous.key_pos,
                    ),
                    member.key_pos,
                );
                if let Some(want) = wrong_shape {
                    self.type_error(&member.value, &field_path, want);
                }
                // Go's value is made of both occurrences: no finding may come from one alone.
                self.unusable.insert(field_path.render());
                continue;
            }
            first_key[index] = Some(member);
            if member.value.value != Value::Null {
                found[index] = Some(&member.value);
                self.release_support(&path.child(canonical), &member.value);
            }
        }
        Some(found)
    }

    /// Warns when the Velero version the value is for does not read the field at `path` (a
    /// release before the one that added it). A zero value is left alone: not reading it
    /// changes nothing.
    fn release_support(&mut self, path: &Path, value: &Node) {
        let Some(version) = self.version else { return };
        let zero = match &value.value {
            Value::Bool(b) => !b,
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.parse::<f64>().is_ok_and(|n| n == 0.0),
            Value::Array(items) => items.is_empty(),
            Value::Object(members) => members.is_empty(),
            Value::Null => true,
        };
        if zero {
            return;
        }
        let path = &path.render();
        let below_unread = self
            .unread
            .iter()
            .any(|unread| path.strip_prefix(unread.as_str()).is_some_and(|rest| rest.starts_with(['.', '['])));
        if below_unread {
            return;
        }
        let (key_path, support) =
            match velero_types::key_path(self.kind, path).and_then(|p| velero_types::key(self.kind, &p)) {
                Some(key) => (key.path, velero_types::support(key, version)),
                None => match webhook_only(self.kind, path) {
                    Some(key_path) => (key_path, Support::Dropped { last: None }),
                    None => return,
                },
            };
        if support != Support::Reads {
            self.diagnostics.push(Diagnostic::warning(
                path,
                unread_by(self.kind, version, key_path, support),
                Some(value.pos),
            ));
            self.unread.push(path.to_string());
        }
    }

    fn unknown_field(&mut self, member: &Member, path: &Path, siblings: &[&str]) {
        let key = member.key.as_ref();
        let parent = path.render();
        let suggestion = if let Some((_, real, note)) =
            KNOWN_MISNOMERS.iter().find(|(wrong, real, _)| *wrong == key && siblings.contains(real))
        {
            Some(format!("did you mean {}{note}?", go_quote(real)))
        } else if let Some((name, parent_field)) =
            BELONGS_UNDER.iter().find(|(name, under)| name.eq_ignore_ascii_case(key) && !parent.ends_with(under))
        {
            Some(format!(
                "did you mean {}? it belongs under {parent_field}",
                go_quote(&format!("{parent_field}.{name}"))
            ))
        } else {
            closest(key, siblings).map(|best| format!("did you mean {}?", go_quote(best)))
        };
        let shortened = shortened(key);
        let path = path.child(&shortened);
        let newest = velero_types::newest();
        let reader = self.reader;
        // Velero releases keys in patch releases: a fail-closed webhook must not refuse one it
        // has not seen yet. A warning stays short enough for kubectl to show it whole.
        if let Some(version) = self.version.filter(|v| velero_types::standing(*v) == Standing::Newer) {
            let typo = suggestion.map(|s| format!("{s} ")).unwrap_or_default();
            self.warn(
                &path,
                format!(
                    "Unknown field: {typo}this webhook knows Velero up to {newest}: if Velero {version} reads it, it is not checked here; if not, {reader} ignores it"
                ),
                member.key_pos,
            );
            return;
        }
        let typo = suggestion.is_some();
        let hint = suggestion.unwrap_or_else(|| {
            let mut known: Vec<String> = siblings.iter().map(|s| go_quote(s)).collect();
            known.sort();
            format!("supported fields: {}", known.join(", "))
        });
        match self.version {
            // A key like no key we know may be a newer release's: say how to tell us.
            None if !typo => self.error(
                &path,
                format!(
                    "Unknown field: {hint} ({reader} ignores unknown fields silently; if it is a key of a Velero release newer than {newest}, give this webhook the Velero version: --velero-version)"
                ),
                member.key_pos,
            ),
            _ => self.error(
                &path,
                format!("Unknown field: {hint} ({reader} ignores unknown fields silently)"),
                member.key_pos,
            ),
        }
    }

    /// An `int` or `int64` field (both 64-bit here); `want` names it in messages.
    pub(crate) fn int(&mut self, node: Option<&Node>, path: &Path, want: &str) -> i64 {
        let Some(node) = node else { return 0 };
        self.positions.record(path, node.pos);
        match &node.value {
            Value::Number(raw) => match raw.parse::<i64>() {
                Ok(n) => n,
                Err(_) if raw.contains(['.', 'e', 'E']) => {
                    self.unusable.insert(path.render());
                    self.error(
                        path,
                        format!("Invalid value: {raw}: must be {want} written without a fraction or exponent (Go rejects it)"),
                        node.pos,
                    );
                    0
                }
                Err(_) => {
                    self.unusable.insert(path.render());
                    self.error(path, format!("Invalid value: {raw}: does not fit in a 64-bit integer"), node.pos);
                    0
                }
            },
            _ => {
                self.type_error(node, path, want);
                0
            }
        }
    }

    fn boolean(&mut self, node: Option<&Node>, path: &Path) -> bool {
        let Some(node) = node else { return false };
        self.positions.record(path, node.pos);
        match node.value {
            Value::Bool(b) => b,
            _ => {
                self.type_error(node, path, "true or false (unquoted)");
                false
            }
        }
    }

    pub(crate) fn string(&mut self, node: Option<&Node>, path: &Path) -> String {
        let Some(node) = node else { return String::new() };
        self.positions.record(path, node.pos);
        match &node.value {
            Value::String(s) => s.to_string(),
            _ => {
                self.type_error(node, path, "a string (quote it)");
                String::new()
            }
        }
    }

    /// A `map[string]string`; keys are recorded as `path[key]`.
    pub(crate) fn string_map(&mut self, node: Option<&Node>, path: &Path) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let Some(node) = node else { return map };
        self.positions.record(path, node.pos);
        let Value::Object(members) = &node.value else {
            self.type_error(node, path, "an object of strings");
            return map;
        };
        let mut first: BTreeMap<&str, Pos> = BTreeMap::new();
        for member in members {
            let entry = path.key(&member.key);
            if let Some(previous) = first.insert(&member.key, member.key_pos) {
                self.error(
                    &entry,
                    format!(
                        "Duplicate value: {}: the key is given twice (first at {previous}); {}",
                        go_quote(&member.key),
                        repeated_entry_effect(&member.value.value)
                    ),
                    member.key_pos,
                );
                self.unusable.insert(entry.render());
                continue;
            }
            self.positions.record(&entry, member.key_pos);
            match &member.value.value {
                Value::String(s) => {
                    map.insert(member.key.to_string(), s.to_string());
                }
                Value::Null => {
                    self.warn(&entry, "null is read as an empty string; write \"\" if that is meant", member.value.pos);
                    map.insert(member.key.to_string(), String::new());
                }
                _ => self.type_error(&member.value, &entry, "a string (quote it)"),
            }
        }
        map
    }

    fn array<'n, 'a>(&mut self, node: Option<&'n Node<'a>>, path: &Path) -> &'n [Node<'a>] {
        let Some(node) = node else { return &[] };
        self.positions.record(path, node.pos);
        match &node.value {
            Value::Array(items) => items,
            _ => {
                self.type_error(node, path, "an array");
                &[]
            }
        }
    }

    fn string_list(&mut self, node: Option<&Node>, path: &Path) -> Vec<String> {
        let items = self.array(node, path);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = path.index(i);
            match &item.value {
                Value::Null => out.push(String::new()),
                _ => out.push(self.string(Some(item), &item_path)),
            }
        }
        out
    }

    fn config(&mut self, root: &Node) -> NodeAgentConfig {
        let Some(
            [concurrency, affinity, backup, restore, priority, resources, privileged, cache, labels, annotations, tolerations],
        ) = self.object(root, &Path::ROOT, TOP_FIELDS)
        else {
            return NodeAgentConfig::default();
        };
        NodeAgentConfig {
            load_concurrency: concurrency.map(|n| self.load_concurrency(n, &Path::Text("loadConcurrency"))),
            load_affinity: self.load_affinity(affinity, &Path::Text("loadAffinity")),
            backup_pvc: self.backup_pvcs(backup, &Path::Text("backupPVC")),
            restore_pvc: restore.map(|n| self.restore_pvc(n, &Path::Text("restorePVC"))),
            priority_class_name: self.string(priority, &Path::Text("priorityClassName")),
            pod_resources: resources.map(|n| self.pod_resources(n, &Path::Text("podResources"))),
            privileged_fs_backup: self.boolean(privileged, &Path::Text("privilegedFsBackup")),
            cache_pvc: cache.map(|n| self.cache_pvc(n, &Path::Text("cachePVC"))),
            pod_labels: self.string_map(labels, &Path::Text("podLabels")),
            pod_annotations: self.string_map(annotations, &Path::Text("podAnnotations")),
            tolerations: self.tolerations(tolerations, &Path::Text("tolerations")),
        }
    }

    /// `[]corev1.Toleration`: a null entry is Go's zero toleration, which the rules then refuse
    /// (an empty key wants `Exists`).
    fn tolerations(&mut self, node: Option<&Node>, path: &Path) -> Vec<Toleration> {
        let items = self.array(node, path);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = path.index(i);
            let fields = ["key", "operator", "value", "effect", "tolerationSeconds"];
            if let Some([key, operator, value, effect, seconds]) = self.object(item, &item_path, fields) {
                out.push(Toleration {
                    key: self.string(key, &item_path.child("key")),
                    operator: self.string(operator, &item_path.child("operator")),
                    value: self.string(value, &item_path.child("value")),
                    effect: self.string(effect, &item_path.child("effect")),
                    toleration_seconds: seconds.and_then(|n| {
                        let seconds_path = item_path.child("tolerationSeconds");
                        let seconds = self.int(Some(n), &seconds_path, "an int64");
                        (!self.unusable.contains(&seconds_path.render())).then_some(seconds)
                    }),
                });
            }
        }
        out
    }

    fn load_concurrency(&mut self, node: &Node, path: &Path) -> LoadConcurrency {
        let Some([global, per_node, queue]) =
            self.object(node, path, ["globalConfig", "perNodeConfig", "prepareQueueLength"])
        else {
            return LoadConcurrency::default();
        };
        let per_node_path = path.child("perNodeConfig");
        let rules = self.array(per_node, &per_node_path);
        let mut per_node_config = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let rule_path = per_node_path.index(i);
            if let Some([selector, number]) = self.object(rule, &rule_path, ["nodeSelector", "number"]) {
                per_node_config.push(RuledConfig {
                    node_selector: self.label_selector(selector, &rule_path.child("nodeSelector")),
                    number: self.int(number, &rule_path.child("number"), "an integer"),
                });
            }
        }
        LoadConcurrency {
            global_config: self.int(global, &path.child("globalConfig"), "an integer"),
            per_node_config,
            prepare_queue_length: self.int(queue, &path.child("prepareQueueLength"), "an integer"),
        }
    }

    fn label_selector(&mut self, node: Option<&Node>, path: &Path) -> LabelSelector {
        let Some(node) = node else { return LabelSelector::default() };
        let Some([labels, expressions]) = self.object(node, path, ["matchLabels", "matchExpressions"]) else {
            return LabelSelector::default();
        };
        let match_labels = self.string_map(labels, &path.child("matchLabels"));
        let expressions_path = path.child("matchExpressions");
        let items = self.array(expressions, &expressions_path);
        let mut match_expressions = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = expressions_path.index(i);
            if let Some([key, operator, values]) = self.object(item, &item_path, ["key", "operator", "values"]) {
                match_expressions.push(SelectorRequirement {
                    key: self.string(key, &item_path.child("key")),
                    operator: self.string(operator, &item_path.child("operator")),
                    values: self.string_list(values, &item_path.child("values")),
                });
            }
        }
        LabelSelector { match_labels, match_expressions }
    }

    pub(crate) fn load_affinity(&mut self, node: Option<&Node>, path: &Path) -> Vec<LoadAffinity> {
        let items = self.array(node, path);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = path.index(i);
            if item.value == Value::Null {
                // []*LoadAffinity: a nil entry makes Velero dereference a nil pointer.
                self.error(&item_path, "Required value: an entry must be an object, not null", item.pos);
                continue;
            }
            if let Some([selector, storage_class]) = self.object(item, &item_path, ["nodeSelector", "storageClass"]) {
                let selector_path = item_path.child("nodeSelector");
                if selector.is_none() {
                    self.positions.record(&selector_path, item.pos);
                }
                out.push(LoadAffinity {
                    node_selector: self.label_selector(selector, &selector_path),
                    storage_class: self.string(storage_class, &item_path.child("storageClass")),
                });
            }
        }
        out
    }

    fn backup_pvcs(&mut self, node: Option<&Node>, path: &Path) -> BTreeMap<String, BackupPvc> {
        let mut map = BTreeMap::new();
        let Some(node) = node else { return map };
        self.positions.record(path, node.pos);
        let Value::Object(members) = &node.value else {
            self.type_error(node, path, "an object keyed by source storage class");
            return map;
        };
        for member in members {
            let entry_path = path.key(&member.key);
            if map.contains_key(member.key.as_ref()) {
                self.error(
                    &entry_path,
                    format!(
                        "Duplicate value: {}: the storage class is given twice; {}",
                        go_quote(&member.key),
                        repeated_entry_effect(&member.value.value)
                    ),
                    member.key_pos,
                );
                self.unusable.insert(entry_path.render());
                continue;
            }
            let fields =
                ["storageClass", "readOnly", "spcNoRelabeling", "annotations", "secretNames", "configMapNames"];
            if let Some([storage_class, read_only, no_relabel, annotations, secrets, config_maps]) =
                self.object(&member.value, &entry_path, fields)
            {
                let pvc = BackupPvc {
                    storage_class: self.string(storage_class, &entry_path.child("storageClass")),
                    read_only: self.boolean(read_only, &entry_path.child("readOnly")),
                    spc_no_relabeling: self.boolean(no_relabel, &entry_path.child("spcNoRelabeling")),
                    annotations: self.string_map(annotations, &entry_path.child("annotations")),
                    copied: self.copied_objects(secrets, config_maps, &entry_path),
                };
                map.insert(member.key.to_string(), pvc);
            }
        }
        map
    }

    fn restore_pvc(&mut self, node: &Node, path: &Path) -> RestorePvc {
        let Some([ignore, secrets, config_maps]) =
            self.object(node, path, ["ignoreDelayBinding", "secretNames", "configMapNames"])
        else {
            return RestorePvc::default();
        };
        RestorePvc {
            ignore_delay_binding: self.boolean(ignore, &path.child("ignoreDelayBinding")),
            copied: self.copied_objects(secrets, config_maps, path),
        }
    }

    fn copied_objects(&mut self, secrets: Option<&Node>, config_maps: Option<&Node>, path: &Path) -> CopiedObjects {
        CopiedObjects {
            secret_names: self.string_list(secrets, &path.child("secretNames")),
            config_map_names: self.string_list(config_maps, &path.child("configMapNames")),
        }
    }

    pub(crate) fn pod_resources(&mut self, node: &Node, path: &Path) -> PodResources {
        let fields = PodResources::KEYS;
        let Some(values) = self.object(node, path, fields) else {
            return PodResources::default();
        };
        let [cpu_request, cpu_limit, memory_request, memory_limit, storage_request, storage_limit] =
            std::array::from_fn(|i| self.string(values[i], &path.child(fields[i])));
        PodResources {
            cpu_request,
            cpu_limit,
            memory_request,
            memory_limit,
            ephemeral_storage_request: storage_request,
            ephemeral_storage_limit: storage_limit,
        }
    }

    fn cache_pvc(&mut self, node: &Node, path: &Path) -> CachePvc {
        let Some([storage_class, threshold]) = self.object(node, path, ["storageClass", "residentThresholdInMB"])
        else {
            return CachePvc::default();
        };
        CachePvc {
            storage_class: self.string(storage_class, &path.child("storageClass")),
            resident_threshold_in_mb: self.int(threshold, &path.child("residentThresholdInMB"), "an int64"),
        }
    }
}

/// A key as shown in a message: long ones are cut, so a 1 MiB key does not make a 1 MiB message.
pub(crate) fn shortened(key: &str) -> String {
    if key.chars().count() <= 64 {
        return key.to_string();
    }
    let head: String = key.chars().take(61).collect();
    format!("{head}...")
}

fn article(type_name: &str) -> String {
    match type_name {
        "null" => "null".to_string(),
        "array" | "object" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

/// The sibling within edit distance 2 (or a third of the key), for did-you-mean hints.
/// Candidates whose length alone rules them out are skipped, so a huge key costs nothing.
pub(crate) fn closest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let length = key.chars().count();
    let limit = (length / 3).max(2);
    let key_lower = key.to_ascii_lowercase();
    candidates
        .iter()
        .filter(|c| c.len().abs_diff(length) <= limit)
        .map(|c| (edit_distance(&key_lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// How Go's `encoding/json` holds a field, which decides what a repeated key does to it.
enum GoKind {
    /// `*T` of a struct: a repeated object is decoded into the same value.
    Pointer,
    /// A struct held by value (`metav1.LabelSelector`).
    Struct,
    Map,
    Slice,
    /// Strings, numbers, booleans.
    Scalar,
}

/// The kind of each field of node-agent's types (`pkg/types/node_agent.go`); names are unique
/// across them.
fn go_kind(field: &str) -> GoKind {
    match field {
        "loadConcurrency" | "restorePVC" | "podResources" | "cachePVC" => GoKind::Pointer,
        "nodeSelector" => GoKind::Struct,
        "backupPVC" | "podLabels" | "podAnnotations" | "matchLabels" | "annotations" => GoKind::Map,
        "loadAffinity" | "perNodeConfig" | "matchExpressions" | "values" | "secretNames" | "configMapNames" => {
            GoKind::Slice
        }
        _ => GoKind::Scalar,
    }
}

/// What Go does with a struct field's second occurrence, `repeat` (it decodes every
/// occurrence, in order, into the same field).
fn repeated_field_effect(field: &str, repeat: &Value) -> &'static str {
    match (go_kind(field), repeat) {
        (GoKind::Pointer | GoKind::Map | GoKind::Slice, Value::Null) => {
            "Go reads this null as unset and drops the earlier value"
        }
        (GoKind::Struct | GoKind::Scalar, Value::Null) => "Go ignores this null and keeps the earlier value",
        (GoKind::Pointer | GoKind::Struct, _) => {
            "Go merges this object into the earlier one: fields given again take this value, the others keep the earlier"
        }
        (GoKind::Map, _) => "Go adds these entries to the earlier map, a key in both taking this value",
        (GoKind::Slice, _) => "Go replaces the earlier list with this one",
        (GoKind::Scalar, _) => "Go keeps this later value",
    }
}

/// What Go does with a map key's second occurrence: the entry is decoded afresh and replaces
/// the earlier one (a null one becomes the zero value).
fn repeated_entry_effect(repeat: &Value) -> &'static str {
    match repeat {
        Value::Null => "Go replaces the earlier value with an empty one",
        _ => "Go replaces the earlier value with this one",
    }
}

/// Go's `encoding/json` field matching when no field name matches exactly: each rune folded
/// as `unicode.ToUpper(unicode.ToLower(r))` (ASCII simply upper-cased), so `ſ` (U+017F) matches
/// `s`, the Kelvin sign `K` (U+212A) matches `k`, and `ı` and `İ` match `i`. Go maps rune to
/// rune: where Rust's full case mapping expands a character, the first rune of the lower-case
/// form is Go's, and an upper case that expands leaves the rune as it is (`ß`).
fn go_equal_fold(a: &str, b: &str) -> bool {
    fn fold(c: char) -> char {
        if c.is_ascii() {
            return c.to_ascii_uppercase();
        }
        let lower = c.to_lowercase().next().unwrap_or(c);
        let mut upper = lower.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(single), None) => single,
            _ => lower,
        }
    }
    a.chars().map(fold).eq(b.chars().map(fold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostics::Severity;
    use crate::config::json;

    fn decode_str(text: &str) -> Decoded {
        decode(&json::parse(text).expect("valid JSON"), None)
    }

    fn rendered(decoded: &Decoded) -> Vec<String> {
        decoded.diagnostics.0.iter().map(|d| format!("{}: {}", d.severity, d.render())).collect()
    }

    #[test]
    fn decodes_every_section() {
        let decoded = decode_str(
            r#"{"loadConcurrency": {"globalConfig": 2, "prepareQueueLength": 5,
                 "perNodeConfig": [{"nodeSelector": {"matchLabels": {"a": "b"}}, "number": 3}]},
               "loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]},
                                 "storageClass": "gp3"}],
               "backupPVC": {"gp3": {"storageClass": "b", "readOnly": true, "spcNoRelabeling": true, "annotations": {"x": "y"}}},
               "restorePVC": {"ignoreDelayBinding": true},
               "priorityClassName": "p",
               "podResources": {"cpuRequest": "1", "cpuLimit": "2", "memoryRequest": "1Gi", "memoryLimit": "2Gi",
                                "ephemeralStorageRequest": "1Gi", "ephemeralStorageLimit": "2Gi"},
               "privilegedFsBackup": true,
               "cachePVC": {"storageClass": "c", "residentThresholdInMB": 1024},
               "podLabels": {"l": "v"}, "podAnnotations": {"a": "v"}}"#,
        );
        assert_eq!(rendered(&decoded), Vec::<String>::new());
        let c = decoded.config;
        assert_eq!(c.load_concurrency.as_ref().map(|l| (l.global_config, l.prepare_queue_length)), Some((2, 5)));
        assert_eq!(c.load_concurrency.as_ref().map(|l| l.per_node_config[0].number), Some(3));
        assert_eq!(c.load_affinity[0].storage_class, "gp3");
        assert_eq!(c.load_affinity[0].node_selector.match_expressions[0].values, vec!["v".to_string()]);
        assert!(c.backup_pvc["gp3"].read_only && c.backup_pvc["gp3"].spc_no_relabeling);
        assert_eq!(c.restore_pvc, Some(RestorePvc { ignore_delay_binding: true, ..RestorePvc::default() }));
        assert_eq!(c.pod_resources.as_ref().map(|r| r.ephemeral_storage_limit.as_str()), Some("2Gi"));
        assert!(c.privileged_fs_backup);
        assert_eq!(c.cache_pvc.as_ref().map(|p| p.resident_threshold_in_mb), Some(1024));
        assert_eq!(c.pod_labels["l"], "v");
        assert_eq!(c.priority_class_name, "p");
    }

    #[test]
    fn reports_go_type_errors_at_their_position() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"loadConcurrency": {"globalConfig": "2"}}"#,
                r#"error: loadConcurrency.globalConfig: Invalid value: "2": must be an integer, not a string (node-agent fails to start on this) (line 1, column 38)"#,
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 2.0}}"#,
                "error: loadConcurrency.globalConfig: Invalid value: 2.0: must be an integer written without a fraction or exponent (Go rejects it) (line 1, column 38)",
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 1e3}}"#,
                "error: loadConcurrency.globalConfig: Invalid value: 1e3: must be an integer written without a fraction or exponent (Go rejects it) (line 1, column 38)",
            ),
            (
                r#"{"loadConcurrency": {"globalConfig": 9223372036854775808}}"#,
                "error: loadConcurrency.globalConfig: Invalid value: 9223372036854775808: does not fit in a 64-bit integer (line 1, column 38)",
            ),
            (
                r#"{"restorePVC": {"ignoreDelayBinding": "true"}}"#,
                r#"error: restorePVC.ignoreDelayBinding: Invalid value: "true": must be true or false (unquoted), not a string (node-agent fails to start on this) (line 1, column 39)"#,
            ),
            (
                r#"{"podResources": {"cpuRequest": 1}}"#,
                "error: podResources.cpuRequest: Invalid value: 1: must be a string (quote it), not a number (node-agent fails to start on this) (line 1, column 33)",
            ),
            (
                r#"{"backupPVC": {"sc": {"annotations": {"a": true}}}}"#,
                "error: backupPVC[sc].annotations[a]: Invalid value: true: must be a string (quote it), not a bool (node-agent fails to start on this) (line 1, column 44)",
            ),
            (
                r#"{"loadAffinity": {"nodeSelector": {}}}"#,
                "error: loadAffinity: Invalid value: object: must be an array, not an object (node-agent fails to start on this) (line 1, column 18)",
            ),
            (r#"{"loadAffinity": [null]}"#, "error: loadAffinity[0]: Required value: an entry must be an object, not null (line 1, column 19)"),
        ];
        for (input, want) in cases {
            assert_eq!(rendered(&decode_str(input)), vec![want.to_string()], "input {input}");
        }
    }

    #[test]
    fn null_fields_count_as_absent() {
        let decoded = decode_str(r#"{"priorityClassName": null, "podResources": null, "loadAffinity": null}"#);
        assert_eq!(rendered(&decoded), Vec::<String>::new());
        assert_eq!(decoded.config, NodeAgentConfig::default());
    }

    #[test]
    fn unknown_keys_get_suggestions() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"podAnotations": {}}"#,
                r#"error: podAnotations: Unknown field: did you mean "podAnnotations"? (node-agent ignores unknown fields silently) (line 1, column 2)"#,
            ),
            (
                r#"{"cachePVC": {"thresholdInGB": 1, "storageClass": "x"}}"#,
                r#"error: cachePVC.thresholdInGB: Unknown field: did you mean "residentThresholdInMB" (an int64 in megabytes; Velero's docs name a field that does not exist)? (node-agent ignores unknown fields silently) (line 1, column 15)"#,
            ),
            (
                r#"{"prepareQueueLength": 10}"#,
                r#"error: prepareQueueLength: Unknown field: did you mean "loadConcurrency.prepareQueueLength"? it belongs under loadConcurrency (node-agent ignores unknown fields silently) (line 1, column 2)"#,
            ),
            (
                r#"{"zzz": 1}"#,
                r#"error: zzz: Unknown field: supported fields: "backupPVC", "cachePVC", "loadAffinity", "loadConcurrency", "podAnnotations", "podLabels", "podResources", "priorityClassName", "privilegedFsBackup", "restorePVC", "tolerations" (node-agent ignores unknown fields silently; if it is a key of a Velero release newer than 1.18.3, give this webhook the Velero version: --velero-version) (line 1, column 2)"#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(rendered(&decode_str(input)), vec![want.to_string()], "input {input}");
        }
    }

    #[test]
    fn case_variants_are_accepted_with_a_warning() {
        let decoded = decode_str(r#"{"PodLabels": {"a": "b"}, "priorityclassname": "p"}"#);
        assert_eq!(decoded.config.pod_labels["a"], "b");
        assert_eq!(decoded.config.priority_class_name, "p");
        assert_eq!(
            rendered(&decoded),
            vec![
                r#"warning: PodLabels: non-canonical key case: Velero accepts it as "podLabels"; write it that way (line 1, column 2)"#,
                r#"warning: priorityclassname: non-canonical key case: Velero accepts it as "priorityClassName"; write it that way (line 1, column 27)"#,
            ]
        );
    }

    #[test]
    fn field_names_fold_as_go_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("podLabels", "PODLABELS", true),
            ("podLabels", "podLabelſ", true),
            ("backupPVC", "bacKupPVC", true),
            ("priorityClassName", "prıorityClassName", true),
            ("priorityClassName", "prİorityClassName", true),
            ("podLabels", "podLabel", false),
            ("podLabels", "podLabelß", false),
            ("cachePVC", "cachePVĊ", false),
        ];
        for &(field, key, want) in cases {
            assert_eq!(go_equal_fold(field, key), want, "{field} ~ {key}");
        }
        assert_eq!(
            rendered(&decode_str(r#"{"podLabelſ": {"a": "b"}}"#)),
            [
                r#"warning: podLabelſ: non-canonical key case: Velero accepts it as "podLabels"; write it that way (line 1, column 2)"#
            ]
        );
        assert_eq!(decode_str(r#"{"bac\u212aupPVC": {"gp3": {"storageClass": "x"}}}"#).config.backup_pvc.len(), 1);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let decoded = decode_str(r#"{"podLabels": {"a": "1", "a": "2"}, "podLabels": {}, "PodLabels": {}}"#);
        let severities: Vec<Severity> = decoded.diagnostics.0.iter().map(|d| d.severity).collect();
        assert_eq!(
            rendered(&decoded),
            vec![
                r#"error: podLabels: Duplicate value: "podLabels": the key is given twice (first at line 1, column 2); Go adds these entries to the earlier map, a key in both taking this value (line 1, column 37)"#,
                r#"warning: PodLabels: non-canonical key case: Velero accepts it as "podLabels"; write it that way (line 1, column 54)"#,
                r#"error: podLabels: Duplicate value: "PodLabels": the key is given twice (first at line 1, column 2); Go adds these entries to the earlier map, a key in both taking this value (line 1, column 54)"#,
                r#"error: podLabels[a]: Duplicate value: "a": the key is given twice (first at line 1, column 16); Go replaces the earlier value with this one (line 1, column 26)"#,
            ]
        );
        assert!(severities.contains(&Severity::Error));
    }

    #[test]
    fn a_repeated_key_says_what_go_does_with_it() {
        // (config, the end of the duplicate's message)
        let cases: &[(&str, &str)] = &[
            (r#"{"priorityClassName": "a", "priorityClassName": "b"}"#, "Go keeps this later value"),
            (r#"{"priorityClassName": "a", "priorityClassName": null}"#, "Go ignores this null and keeps the earlier value"),
            (
                r#"{"podResources": {"cpuRequest": "1"}, "podResources": {"cpuLimit": "2"}}"#,
                "Go merges this object into the earlier one: fields given again take this value, the others keep the earlier",
            ),
            (r#"{"cachePVC": {"storageClass": "a"}, "cachePVC": null}"#, "Go reads this null as unset and drops the earlier value"),
            (r#"{"loadAffinity": [], "loadAffinity": [{}]}"#, "Go replaces the earlier list with this one"),
            (r#"{"podAnnotations": {"a": "1"}, "podAnnotations": null}"#, "Go reads this null as unset and drops the earlier value"),
            (r#"{"podAnnotations": {"a": "1", "a": null}}"#, "Go replaces the earlier value with an empty one"),
            (r#"{"backupPVC": {"gp3": {}, "gp3": {"readOnly": true}}}"#, "Go replaces the earlier value with this one"),
            (
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b"}}, "nodeSelector": null}]}"#,
                "Go ignores this null and keeps the earlier value",
            ),
        ];
        for (text, want) in cases {
            let found = rendered(&decode_str(text));
            let duplicate = found.iter().find(|d| d.contains("Duplicate value"));
            assert!(duplicate.is_some_and(|d| d.contains(&format!("; {want} (line "))), "{text}: {found:?}");
        }
    }

    #[test]
    fn a_repeat_of_the_wrong_shape_is_a_type_error_too() {
        assert_eq!(
            rendered(&decode_str(r#"{"podLabels": {}, "podLabels": "x", "loadAffinity": [], "loadAffinity": {}}"#)),
            [
                r#"error: podLabels: Duplicate value: "podLabels": the key is given twice (first at line 1, column 2); Go cannot decode this one (line 1, column 19)"#,
                r#"error: podLabels: Invalid value: "x": must be an object, not a string (node-agent fails to start on this) (line 1, column 32)"#,
                r#"error: loadAffinity: Duplicate value: "loadAffinity": the key is given twice (first at line 1, column 37); Go cannot decode this one (line 1, column 57)"#,
                r#"error: loadAffinity: Invalid value: object: must be an array, not an object (node-agent fails to start on this) (line 1, column 73)"#,
            ]
        );
    }

    #[test]
    fn no_finding_comes_from_one_of_two_occurrences() {
        // The first podResources alone lacks three keys; Go's merged value lacks two. Neither
        // is said: the duplicate is.
        let checked = crate::config::check_value(
            r#"{"podResources": {"cpuRequest": "1"}, "podResources": {"cpuLimit": "2"}, "podLabels": {"a": "-x", "a": "y"}}"#,
            &crate::config::validate::Environment::default(),
        );
        let found: Vec<String> = checked.diagnostics.0.iter().map(|d| d.render()).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|d| d.contains("Duplicate value")), "{found:?}");
    }

    #[test]
    fn top_level_shapes() {
        assert_eq!(
            rendered(&decode_str("null")),
            vec!["warning: the value is null, which node-agent reads as an empty config: no setting applies (line 1, column 1)"]
        );
        assert_eq!(
            rendered(&decode_str("[]")),
            vec![
                r#"error: Invalid value: array: must be a JSON object; wrap the settings in an object: {"loadAffinity": [...]} (line 1, column 1)"#
            ]
        );
    }

    #[test]
    fn positions_resolve_to_nearest_ancestor() {
        let decoded = decode_str("{\n \"podLabels\": {\"a\": \"b\"}}");
        assert_eq!(decoded.positions.lookup("podLabels[a]"), Some(Pos { line: 2, column: 16 }));
        assert_eq!(decoded.positions.lookup("podLabels[zz].x"), Some(Pos { line: 2, column: 15 }));
    }

    #[test]
    fn edit_distance_table() {
        for (a, b, d) in
            [("", "", 0), ("abc", "abc", 0), ("podanotations", "podannotations", 1), ("kitten", "sitting", 3)]
        {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }
}
