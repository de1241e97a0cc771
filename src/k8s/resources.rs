//! Container resource rules, as Kubernetes' `ValidateContainerResourceRequirements` has them, so
//! that what the config checker accepts for a data-mover pod is what the API server will accept.
//! The rules return Go's messages; the caller says where and with which value.

use super::names;
use super::quantity::Quantity;

const HUGEPAGES_PREFIX: &str = "hugepages-";

/// The rule between a resource's request and its limit, as Go words it: non-overcommitable
/// resources (extended ones, hugepages) must request exactly their limit, the others at most
/// their limit. The caller says where and with which value (Go: the canonical request).
pub fn request_limit_error(name: &str, request: &Quantity, limit: &Quantity) -> Option<String> {
    if request != limit && !is_overcommit_allowed(name) {
        Some(format!("must be equal to {name} limit of {limit}"))
    } else if request > limit {
        Some(format!("must be less than or equal to {name} limit of {limit}"))
    } else {
        None
    }
}

/// `ValidateResourceQuantityValue`'s messages: never negative; whole for integer resources.
/// The caller says where and with which value (Go: the canonical quantity).
pub fn quantity_value_errors(name: &str, q: &Quantity) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if q.is_negative() {
        errs.push("must be greater than or equal to 0");
    }
    if is_integer_resource_name(name) && !is_whole(q) {
        errs.push("must be an integer");
    }
    errs
}

/// Go's `MilliValue() % 1000 == 0`: the value in milli-units rounded up (so 1.9995 passes). Past
/// int64 range, where Go's MilliValue wraps, the exact value decides.
fn is_whole(q: &Quantity) -> bool {
    q.scaled_value(-3).map_or_else(|| q.is_integer(), |milli| milli % 1000 == 0)
}

/// `IsNativeResource`: unprefixed, or in a `*kubernetes.io/` domain.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `IsExtendedResourceName`: outside kubernetes.io, not `requests.*`, and still a qualified name
/// with `requests.` in front (its quota name).
fn is_extended_resource_name(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && names::is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with(HUGEPAGES_PREFIX)
}

