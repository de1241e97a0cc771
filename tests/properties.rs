//! Properties of the pure core, checked on generated inputs: quantity parsing and ordering,
//! the config pipeline, and the data-mover patch planner over perturbed real pods.

mod support;

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use node_agent_webhook::admission::Request;
use node_agent_webhook::config::check_value;
use node_agent_webhook::config::model::APPLIED_ANNOTATION;
use node_agent_webhook::config::model::{
    LabelSelector, LoadAffinity, NodeAgentConfig, PodResources, SelectorRequirement,
};
use node_agent_webhook::config::validate::Environment;
use node_agent_webhook::config::version::VeleroVersion;
use node_agent_webhook::k8s::quantity::{parse, Quantity};
use node_agent_webhook::mutate::identity::{DataMover, NodeAgentIdentity};
use node_agent_webhook::mutate::patch::{apply_ops, Op};
use node_agent_webhook::mutate::plan::{plan, Plan, PlanInput, StorageClass};
use node_agent_webhook::mutating::submission;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};
use support::{as_admitted, repo_json};

/// Modest case counts keep the file well under 20 s in a debug build (`PROPTEST_CASES` overrides
/// them for a longer hunt); failures are reported, not written to regression files.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------
// Quantities

const SUFFIXES: [&str; 16] = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
/// Decimal suffixes and the exponent each stands for.
const DECIMAL_SUFFIXES: [(&str, i32); 10] =
    [("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];

/// Exponents at the edges of Go's int32 scale and of `strconv.ParseInt`.
const EDGE_EXPONENTS: [i64; 4] = [i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN];

/// Strings from the quantity grammar: `[+-]?[0-9.]*`, a suffix from the table, an optional exponent.
fn grammar_quantity() -> impl Strategy<Value = String> {
    let exponent = prop_oneof![
        3 => Just(String::new()),
        2 => (select(vec!["e", "E"]), -40i64..40).prop_map(|(e, x)| format!("{e}{x}")),
        1 => (select(vec!["e", "E"]), select(EDGE_EXPONENTS.to_vec()), -3i64..3)
            .prop_map(|(e, edge, d)| format!("{e}{}", edge.saturating_add(d))),
        1 => (select(vec!["e", "E"]), "[+-]?[0-9]{0,22}").prop_map(|(e, x)| format!("{e}{x}")),
    ];
    ("[+-]?", "[0-9.]{0,24}", select(SUFFIXES.to_vec()), exponent).prop_map(|(s, n, x, e)| format!("{s}{n}{x}{e}"))
}

/// Upstream's decode grid, whose `ok` inputs are a realistic pool of quantities.
fn grid_inputs() -> &'static [String] {
    static INPUTS: OnceLock<Vec<String>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let grid = repo_json("testdata/vectors/quantity_grid.json");
        let records = grid["records"].as_array().expect("records");
        records.iter().filter(|r| r["status"] == "ok").filter_map(|r| r["in"].as_str().map(str::to_string)).collect()
    })
}

/// Valid quantities, many of them equal in value but spelled differently, so that ties occur.
fn valid_quantity() -> impl Strategy<Value = (String, Quantity)> {
    let small = ("[+-]?", select(vec!["0", "1", "1.5", "2", "10", "100", "1000", "1024", "0.001", ".5", "5."]))
        .prop_flat_map(|(s, n)| (Just(s), Just(n), select(SUFFIXES.to_vec())))
        .prop_map(|(s, n, x)| format!("{s}{n}{x}"));
    let from_grid = (0..grid_inputs().len()).prop_map(|i| grid_inputs()[i].clone());
    // Near Go's int32 scale limits, where trailing zeros move the value's exponent past them.
    let near_limits = ("[+-]?", select(vec!["1", "10", "1000", "0.001", "1.5", "25000"]), -4i64..4, any::<bool>())
        .prop_map(|(s, n, d, up)| {
            format!("{s}{n}e{}", if up { i64::from(i32::MAX) - d } else { d - i64::from(i32::MAX) })
        });
    prop_oneof![3 => small, 3 => from_grid, 3 => grammar_quantity(), 1 => near_limits]
        .prop_filter_map("not a quantity", |s| parse(&s).ok().map(|q| (s, q)))
}

