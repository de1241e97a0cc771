//! Velero's backup repository ConfigMap (`--backup-repository-configmap`): per repository type,
//! the Kopia settings Velero copies into each new BackupRepository.
//!
//! The data key must be the repository type, exactly (`kopia`; `restic` is read but ignored).
//! The value is unmarshalled into a `map[string]any`, so field names are exact, and each entry
//! is turned into a string with Go's `%v` once, when a BackupRepository is created: a number of
//! a million or more becomes `1e+06`, `null` becomes `<nil>`. Kopia then parses those strings,
//! while node-agent reads `cacheLimitMB` from the JSON itself, so one value can mean two things.

use std::collections::BTreeMap;

use super::configmap::{check_keyed, velero_server_on_missing_data, ConfigMapCheck, ConfigMapData, DataRules};
use super::decode::{closest, render, shortened};
use super::diagnostics::{Diagnostic, Diagnostics};
use super::json::{Member, Node, Value};
use super::kind::Kind;
use super::validate::Environment;
use super::velero_types::{self, Standing, Support};
use super::version::{unread_by, VeleroVersion};
use super::{check_parsed, Checked};
use crate::k8s::field::{child, go_quote, FieldError};

/// Who reads the ConfigMap, as messages name it.
const READER: &str = "the Velero server";

/// The repository types, which are the data keys Velero looks up.
const REPOSITORY_TYPES: [&str; 2] = ["kopia", "restic"];

/// The fields Velero forwards to Kopia; it copies any other into the BackupRepository unused.
const FIELDS: [&str; 2] = ["cacheLimitMB", "fullMaintenanceInterval"];

/// Kopia's full-maintenance intervals, matched case-sensitively.
const INTERVALS: [&str; 3] = ["normalGC", "fastGC", "eagerGC"];

/// What Velero writes into a new BackupRepository's `spec.repositoryConfig`: each entry of the
/// value as Go's `%v` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryConfig(pub BTreeMap<String, String>);

const DATA: DataRules = DataRules {
    kind: Kind::BackupRepository,
    reader: READER,
    one_key: false,
    must_hold: "must hold a \"kopia\" key with the JSON repository config",
    on_missing_data: velero_server_on_missing_data,
    before_first_release: "",
};

/// Checks a whole backup repository ConfigMap: its data keys and each value.
pub fn check_backup_repository(configmap: &ConfigMapData, env: &Environment) -> ConfigMapCheck<RepositoryConfig> {
    check_keyed(configmap, env, &DATA, key_finding, |_, text| check_value(text, env))
}

/// A data key other than `kopia`: `restic` is ignored by its provider, the docs' `<kopia>` and
/// case or spelling slips never match (errors), anything else is unused (a warning). Reported
/// with no path or position, so it is placed at the key.
fn key_finding(key: &str) -> Option<Diagnostic> {
    if key == "kopia" {
        return None;
    }
    if key == "restic" {
        return Some(Diagnostic::warning(
            "",
            "the restic provider ignores this config: only Kopia repositories read cacheLimitMB and fullMaintenanceInterval",
            None,
        ));
    }
    let unread = "Velero looks the key up as the repository type, exactly, and never reads this value";
    let bare = key.strip_prefix('<').and_then(|k| k.strip_suffix('>'));
    let suggestion = closest(bare.unwrap_or(key), &REPOSITORY_TYPES);
    Some(match (bare, suggestion) {
        (Some(_), Some(fixed)) => Diagnostic::error(
            "",
            format!(
                "Invalid value: {}: did you mean {}? Velero's docs write the key as a placeholder; {unread}",
                go_quote(key),
                go_quote(fixed)
            ),
            None,
        ),
        (None, Some(fixed)) => Diagnostic::error(
            "",
            format!("Invalid value: {}: did you mean {}? {unread}", go_quote(key), go_quote(fixed)),
            None,
        ),
        (_, None) => Diagnostic::warning("", format!("{unread}: use \"kopia\""), None),
    })
}

