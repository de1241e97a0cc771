//! Label selector, node selector, label and annotation validation, ported from apimachinery
//! (`pkg/apis/meta/v1/validation`, `pkg/api/validation/objectmeta.go`) and core validation
//! (`ValidateNodeSelector*`), with the API server's exact `field.Error` texts and order.
//!
//! Inputs are borrowed views, independent of how the caller deserialized them. Where Go ranges
//! over a map (labels, annotations) its order is random; we report in key order instead.

use std::collections::BTreeSet;
use std::fmt;

use super::field::{self, child, index, FieldError};
use super::names::{is_label_value, is_qualified_name, name_is_dns_subdomain};

/// `In`: the label's value is one of `values`.
pub const OP_IN: &str = "In";
/// `NotIn`: the label is absent or its value is not one of `values`.
pub const OP_NOT_IN: &str = "NotIn";
/// `Exists`: the label is present; `values` must be empty.
pub const OP_EXISTS: &str = "Exists";
/// `DoesNotExist`: the label is absent; `values` must be empty.
pub const OP_DOES_NOT_EXIST: &str = "DoesNotExist";
/// `Gt`: node selectors only; the value, read as an integer, is greater than the single value.
pub const OP_GT: &str = "Gt";
/// `Lt`: node selectors only; the value, read as an integer, is less than the single value.
pub const OP_LT: &str = "Lt";

/// Operators a `LabelSelector`'s `matchExpressions` accept (case-sensitive), for listing in
/// `Unsupported value` messages.
pub const LABEL_SELECTOR_OPERATORS: [&str; 4] = [OP_IN, OP_NOT_IN, OP_EXISTS, OP_DOES_NOT_EXIST];

/// Operators a `NodeSelectorTerm`'s `matchExpressions` accept (case-sensitive).
pub const NODE_SELECTOR_OPERATORS: [&str; 6] = [OP_IN, OP_NOT_IN, OP_EXISTS, OP_DOES_NOT_EXIST, OP_GT, OP_LT];

/// Operators a `NodeSelectorTerm`'s `matchFields` accept.
#[cfg(test)]
const NODE_FIELD_SELECTOR_OPERATORS: [&str; 2] = [OP_IN, OP_NOT_IN];

/// The only field a node field selector may name (Go's `metav1.ObjectNameField`).
pub const NODE_FIELD_SELECTOR_KEY: &str = "metadata.name";

/// Whether a node's `value` of the requirement's key (its label, or for `matchFields` its
/// `metadata.name`; `None`: the node has no such label) satisfies one node selector
/// requirement: apimachinery's `labels.Requirement.Matches`, which node affinity builds from
/// the requirement (`NodeSelectorRequirementsAsSelector`). `Gt`/`Lt` compare the label and the
/// one value as 64-bit integers; an unknown operator matches nothing.
pub fn requirement_matches(requirement: &Requirement, value: Option<&str>) -> bool {
    let listed = || value.is_some_and(|v| requirement.values.iter().any(|w| w == v));
    let integer = |s: &str| s.parse::<i64>().ok();
    let bound = || requirement.values.first().and_then(|v| integer(v));
    match requirement.operator {
        "In" => listed(),
        "NotIn" => !listed(),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => value.and_then(integer).zip(bound()).is_some_and(|(v, b)| v > b),
        "Lt" => value.and_then(integer).zip(bound()).is_some_and(|(v, b)| v < b),
        _ => false,
    }
}

/// Go's `TotalAnnotationSizeLimitB`: the most bytes all annotation keys and values may take.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * (1 << 10);

const GT_LT_INTEGER_MSG: &str = "for 'Gt', 'Lt' operators, the value must be an integer";

/// One `{key, operator, values}` selector requirement, borrowed from whatever the caller parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement<'a> {
    pub key: &'a str,
    pub operator: &'a str,
    pub values: &'a [String],
}

/// One node selector term; Go ANDs its requirements, and ORs the terms of a `NodeSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelectorTerm<'a> {
    pub match_expressions: Vec<Requirement<'a>>,
    pub match_fields: Vec<Requirement<'a>>,
}

/// Go's `LabelSelectorValidationOptions`; both are off for new objects, which is what a
/// webhook wants. The API server turns them on only to keep already-stored bad data readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelSelectorOptions {
    /// Accept operators other than In/NotIn/Exists/DoesNotExist.
    pub allow_unknown_operator_in_requirement: bool,
    /// Skip the label-value check on `values`.
    pub allow_invalid_label_value_in_selector: bool,
}

/// Where the errors about one entry of a map (a label, an annotation key, a `matchLabels`
/// entry) are reported. apimachinery reports them at the map's own path, which is what the
/// vectors check; the config checker reports them at the entry, whose line and column it knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EntryPaths {
    /// `metadata.labels`, as Go does.
    #[default]
    AtMap,
    /// `podLabels[app]`: the entry itself.
    AtEntry,
}

impl EntryPaths {
    fn of(self, map_path: &str, key: &str) -> String {
        match self {
            EntryPaths::AtMap => map_path.to_string(),
            EntryPaths::AtEntry => field::key(map_path, key),
        }
    }
}