/// The same quantity with the opposite sign (as a string: the parser is the only constructor).
fn negated(s: &str) -> String {
    match s.as_bytes().first() {
        Some(b'-') => format!("+{}", &s[1..]), // not "": a bare sign reads as 0, the empty string fails
        Some(b'+') => format!("-{}", &s[1..]),
        _ => format!("-{s}"),
    }
}

/// The canonical form read back, when the parser accepts it.
fn reparsed(q: &Quantity) -> Result<Quantity, String> {
    parse(&q.canonical()).map_err(|e| format!("canonical {:?} of {q:?} does not parse: {e}", q.canonical()))
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn quantity_parsing_never_panics_on_arbitrary_strings(
        s in prop_oneof![any::<String>(), "[-+0-9.eEinumkKMGTP ]{0,30}"]
    ) {
        if let Ok(q) = parse(&s) {
            let _ = q.canonical();
        }
    }

    #[test]
    fn quantity_parsing_never_panics_on_the_quantity_grammar(s in grammar_quantity()) {
        if let Ok(q) = parse(&s) {
            let _ = (q.canonical(), q.is_zero(), q.is_negative(), q.format());
        }
    }

    #[test]
    fn quantity_order_is_total_antisymmetric_transitive_and_consistent_with_equality(
        (sa, a) in valid_quantity(), (sb, b) in valid_quantity(), (sc, c) in valid_quantity()
    ) {
        let what = format!("{sa:?} {sb:?} {sc:?}");
        prop_assert_eq!(a.cmp(&a), Ordering::Equal, "reflexive: {}", what);
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse(), "antisymmetric: {}", what);
        prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal, "== agrees with cmp: {}", what);
        prop_assert_eq!(a.partial_cmp(&b), Some(a.cmp(&b)), "partial_cmp agrees with cmp: {}", what);
        if a <= b && b <= c {
            prop_assert!(a <= c, "transitive: {}", what);
        }
        if a < b && b <= c || a <= b && b < c {
            prop_assert!(a < c, "strictly transitive: {}", what);
        }
        if a == b && b == c {
            prop_assert_eq!(&a, &c, "equality is transitive: {}", what);
        }
        let mut sorted = [a.clone(), b.clone(), c.clone()];
        sorted.sort();
        prop_assert!(sorted[0] <= sorted[1] && sorted[1] <= sorted[2], "sorting orders them: {}", what);
    }

    #[test]
    fn negation_reverses_the_order(
        (sa, a) in valid_quantity(), (sb, b) in valid_quantity()
    ) {
        let negate = |s: &str| parse(&negated(s)).map_err(|e| TestCaseError::fail(format!("-({s}): {e}")));
        let (na, nb) = (negate(&sa)?, negate(&sb)?);
        prop_assert_eq!(na.cmp(&nb), a.cmp(&b).reverse(), "{:?} vs {:?}", sa, sb);
        prop_assert_eq!(na.is_negative(), !a.is_zero() && !a.is_negative(), "{:?}", sa);
        prop_assert_eq!(na.is_zero(), a.is_zero(), "{:?}", sa);
        prop_assert_eq!(&negate(&negated(&sa))?, &a, "--({:?})", sa);
    }

    #[test]
    fn the_canonical_form_reads_back_equal_and_is_a_fixed_point((sa, a) in valid_quantity()) {
        let back = reparsed(&a).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&back, &a, "{:?}", sa);
        prop_assert_eq!(back.canonical(), a.canonical(), "{:?}", sa);
    }

    #[test]
    fn a_decimal_suffix_means_its_power_of_ten(
        number in "[0-9]{1,20}(\\.[0-9]{1,12})?", other in "[0-9]{1,20}(\\.[0-9]{1,12})?",
        (suffix, exp) in select(DECIMAL_SUFFIXES.to_vec()),
    ) {
        let (Ok(si), Ok(e)) = (parse(&format!("{number}{suffix}")), parse(&format!("{number}e{exp}"))) else {
            return Err(TestCaseError::fail(format!("{number}{suffix} or {number}e{exp} does not parse")));
        };
        prop_assert_eq!(&si, &e, "{}{} vs {}e{}", number, suffix, number, exp);
        // Rounding up to nano is monotone, so scaling keeps the order; scaling up keeps it strict
        // (scaling down may round two values to the same nano: 1.1n == 2n).
        let (x, y) = (parse(&number).expect("a number"), parse(&other).expect("a number"));
        let scaled = |n: &str| parse(&format!("{n}{suffix}")).expect("a scaled number");
        if x < y {
            prop_assert!(scaled(&number) <= scaled(&other), "{} < {} but not with {:?}", number, other, suffix);
            if exp >= 0 {
                prop_assert!(scaled(&number) < scaled(&other), "{} < {} but not with {:?}", number, other, suffix);
            }
        }
    }
}