/// Checks one value: a JSON object (or null) of the repository's settings.
pub fn check_value(text: &str, env: &Environment) -> Checked<RepositoryConfig> {
    check_parsed(text, READER, &format!("{READER} fails to start"), |root| {
        let mut found = Diagnostics::default();
        let config = match &root.value {
            Value::Object(members) => settings(members, env.velero_version, &mut found),
            Value::Null => {
                found.push(Diagnostic::warning(
                    "",
                    "the value is null: Velero gives new repositories no config, as for {}",
                    Some(root.pos),
                ));
                RepositoryConfig::default()
            }
            _ => {
                found.push(Diagnostic::error(
                    "",
                    format!(
                        "Invalid value: {}: must be a JSON object, not {} (the Velero server 1.17+ fails to start on this)",
                        render(root),
                        root.value.type_name()
                    ),
                    Some(root.pos),
                ));
                RepositoryConfig::default()
            }
        };
        (config, found)
    })
}

fn settings(members: &[Member], version: Option<VeleroVersion>, found: &mut Diagnostics) -> RepositoryConfig {
    let mut stored = BTreeMap::new();
    let mut first: BTreeMap<&str, &Member> = BTreeMap::new();
    for member in members {
        let path = child("", &shortened(&member.key));
        if let Some(previous) = first.insert(&member.key, member) {
            found.push(Diagnostic::error(
                &path,
                format!(
                    "Duplicate value: {}: the key is given twice (first at {}); Velero would silently keep only the last",
                    go_quote(&member.key),
                    previous.key_pos
                ),
                Some(member.key_pos),
            ));
        }
        let error = |message: String| Diagnostic::error(&path, message, Some(member.value.pos));
        if let Some(number) = beyond_float64(&member.value) {
            found.push(Diagnostic::error(
                &path,
                format!(
                    "Invalid value: {}: does not fit in a float64 (the Velero server 1.17+ fails to start on this)",
                    render(number)
                ),
                Some(number.pos),
            ));
            continue;
        }
        match member.key.as_ref() {
            "cacheLimitMB" => found.0.extend(cache_limit(&member.value).map(error)),
            "fullMaintenanceInterval" => found.0.extend(maintenance_interval(&member.value).map(error)),
            key => found.push(unknown_field(key, &path, member, version)),
        }
        if let Some((version, key)) = version.zip(velero_types::key(Kind::BackupRepository, &member.key)) {
            let support = velero_types::support(key, version);
            if support != Support::Reads {
                found.push(Diagnostic::warning(
                    &path,
                    unread_by(Kind::BackupRepository, version, key.path, support),
                    Some(member.key_pos),
                ));
            }
        }
        stored.insert(member.key.to_string(), go_v(&member.value));
    }
    RepositoryConfig(stored)
}

/// A field Velero does not forward: a case or spelling slip of one it does is an error (the
/// keys of a `map[string]any` are exact), anything else a warning.
fn unknown_field(key: &str, path: &str, member: &Member, version: Option<VeleroVersion>) -> Diagnostic {
    let newer = version.is_some_and(|v| velero_types::standing(v) == Standing::Newer);
    match closest(key, &FIELDS) {
        Some(fixed) if newer => Diagnostic::warning(
            path,
            format!(
                "Unknown field: did you mean {}? (this webhook knows Velero up to {}: a newer Velero may read this key, which is not checked here)",
                go_quote(fixed),
                velero_types::newest()
            ),
            Some(member.key_pos),
        ),
        Some(fixed) => Diagnostic::error(
            path,
            format!(
                "Unknown field: did you mean {}? Velero reads this value as a map, so keys are case-sensitive and this one is never read",
                go_quote(fixed)
            ),
            Some(member.key_pos),
        ),
        None => Diagnostic::warning(
            path,
            "Unknown field: Velero copies it into new BackupRepositories and Kopia ignores it; supported fields: \"cacheLimitMB\", \"fullMaintenanceInterval\"",
            Some(member.key_pos),
        ),
    }
}

