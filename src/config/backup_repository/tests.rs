//! Every rule as a table; each trap of other-configmaps.md B.4 that shows in the ConfigMap has
//! its own test, named after it.

use super::*;
use crate::config::cases::{self, Case};

fn configmap_findings(data: &[(&str, &str)], env: &Environment) -> Vec<String> {
    cases::findings(check_backup_repository, data, env)
}

fn assert_cases_with(env: &Environment, table: &[Case]) {
    cases::assert_cases(check_backup_repository, env, table);
}

fn assert_cases(table: &[Case]) {
    assert_cases_with(&Environment::default(), table);
}

#[test]
fn a_valid_configmap_has_no_findings() {
    assert_cases(&[
        ("both settings", &[("kopia", r#"{"cacheLimitMB": 2048, "fullMaintenanceInterval": "fastGC"}"#)], &[]),
        ("the largest cache", &[("kopia", r#"{"cacheLimitMB": 999999}"#)], &[]),
        ("empty", &[("kopia", "{}")], &[]),
    ]);
}

#[test]
fn b4_1_a_million_or_more_is_ignored_by_kopia() {
    assert_cases(&[
        (
            "1000000",
            &[("kopia", r#"{"cacheLimitMB": 1000000}"#)],
            &[
                r#"error: data[kopia]: cacheLimitMB: Invalid value: 1000000: must be less than 1000000: Velero hands it to Kopia as "1e+06", which Kopia cannot parse and replaces with its 5000 MiB default, while node-agent sizes its cache volume from the real number (line 1, column 18)"#,
            ],
        ),
        (
            "15000000",
            &[("kopia", r#"{"cacheLimitMB": 15000000}"#)],
            &[
                r#"error: data[kopia]: cacheLimitMB: Invalid value: 15000000: must be less than 1000000: Velero hands it to Kopia as "1.5e+07", which Kopia cannot parse and replaces with its 5000 MiB default, while node-agent sizes its cache volume from the real number (line 1, column 18)"#,
            ],
        ),
    ]);
}

#[test]
fn b4_2_a_string_or_a_fraction_means_two_things() {
    assert_cases(&[
        (
            "a string",
            &[("kopia", r#"{"cacheLimitMB": "2048"}"#)],
            &[
                r#"error: data[kopia]: cacheLimitMB: Invalid value: "2048": must be a JSON number, not a string: Kopia reads "2048" but node-agent ignores a string and sizes its cache volume for the 5000 MiB default; write 2048 (line 1, column 18)"#,
            ],
        ),
        (
            "a fraction",
            &[("kopia", r#"{"cacheLimitMB": 2048.5}"#)],
            &[
                r#"error: data[kopia]: cacheLimitMB: Invalid value: 2048.5: must be a whole number: Kopia cannot parse "2048.5" and uses its 5000 MiB default, while node-agent truncates it (line 1, column 18)"#,
            ],
        ),
        ("a whole number written as a float reads the same to both", &[("kopia", r#"{"cacheLimitMB": 2048.0}"#)], &[]),
        (
            "a string that is no number",
            &[("kopia", r#"{"cacheLimitMB": "2Gi"}"#)],
            &[
                r#"error: data[kopia]: cacheLimitMB: Invalid value: "2Gi": must be a JSON number: Velero stores it as "2Gi", which neither Kopia nor node-agent reads (both use 5000 MiB) (line 1, column 18)"#,
            ],
        ),
        (
            "null",
            &[("kopia", r#"{"cacheLimitMB": null}"#)],
            &[
                r#"error: data[kopia]: cacheLimitMB: Invalid value: null: must be a JSON number: Velero stores it as "<nil>", which neither Kopia nor node-agent reads (both use 5000 MiB) (line 1, column 18)"#,
            ],
        ),
    ]);
}

#[test]
fn b4_3_zero_or_less_means_no_cache_volume() {
    for value in ["0", "-1"] {
        let text = format!(r#"{{"cacheLimitMB": {value}}}"#);
        let want = format!("error: data[kopia]: cacheLimitMB: Invalid value: {value}: must be greater than 0: node-agent creates no cache volume for 0 or less, and what Kopia does with it is undefined (line 1, column 18)");
        assert_eq!(configmap_findings(&[("kopia", &text)], &Environment::default()), vec![want], "{value}");
    }
}

#[test]
fn b4_4_an_unknown_interval_makes_every_new_repository_not_ready() {
    let consequence = "Kopia refuses it when Velero creates a repository, so every new BackupRepository stays NotReady and its backups fail; fixing this ConfigMap does not repair them (edit their spec.repositoryConfig or delete them)";
    let cases = [
        (
            r#"{"fullMaintenanceInterval": "FastGC"}"#,
            format!(
                r#"error: data[kopia]: fullMaintenanceInterval: Unsupported value: "FastGC": supported values: "eagerGC", "fastGC", "normalGC": did you mean "fastGC"? {consequence} (line 1, column 29)"#
            ),
        ),
        (
            r#"{"fullMaintenanceInterval": "12h"}"#,
            format!(
                r#"error: data[kopia]: fullMaintenanceInterval: Unsupported value: "12h": supported values: "eagerGC", "fastGC", "normalGC": {consequence} (line 1, column 29)"#
            ),
        ),
        (
            r#"{"fullMaintenanceInterval": null}"#,
            format!(
                r#"error: data[kopia]: fullMaintenanceInterval: Invalid value: null: must be a string: Velero stores it as "<nil>": {consequence} (line 1, column 29)"#
            ),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(configmap_findings(&[("kopia", text)], &Environment::default()), vec![want], "{text}");
    }
}

#[test]
fn b4_6_keys_and_fields_velero_ignores() {
    assert_cases(&[
        (
            "the docs' placeholder key",
            &[("<kopia>", "{}")],
            &[
                r#"error: data[<kopia>]: Invalid value: "<kopia>": did you mean "kopia"? Velero's docs write the key as a placeholder; Velero looks the key up as the repository type, exactly, and never reads this value"#,
            ],
        ),
        (
            "a key in the wrong case",
            &[("Kopia", "{}")],
            &[
                r#"error: data[Kopia]: Invalid value: "Kopia": did you mean "kopia"? Velero looks the key up as the repository type, exactly, and never reads this value"#,
            ],
        ),
        (
            "another key",
            &[("config.json", "{}")],
            &[
                r#"warning: data[config.json]: Velero looks the key up as the repository type, exactly, and never reads this value: use "kopia""#,
            ],
        ),
        (
            "a field in the wrong case",
            &[("kopia", r#"{"CacheLimitMB": 2048}"#)],
            &[
                r#"error: data[kopia]: CacheLimitMB: Unknown field: did you mean "cacheLimitMB"? Velero reads this value as a map, so keys are case-sensitive and this one is never read (line 1, column 2)"#,
            ],
        ),
        (
            "another field",
            &[("kopia", r#"{"compression": "zstd"}"#)],
            &[
                r#"warning: data[kopia]: compression: Unknown field: Velero copies it into new BackupRepositories and Kopia ignores it; supported fields: "cacheLimitMB", "fullMaintenanceInterval" (line 1, column 2)"#,
            ],
        ),
        (
            "a duplicate field",
            &[("kopia", r#"{"cacheLimitMB": 1, "cacheLimitMB": 2}"#)],
            &[
                r#"error: data[kopia]: cacheLimitMB: Duplicate value: "cacheLimitMB": the key is given twice (first at line 1, column 2); Velero would silently keep only the last (line 1, column 21)"#,
            ],
        ),
    ]);
}

#[test]
fn b4_7_restic_ignores_the_config() {
    assert_cases(&[(
        "restic",
        &[("restic", r#"{"cacheLimitMB": 2048}"#)],
        &["warning: data[restic]: the restic provider ignores this config: only Kopia repositories read cacheLimitMB and fullMaintenanceInterval"],
    )]);
}

#[test]
fn values_that_do_not_decode_and_structure() {
    let v115 = Environment { velero_version: Some(VeleroVersion::new(1, 15, 1)), ..Environment::default() };
    assert_cases(&[
        (
            "an array",
            &[("kopia", "[]")],
            &["error: data[kopia]: Invalid value: array: must be a JSON object, not array (the Velero server 1.17+ fails to start on this) (line 1, column 1)"],
        ),
        (
            "YAML",
            &[("kopia", "cacheLimitMB: 2048")],
            &["error: data[kopia]: invalid character 'c' looking for beginning of value: the value must be JSON, not YAML (the Velero server reads JSON only); convert it, e.g. yq -o=json (line 1, column 1)"],
        ),
        (
            "a number beyond float64",
            &[("kopia", r#"{"cacheLimitMB": 1e400}"#)],
            &["error: data[kopia]: cacheLimitMB: Invalid value: 1e400: does not fit in a float64 (the Velero server 1.17+ fails to start on this) (line 1, column 18)"],
        ),
        (
            "null",
            &[("kopia", "null")],
            &["warning: data[kopia]: the value is null: Velero gives new repositories no config, as for {} (line 1, column 1)"],
        ),
        (
            "no data",
            &[],
            &[r#"error: data: Required value: must hold a "kopia" key with the JSON repository config; the Velero server 1.17+ fails to start with "data is not available""#],
        ),
    ]);
    assert_cases_with(
        &v115,
        &[(
            "an interval 1.15 does not read",
            &[("kopia", r#"{"fullMaintenanceInterval": "fastGC"}"#)],
            &["warning: data[kopia]: fullMaintenanceInterval: Velero 1.15.1 ignores this (supported since 1.16.0) (line 1, column 2)"],
        )],
    );
}

#[test]
fn the_config_is_what_velero_stores() {
    let checked = check_value(
        r#"{"cacheLimitMB": 1000000, "a": null, "b": true, "c": {"y": 1, "x": "s"}, "d": [1, 2.5], "e": 0.00001}"#,
        &Environment::default(),
    );
    let stored: Vec<(&str, &str)> = checked.config.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        stored,
        vec![
            ("a", "<nil>"),
            ("b", "true"),
            ("c", "map[x:s y:1]"),
            ("cacheLimitMB", "1e+06"),
            ("d", "[1 2.5]"),
            ("e", "1e-05")
        ]
    );
}