#[test]
fn apimachinery_cmp_vectors_hold_under_negation_and_canonical_round_trips() {
    let vectors = repo_json("testdata/vectors/quantity.json");
    let pairs = vectors["cmp"].as_array().expect("cmp pairs");
    assert_eq!(pairs.len(), 46);
    for pair in pairs {
        let (sa, sb) = (pair["a"].as_str().expect("a"), pair["b"].as_str().expect("b"));
        // Upstream's Int64AndDec rows compare unrounded internals; parsing rounds up to nano first.
        let sign = pair.get("sign_after_parse").unwrap_or(&pair["sign"]);
        let want = match sign.as_i64() {
            Some(-1) => Ordering::Less,
            Some(0) => Ordering::Equal,
            _ => Ordering::Greater,
        };
        let q = |s: &str| parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let (a, b) = (q(sa), q(sb));
        assert_eq!(a.cmp(&b), want, "{sa} vs {sb}");
        assert_eq!(q(&negated(sa)).cmp(&q(&negated(sb))), want.reverse(), "-({sa}) vs -({sb})");
        assert_eq!(q(&negated(&negated(sa))), a, "--{sa}");
        for (s, v) in [(sa, &a), (sb, &b)] {
            assert_eq!(reparsed(v).as_ref(), Ok(v), "{s}: canonical {}", v.canonical());
        }
        assert_eq!(q(&a.canonical()).cmp(&q(&b.canonical())), want, "canonical {} vs {}", a.canonical(), b.canonical());
        // Plain numbers keep their order when scaled up by any suffix (none of these rounds).
        let plain = |s: &str| s.bytes().all(|c| c.is_ascii_digit() || b"+-.".contains(&c));
        if plain(sa) && plain(sb) {
            for suffix in ["k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "e3", "e300"] {
                assert_eq!(
                    q(&format!("{sa}{suffix}")).cmp(&q(&format!("{sb}{suffix}"))),
                    want,
                    "{sa}{suffix} vs {sb}{suffix}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The config pipeline

/// Every field name the decoder knows, and misspellings it has hints for.
const CONFIG_KEYS: [&str; 36] = [
    "loadConcurrency",
    "globalConfig",
    "perNodeConfig",
    "prepareQueueLength",
    "nodeSelector",
    "number",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "loadAffinity",
    "storageClass",
    "backupPVC",
    "readOnly",
    "spcNoRelabeling",
    "annotations",
    "restorePVC",
    "ignoreDelayBinding",
    "priorityClassName",
    "podResources",
    "cpuRequest",
    "cpuLimit",
    "memoryRequest",
    "memoryLimit",
    "ephemeralStorageRequest",
    "ephemeralStorageLimit",
    "privilegedFsBackup",
    "cachePVC",
    "residentThresholdInMB",
    "podLabels",
    "podAnnotations",
    "priorityClassname",
    "podAnotations",
    "thresholdInGB",
    "velero.io/data-upload",
];

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

/// Number literals JSON allows, including ones no Go integer or float holds.
fn number_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?",
        select(vec!["1e400", "-1e400", "99999999999999999999999", "-0", "0.0", "1E2", "9223372036854775808"])
            .prop_map(str::to_string),
    ]
}

fn string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "in", "500m", "1Gi", "0", "-1", "1e3", ""])
            .prop_map(json_string),
        any::<String>().prop_map(|s| json_string(&s)),
        "[a-z0-9./~-]{0,20}".prop_map(|s| json_string(&s)),
    ]
}

fn key_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(CONFIG_KEYS.to_vec()).prop_map(json_string),
        1 => "[a-zA-Z./~-]{0,12}".prop_map(|s| json_string(&s)),
    ]
}