/// The Kopia cache in MiB: Kopia parses the `%v` string as an integer, node-agent reads the JSON
/// number. Only a positive integer below a million means the same to both.
fn cache_limit(node: &Node) -> Option<String> {
    let stored = go_v(node);
    let invalid = |detail: String| Some(FieldError::invalid_raw("", render(node), detail).body());
    match &node.value {
        Value::Number(_) => {
            let number = stored.parse::<i64>();
            match number {
                Ok(n) if n <= 0 => invalid(
                    "must be greater than 0: node-agent creates no cache volume for 0 or less, and what Kopia does with it is undefined".to_string(),
                ),
                Ok(_) => None,
                Err(_) if stored.contains("e+") => invalid(format!(
                    "must be less than 1000000: Velero hands it to Kopia as {}, which Kopia cannot parse and replaces with its 5000 MiB default, while node-agent sizes its cache volume from the real number",
                    go_quote(&stored)
                )),
                Err(_) => invalid(format!(
                    "must be a whole number: Kopia cannot parse {} and uses its 5000 MiB default, while node-agent truncates it",
                    go_quote(&stored)
                )),
            }
        }
        Value::String(text) if text.trim().parse::<i64>().is_ok() => invalid(format!(
            "must be a JSON number, not a string: Kopia reads {} but node-agent ignores a string and sizes its cache volume for the 5000 MiB default; write {}",
            go_quote(text),
            text.trim()
        )),
        _ => invalid(format!(
            "must be a JSON number: Velero stores it as {}, which neither Kopia nor node-agent reads (both use 5000 MiB)",
            go_quote(&stored)
        )),
    }
}

/// Kopia's full-maintenance interval: an unknown one makes every new repository NotReady.
fn maintenance_interval(node: &Node) -> Option<String> {
    let consequence = "Kopia refuses it when Velero creates a repository, so every new BackupRepository stays NotReady and its backups fail; fixing this ConfigMap does not repair them (edit their spec.repositoryConfig or delete them)";
    match &node.value {
        Value::String(text) if INTERVALS.contains(&text.as_ref()) => None,
        Value::String(text) => {
            let hint = match closest(text, &INTERVALS) {
                Some(fixed) => format!("did you mean {}? ", go_quote(fixed)),
                None => String::new(),
            };
            Some(format!("{}: {hint}{consequence}", FieldError::not_supported("", text, &INTERVALS).body()))
        }
        _ => Some(
            FieldError::invalid_raw(
                "",
                render(node),
                format!("must be a string: Velero stores it as {}: {consequence}", go_quote(&go_v(node))),
            )
            .body(),
        ),
    }
}

/// The first number in `node` that Go cannot decode into `any` (a float64): the whole value then
/// fails to unmarshal.
fn beyond_float64<'n, 'a>(node: &'n Node<'a>) -> Option<&'n Node<'a>> {
    match &node.value {
        Value::Number(raw) => raw.parse::<f64>().map_or(true, |x| x.is_infinite()).then_some(node),
        Value::Array(items) => items.iter().find_map(beyond_float64),
        Value::Object(members) => members.iter().find_map(|m| beyond_float64(&m.value)),
        _ => None,
    }
}

/// A JSON value as Go's `%v` prints what `encoding/json` decoded into `any`: numbers are
/// float64s (exponent form from 1e+06 and below 1e-04), maps sorted by key.
fn go_v(node: &Node) -> String {
    match &node.value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.to_string(),
        Value::Number(raw) => raw.parse::<f64>().map_or_else(|_| raw.to_string(), go_float),
        Value::Array(items) => format!("[{}]", items.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Value::Object(members) => {
            let sorted: BTreeMap<&str, String> = members.iter().map(|m| (m.key.as_ref(), go_v(&m.value))).collect();
            format!("map[{}]", sorted.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" "))
        }
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form when the exponent is below -4
/// or at least 6 (`1e+06`, `1.5e+07`).
fn go_float(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let exponent = x.abs().log10().floor();
    if (-4.0..6.0).contains(&exponent) {
        return format!("{x}");
    }
    let scientific = format!("{x:e}");
    let (mantissa, exp) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
    format!("{mantissa}e{sign}{digits:0>2}")
}

#[cfg(test)]
mod tests;
