//! Tolerations and taints as Kubernetes validates and matches them: `ValidateTolerations`
//! (pkg/apis/core/validation/validation.go at v1.37.2) and `Toleration.ToleratesTaint` /
//! `MatchToleration` (k8s.io/api core/v1/toleration.go), tested against
//! `testdata/vectors/tolerations.json`.

use super::field::FieldError;
use super::names;

const EXISTS: &str = "Exists";
const EQUAL: &str = "Equal";
/// The taint effects a toleration may name, in Go's order.
const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
/// The effects the scheduler's TaintToleration filter (and the DaemonSet controller) honours:
/// a `PreferNoSchedule` taint only scores.
pub const HARD_EFFECTS: [&str; 2] = ["NoSchedule", "NoExecute"];

/// `corev1.Toleration`; strings are empty when unset, as in Go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub operator: String,
    pub value: String,
    pub effect: String,
    pub toleration_seconds: Option<i64>,
}

/// `corev1.Taint` (its `timeAdded` plays no part in matching).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Toleration {
    /// `ToleratesTaint` with the comparison-operator gate off (its default at v1.37): `Lt` and
    /// `Gt` tolerate nothing.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "" | EQUAL => self.value == taint.value,
            EXISTS => true,
            _ => false,
        }
    }

    /// `MatchToleration`: the same key, operator, value and effect. Velero's de-duplication of
    /// tolerations (velero#9575, `deduplicateTolerations`) uses the same four fields.
    pub fn same_as(&self, other: &Toleration) -> bool {
        self.key == other.key
            && self.operator == other.operator
            && self.value == other.value
            && self.effect == other.effect
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// `ValidateTolerations` for a pod (the comparison-operator gate off), each error at
/// `path[i].<field>`, worded as Go words it.
pub fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, toleration) in tolerations.iter().enumerate() {
        let at = |name: &str| format!("{path}[{i}].{name}");
        if !toleration.key.is_empty() {
            for msg in names::is_qualified_name(&toleration.key) {
                errs.push(FieldError::invalid(at("key"), &toleration.key, msg));
            }
        }
        if toleration.key.is_empty() && toleration.operator != EXISTS {
            errs.push(FieldError::invalid(
                at("operator"),
                &toleration.operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && toleration.effect != "NoExecute" {
            errs.push(FieldError::invalid(
                at("effect"),
                &toleration.effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match toleration.operator.as_str() {
            "" | EQUAL => {
                let msgs = names::is_label_value(&toleration.value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(at("operator"), &toleration.value, msgs.join(";")));
                }
            }
            EXISTS if !toleration.value.is_empty() => errs.push(FieldError::invalid(
                at("operator"),
                &toleration.value,
                "value must be empty when `operator` is 'Exists'",
            )),
            EXISTS => {}
            "Lt" | "Gt" => errs.push(FieldError::not_supported_in_order(
                at("operator"),
                &toleration.operator,
                &[EQUAL, EXISTS, "Lt", "Gt"],
            )),
            other => errs.push(FieldError::not_supported_in_order(at("operator"), other, &[EQUAL, EXISTS])),
        }
        if !toleration.effect.is_empty() && !EFFECTS.contains(&toleration.effect.as_str()) {
            errs.push(FieldError::not_supported_in_order(at("effect"), &toleration.effect, &EFFECTS));
        }
    }
    errs
}

/// `tolerations` merged into `current` without duplicates (by [`Toleration::same_as`]): the
/// ones to append, in the configured order.
pub fn missing<'a>(current: &[Toleration], wanted: &'a [Toleration]) -> Vec<&'a Toleration> {
    let mut out: Vec<&Toleration> = Vec::new();
    for t in wanted {
        if !current.iter().any(|c| c.same_as(t)) && !out.iter().any(|o| o.same_as(t)) {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors/tolerations.json"));

    fn text(v: &Value, key: &str) -> String {
        v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
    }

    fn toleration(v: &Value) -> Toleration {
        Toleration {
            key: text(v, "key"),
            operator: text(v, "operator"),
            value: text(v, "value"),
            effect: text(v, "effect"),
            toleration_seconds: v.get("tolerationSeconds").and_then(Value::as_i64),
        }
    }

    fn rendered(t: &Toleration) -> Vec<String> {
        validate_tolerations(std::slice::from_ref(t), "tolerations").iter().map(|e| e.to_string()).collect()
    }

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("tolerations.json parses")
    }

    fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
        v[key].as_array().map(Vec::as_slice).unwrap_or_else(|| panic!("{key}: not a list"))
    }

    #[test]
    fn upstream_cases() {
        let v = vectors();
        let valid = list(&v, "upstream_valid");
        assert_eq!(valid.len(), 7);
        for case in valid {
            assert_eq!(rendered(&toleration(case)), Vec::<String>::new(), "{case}");
        }
        let invalid = list(&v, "upstream_invalid");
        assert_eq!(invalid.len(), 6);
        for case in invalid {
            let got = rendered(&toleration(&case["toleration"])).join("; ");
            assert!(got.contains(&text(case, "must_contain")), "{case}: {got}");
        }
    }

    #[test]
    fn derived_cases_word_every_error_as_go_does() {
        let v = vectors();
        let derived = list(&v, "derived");
        assert_eq!(derived.len(), 9);
        for case in derived {
            let want: Vec<String> =
                list(case, "errors").iter().map(|e| e.as_str().unwrap_or_default().to_string()).collect();
            assert_eq!(rendered(&toleration(&case["toleration"])), want, "{case}");
        }
    }

    #[test]
    fn tolerates_as_the_scheduler_matches() {
        let v = vectors();
        for case in list(&v, "tolerates") {
            let taint = Taint {
                key: text(&case["taint"], "key"),
                value: text(&case["taint"], "value"),
                effect: text(&case["taint"], "effect"),
            };
            assert_eq!(
                toleration(&case["toleration"]).tolerates(&taint),
                case["tolerates"] == Value::Bool(true),
                "{case}"
            );
        }
    }

    #[test]
    fn missing_skips_what_the_pod_has_and_repeats() {
        let t = |key: &str, secs| Toleration {
            key: key.into(),
            operator: EXISTS.into(),
            effect: "NoExecute".into(),
            toleration_seconds: secs,
            ..Default::default()
        };
        let current = [t("a", None)];
        let wanted = [t("a", Some(5)), t("b", None), t("b", None), t("c", None)];
        let got: Vec<&str> = missing(&current, &wanted).iter().map(|t| t.key.as_str()).collect();
        assert_eq!(got, ["b", "c"]);
    }
}