/// JSON text, recursively: any value, with keys mostly from the config schema (duplicates
/// included), and whitespace between tokens.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(vec!["null", "true", "false", "{}", "[]"]).prop_map(str::to_string),
        number_literal(),
        string_literal(),
    ];
    let value = leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((key_literal(), inner), 0..6).prop_map(|members| {
                let members: Vec<String> = members.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", members.join(",\n  "))
            }),
        ]
    });
    prop_oneof![
        1 => value.clone(),
        3 => prop::collection::vec((key_literal(), value), 0..8).prop_map(|members| {
            let members: Vec<String> = members.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{{\n  {}\n}}", members.join(",\n  "))
        }),
    ]
}

fn environment() -> impl Strategy<Value = (Option<VeleroVersion>, Option<HashSet<String>>)> {
    let version = prop::option::of(select(vec!["1.16.0", "1.17.0", "1.18.1", "1.18.3", "1.19.0"]))
        .prop_map(|v| v.map(|v| v.parse::<VeleroVersion>().expect("a version")));
    let classes = prop::option::of(Just(HashSet::from(["velero-data-mover".to_string()])));
    (version, classes)
}

/// Checks a config value and renders every finding: none of it may panic.
fn check_everything(text: &str, (version, classes): &(Option<VeleroVersion>, Option<HashSet<String>>)) {
    let env = Environment {
        velero_version: *version,
        priority_classes: classes.as_ref(),
        storage_classes: None,
        cluster: None,
    };
    let checked = check_value(text, &env);
    for diagnostic in &checked.diagnostics.0 {
        let _ = diagnostic.render();
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn the_config_pipeline_never_panics_on_arbitrary_strings(
        text in prop_oneof![any::<String>(), "[\\[\\]{}\":,0-9a-zA-Z .eE+\\-\\\\\n\u{feff}]{0,80}"],
        env in environment(),
    ) {
        check_everything(&text, &env);
    }

    #[test]
    fn the_config_pipeline_never_panics_on_arbitrary_json(text in json_text(), env in environment()) {
        check_everything(&text, &env);
    }
}

// ---------------------------------------------------------------------------------------------
// The data-mover patch planner

/// The eight real data-mover pods, with the API server's defaults.
fn real_pods() -> &'static [Value] {
    static PODS: OnceLock<Vec<Value>> = OnceLock::new();
    PODS.get_or_init(|| {
        let mut pods = Vec::new();
        for version in ["v1.17", "v1.18"] {
            for kind in ["dataupload", "datadownload", "podvolumebackup", "podvolumerestore"] {
                pods.push(as_admitted(repo_json(&format!("testdata/pods/{version}/pod-{kind}.json"))));
            }
        }
        pods
    })
}

fn identify(pod: &Value) -> DataMover {
    let request: Request = serde_json::from_value(json!({
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "velero",
        "name": pod["metadata"]["name"], "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:velero:velero",
                     "extra": {"authentication.kubernetes.io/pod-name": ["node-agent-x7k2p"]}},
        "object": pod
    }))
    .expect("request");
    let identity = NodeAgentIdentity { namespace: "velero".into(), service_accounts: vec!["velero".into()] };
    identity.identify(&submission(&request)).expect("a data-mover pod")
}

/// Label and annotation keys: ordinary, prefixed, with `/` and `~` (JSON-pointer escapes),
/// Velero's own, and the webhook's own annotation.
const METADATA_KEYS: [&str; 14] = [
    "team",
    "example.com/role",
    "a~b",
    "a/b/c",
    "~1",
    "~0~1/",
    "",
    "velero.io/data-upload",
    "velero.io/exposer-pod-group",
    "velero.io/new",
    "sub.velero.io/x",
    "Velero.io/caps",
    "app.kubernetes.io/name",
    APPLIED_ANNOTATION,
];
const NODE_KEYS: [&str; 5] =
    ["role", "zone", "kubernetes.io/os", "topology.ebs.csi.aws.com/zone", "kubernetes.io/hostname"];
const NODE_VALUES: [&str; 7] = ["a", "b", "backup", "windows", "eu-west-1a", "1", "5"];
const OPERATORS: [&str; 6] = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
/// Valid quantities, including different spellings of equal values.
const QUANTITIES: [&str; 10] = ["1", "1000m", "500m", "2", "0.5", "1Gi", "1024Mi", "0", "100Mi", "1e3"];

fn metadata_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        select(METADATA_KEYS.to_vec()).prop_map(str::to_string),
        prop_oneof![select(vec!["x", "platform", "", "a/b~c"]).prop_map(str::to_string), "[a-z]{0,8}"],
        0..5,
    )
}