/// The quota resources that count objects, which Go's `IsIntegerResourceName` and
/// `IsStandardResourceName` both list.
const OBJECT_COUNT_RESOURCES: [&str; 9] = [
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// `IsIntegerResourceName`: object counts and every extended resource.
fn is_integer_resource_name(name: &str) -> bool {
    OBJECT_COUNT_RESOURCES.contains(&name) || is_extended_resource_name(name)
}

/// Go's `ValidateContainerResourceRequirements` whole: the rules above, with the resource-name
/// and hugepage rules a config never needs (`podResources` names only cpu, memory and
/// ephemeral-storage). Compiled for the vectors only, which pin the rules above down in Go's
/// own composition, names, order and paths.
#[cfg(test)]
mod container {
    use super::*;
    use crate::k8s::field::FieldError;
    use crate::k8s::names;
    use crate::k8s::quantity::{self, QuantityError};

    /// Validates a container's `resources` (`requests` and `limits` as raw quantity strings, in
    /// document order, names unique as in a JSON object) at `path` (e.g. `spec.containers[0].resources`).
    ///
    /// The errors and their order are Kubernetes': each limit (name, then value), each request (name,
    /// value, then against its limit), then the hugepages rule. A string that is not a quantity, which
    /// the API server would refuse while decoding, is reported as `Invalid` with apimachinery's parse
    /// error. Messages show quantities in canonical form ("must be less than or equal to cpu limit of 1").
    pub fn validate_resource_requirements(
        requests: &[(&str, &str)],
        limits: &[(&str, &str)],
        path: &str,
    ) -> Vec<FieldError> {
        let limits_path = format!("{path}.limits");
        let requests_path = format!("{path}.requests");
        let parsed_limits: Vec<(&str, &str, Result<Quantity, QuantityError>)> =
            limits.iter().map(|&(name, raw)| (name, raw, quantity::parse(raw))).collect();
        let mut errs = Vec::new();
        let mut has_cpu_or_memory = false;
        let mut has_hugepages = false;

        for (name, raw, limit) in &parsed_limits {
            let fld = format!("{limits_path}[{name}]");
            validate_container_resource_name(name, &fld, &mut errs);
            match limit {
                Ok(limit) => {
                    validate_quantity_value(name, limit, &fld, &mut errs);
                    validate_hugepage_value(name, limit, &fld, &mut errs);
                }
                Err(err) => errs.push(FieldError::invalid(&fld, raw, err.to_string())),
            }
            has_hugepages |= name.starts_with(HUGEPAGES_PREFIX);
            has_cpu_or_memory |= is_cpu_or_memory(name);
        }

        for &(name, raw) in requests {
            let fld = format!("{requests_path}[{name}]");
            validate_container_resource_name(name, &fld, &mut errs);
            let request = quantity::parse(raw);
            match &request {
                Ok(request) => validate_quantity_value(name, request, &fld, &mut errs),
                Err(err) => errs.push(FieldError::invalid(&fld, raw, err.to_string())),
            }
            match parsed_limits.iter().rev().find(|(limit_name, _, _)| *limit_name == name) {
                Some((_, _, Ok(limit))) => {
                    if let Ok(request) = &request {
                        compare_with_limit(name, request, limit, &requests_path, &mut errs);
                    }
                }
                // An unparsable limit has been reported already; there is nothing to compare with.
                Some((_, _, Err(_))) => {}
                None if !is_overcommit_allowed(name) => {
                    errs.push(FieldError::required(&limits_path, "Limit must be set for non overcommitable resources"));
                }
                None => {}
            }
            if let Ok(request) = &request {
                validate_hugepage_value(name, request, &fld, &mut errs);
            }
            has_hugepages |= name.starts_with(HUGEPAGES_PREFIX);
            has_cpu_or_memory |= is_cpu_or_memory(name);
        }

        if has_hugepages && !has_cpu_or_memory {
            errs.push(FieldError::forbidden(path, "HugePages require cpu or memory"));
        }
        errs
    }

    /// Non-overcommitable resources (extended ones, hugepages) must request exactly their limit;
    /// the others at most their limit.
    fn compare_with_limit(
        name: &str,
        request: &Quantity,
        limit: &Quantity,
        requests_path: &str,
        errs: &mut Vec<FieldError>,
    ) {
        if let Some(detail) = request_limit_error(name, request, limit) {
            errs.push(FieldError::invalid(requests_path, &request.canonical(), detail));
        }
    }

    /// `ValidateResourceQuantityValue`: never negative; whole for integer resources.
    fn validate_quantity_value(name: &str, q: &Quantity, fld: &str, errs: &mut Vec<FieldError>) {
        errs.extend(
            quantity_value_errors(name, q).into_iter().map(|msg| FieldError::invalid(fld, &q.canonical(), msg)),
        );
    }

    /// Hugepages must be a whole number of pages (`IsHugePageResourceValueDivisible`, enforced for new
    /// pods). Where Go's int64 `Value()` would wrap (or divide by zero), the value is refused.
    fn validate_hugepage_value(name: &str, q: &Quantity, fld: &str, errs: &mut Vec<FieldError>) {
        let Some(page_size) = name.strip_prefix(HUGEPAGES_PREFIX) else {
            return;
        };
        let divisible = quantity::parse(page_size).ok().is_some_and(|page| {
            !page.is_zero()
                && !page.is_negative()
                && page.scaled_value(-3).is_some_and(|milli| milli % 1000 == 0)
                && match (q.scaled_value(0), page.scaled_value(0)) {
                    (Some(value), Some(page)) => value.checked_rem(page) == Some(0),
                    _ => false,
                }
        });
        if !divisible {
            let value = q.canonical();
            errs.push(FieldError::invalid(fld, &value, format!("{value} is not positive integer multiple of {name}")));
        }
    }

    /// `validateContainerResourceName`: a qualified name that is standard (unprefixed), native
    /// (`*kubernetes.io/`) or a valid extended resource, and usable by a container.
    fn validate_container_resource_name(name: &str, fld: &str, errs: &mut Vec<FieldError>) {
        let name_errors = names::is_qualified_name(name);
        let qualified = name_errors.is_empty();
        errs.extend(name_errors.into_iter().map(|msg| FieldError::invalid(fld, name, msg)));
        if !name.contains('/') {
            if qualified && !is_standard_resource_name(name) {
                errs.push(FieldError::invalid(fld, name, "must be a standard resource type or fully qualified"));
            }
            if !is_standard_container_resource_name(name) {
                errs.push(FieldError::invalid(fld, name, "must be a standard resource for containers"));
            }
        } else if !is_native_resource(name) && !is_extended_resource_name(name) {
            errs.push(FieldError::invalid(fld, name, "doesn't follow extended resource name standard"));
        }
    }

    fn is_cpu_or_memory(name: &str) -> bool {
        matches!(name, "cpu" | "memory")
    }

    /// `IsStandardResourceName`: the names Kubernetes itself defines, container or quota.
    fn is_standard_resource_name(name: &str) -> bool {
        matches!(
            name,
            "cpu"
                | "memory"
                | "ephemeral-storage"
                | "requests.cpu"
                | "requests.memory"
                | "requests.ephemeral-storage"
                | "limits.cpu"
                | "limits.memory"
                | "limits.ephemeral-storage"
                | "storage"
                | "requests.storage"
        ) || OBJECT_COUNT_RESOURCES.contains(&name)
            || name.starts_with(HUGEPAGES_PREFIX)
            || name.starts_with("requests.hugepages-")
    }

    fn is_standard_container_resource_name(name: &str) -> bool {
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with(HUGEPAGES_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::container::validate_resource_requirements;
    use serde_json::Value;

    fn load(name: &str) -> Value {
        let path = format!("{}/testdata/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn validate(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Vec<String> {
        validate_resource_requirements(requests, limits, "resources").iter().map(ToString::to_string).collect()
    }

    /// (name, raw) pairs of a JSON object (serde_json's map iterates in key order; no vector has
    /// errors from two keys of one map, so the order Go's map iteration would pick does not matter).
    fn pairs(object: &Value, key: &str) -> Vec<(String, String)> {
        object.get(key).and_then(Value::as_object).map_or_else(Vec::new, |map| {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()
        })
    }

    fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn selector_json_resource_requirements_vectors() {
        let v = load("selector.json");
        let cases: Vec<&Value> =
            v["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "ResourceRequirements(container)").collect();
        assert_eq!(cases.len(), 18, "ResourceRequirements(container) cases");
        let mut failures = Vec::new();
        for case in &cases {
            let requests = pairs(&case["object"], "requests");
            let limits = pairs(&case["object"], "limits");
            let path = case["field_path"].as_str().unwrap();
            let got: Vec<String> = validate_resource_requirements(&as_refs(&requests), &as_refs(&limits), path)
                .iter()
                .map(ToString::to_string)
                .collect();
            let want: Vec<String> =
                case["expected_errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
            let count_ok = case["expected_error_count"].as_u64() == Some(got.len() as u64);
            let valid_ok = case["valid"].as_bool() == Some(got.is_empty());
            if got != want || !count_ok || !valid_ok {
                failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", case["object"]));
            }
        }
        assert!(failures.is_empty(), "{} of {} cases disagree:\n{}", failures.len(), cases.len(), failures.join("\n"));
    }

    #[test]
    fn validates_like_kubernetes() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            // (requests, limits, errors)
            (&[("cpu", "500m"), ("memory", "128Mi")], &[("cpu", "1"), ("memory", "1Gi")], &[]),
            (&[("cpu", "2")], &[("cpu", "1")], &["resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"]),
            (&[("cpu", "1.5")], &[("cpu", "1000m")], &["resources.requests: Invalid value: \"1500m\": must be less than or equal to cpu limit of 1"]),
            (&[("memory", "1.5Gi")], &[("memory", "1Gi")], &["resources.requests: Invalid value: \"1536Mi\": must be less than or equal to memory limit of 1Gi"]),
            (&[("cpu", "1e2147483647")], &[("cpu", "9Ei")], &["resources.requests: Invalid value: \"10e2147483646\": must be less than or equal to cpu limit of 9223372036854775807"]),
            (&[], &[("cpu", "-1")], &["resources.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"]),
            (
                &[("cpu", "1 ")],
                &[("memory", "1Gb")],
                &[
                    "resources.limits[memory]: Invalid value: \"1Gb\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    "resources.requests[cpu]: Invalid value: \"1 \": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ],
            ),
            (&[("cpu", "2")], &[("cpu", "1K")], &["resources.limits[cpu]: Invalid value: \"1K\": unable to parse quantity's suffix"]),
            (&[("cpu", "1e9999999999")], &[], &["resources.requests[cpu]: Invalid value: \"1e9999999999\": quantity's exponent must be between -2147483647 and 2147483647"]),
            // Extended resources: integers, request == limit, limit required.
            (&[("example.com/gpu", "1")], &[("example.com/gpu", "1")], &[]),
            (&[("example.com/gpu", "1.9995")], &[("example.com/gpu", "2")], &["resources.requests: Invalid value: \"1999500u\": must be equal to example.com/gpu limit of 2"]),
            (
                &[("example.com/gpu", "-1500m")],
                &[],
                &[
                    "resources.requests[example.com/gpu]: Invalid value: \"-1500m\": must be greater than or equal to 0",
                    "resources.requests[example.com/gpu]: Invalid value: \"-1500m\": must be an integer",
                    "resources.limits: Required value: Limit must be set for non overcommitable resources",
                ],
            ),
            (&[], &[("example.com/gpu", "1e30")], &[]),
            (&[], &[("example.com/gpu", "1000000000000000000000.5")], &["resources.limits[example.com/gpu]: Invalid value: \"1000000000000000000000500m\": must be an integer"]),
            (&[], &[("example.com/gpu", "2.0001")], &["resources.limits[example.com/gpu]: Invalid value: \"2000100u\": must be an integer"]),
            // Names.
            (&[], &[("", "1")], &[
                "resources.limits[]: Invalid value: \"\": name part must be non-empty",
                "resources.limits[]: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "resources.limits[]: Invalid value: \"\": must be a standard resource for containers",
            ]),
            (&[], &[("Example.com/gpu", "1")], &[
                "resources.limits[Example.com/gpu]: Invalid value: \"Example.com/gpu\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "resources.limits[Example.com/gpu]: Invalid value: \"Example.com/gpu\": doesn't follow extended resource name standard",
            ]),
            (&[("requests.cpu", "1")], &[], &["resources.requests[requests.cpu]: Invalid value: \"requests.cpu\": must be a standard resource for containers"]),
            (&[("pods", "500m")], &[], &[
                "resources.requests[pods]: Invalid value: \"pods\": must be a standard resource for containers",
                "resources.requests[pods]: Invalid value: \"500m\": must be an integer",
            ]),
            (&[], &[("storage.kubernetes.io/scratch", "0.5")], &[]),
            // Hugepages: whole pages, request == limit, and cpu or memory alongside.
            (&[("memory", "1Gi"), ("hugepages-2Mi", "4Mi")], &[("hugepages-2Mi", "4Mi")], &[]),
            (&[("memory", "1Gi"), ("hugepages-2Mi", "3Mi")], &[("hugepages-2Mi", "3Mi")], &[
                "resources.limits[hugepages-2Mi]: Invalid value: \"3Mi\": 3Mi is not positive integer multiple of hugepages-2Mi",
                "resources.requests[hugepages-2Mi]: Invalid value: \"3Mi\": 3Mi is not positive integer multiple of hugepages-2Mi",
            ]),
            (&[("hugepages-1Gi", "1Gi")], &[("hugepages-1Gi", "2Gi")], &[
                "resources.requests: Invalid value: \"1Gi\": must be equal to hugepages-1Gi limit of 2Gi",
                "resources: Forbidden: HugePages require cpu or memory",
            ]),
            (&[], &[("cpu", "1"), ("hugepages-foo", "2Mi"), ("hugepages-1e30", "1e30")], &[
                "resources.limits[hugepages-foo]: Invalid value: \"2Mi\": 2Mi is not positive integer multiple of hugepages-foo",
                "resources.limits[hugepages-1e30]: Invalid value: \"1e30\": 1e30 is not positive integer multiple of hugepages-1e30",
            ]),
        ];
        for (requests, limits, want) in cases {
            assert_eq!(validate(requests, limits), *want, "requests {requests:?} limits {limits:?}");
        }
    }
}
