//! Every rule as a table; each trap of other-configmaps.md A.8 that shows in the ConfigMap has
//! its own test, named after it.

use std::collections::HashSet;

use super::*;
use crate::config::cases::{self, Case};
use crate::config::diagnostics::Severity;

fn assert_cases_with(env: &Environment, table: &[Case]) {
    cases::assert_cases(check_repo_maintenance, env, table);
}

fn assert_cases(table: &[Case]) {
    assert_cases_with(&Environment::default(), table);
}

const RESOURCES: &str =
    r#""podResources": {"cpuRequest": "100m", "cpuLimit": "1", "memoryRequest": "128Mi", "memoryLimit": "1Gi"}"#;

#[test]
fn a_valid_configmap_has_no_findings() {
    let global = format!(
        r#"{{"loadAffinity": [{{"nodeSelector": {{"matchLabels": {{"pool": "infra"}}}}}}], {RESOURCES}, "keepLatestMaintenanceJobs": 5}}"#
    );
    assert_cases(&[
        ("global only", &[("global", &global)], &[]),
        ("a repository's key", &[("app-default-kopia", r#"{"keepLatestMaintenanceJobs": 1}"#)], &[]),
        ("dashes in both names", &[("my-app-aws-east-kopia", "{}")], &[]),
        ("null is an empty config", &[("global", "null")], &["warning: data[global]: the value is null, which the Velero server reads as an empty config: no setting applies (line 1, column 1)"]),
    ]);
}

#[test]
fn a8_1_partial_pod_resources_creates_no_job() {
    assert_cases(&[
        (
            "requests only, as in Velero's docs",
            &[("global", r#"{"podResources": {"cpuRequest": "100m", "memoryRequest": "128Mi"}}"#)],
            &[r#"error: data[global]: podResources: Required value: cpuLimit, memoryLimit not set: Velero creates no maintenance Job for the repositories this key applies to unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given, and fails again every 5 minutes; use "0" for no limit (line 1, column 18)"#],
        ),
        (
            "an empty section",
            &[("global", r#"{"podResources": {}}"#)],
            &[r#"error: data[global]: podResources: Required value: cpuRequest, cpuLimit, memoryRequest, memoryLimit not set: Velero creates no maintenance Job for the repositories this key applies to unless cpuRequest, cpuLimit, memoryRequest and memoryLimit are all given, and fails again every 5 minutes; use "0" for no limit (line 1, column 18)"#],
        ),
        (
            "a zero limit that is not the literal 0",
            &[("global", r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "0m", "memoryRequest": "1Gi", "memoryLimit": "0"}}"#)],
            &[r#"error: data[global]: podResources.cpuRequest: Invalid value: "1": must be less than or equal to cpu limit of 0 (cpuLimit "0m" is a real zero: only the literal "0" means no limit) (line 1, column 33)"#],
        ),
        ("null counts as absent", &[("global", r#"{"podResources": null}"#)], &[]),
        (
            "a number instead of a string",
            &[("global", r#"{"podResources": {"cpuRequest": 1, "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}}"#)],
            &["error: data[global]: podResources.cpuRequest: Invalid value: 1: must be a string (quote it), not a number (the Velero server fails to start on this) (line 1, column 33)"],
        ),
    ]);
}

#[test]
fn a8_2_a_repository_key_cannot_merge_or_clear_global() {
    let global = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"pool": "infra"}}}],
        "podResources": {"cpuRequest": "1", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "1Gi", "ephemeralStorageLimit": "10Gi"},
        "priorityClassName": "maintenance", "podLabels": {"team": "a"}}"#;
    assert_cases(&[
        (
            "an empty loadAffinity does not clear global's",
            &[("global", global), ("app-default-kopia", r#"{"loadAffinity": []}"#)],
            &[
                "warning: data[app-default-kopia]: loadAffinity: an empty list cannot clear global's loadAffinity: Velero uses global's for this repository (only a non-empty list overrides it) (line 1, column 18)",
                "warning: data[global]: podLabels: with podLabels set, Velero no longer copies the azure.workload.identity/use label (Azure workload identity) from its Deployment to maintenance pods: add it here if they need it (line 3, column 58)",
            ],
        ),
        (
            "podResources replace global's wholesale",
            &[("global", global), ("app-default-kopia", &format!("{{{RESOURCES}}}"))],
            &[
                "warning: data[app-default-kopia]: podResources: replaces global's podResources as a whole (no per-field merge): global's ephemeralStorageLimit does not apply to this repository (line 1, column 18)",
                "warning: data[global]: podLabels: with podLabels set, Velero no longer copies the azure.workload.identity/use label (Azure workload identity) from its Deployment to maintenance pods: add it here if they need it (line 3, column 58)",
            ],
        ),
        (
            "global's priorityClassName and podLabels win",
            &[("global", global), ("app-default-kopia", r#"{"priorityClassName": "urgent", "podLabels": {"team": "b", "azure.workload.identity/use": "true"}}"#)],
            &[
                r#"warning: data[app-default-kopia]: priorityClassName: global's priorityClassName "maintenance" wins: Velero uses a repository's own only when global sets none (line 1, column 23)"#,
                "warning: data[app-default-kopia]: podLabels: global's podLabels win: Velero uses a repository's own only when global sets none (they are not merged) (line 1, column 46)",
                "warning: data[global]: podLabels: with podLabels set, Velero no longer copies the azure.workload.identity/use label (Azure workload identity) from its Deployment to maintenance pods: add it here if they need it (line 3, column 58)",
            ],
        ),
        (
            "without global, a repository's own values apply",
            &[("app-default-kopia", r#"{"loadAffinity": [], "priorityClassName": "urgent"}"#)],
            &[],
        ),
    ]);
}

#[test]
fn a8_3_keys_velero_never_looks_up() {
    assert_cases(&[
        (
            "Global",
            &[("Global", "{}")],
            &[
                r#"error: data[Global]: Invalid value: "Global": did you mean "global"? Velero looks data keys up exactly and never reads this value"#,
            ],
        ),
        (
            "a typo of global",
            &[("globl", "{}")],
            &[
                r#"error: data[globl]: Invalid value: "globl": did you mean "global"? Velero looks data keys up exactly and never reads this value"#,
            ],
        ),
        (
            "a repository type in the wrong case",
            &[("app-default-Kopia", "{}")],
            &[
                r#"error: data[app-default-Kopia]: Invalid value: "app-default-Kopia": did you mean "app-default-kopia"? Velero looks data keys up exactly and never reads this value"#,
            ],
        ),
        (
            "a key without the volume namespace",
            &[("default-kopia", "{}")],
            &[
                r#"warning: data[default-kopia]: Velero looks data keys up exactly and never reads this value: keys are "global" or <volumeNamespace>-<BSL>-<repositoryType>, e.g. "app-default-kopia""#,
            ],
        ),
        (
            "the docs' wrapper inside a value",
            &[("config.json", r#"{"global": {"keepLatestMaintenanceJobs": 1}}"#)],
            &[
                r#"error: data[config.json]: global: Forbidden: the settings are wrapped in "global": Velero reads this value itself as the job config, so it ignores everything under this key; the data key already says which repositories it is for: make "global" the data key and this object its value (line 1, column 2)"#,
                r#"warning: data[config.json]: Velero looks data keys up exactly and never reads this value: keys are "global" or <volumeNamespace>-<BSL>-<repositoryType>, e.g. "app-default-kopia""#,
            ],
        ),
        (
            "a repository's key as a wrapper",
            &[("global", r#"{"app-default-kopia": {"priorityClassName": "p"}, "keepLatestMaintenanceJobs": 2}"#)],
            &[
                r#"error: data[global]: app-default-kopia: Forbidden: the settings are wrapped in "app-default-kopia": Velero reads this value itself as the job config, so it ignores everything under this key; the data key already says which repositories it is for: make "app-default-kopia" the data key and this object its value (line 1, column 2)"#,
            ],
        ),
    ]);
}

#[test]
fn a8_4_unknown_fields_are_dropped() {
    let old = Environment { velero_version: Some(VeleroVersion::new(1, 17, 2)), ..Environment::default() };
    assert_cases(&[
        (
            "podResource",
            &[("global", r#"{"podResource": {}}"#)],
            &[
                r#"error: data[global]: podResource: Unknown field: did you mean "podResources"? (the Velero server ignores unknown fields silently) (line 1, column 2)"#,
            ],
        ),
        (
            "keepLatestJobs",
            &[("global", r#"{"keepLatestJobs": 3}"#)],
            &[
                r#"error: data[global]: keepLatestJobs: Unknown field: supported fields: "keepLatestMaintenanceJobs", "loadAffinity", "podAnnotations", "podLabels", "podResources", "priorityClassName" (the Velero server ignores unknown fields silently; if it is a key of a Velero release newer than 1.18.3, give this webhook the Velero version: --velero-version) (line 1, column 2)"#,
            ],
        ),
        (
            "a case variant is read, with a warning",
            &[("global", r#"{"KEEPLATESTMAINTENANCEJOBS": 3}"#)],
            &[
                r#"warning: data[global]: KEEPLATESTMAINTENANCEJOBS: non-canonical key case: Velero accepts it as "keepLatestMaintenanceJobs"; write it that way (line 1, column 2)"#,
            ],
        ),
    ]);
    assert_cases_with(
        &old,
        &[(
            "fields this version does not read",
            &[("global", r#"{"podResources": {"cpuRequest": "1", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "1Gi", "ephemeralStorageRequest": "1Gi"}, "podLabels": {"a": "b"}}"#)],
            &[
                "warning: data[global]: podResources.ephemeralStorageRequest: Velero 1.17.2 ignores this for maintenance Jobs (supported since 1.18.1) (line 1, column 128)",
                "warning: data[global]: podLabels: Velero 1.17.2 ignores this for maintenance Jobs (supported since 1.18.0) (line 1, column 149)",
            ],
        )],
    );
}

#[test]
fn a8_5_load_affinity_velero_ignores_or_rejects() {
    assert_cases(&[
        (
            "entries after the first",
            &[("global", r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b"}}}, {"nodeSelector": {"matchLabels": {"a": "c"}}}]}"#)],
            &["warning: data[global]: loadAffinity[1]: Velero 1.18+ applies only loadAffinity[0] to maintenance Jobs and ignores this entry (1.17 and earlier OR the entries); merge it into loadAffinity[0] (line 1, column 66)"],
        ),
        (
            "storageClass",
            &[("global", r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b"}}, "storageClass": "gp3"}]}"#)],
            &["warning: data[global]: loadAffinity[0].storageClass: maintenance Jobs ignore storageClass (it picks the entry for node-agent's data-mover pods only) (line 1, column 81)"],
        ),
        (
            "an operator Kubernetes rejects",
            &[("global", r#"{"loadAffinity": [{"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "in", "values": ["a"]}]}}]}"#)],
            &[r#"error: data[global]: loadAffinity[0].nodeSelector.matchExpressions[0].operator: Unsupported value: "in": supported values: "DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn" (line 1, column 86)"#],
        ),
        (
            "an empty selector",
            &[("global", r#"{"loadAffinity": [{"nodeSelector": {}}]}"#)],
            &["error: data[global]: loadAffinity[0].nodeSelector: Required value: must have matchLabels or matchExpressions: Velero 1.18.1 gives the maintenance pod no affinity for an empty selector, 1.18.0 and earlier a term that matches no node (line 1, column 36)"],
        ),
        (
            "a null entry",
            &[("global", r#"{"loadAffinity": [null]}"#)],
            &["error: data[global]: loadAffinity[0]: Required value: an entry must be an object, not null (line 1, column 19)"],
        ),
    ]);
    let v117 = Environment { velero_version: Some(VeleroVersion::new(1, 17, 0)), ..Environment::default() };
    assert_cases_with(
        &v117,
        &[(
            "1.17 ORs the entries",
            &[(
                "global",
                r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"a": "b"}}}, {"nodeSelector": {"matchLabels": {"a": "c"}}}]}"#,
            )],
            &[],
        )],
    );
}

#[test]
fn a8_6_a_missing_priority_class_stalls_maintenance() {
    let classes: HashSet<String> = ["present".to_string()].into();
    let env = Environment { priority_classes: Some(&classes), ..Environment::default() };
    assert_cases_with(
        &env,
        &[
            ("present", &[("global", r#"{"priorityClassName": "present"}"#)], &[]),
            (
                "missing",
                &[("global", r#"{"priorityClassName": "absent"}"#)],
                &[
                    r#"warning: data[global]: priorityClassName: PriorityClass "absent" does not exist: Velero sets it anyway, the Job gets no pod, and Velero waits on it with no deadline, stalling maintenance of every repository (line 1, column 23)"#,
                ],
            ),
            (
                "not a valid name",
                &[("global", r#"{"priorityClassName": "Not_Valid"}"#)],
                &[
                    r#"error: data[global]: priorityClassName: Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*') (line 1, column 23)"#,
                ],
            ),
        ],
    );
}

#[test]
fn a8_7_keep_latest_maintenance_jobs() {
    assert_cases(&[
        (
            "negative",
            &[("global", r#"{"keepLatestMaintenanceJobs": -1}"#)],
            &["error: data[global]: keepLatestMaintenanceJobs: Invalid value: -1: must be greater than or equal to 0: Velero deletes every maintenance Job and then panics, on every reconcile (line 1, column 31)"],
        ),
        (
            "zero",
            &[("global", r#"{"keepLatestMaintenanceJobs": 0}"#)],
            &["warning: data[global]: keepLatestMaintenanceJobs: 0 makes Velero delete every maintenance Job after each reconcile, the one just finished included (the BackupRepository's status keeps the history); the default is 3 (line 1, column 31)"],
        ),
        (
            "a string",
            &[("global", r#"{"keepLatestMaintenanceJobs": "3"}"#)],
            &[r#"error: data[global]: keepLatestMaintenanceJobs: Invalid value: "3": must be an integer, not a string (the Velero server fails to start on this) (line 1, column 31)"#],
        ),
        (
            "a fraction",
            &[("global", r#"{"keepLatestMaintenanceJobs": 3.0}"#)],
            &["error: data[global]: keepLatestMaintenanceJobs: Invalid value: 3.0: must be an integer written without a fraction or exponent (Go rejects it) (line 1, column 31)"],
        ),
    ]);
}

#[test]
fn a8_8_pod_metadata_drops_third_party_identity() {
    assert_cases(&[
        (
            "podAnnotations without the kube2iam role",
            &[("global", r#"{"podAnnotations": {"team": "a"}}"#)],
            &["warning: data[global]: podAnnotations: with podAnnotations set, Velero no longer copies the iam.amazonaws.com/role annotation (kube2iam) from its Deployment to maintenance pods: add it here if they need it (line 1, column 20)"],
        ),
        (
            "the label given along",
            &[("global", r#"{"podLabels": {"team": "a", "azure.workload.identity/use": "true"}}"#)],
            &[],
        ),
        (
            "labels Velero and the Job controller own",
            &[("global", r#"{"podLabels": {"velero.io/repo-name": "x", "job-name": "x", "batch.kubernetes.io/job-name": "x", "azure.workload.identity/use": "true"}}"#)],
            &[
                "error: data[global]: podLabels[velero.io/repo-name]: Forbidden: keys under velero.io/ are Velero's own: velero.io/repo-name on the maintenance pod names its repository (line 1, column 16)",
                "error: data[global]: podLabels[job-name]: Forbidden: the Job controller sets this label on the Job's pods and Velero finds a maintenance Job's pod by job-name: do not set it (line 1, column 44)",
                "error: data[global]: podLabels[batch.kubernetes.io/job-name]: Forbidden: the Job controller sets this label on the Job's pods and Velero finds a maintenance Job's pod by job-name: do not set it (line 1, column 61)",
            ],
        ),
        (
            "a label value Kubernetes rejects",
            &[("global", r#"{"podLabels": {"team": "a b", "azure.workload.identity/use": "true"}}"#)],
            &[r#"error: data[global]: podLabels[team]: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?') (line 1, column 16)"#],
        ),
    ]);
}

#[test]
fn a8_11_a_value_that_does_not_decode_is_an_error() {
    assert_cases(&[
        (
            "YAML",
            &[("global", "keepLatestMaintenanceJobs: 3")],
            &["error: data[global]: invalid character 'k' looking for beginning of value: the value must be JSON, not YAML (the Velero server reads JSON only); convert it, e.g. yq -o=json (line 1, column 1)"],
        ),
        (
            "an empty value",
            &[("global", "")],
            &["error: data[global]: unexpected end of JSON input: the value is empty; the Velero server fails to start on it. Write {} for no settings (line 1, column 1)"],
        ),
        (
            "a top-level array",
            &[("global", "[]")],
            &[r#"error: data[global]: Invalid value: array: must be a JSON object; wrap the settings in an object: {"loadAffinity": [...]} (line 1, column 1)"#],
        ),
        (
            "a bool label value",
            &[("global", r#"{"podLabels": {"a": true}}"#)],
            &["error: data[global]: podLabels[a]: Invalid value: true: must be a string (quote it), not a bool (the Velero server fails to start on this) (line 1, column 21)"],
        ),
    ]);
}

#[test]
fn structure_and_versions() {
    let v114 = Environment { velero_version: Some(VeleroVersion::new(1, 14, 0)), ..Environment::default() };
    assert_cases(&[
        (
            "no data",
            &[],
            &[
                r#"error: data: Required value: must hold "global" or <volumeNamespace>-<BSL>-<repositoryType> keys with JSON job configs; the Velero server 1.17+ fails to start with "data is not available""#,
            ],
        ),
        ("several keys", &[("global", "{}"), ("a-b-kopia", "{}"), ("a-b-restic", "{}")], &[]),
    ]);
    assert_cases_with(
        &v114,
        &[(
            "1.14",
            &[("global", "{}")],
            &["warning: data: Velero 1.14.0 does not read this ConfigMap (since 1.15.0): it sizes maintenance Jobs from the server's --maintenance-job-* flags"],
        )],
    );
    let data = [("global".to_string(), "{}".to_string())].into();
    let configmap = ConfigMapData { data, binary_keys: vec!["x".to_string()] };
    let check = check_repo_maintenance(&configmap, &Environment::default());
    assert_eq!(
        check.rendered(),
        vec![(
            Severity::Warning,
            "binaryData: the Velero server ignores binaryData; only the data keys are read".to_string()
        )]
    );
}

#[test]
fn scopes_of_keys() {
    for (key, want) in [
        ("global", Scope::Global),
        ("app-default-kopia", Scope::Repository),
        ("app-default-restic", Scope::Repository),
        ("app-default-", Scope::Repository),
        ("a-b-c-kopia", Scope::Repository),
        ("default-kopia", Scope::Unused),
        ("-default-kopia", Scope::Unused),
        ("app--kopia", Scope::Unused),
        ("app-default-Kopia", Scope::Unused),
        ("Global", Scope::Unused),
    ] {
        assert_eq!(scope_of(key), want, "{key}");
    }
}