fn requirement() -> impl Strategy<Value = SelectorRequirement> {
    (select(NODE_KEYS.to_vec()), select(OPERATORS.to_vec()), prop::collection::vec(select(NODE_VALUES.to_vec()), 0..3))
        .prop_map(|(key, operator, values)| SelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: if matches!(operator, "Exists" | "DoesNotExist") {
                Vec::new()
            } else {
                values.into_iter().map(str::to_string).collect()
            },
        })
}

fn requirement_json(r: &SelectorRequirement) -> Value {
    if r.values.is_empty() {
        json!({"key": r.key, "operator": r.operator})
    } else {
        json!({"key": r.key, "operator": r.operator, "values": r.values})
    }
}

fn quantity_map() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(select(vec!["cpu", "memory", "ephemeral-storage"]), select(QUANTITIES.to_vec()), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
}

/// A container's `resources`, as the API server sends it.
fn resources_json() -> impl Strategy<Value = Value> {
    (prop::option::of(quantity_map()), prop::option::of(quantity_map()), any::<bool>()).prop_map(
        |(requests, limits, claims)| {
            let mut out = Map::new();
            if let Some(r) = requests.filter(|r| r.as_object().is_some_and(|m| !m.is_empty())) {
                out.insert("requests".into(), r);
            }
            if let Some(l) = limits.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
                out.insert("limits".into(), l);
            }
            if claims {
                out.insert("claims".into(), json!([{"name": "gpu"}]));
            }
            Value::Object(out)
        },
    )
}