/// Go's `ValidateLabelName`: one `Invalid` per `IsQualifiedName` message, all at `path`.
fn validate_label_name(key: &str, path: &str) -> Vec<FieldError> {
    is_qualified_name(key).into_iter().map(|msg| FieldError::invalid(path, key, msg)).collect()
}

fn label_value_errors<'a>(value: &'a str, path: &'a str) -> impl Iterator<Item = FieldError> + 'a {
    is_label_value(value).into_iter().map(move |msg| FieldError::invalid(path, value, msg))
}

/// Every selector kind words an operator it does not know the same way.
fn invalid_operator(req: &Requirement, path: &str) -> FieldError {
    FieldError::invalid(child(path, "operator"), req.operator, "not a valid selector operator")
}

/// How one kind of selector treats a requirement; the In/NotIn/Exists/DoesNotExist rules and
/// the key check are the same for label and node selectors.
struct RequirementRules {
    gt_lt: bool,
    allow_unknown_operator: bool,
    check_values: bool,
}

fn validate_requirement(req: &Requirement, rules: &RequirementRules, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values_path = child(path, "values");
    match req.operator {
        OP_IN | OP_NOT_IN => {
            if req.values.is_empty() {
                errs.push(FieldError::required(
                    values_path.as_str(),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        OP_EXISTS | OP_DOES_NOT_EXIST => {
            if !req.values.is_empty() {
                errs.push(FieldError::forbidden(
                    values_path.as_str(),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        OP_GT | OP_LT if rules.gt_lt => {
            if req.values.len() != 1 {
                errs.push(FieldError::required(
                    values_path.as_str(),
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
        }
        _ if rules.allow_unknown_operator => {}
        _ => errs.push(invalid_operator(req, path)),
    }
    errs.extend(validate_label_name(req.key, &child(path, "key")));
    if rules.check_values {
        for (i, value) in req.values.iter().enumerate() {
            errs.extend(label_value_errors(value, &index(&values_path, i)));
        }
    }
    errs
}

/// Go's `ValidateLabelSelectorRequirement`: one `matchExpressions` entry of a `LabelSelector`.
/// Errors come in Go's order: operator/values count, key, then each value.
fn validate_label_selector_requirement(req: &Requirement, path: &str, opts: LabelSelectorOptions) -> Vec<FieldError> {
    let rules = RequirementRules {
        gt_lt: false,
        allow_unknown_operator: opts.allow_unknown_operator_in_requirement,
        check_values: !opts.allow_invalid_label_value_in_selector,
    };
    validate_requirement(req, &rules, path)
}

/// Go's `ValidateLabelSelector`: `matchLabels` (as labels, at `<path>.matchLabels`; the options
/// do not apply to them, as in Go), then each of `matchExpressions`.
pub fn validate_label_selector<I, K, V>(
    match_labels: I,
    match_expressions: &[Requirement],
    path: &str,
    opts: LabelSelectorOptions,
    entries: EntryPaths,
) -> Vec<FieldError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut errs = validate_labels(match_labels, &child(path, "matchLabels"), entries);
    let expressions_path = child(path, "matchExpressions");
    for (i, req) in match_expressions.iter().enumerate() {
        errs.extend(validate_label_selector_requirement(req, &index(&expressions_path, i), opts));
    }
    errs
}

/// Go's `ValidateNodeSelectorRequirement`: like a label selector requirement, plus `Gt`/`Lt`
/// with exactly one value (whose integer-ness Go does not check here; see
/// [`gt_lt_value_error`]). Go skips the value check for preferred terms and for stored objects
/// that already had bad values; `allow_invalid_label_value` is that switch.
fn validate_node_selector_requirement(
    req: &Requirement,
    path: &str,
    allow_invalid_label_value: bool,
) -> Vec<FieldError> {
    let rules =
        RequirementRules { gt_lt: true, allow_unknown_operator: false, check_values: !allow_invalid_label_value };
    validate_requirement(req, &rules, path)
}

/// Go's `ValidateNodeFieldSelectorRequirement` (`matchFields`): only `metadata.name`, only
/// In/NotIn with exactly one value, and each value a valid node name.
fn validate_node_selector_field_requirement(req: &Requirement, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values_path = child(path, "values");
    match req.operator {
        OP_IN | OP_NOT_IN => {
            if req.values.len() != 1 {
                errs.push(FieldError::required(
                    values_path.as_str(),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                ));
            }
        }
        _ => errs.push(invalid_operator(req, path)),
    }
    if req.key == NODE_FIELD_SELECTOR_KEY {
        for (i, value) in req.values.iter().enumerate() {
            let value_path = index(&values_path, i);
            errs.extend(
                name_is_dns_subdomain(value, false)
                    .into_iter()
                    .map(|msg| FieldError::invalid(value_path.as_str(), value, msg)),
            );
        }
    } else {
        errs.push(FieldError::invalid(child(path, "key"), req.key, "not a valid field selector key"));
    }
    errs
}

/// Go's `ValidateNodeSelectorTerm`: each `matchExpressions` entry, then each `matchFields`
/// entry. An empty term is accepted, as in Go.
pub fn validate_node_selector_term(
    term: &NodeSelectorTerm,
    path: &str,
    allow_invalid_label_value: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let expressions_path = child(path, "matchExpressions");
    for (i, req) in term.match_expressions.iter().enumerate() {
        errs.extend(validate_node_selector_requirement(req, &index(&expressions_path, i), allow_invalid_label_value));
    }
    let fields_path = child(path, "matchFields");
    for (i, req) in term.match_fields.iter().enumerate() {
        errs.extend(validate_node_selector_field_requirement(req, &index(&fields_path, i)));
    }
    errs
}

/// Go's `ValidateNodeSelector`: at least one term, each valid.
#[cfg(test)]
pub fn validate_node_selector(
    terms: &[NodeSelectorTerm],
    path: &str,
    allow_invalid_label_value: bool,
) -> Vec<FieldError> {
    let terms_path = child(path, "nodeSelectorTerms");
    if terms.is_empty() {
        return vec![FieldError::required(terms_path, "must have at least one node selector term")];
    }
    terms
        .iter()
        .enumerate()
        .flat_map(|(i, term)| validate_node_selector_term(term, &index(&terms_path, i), allow_invalid_label_value))
        .collect()
}

/// Collects map entries sorted by key, so errors come out in a stable order.
fn sorted_entries<I, K, V>(entries: I) -> Vec<(K, V)>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
{
    let mut entries: Vec<(K, V)> = entries.into_iter().collect();
    entries.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    entries
}

/// Go's `ValidateLabels`: per entry (in key order), key errors then value errors, reported
/// where `entries` says (Go: at `path` itself, not keyed).
pub fn validate_labels<I, K, V>(labels: I, path: &str, entries: EntryPaths) -> Vec<FieldError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut errs = Vec::new();
    for (key, value) in sorted_entries(labels) {
        let entry_path = entries.of(path, key.as_ref());
        errs.extend(validate_label_name(key.as_ref(), &entry_path));
        errs.extend(label_value_errors(value.as_ref(), &entry_path));
    }
    errs
}

/// Go's `ValidateAnnotations`: keys are qualified names once lower-cased (so `Example.com/x` is
/// fine, unlike for labels), reported where `entries` says (Go: at `path`) with the original
/// key; then one `TooLong` at `path` if the keys and values together exceed
/// [`TOTAL_ANNOTATION_SIZE_LIMIT_B`] bytes.
pub fn validate_annotations<I, K, V>(annotations: I, path: &str, entries: EntryPaths) -> Vec<FieldError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut errs = Vec::new();
    let mut total_size: usize = 0;
    for (key, value) in sorted_entries(annotations) {
        let key = key.as_ref();
        let entry_path = entries.of(path, key);
        errs.extend(
            is_qualified_name(&go_to_lower(key)).into_iter().map(|msg| FieldError::invalid(&entry_path, key, msg)),
        );
        total_size = total_size.saturating_add(key.len()).saturating_add(value.as_ref().len());
    }
    if total_size > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_B));
    }
    errs
}

/// Go's `strings.ToLower`, which maps rune by rune (`unicode.ToLower`): where Rust's full
/// lower-casing expands a character (only `İ` → `i̇`), Go keeps the first rune. Byte lengths,
/// and so the "no more than" messages, then agree with Go.
fn go_to_lower(s: &str) -> String {
    s.chars().map(|c| c.to_lowercase().next().unwrap_or(c)).collect()
}

/// What `labels.NewRequirement` adds to API validation for node-selector requirements
/// (`matchExpressions` at `path`): the one value of a `Gt`/`Lt` must parse as an integer, or the
/// scheduler's selector never matches. API validation does not check this, so config validation
/// adds it on top, for requirements API validation accepts (a value is never reported twice).
pub fn validate_gt_lt_values(requirements: &[Requirement], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, req) in requirements.iter().enumerate() {
        let req_path = index(path, i);
        if !matches!(req.operator, OP_GT | OP_LT)
            || !validate_node_selector_requirement(req, &req_path, false).is_empty()
        {
            continue;
        }
        let Some(value) = req.values.first() else { continue };
        if let Some(msg) = gt_lt_value_error(value) {
            errs.push(FieldError::invalid(index(&child(&req_path, "values"), 0), value, msg));
        }
    }
    errs
}

/// The error `labels.NewRequirement` gives a `Gt`/`Lt` value that `strconv.ParseInt(v, 10, 64)`
/// rejects, i.e. anything but an optionally signed decimal i64.
fn gt_lt_value_error(value: &str) -> Option<String> {
    value.parse::<i64>().is_err().then(|| GT_LT_INTEGER_MSG.to_string())
}

/// Longest label value, in bytes: the most leading zeros an integer label value can carry.
const MAX_LABEL_VALUE_BYTES: usize = super::names::LABEL_VALUE_MAX_LENGTH;

impl fmt::Display for Requirement<'_> {
    /// `zone In [a, b]`, `zone Exists`, `cores Gt 4`: the requirement as a config spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            OP_EXISTS | OP_DOES_NOT_EXIST => write!(f, "{} {}", self.key, self.operator),
            OP_GT | OP_LT => write!(f, "{} {} {}", self.key, self.operator, self.values.join(", ")),
            _ => write!(f, "{} {} [{}]", self.key, self.operator, self.values.join(", ")),
        }
    }
}

/// Which of `requirements`, ANDed as in one label selector or one node-selector term, no node
/// can satisfy together; `None` when some set of node labels satisfies them all.
///
/// Exact over what a node's labels can be (one value per key, each a valid label value, so an
/// integer one is unsigned decimal and at most 63 bytes): `In` and `NotIn` sets, `Exists` and
/// `DoesNotExist`, `Gt`/`Lt` ranges as `labels.Requirement.Matches` reads them, any number of
/// requirements on one key. Keys are independent, so the answer is the requirements of the first
/// key that cannot be satisfied, cut to a minimal conflicting set (dropping any one of them
/// makes the rest satisfiable). Requirements the validators refuse (an unknown operator, wrong
/// arity, a non-integer `Gt` value) are theirs to report and are taken as satisfiable here.
pub fn conflicting_requirements(requirements: &[Requirement]) -> Option<Vec<usize>> {
    let mut keys: Vec<&str> = requirements.iter().map(|r| r.key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().find_map(|key| {
        let mut group: Vec<usize> = (0..requirements.len()).filter(|&i| requirements[i].key == key).collect();
        let satisfiable = |indexes: &[usize]| key_satisfiable(indexes.iter().map(|&i| &requirements[i]));
        if satisfiable(&group) {
            return None;
        }
        let mut i = 0;
        while i < group.len() {
            let mut without = group.clone();
            without.remove(i);
            if satisfiable(&without) {
                i += 1;
            } else {
                group = without;
            }
        }
        Some(group)
    })
}

/// Whether one value (or absence) of a single key satisfies every requirement, all on that key.
fn key_satisfiable<'r, 'a: 'r>(requirements: impl Iterator<Item = &'r Requirement<'a>>) -> bool {
    let (mut must_exist, mut must_not_exist) = (false, false);
    let mut allowed: Option<BTreeSet<&str>> = None;
    let mut excluded: BTreeSet<&str> = BTreeSet::new();
    // Exclusive bounds of an integer value, once a `Gt` or `Lt` asks for one.
    let mut range: Option<(i128, i128)> = None;
    for req in requirements {
        let values = req.values.iter().map(String::as_str);
        match req.operator {
            OP_IN => {
                must_exist = true;
                let these: BTreeSet<&str> = values.collect();
                allowed = Some(match allowed {
                    Some(before) => before.intersection(&these).copied().collect(),
                    None => these,
                });
            }
            OP_NOT_IN => excluded.extend(values),
            OP_EXISTS => must_exist = true,
            OP_DOES_NOT_EXIST => must_not_exist = true,
            OP_GT | OP_LT => {
                let [value] = req.values else { return true };
                let Ok(bound) = value.parse::<i64>() else { return true };
                must_exist = true;
                let (low, high) = range.unwrap_or((-1, i128::from(i64::MAX) + 1));
                range = Some(if req.operator == OP_GT {
                    (low.max(i128::from(bound)), high)
                } else {
                    (low, high.min(i128::from(bound)))
                });
            }
            _ => return true,
        }
    }
    if must_not_exist || !must_exist {
        // Absence satisfies NotIn and DoesNotExist, and nothing that needs the label.
        return !must_exist;
    }
    match (allowed, range) {
        (Some(values), range) => values.into_iter().any(|v| {
            !excluded.contains(v)
                && range
                    .is_none_or(|(low, high)| v.parse::<i64>().is_ok_and(|n| (low + 1..high).contains(&i128::from(n))))
        }),
        (None, Some((low, high))) => some_integer_left(low, high, &excluded),
        // Infinitely many values, finitely many excluded.
        (None, None) => true,
    }
}

/// Whether an integer strictly between `low` and `high` has a spelling (its digits, or its
/// digits after leading zeros, up to the label value limit) that `excluded` does not list.
fn some_integer_left(low: i128, high: i128, excluded: &BTreeSet<&str>) -> bool {
    let count = high - low - 1;
    if count <= 0 {
        return false;
    }
    // Each excluded string rules out one spelling of one integer.
    if count > excluded.len() as i128 {
        return true;
    }
    (low + 1..high).any(|n| {
        let digits = n.to_string();
        (0..=MAX_LABEL_VALUE_BYTES.saturating_sub(digits.len()))
            .any(|zeros| !excluded.contains(format!("{}{digits}", "0".repeat(zeros)).as_str()))
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn requirements_match_node_labels_as_apimachinery_does() {
        let labels: std::collections::BTreeMap<String, String> = [("zone", "a"), ("cores", "8"), ("sla", "high")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cases: &[(&str, &str, &[&str], bool)] = &[
            ("zone", "In", &["a", "b"], true),
            ("zone", "In", &["b"], false),
            ("zone", "NotIn", &["b"], true),
            ("gpu", "NotIn", &["x"], true),
            ("gpu", "Exists", &[], false),
            ("gpu", "DoesNotExist", &[], true),
            ("cores", "Gt", &["4"], true),
            ("cores", "Lt", &["4"], false),
            ("sla", "Gt", &["4"], false),
            ("cores", "Gt", &["four"], false),
            ("zone", "in", &["a"], false),
        ];
        for (key, operator, values, want) in cases {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            let requirement = Requirement { key, operator, values: &values };
            assert_eq!(
                requirement_matches(&requirement, labels.get(*key).map(String::as_str)),
                *want,
                "{key} {operator} {values:?}"
            );
        }
    }

    use super::*;
    use serde_json::{Map, Value};
    use std::collections::BTreeMap;

    const VALUE_REGEX_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    const KEY_REGEX_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

    fn rendered(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn owned(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn gt_lt_value_reads_like_parse_int() {
        let cases = [
            ("0", true),
            ("+5", true),
            ("-5", true),
            ("007", true),
            ("9223372036854775807", true),
            ("-9223372036854775808", true),
            ("9223372036854775808", false),
            ("", false),
            ("+", false),
            ("-", false),
            ("1.5", false),
            ("1_000", false),
            ("0x10", false),
            (" 1", false),
            ("1 ", false),
            ("١", false),
        ];
        for (value, ok) in cases {
            let want = (!ok).then(|| GT_LT_INTEGER_MSG.to_string());
            assert_eq!(gt_lt_value_error(value), want, "{value:?}");
        }
    }

    #[test]
    fn operator_lists_render_as_not_supported() {
        let cases: [(&[&str], &str); 3] = [
            (
                &LABEL_SELECTOR_OPERATORS,
                r#"op: Unsupported value: "in": supported values: "DoesNotExist", "Exists", "In", "NotIn""#,
            ),
            (
                &NODE_SELECTOR_OPERATORS,
                r#"op: Unsupported value: "in": supported values: "DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn""#,
            ),
            (&NODE_FIELD_SELECTOR_OPERATORS, r#"op: Unsupported value: "in": supported values: "In", "NotIn""#),
        ];
        for (ops, want) in cases {
            assert_eq!(FieldError::not_supported("op", "in", ops).to_string(), want);
        }
    }

    #[test]
    fn requirement_errors_in_go_order() {
        let values = owned(&["-v", "ok"]);
        let req = Requirement { key: "-k", operator: "Gt", values: &values };
        let label = validate_label_selector_requirement(&req, "s", LabelSelectorOptions::default());
        let want = vec![
            r#"s.operator: Invalid value: "Gt": not a valid selector operator"#.to_string(),
            format!(r#"s.key: Invalid value: "-k": {KEY_REGEX_MSG}"#),
            format!(r#"s.values[0]: Invalid value: "-v": {VALUE_REGEX_MSG}"#),
        ];
        assert_eq!(rendered(&label), want);

        let node = validate_node_selector_requirement(&req, "s", false);
        let want_node = vec![
            r#"s.values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"#.to_string(),
            format!(r#"s.key: Invalid value: "-k": {KEY_REGEX_MSG}"#),
            format!(r#"s.values[0]: Invalid value: "-v": {VALUE_REGEX_MSG}"#),
        ];
        assert_eq!(rendered(&node), want_node);
    }

    #[test]
    fn field_requirement_checks_key_and_values() {
        let values = owned(&["Bad_Node", "ok"]);
        let cases: [(&str, &str, usize); 3] = [
            // (key, operator, expected error count)
            ("metadata.name", "In", 2),     // two values + one bad node name
            ("metadata.name", "Exists", 2), // bad operator + one bad node name
            ("spec.nodeName", "NotIn", 2),  // two values + bad key (values then unchecked)
        ];
        for (key, operator, count) in cases {
            let req = Requirement { key, operator, values: &values };
            let errs = validate_node_selector_field_requirement(&req, "f");
            assert_eq!(errs.len(), count, "{key} {operator}: {:?}", rendered(&errs));
        }
    }

    #[test]
    fn node_selector_paths() {
        let values = owned(&["v"]);
        let bad = Requirement { key: "k", operator: "Lt", values: &[] };
        let good = Requirement { key: "k", operator: "In", values: &values };
        let terms = [
            NodeSelectorTerm { match_expressions: vec![good], match_fields: vec![] },
            NodeSelectorTerm {
                match_expressions: vec![good, bad],
                match_fields: vec![Requirement { key: "metadata.name", operator: "In", values: &[] }],
            },
        ];
        let errs = validate_node_selector(&terms, "spec.required", false);
        assert_eq!(
            rendered(&errs),
            [
                "spec.required.nodeSelectorTerms[1].matchExpressions[1].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
                "spec.required.nodeSelectorTerms[1].matchFields[0].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            ]
        );
        // An empty path is the root.
        assert_eq!(
            rendered(&validate_node_selector(&[], "", false)),
            ["nodeSelectorTerms: Required value: must have at least one node selector term"]
        );
    }

    #[test]
    fn conflicting_requirements_are_exact_and_minimal() {
        // (name, requirements as key/operator/values, the conflicting indexes or none)
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str, &'a [&'a str])], Option<&'a [usize]>);
        let rows: &[Row] = &[
            ("one In", &[("k", "In", &["a"])], None),
            ("In against NotIn of its one value", &[("k", "In", &["a"]), ("k", "NotIn", &["a"])], Some(&[0, 1])),
            ("NotIn leaves one of In", &[("k", "In", &["a", "b"]), ("k", "NotIn", &["a"])], None),
            ("disjoint In sets", &[("k", "In", &["a"]), ("x", "Exists", &[]), ("k", "In", &["b", "c"])], Some(&[0, 2])),
            (
                "three In sets, no common value",
                &[("k", "In", &["a", "b"]), ("k", "In", &["b", "c"]), ("k", "In", &["a", "c"])],
                Some(&[0, 1, 2]),
            ),
            ("Exists and DoesNotExist", &[("k", "Exists", &[]), ("k", "DoesNotExist", &[])], Some(&[0, 1])),
            ("DoesNotExist and NotIn", &[("k", "DoesNotExist", &[]), ("k", "NotIn", &["a"])], None),
            ("DoesNotExist and Gt", &[("k", "Gt", &["1"]), ("k", "DoesNotExist", &[])], Some(&[0, 1])),
            ("NotIn alone", &[("k", "NotIn", &["a", "b"])], None),
            ("other keys are independent", &[("a", "In", &["1"]), ("b", "NotIn", &["1"])], None),
            ("Gt below Lt", &[("n", "Gt", &["3"]), ("n", "Lt", &["5"])], None),
            ("Gt and Lt one apart", &[("n", "Gt", &["4"]), ("n", "Lt", &["5"])], Some(&[0, 1])),
            ("Gt above Lt", &[("n", "Lt", &["2"]), ("n", "Gt", &["7"])], Some(&[0, 1])),
            ("label values are never negative", &[("n", "Lt", &["0"])], Some(&[0])),
            ("Lt 1 leaves 0", &[("n", "Lt", &["1"])], None),
            ("nothing above the largest int64", &[("n", "Gt", &["9223372036854775807"])], Some(&[0])),
            ("In values outside Gt", &[("n", "In", &["1", "2"]), ("n", "Gt", &["2"])], Some(&[0, 1])),
            (
                "an In value inside the range",
                &[("n", "In", &["1", "03"]), ("n", "Gt", &["2"]), ("n", "Lt", &["4"])],
                None,
            ),
            ("a non-integer In value under Gt", &[("n", "In", &["x"]), ("n", "Gt", &["0"])], Some(&[0, 1])),
            (
                "the only integer, canonical spelling excluded",
                &[("n", "Gt", &["4"]), ("n", "Lt", &["6"]), ("n", "NotIn", &["5"])],
                None,
            ),
            (
                "an excluded In value and a redundant Exists",
                &[("k", "Exists", &[]), ("k", "In", &["a"]), ("k", "NotIn", &["a", "b"])],
                Some(&[1, 2]),
            ),
            ("an unknown operator is the validators'", &[("k", "in", &["a"]), ("k", "DoesNotExist", &[])], None),
        ];
        for (name, reqs, want) in rows {
            let values: Vec<Vec<String>> = reqs.iter().map(|(_, _, v)| owned(v)).collect();
            let reqs: Vec<Requirement> = reqs
                .iter()
                .zip(&values)
                .map(|((key, operator, _), values)| Requirement { key, operator, values })
                .collect();
            assert_eq!(conflicting_requirements(&reqs).as_deref(), *want, "{name}");
        }
        // Every spelling of the one integer left excluded: 5, 05, ... up to 63 bytes.
        let spellings: Vec<String> = (0..63).map(|zeros| format!("{}5", "0".repeat(zeros))).collect();
        let (gt, lt) = (owned(&["4"]), owned(&["6"]));
        let reqs = [
            Requirement { key: "n", operator: "Gt", values: &gt },
            Requirement { key: "n", operator: "Lt", values: &lt },
            Requirement { key: "n", operator: "NotIn", values: &spellings },
        ];
        assert_eq!(conflicting_requirements(&reqs), Some(vec![0, 1, 2]));
        assert_eq!(conflicting_requirements(&reqs[..2]), None);
    }

    #[test]
    fn requirements_read_as_written() {
        let (ab, four) = (owned(&["a", "b"]), owned(&["4"]));
        let cases = [
            (Requirement { key: "zone", operator: "In", values: &ab }, "zone In [a, b]"),
            (Requirement { key: "zone", operator: "DoesNotExist", values: &[] }, "zone DoesNotExist"),
            (Requirement { key: "cores", operator: "Gt", values: &four }, "cores Gt 4"),
        ];
        for (req, want) in cases {
            assert_eq!(req.to_string(), want);
        }
    }

    #[test]
    fn labels_report_in_key_order() {
        // A HashMap-like input order must not leak into the output.
        let labels = [("z-", "ok"), ("a", "-bad"), ("m", "ok")];
        let errs = validate_labels(labels, "l", EntryPaths::AtMap);
        assert_eq!(
            rendered(&errs),
            [
                format!(r#"l: Invalid value: "-bad": {VALUE_REGEX_MSG}"#),
                format!(r#"l: Invalid value: "z-": {KEY_REGEX_MSG}"#),
            ]
        );
    }

    #[test]
    fn entry_paths_name_the_entry_when_asked() {
        let labels = [("z-", "ok"), ("a", "-bad")];
        assert_eq!(
            rendered(&validate_labels(labels, "l", EntryPaths::AtEntry)),
            [
                format!(r#"l[a]: Invalid value: "-bad": {VALUE_REGEX_MSG}"#),
                format!(r#"l[z-]: Invalid value: "z-": {KEY_REGEX_MSG}"#),
            ]
        );
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B);
        assert_eq!(
            rendered(&validate_annotations([("-k", big.as_str())], "a", EntryPaths::AtEntry)),
            [
                format!(r#"a[-k]: Invalid value: "-k": {KEY_REGEX_MSG}"#),
                "a: Too long: may not be more than 262144 bytes".to_string(),
            ]
        );
        let values = owned(&["v"]);
        let exprs = [Requirement { key: "k", operator: "In", values: &values }];
        assert_eq!(
            rendered(&validate_label_selector(
                [("k", "-v")],
                &exprs,
                "s",
                LabelSelectorOptions::default(),
                EntryPaths::AtEntry
            )),
            [format!(r#"s.matchLabels[k]: Invalid value: "-v": {VALUE_REGEX_MSG}"#)]
        );
    }

    #[test]
    fn annotation_keys_are_lowercased_for_the_check_only() {
        let cases: Vec<(String, Vec<String>)> = vec![
            ("Example.COM/Key".to_string(), vec![]),
            ("Example.com/-k".to_string(), vec![format!(r#"a: Invalid value: "Example.com/-k": {KEY_REGEX_MSG}"#)]),
            // Go lowers İ to a plain i and the Kelvin sign to k, so these pass as in Go.
            ("İstio.io/KEY".to_string(), vec![]),
            ("\u{212A}ey".to_string(), vec![]),
            // 65 bytes, 64 once lowered the Go way: only the length fails.
            (
                format!("İ{}", "a".repeat(63)),
                vec![format!(r#"a: Invalid value: "İ{}": name part must be no more than 63 bytes"#, "a".repeat(63))],
            ),
        ];
        for (key, want) in cases {
            let errs = validate_annotations([(key.as_str(), "v")], "a", EntryPaths::AtMap);
            assert_eq!(rendered(&errs), want, "{key:?}");
        }
        assert_eq!(go_to_lower("İSTANBUL"), "istanbul");
    }

    // ---- selector.json: every case except ResourceRequirements(container) ----

    const SELECTOR_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors/selector.json"));

    /// Kind someone else's validator covers; its cases are counted, not checked.
    const NOT_OURS: &str = "ResourceRequirements(container)";

    struct OwnedRequirement {
        key: String,
        operator: String,
        values: Vec<String>,
    }

    impl OwnedRequirement {
        fn parse(value: &Value) -> Self {
            Self {
                key: text(&value["key"]),
                operator: text(&value["operator"]),
                values: match value.get("values") {
                    None => Vec::new(),
                    Some(list) => {
                        list.as_array().unwrap_or_else(|| panic!("values: {list}")).iter().map(text).collect()
                    }
                },
            }
        }

        fn view(&self) -> Requirement<'_> {
            Requirement { key: &self.key, operator: &self.operator, values: &self.values }
        }
    }

    fn text(value: &Value) -> String {
        value.as_str().unwrap_or_else(|| panic!("expected a string, got {value}")).to_string()
    }

    fn requirements(value: Option<&Value>) -> Vec<OwnedRequirement> {
        value
            .and_then(Value::as_array)
            .map(|list| list.iter().map(OwnedRequirement::parse).collect())
            .unwrap_or_default()
    }

    fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
        value
            .and_then(Value::as_object)
            .map(|map| map.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default()
    }

    /// The case's option flags; any flag we do not know about fails the test.
    fn flags(case: &Value, known: &[&str]) -> Result<Map<String, Value>, String> {
        let opts = case.get("opts").and_then(Value::as_object).cloned().unwrap_or_default();
        match opts.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(format!("unknown option {unknown:?}")),
            None => Ok(opts),
        }
    }

    fn flag(opts: &Map<String, Value>, name: &str) -> bool {
        opts.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Annotations given as `object_spec` (huge values spelled out as char × length).
    fn annotations_from_spec(case: &Value) -> Result<BTreeMap<String, String>, String> {
        let mut map = BTreeMap::new();
        for entry in case["object_spec"].as_array().ok_or("object_spec")? {
            let len = entry["value_len"].as_u64().ok_or("value_len")?;
            let value = text(&entry["value_char"]).repeat(usize::try_from(len).map_err(|e| e.to_string())?);
            map.insert(text(&entry["key"]), value);
        }
        let total: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        match case["total_bytes"].as_u64() {
            Some(want) if want as usize == total => Ok(map),
            other => Err(format!("object_spec adds up to {total} bytes, total_bytes says {other:?}")),
        }
    }

    /// Runs our validator on one case; `Ok(None)` for a case that is not ours.
    fn run(case: &Value) -> Result<Option<Vec<FieldError>>, String> {
        let kind = case["kind"].as_str().ok_or("no kind")?;
        let path = case["field_path"].as_str().ok_or("no field_path")?;
        let object = &case["object"];
        let errs = match kind {
            NOT_OURS => return Ok(None),
            "LabelSelector" => {
                let opts = flags(case, &["AllowInvalidLabelValueInSelector", "AllowUnknownOperatorInRequirement"])?;
                let opts = LabelSelectorOptions {
                    allow_unknown_operator_in_requirement: flag(&opts, "AllowUnknownOperatorInRequirement"),
                    allow_invalid_label_value_in_selector: flag(&opts, "AllowInvalidLabelValueInSelector"),
                };
                let exprs = requirements(object.get("matchExpressions"));
                let views: Vec<Requirement> = exprs.iter().map(OwnedRequirement::view).collect();
                validate_label_selector(&string_map(object.get("matchLabels")), &views, path, opts, EntryPaths::AtMap)
            }
            "Labels" => {
                flags(case, &[])?;
                validate_labels(&string_map(Some(object)), path, EntryPaths::AtMap)
            }
            "Annotations" => {
                flags(case, &[])?;
                let map = if case.get("object_spec").is_some() {
                    annotations_from_spec(case)?
                } else {
                    string_map(Some(object))
                };
                validate_annotations(&map, path, EntryPaths::AtMap)
            }
            "NodeSelectorRequirement" => {
                let opts = flags(case, &["allowInvalidLabelValueInRequiredNodeAffinity"])?;
                let req = OwnedRequirement::parse(object);
                validate_node_selector_requirement(
                    &req.view(),
                    path,
                    flag(&opts, "allowInvalidLabelValueInRequiredNodeAffinity"),
                )
            }
            "NodeSelectorRequirement(matchFields)" => {
                flags(case, &[])?;
                validate_node_selector_field_requirement(&OwnedRequirement::parse(object).view(), path)
            }
            "NodeSelector" => {
                let opts = flags(case, &["allowInvalidLabelValueInRequiredNodeAffinity"])?;
                let parsed: Vec<(Vec<OwnedRequirement>, Vec<OwnedRequirement>)> = object["nodeSelectorTerms"]
                    .as_array()
                    .ok_or("nodeSelectorTerms")?
                    .iter()
                    .map(|t| (requirements(t.get("matchExpressions")), requirements(t.get("matchFields"))))
                    .collect();
                let terms: Vec<NodeSelectorTerm> = parsed
                    .iter()
                    .map(|(exprs, fields)| NodeSelectorTerm {
                        match_expressions: exprs.iter().map(OwnedRequirement::view).collect(),
                        match_fields: fields.iter().map(OwnedRequirement::view).collect(),
                    })
                    .collect();
                validate_node_selector(&terms, path, flag(&opts, "allowInvalidLabelValueInRequiredNodeAffinity"))
            }
            other => return Err(format!("unknown kind {other:?}")),
        };
        Ok(Some(errs))
    }

    /// Compares our errors with the case's verdict, count, fragment and full strings.
    fn disagreement(case: &Value, got: &[String]) -> Option<String> {
        let want: Vec<String> =
            case["expected_errors"].as_array().map(|list| list.iter().map(text).collect()).unwrap_or_default();
        let valid_ok = case["valid"].as_bool() == Some(got.is_empty());
        let count_ok = case["expected_error_count"].as_u64() == Some(got.len() as u64);
        let fragment_ok = case
            .get("expected_error_fragment")
            .and_then(Value::as_str)
            .is_none_or(|fragment| got.iter().any(|e| e.contains(fragment)));
        (!(valid_ok && count_ok && fragment_ok && got == want)).then(|| {
            format!(
                "valid {} count {} fragment {}\n  want {want:?}\n  got  {got:?}",
                case["valid"],
                case["expected_error_count"],
                case.get("expected_error_fragment").unwrap_or(&Value::Null)
            )
        })
    }

    #[test]
    fn selector_json_vectors() {
        let vectors: Value = serde_json::from_str(SELECTOR_JSON).expect("selector.json parses");
        let cases = vectors["cases"].as_array().expect("cases");
        let (mut checked, mut skipped) = (0, 0);
        let mut failures = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let label = format!("case {i} ({}, {})", case["kind"], case["object"]);
            match run(case) {
                Ok(None) => skipped += 1,
                Ok(Some(errs)) => {
                    checked += 1;
                    if let Some(why) = disagreement(case, &rendered(&errs)) {
                        failures.push(format!("{label}: {why}"));
                    }
                }
                Err(why) => failures.push(format!("{label}: {why}")),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} selector.json cases disagree:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        assert_eq!(checked + skipped, cases.len());
        assert!(checked > 80, "only {checked} selector.json cases found");
        println!("selector.json: {checked} cases agree, {skipped} {NOT_OURS} cases left to their owner");
    }
}