/// Node affinity as the API server could send it: any mix of terms, expressions and fields.
fn node_affinity_json() -> impl Strategy<Value = Value> {
    let term = (prop::option::of(prop::collection::vec(requirement(), 0..4)), any::<bool>()).prop_map(
        |(expressions, fields)| {
            let mut term = Map::new();
            if let Some(e) = expressions {
                term.insert("matchExpressions".into(), Value::Array(e.iter().map(requirement_json).collect()));
            }
            if fields {
                term.insert(
                    "matchFields".into(),
                    json!([{"key": "metadata.name", "operator": "In", "values": ["n1"]}]),
                );
            }
            Value::Object(term)
        },
    );
    prop_oneof![
        prop::collection::vec(term, 0..3).prop_map(|terms| json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}})),
        Just(json!({"requiredDuringSchedulingIgnoredDuringExecution": {}})),
        Just(json!({"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["a"]}]}}]})),
    ]
}

/// What to do with one optional map or field of the pod.
#[derive(Debug, Clone)]
enum Edit<T> {
    Keep,
    Drop,
    Replace(T),
    Merge(T),
}

fn edit<T: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Edit<T>> {
    let value = value.boxed();
    prop_oneof![
        3 => Just(Edit::Keep),
        1 => Just(Edit::Drop),
        1 => value.clone().prop_map(Edit::Replace),
        2 => value.prop_map(Edit::Merge),
    ]
}

#[derive(Debug, Clone)]
struct Perturbation {
    pod: usize,
    labels: Edit<BTreeMap<String, String>>,
    annotations: Edit<BTreeMap<String, String>>,
    node_affinity: Edit<Value>,
    pod_anti_affinity: bool,
    resources: Edit<Value>,
    /// Extra containers: `true` names one after the owner UID (a duplicate name).
    extra_containers: Vec<(bool, Value)>,
    priority_class_name: Option<&'static str>,
    priority: Option<Option<i64>>,
    preemption_policy: Option<Option<&'static str>>,
    node_name: Option<Option<&'static str>>,
    hostname_selector: bool,
}

fn perturbation() -> impl Strategy<Value = Perturbation> {
    (
        0..real_pods().len(),
        edit(metadata_map()),
        edit(metadata_map()),
        edit(node_affinity_json()),
        any::<bool>(),
        edit(resources_json()),
        prop::collection::vec((prop::bool::weighted(0.2), resources_json()), 0..3),
        prop::option::of(select(vec!["velero-data-mover", "system-cluster-critical", ""])),
        prop::option::of(prop::option::of(select(vec![0i64, 1000, -5]))),
        prop::option::of(prop::option::of(select(vec!["PreemptLowerPriority", "Never"]))),
        prop::option::of(prop::option::of(select(vec!["node-1"]))),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(
                pod,
                labels,
                annotations,
                node_affinity,
                pod_anti_affinity,
                resources,
                extra_containers,
                priority_class_name,
                priority,
                preemption_policy,
                node_name,
                hostname_selector,
            )| Perturbation {
                pod,
                labels,
                annotations,
                node_affinity,
                pod_anti_affinity,
                resources,
                extra_containers,
                priority_class_name,
                priority,
                preemption_policy,
                node_name,
                hostname_selector,
            },
        )
}

fn apply_edit(parent: &mut Value, key: &str, edit: &Edit<Value>) {
    let Some(object) = parent.as_object_mut() else { return };
    match edit {
        Edit::Keep => {}
        Edit::Drop => {
            object.remove(key);
        }
        Edit::Replace(value) => {
            object.insert(key.to_string(), value.clone());
        }
        Edit::Merge(value) => match (object.get_mut(key), value) {
            (Some(Value::Object(current)), Value::Object(extra)) => {
                current.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            _ => {
                object.insert(key.to_string(), value.clone());
            }
        },
    }
}

fn string_map_json(map: &BTreeMap<String, String>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn map_edit(edit: &Edit<BTreeMap<String, String>>) -> Edit<Value> {
    match edit {
        Edit::Keep => Edit::Keep,
        Edit::Drop => Edit::Drop,
        Edit::Replace(m) => Edit::Replace(string_map_json(m)),
        Edit::Merge(m) => Edit::Merge(string_map_json(m)),
    }
}

/// A real pod with the perturbation applied, and the mover identified on the original.
fn perturbed(p: &Perturbation) -> (Value, DataMover) {
    let original = &real_pods()[p.pod];
    let mover = identify(original);
    let mut pod = original.clone();
    apply_edit(&mut pod["metadata"], "labels", &map_edit(&p.labels));
    apply_edit(&mut pod["metadata"], "annotations", &map_edit(&p.annotations));
    let spec = &mut pod["spec"];
    if p.pod_anti_affinity || !matches!(p.node_affinity, Edit::Keep) {
        if spec.get("affinity").is_none() {
            spec["affinity"] = json!({});
        }
        if p.pod_anti_affinity {
            spec["affinity"]["podAntiAffinity"] = json!({"preferredDuringSchedulingIgnoredDuringExecution": []});
        }
        apply_edit(&mut spec["affinity"], "nodeAffinity", &p.node_affinity);
    }
    apply_edit(&mut spec["containers"][0], "resources", &p.resources);
    for (i, (owner_named, resources)) in p.extra_containers.iter().enumerate() {
        let name = if *owner_named { mover.owner_uid.clone() } else { format!("sidecar-{i}") };
        if let Some(containers) = spec["containers"].as_array_mut() {
            containers.push(json!({"name": name, "image": "busybox", "resources": resources}));
        }
    }
    let mut set_optional = |key: &str, value: &Option<Option<Value>>| match value {
        None => {}
        Some(None) => {
            spec.as_object_mut().map(|s| s.remove(key));
        }
        Some(Some(v)) => spec[key] = v.clone(),
    };
    set_optional("priorityClassName", &p.priority_class_name.map(|c| Some(json!(c))));
    set_optional("priority", &p.priority.map(|o| o.map(|n| json!(n))));
    set_optional("preemptionPolicy", &p.preemption_policy.map(|o| o.map(|s| json!(s))));
    set_optional("nodeName", &p.node_name.map(|o| o.map(|s| json!(s))));
    if p.hostname_selector {
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": "node-1"});
    }
    (pod, mover)
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        prop::collection::btree_map(
            select(NODE_KEYS.to_vec()).prop_map(str::to_string),
            select(NODE_VALUES.to_vec()).prop_map(str::to_string),
            0..3,
        ),
        prop::collection::vec(requirement(), 0..3),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector { match_labels, match_expressions })
}

fn pod_resources() -> impl Strategy<Value = PodResources> {
    let quantity = || prop_oneof![select(QUANTITIES.to_vec()).prop_map(str::to_string), Just(String::new())];
    (quantity(), quantity(), quantity(), quantity(), quantity(), quantity()).prop_map(|(a, b, c, d, e, f)| {
        PodResources {
            cpu_request: a,
            cpu_limit: b,
            memory_request: c,
            memory_limit: d,
            ephemeral_storage_request: e,
            ephemeral_storage_limit: f,
        }
    })
}

/// Configs built directly (so they may hold what the validating webhook would refuse, such
/// as velero.io/ keys), with valid quantities.
fn node_agent_config() -> impl Strategy<Value = NodeAgentConfig> {
    let affinity = (selector(), select(vec!["", "", "gp3"]))
        .prop_map(|(node_selector, class)| LoadAffinity { node_selector, storage_class: class.to_string() });
    (
        prop::collection::vec(affinity, 0..3),
        prop::option::of(pod_resources()),
        select(vec!["", "velero-data-mover", "system-cluster-critical"]),
        metadata_map(),
        metadata_map(),
    )
        .prop_map(|(load_affinity, pod_resources, priority, pod_labels, pod_annotations)| NodeAgentConfig {
            load_affinity,
            pod_resources,
            priority_class_name: priority.to_string(),
            pod_labels,
            pod_annotations,
            ..NodeAgentConfig::default()
        })
}

fn storage_class() -> impl Strategy<Value = StorageClass> {
    prop_oneof![
        Just(StorageClass::Known(None)),
        Just(StorageClass::Known(Some("gp3".to_string()))),
        Just(StorageClass::Known(Some("other".to_string()))),
        Just(StorageClass::Unknown),
    ]
}

fn priority_classes() -> impl Strategy<Value = Option<HashSet<String>>> {
    prop::option::of(
        prop::collection::hash_set(select(vec!["velero-data-mover", "system-cluster-critical"]), 0..3)
            .prop_map(|s| s.into_iter().map(str::to_string).collect()),
    )
}

/// Whether the planner may write `path`: only what the config governs.
fn governed(path: &str) -> bool {
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    let roots = ["/metadata/labels", "/metadata/annotations", "/spec/affinity", "/spec/priorityClassName"];
    let removable = ["/spec/priority", "/spec/preemptionPolicy"];
    let container_resources = path
        .strip_prefix("/spec/containers/")
        .and_then(|rest| rest.strip_suffix("/resources"))
        .is_some_and(|index| index.parse::<usize>().is_ok());
    container_resources || roots.iter().any(|root| under(root)) || removable.contains(&path)
}

fn velero_entries(pod: &Value, map: &str) -> BTreeMap<String, Value> {
    pod["metadata"][map]
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.starts_with("velero.io/")).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn plan_for(
    pod: &Value,
    mover: &DataMover,
    config: &NodeAgentConfig,
    class: &StorageClass,
    classes: Option<&HashSet<String>>,
) -> Plan {
    plan(&PlanInput {
        pod,
        mover,
        config,
        config_id: "resourceVersion:3",
        storage_class: class.clone(),
        priority_classes: classes,
    })
}

/// Plans, applies and re-plans; returns what is wrong.
fn check_plan(
    pod: &Value,
    mover: &DataMover,
    config: &NodeAgentConfig,
    class: &StorageClass,
    classes: Option<&HashSet<String>>,
) -> Result<(), String> {
    let first = plan_for(pod, mover, config, class, classes);
    let ops: Vec<Value> = first.ops.iter().map(|op| serde_json::to_value(op).expect("an op as JSON")).collect();
    for op in &ops {
        let path = op["path"].as_str().unwrap_or_default();
        if path.starts_with("/metadata/labels/velero.io~1") || path.starts_with("/metadata/annotations/velero.io~1") {
            return Err(format!("an op on a velero.io/ key: {op}"));
        }
        if !governed(path) {
            return Err(format!("an op outside what the config governs: {op}"));
        }
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops.clone())).map_err(|e| format!("not a JSON patch: {e}"))?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| format!("the patch does not apply: {e}\nops: {ops:#?}"))?;
    let mut self_checked = pod.clone();
    apply_ops(&mut self_checked, first.ops.clone()).map_err(|e| format!("the webhook's self-check refuses it: {e}"))?;
    if self_checked != patched {
        return Err(format!("the self-check's result differs from json_patch's\nops: {ops:#?}"));
    }
    for map in ["labels", "annotations"] {
        if velero_entries(pod, map) != velero_entries(&patched, map) {
            return Err(format!(
                "velero.io/ {map} changed: {:?} -> {:?}",
                velero_entries(pod, map),
                velero_entries(&patched, map)
            ));
        }
    }
    let second = plan_for(&patched, mover, config, class, classes);
    if !second.ops.is_empty() {
        let again: Vec<Value> = second.ops.iter().map(|op| serde_json::to_value(op).expect("an op as JSON")).collect();
        return Err(format!("a second plan on the patched pod is not empty: {again:#?}\nfirst: {ops:#?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn planned_patches_apply_spare_velero_keys_and_are_idempotent(
        p in perturbation(),
        config in node_agent_config(),
        class in storage_class(),
        classes in priority_classes(),
    ) {
        let (pod, mover) = perturbed(&p);
        check_plan(&pod, &mover, &config, &class, classes.as_ref()).map_err(TestCaseError::fail)?;
    }
}

/// Pointers over a small alphabet that hits every RFC 6901 case: members, indices with and
/// without leading zeros, `-`, escapes (valid and not), and paths that do not exist.
fn pointer() -> impl Strategy<Value = String> {
    let common = select(vec!["a", "b", "0", "1", "-"]);
    let rare = select(vec!["2", "01", "a~1b", "~0", "x~2", ""]);
    let token = prop_oneof![4 => common, 1 => rare];
    proptest::collection::vec(token, 1..3).prop_map(|tokens| tokens.iter().map(|t| format!("/{t}")).collect())
}

/// A document whose top is an object or an array, so that most pointers lead somewhere.
fn small_document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), "[a-c]{0,2}".prop_map(Value::from)];
    let nested = leaf.prop_recursive(2, 12, 3, container);
    container(nested)
}

fn container(inner: impl Strategy<Value = Value> + Clone + 'static) -> BoxedStrategy<Value> {
    let key = select(vec!["a", "b", "0", "1", "a/b", "~", ""]);
    prop_oneof![
        proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
        proptest::collection::btree_map(key, inner, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
    ]
    .boxed()
}

fn patch_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (pointer(), small_document()).prop_map(|(path, value)| Op::Add { path, value }),
        pointer().prop_map(|path| Op::Remove { path }),
    ]
}

proptest! {
    #![proptest_config(config(2048))]

    /// The webhook applies its ops in memory as its self-check; the outcome must be the one
    /// a strict RFC 6902 implementation gives for the serialized patch.
    #[test]
    fn applying_ops_in_memory_agrees_with_json_patch(
        document in small_document(),
        ops in proptest::collection::vec(patch_op(), 1..3),
    ) {
        let mut ours = document.clone();
        let our_result = apply_ops(&mut ours, ops.clone());
        let ops_json: Vec<Value> = ops.iter().map(|op| serde_json::to_value(op).expect("an op as JSON")).collect();
        let mut theirs = document.clone();
        // json_patch refuses an invalid pointer when it reads the patch, we when we apply it.
        let their_result = serde_json::from_value::<json_patch::Patch>(Value::Array(ops_json))
            .map_err(|e| e.to_string())
            .and_then(|patch| json_patch::patch(&mut theirs, &patch).map_err(|e| e.to_string()));
        prop_assert_eq!(our_result.is_ok(), their_result.is_ok(), "ours: {:?}, json_patch: {:?}", our_result, their_result);
        if our_result.is_ok() {
            prop_assert_eq!(ours, theirs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal counterexamples the properties found (bugs in src/, reported; not fixed here).

/// `podAnnotations` may name the webhook's own summary annotation (the validating webhook
/// accepts `{"podAnnotations": {"node-agent-webhook.io/applied": "x"}}` without a finding):
/// the first plan overwrites "x" with the summary, and every later plan writes "x" back.
#[test]
fn a_config_annotation_named_like_the_applied_annotation_still_plans_idempotently() {
    let pod = real_pods()[0].clone();
    let mover = identify(&pod);
    let config = NodeAgentConfig {
        pod_annotations: BTreeMap::from([(APPLIED_ANNOTATION.to_string(), "x".to_string())]),
        ..NodeAgentConfig::default()
    };
    assert_eq!(check_plan(&pod, &mover, &config, &StorageClass::Known(None), None), Ok(()));
}

/// `1000e2147483646` is accepted (its written exponent is in range) and reads as 1e2147483649,
/// whose canonical form `1e2147483649` the same parser rejects (ExponentOutOfRange).
#[test]
fn the_canonical_form_of_a_quantity_past_the_largest_exponent_reads_back() {
    let q = parse("1000e2147483646").expect("accepted: the written exponent is in range");
    assert_eq!(reparsed(&q), Ok(q));
}
