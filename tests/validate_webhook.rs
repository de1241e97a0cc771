//! The validating webhook end to end: the real binary on 127.0.0.1 over real TLS,
//! answering AdmissionReviews for the example ConfigMaps in examples/configmaps.

mod support;

use serde_json::{json, Value};
use support::*;

fn start() -> (Certs, Server, reqwest::blocking::Client) {
    start_with(&[])
}

fn create(server: &Server, client: &reqwest::blocking::Client, configmap: &Value) -> Value {
    review(client, &server.url("/validate"), &configmap_review("CREATE", Some(configmap), None))
}

/// Asserts that every `want` fragment appears in some line of `lines`.
fn assert_mentions(lines: &[String], want: &[&str], what: &str) {
    for fragment in want {
        assert!(
            lines.iter().any(|l| l.contains(fragment)),
            "{what} should mention {fragment:?}; got:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn example_configmaps_get_the_verdicts_the_spec_asks_for() {
    let (_certs, server, client) = start();

    let ok = create(&server, &client, &repo_json("examples/configmaps/01-valid-docs-basic.json"));
    assert_eq!(ok["allowed"], true, "{ok}");
    assert_eq!(ok.get("warnings"), None, "{ok}");

    let remap = create(&server, &client, &repo_json("examples/configmaps/02-valid-storageclass-affinity-labels.json"));
    assert_eq!(remap["allowed"], true, "{remap}");
    assert_eq!(
        strings(&remap["warnings"]),
        vec![
            r#"data[config]: loadAffinity[1].storageClass: DataUpload pods look up the backup PVC's class "gp3-backup", not "gp3-csi": this entry applies to restores only (line 22, column 23)"#
        ]
    );

    let docs = create(&server, &client, &repo_json("examples/configmaps/03-docs-complete-example-thresholdInGB.json"));
    assert_eq!(docs["allowed"], false);
    assert_eq!(docs["status"]["code"], 422);
    assert_eq!(
        docs["status"]["message"],
        "ConfigMap velero/node-agent-config is not a valid node-agent config (1 error):\n\
         data[node-agent-config]: cachePVC.thresholdInGB: Unknown field: did you mean \"residentThresholdInMB\" (an int64 in megabytes; Velero's docs name a field that does not exist)? (node-agent ignores unknown fields silently) (line 63, column 5)"
    );

    let partial = create(&server, &client, &repo_json("examples/configmaps/04-partial-podresources-typos.json"));
    assert_eq!(partial["allowed"], false);
    let message = partial["status"]["message"].as_str().expect("message").to_string();
    let lines: Vec<String> = message.lines().map(str::to_string).collect();
    assert_eq!(lines[0], "ConfigMap velero/node-agent-config is not a valid node-agent config (5 errors):");
    assert_mentions(
        &lines,
        &[
            "data[node-agent-config]: prepareQueueLength: Unknown field: did you mean \"loadConcurrency.prepareQueueLength\"? it belongs under loadConcurrency",
            "data[node-agent-config]: podResources: Required value: cpuLimit not set: node-agent ignores the whole podResources section",
            "data[node-agent-config]: podAnotations: Unknown field: did you mean \"podAnnotations\"?",
            "data[node-agent-config]: loadConcurrency.globalConfig: Invalid value: 0: must be at least 1 (node-agent replaces it with 1) (line 13, column 21)",
            "data[node-agent-config]: loadConcurrency.perNodeConfig[0].number: Invalid value: 0: must be at least 1 (node-agent skips this rule) (line 21, column 19)",
        ],
        "the denial",
    );
    assert_eq!(
        strings(&partial["warnings"]),
        vec![
            r#"data[node-agent-config]: priorityClassname: non-canonical key case: Velero accepts it as "priorityClassName"; write it that way (line 8, column 3)"#
        ]
    );

    let pitfalls = create(&server, &client, &repo_json("examples/configmaps/05-loadaffinity-and-label-pitfalls.json"));
    assert_eq!(pitfalls["allowed"], false);
    let lines: Vec<String> =
        pitfalls["status"]["message"].as_str().expect("message").lines().map(str::to_string).collect();
    assert_eq!(lines[0], "ConfigMap velero/node-agent-config is not a valid node-agent config (6 errors):");
    assert_mentions(
        &lines,
        &[
            "data[node-agent-config]: loadAffinity[1]: Forbidden: only one entry may omit storageClass: node-agent uses loadAffinity[0] and ignores this one; merge their selectors (line 10, column 5)",
            "data[node-agent-config]: loadAffinity[2].nodeSelector.matchExpressions[0].operator: Unsupported value: \"in\": supported values: \"DoesNotExist\", \"Exists\", \"Gt\", \"In\", \"Lt\", \"NotIn\" (line 22, column 25)",
            "data[node-agent-config]: loadAffinity[2].nodeSelector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist' (line 30, column 23)",
            "data[node-agent-config]: loadAffinity[3].nodeSelector: Required value: must have matchLabels or matchExpressions",
            "data[node-agent-config]: podResources.cpuRequest: Invalid value: \"1\": must be less than or equal to cpu limit of 0 (cpuLimit \"0m\" is a real zero: only the literal \"0\" means no limit) (line 43, column 19)",
            "data[node-agent-config]: podLabels[velero.io/data-upload]: Forbidden: keys under velero.io/ are Velero's own",
        ],
        "the denial",
    );

    let fatal = create(&server, &client, &repo_json("examples/configmaps/06-fatal-multikey-yaml-typeerror.json"));
    assert_eq!(fatal["allowed"], false);
    let lines: Vec<String> =
        fatal["status"]["message"].as_str().expect("message").lines().map(str::to_string).collect();
    assert_mentions(
        &lines,
        &[
            r#"data: Invalid value: ["backup-pvc.json", "node-agent-config.yaml"]: must hold exactly one key"#,
            "data[node-agent-config.yaml]: invalid character 'l' looking for beginning of value: the value must be JSON, not YAML",
            "data[backup-pvc.json]: backupPVC[storage-class-3].annotations[some-csi.provider.io/readOnlyClone]: Invalid value: true: must be a string (quote it), not a bool",
        ],
        "the denial",
    );
}

#[test]
fn other_configmaps_updates_and_deletes() {
    let (_certs, server, client) = start();
    let url = server.url("/validate");
    let invalid = repo_json("examples/configmaps/05-loadaffinity-and-label-pitfalls.json");

    let mut elsewhere = invalid.clone();
    elsewhere["metadata"]["namespace"] = json!("default");
    let answer = review(&client, &url, &configmap_review("CREATE", Some(&elsewhere), None));
    assert_eq!(answer, json!({"uid": "uid-CREATE-node-agent-config", "allowed": true}), "other namespace untouched");
    let mut renamed = invalid.clone();
    renamed["metadata"]["name"] = json!("something-else");
    let answer = review(&client, &url, &configmap_review("CREATE", Some(&renamed), None));
    assert_eq!(answer, json!({"uid": "uid-CREATE-something-else", "allowed": true}), "other name untouched");

    // A metadata-only update of an already-invalid ConfigMap (GitOps labels) is admitted, with the findings as warnings.
    let mut relabelled = invalid.clone();
    relabelled["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "argocd"});
    let answer = review(&client, &url, &configmap_review("UPDATE", Some(&relabelled), Some(&invalid)));
    assert_eq!(answer["allowed"], true, "{answer}");
    let warnings = strings(&answer["warnings"]);
    assert_eq!(warnings.len(), 6, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.starts_with("existing error (data unchanged, so admitted): data")),
        "{warnings:?}"
    );

    // An update that changes a start-up-only setting warns that node-agent needs a restart.
    let before = configmap_with(r#"{"loadConcurrency": {"globalConfig": 1}, "podLabels": {"a": "b"}}"#);
    let after = configmap_with(r#"{"loadConcurrency": {"globalConfig": 4}, "podLabels": {"a": "c"}}"#);
    let answer = review(&client, &url, &configmap_review("UPDATE", Some(&after), Some(&before)));
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(
        strings(&answer["warnings"]),
        vec!["loadConcurrency changed: node-agent reads it only at start-up; run kubectl -n velero rollout restart daemonset/node-agent"]
    );

    // An update that introduces an error is denied.
    let broken = configmap_with(r#"{"loadConcurrency": {"globalConfig": "4"}}"#);
    let answer = review(&client, &url, &configmap_review("UPDATE", Some(&broken), Some(&before)));
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(
        answer["status"]["message"],
        "ConfigMap velero/node-agent-config is not a valid node-agent config (1 error):\n\
         data[config]: loadConcurrency.globalConfig: Invalid value: \"4\": must be an integer, not a string (node-agent fails to start on this) (line 1, column 38)"
    );

    // DELETE is admitted (denying would wedge `velero uninstall`), with a warning.
    let mut delete = configmap_review("DELETE", None, Some(&before));
    delete["request"]["name"] = json!("node-agent-config");
    delete["request"]["namespace"] = json!("velero");
    let answer = review(&client, &url, &delete);
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(
        strings(&answer["warnings"]),
        vec!["node-agent 1.17+ fails to start without ConfigMap velero/node-agent-config: recreate it before node-agent restarts"]
    );
}

fn configmap_with(value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "node-agent-config", "namespace": "velero"},
           "data": {"config": value}})
}

#[test]
fn bodies_that_are_not_reviews_get_400_and_oversized_bodies_413() {
    let (_certs, server, client) = start();
    let url = server.url("/validate");
    let (status, body) = post(&client, &url, b"{\"hello\": \"world\"}".to_vec());
    assert_eq!(status, 400);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "request body is not an AdmissionReview: kind is \"\", want \"AdmissionReview\""
    );
    let (status, _) = post(&client, &url, b"definitely not json".to_vec());
    assert_eq!(status, 400);
    let (status, _) = post(&client, &url, vec![b' '; 8 * 1024 * 1024]);
    assert_eq!(status, 413);
    let (status, _) = post(&client, &url, vec![b' '; 7 * 1024 * 1024 + 1]);
    assert_eq!(status, 413);
    // The server keeps serving after all of that.
    let ok = review(&client, &url, &configmap_review("CREATE", Some(&configmap_with("{}")), None));
    assert_eq!(ok["allowed"], true);
}

/// Selectors no node can match, denied with the conflicting requirements named; a
/// satisfiable one with several requirements on a key is admitted.
#[test]
fn selectors_no_node_can_satisfy_are_denied() {
    let (_certs, server, client) = start();
    let cases: [(&str, Option<&str>); 4] = [
        (
            r#"{"loadAffinity":[{"nodeSelector":{"matchLabels":{"k":"a"},"matchExpressions":[{"key":"k","operator":"NotIn","values":["a"]}]}}]}"#,
            Some("data[config]: loadAffinity[0].nodeSelector: Forbidden: no node can satisfy k In [a] (matchLabels[k]) and k NotIn [a] (matchExpressions[0]) together"),
        ),
        (
            r#"{"loadAffinity":[{"nodeSelector":{"matchExpressions":[{"key":"cores","operator":"Gt","values":["8"]},{"key":"cores","operator":"Lt","values":["4"]}]}}]}"#,
            Some("no node can satisfy cores Gt 8 (matchExpressions[0]) and cores Lt 4 (matchExpressions[1]) together"),
        ),
        (
            r#"{"loadConcurrency":{"globalConfig":1,"perNodeConfig":[{"nodeSelector":{"matchExpressions":[{"key":"gpu","operator":"Exists"},{"key":"gpu","operator":"DoesNotExist"}]},"number":2}]}}"#,
            Some("loadConcurrency.perNodeConfig[0].nodeSelector: Forbidden: no node can satisfy gpu Exists (matchExpressions[0]) and gpu DoesNotExist (matchExpressions[1]) together: node-agent never applies this rule"),
        ),
        (
            r#"{"loadAffinity":[{"nodeSelector":{"matchExpressions":[{"key":"cores","operator":"Gt","values":["4"]},{"key":"cores","operator":"Lt","values":["8"]},{"key":"cores","operator":"NotIn","values":["5"]}]}}]}"#,
            None,
        ),
    ];
    for (value, denial) in cases {
        let answer = create(&server, &client, &configmap_with(value));
        match denial {
            Some(fragment) => {
                assert_eq!(answer["allowed"], false, "{value}: {answer}");
                let message = answer["status"]["message"].as_str().unwrap_or_default();
                assert!(message.contains(fragment), "{value}: {message}");
            }
            None => assert_eq!(answer["allowed"], true, "{value}: {answer}"),
        }
    }
}

/// `velero.io/` annotations are never applied, so they are denied, saying so; someone else's
/// `x.velero.io/` is admitted.
#[test]
fn velero_annotations_are_denied_with_the_reason() {
    let (_certs, server, client) = start();
    let denied = create(&server, &client, &configmap_with(r#"{"podAnnotations": {"velero.io/owner": "team-a"}}"#));
    assert_eq!(denied["allowed"], false, "{denied}");
    let message = denied["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("data[config]: podAnnotations[velero.io/owner]: Forbidden: keys under velero.io/ are Velero's own: node-agent-webhook never writes them to data-mover pods"),
        "{message}"
    );
    let admitted = create(&server, &client, &configmap_with(r#"{"podAnnotations": {"x.velero.io/owner": "team-a"}}"#));
    assert_eq!(admitted["allowed"], true, "{admitted}");
}

/// Go parity through the webhook: a repeated key says what Go does with it, `ſ` and the Kelvin
/// sign fold as Go folds them, a BOM is named as Go names it, and backupPVC keys must be
/// storage-class names.
#[test]
fn go_parity_details() {
    let (_certs, server, client) = start();
    // (config value, allowed, a fragment of the denial or of the first warning)
    let cases: [(&str, bool, &str); 5] = [
        (
            r#"{"podResources": {"cpuRequest": "1"}, "podResources": {"cpuLimit": "2"}}"#,
            false,
            "Go merges this object into the earlier one: fields given again take this value, the others keep the earlier",
        ),
        (r#"{"priorityClassName": "a", "priorityClassName": null}"#, false, "Go ignores this null and keeps the earlier value"),
        (
            "{\"podLabel\u{17f}\": {\"team\": \"a\"}, \"bac\u{212a}upPVC\": {\"gp3\": {\"storageClass\": \"b\"}}}",
            true,
            "non-canonical key case: Velero accepts it as \"podLabels\"",
        ),
        ("\u{feff}{}", false, "invalid character 'ï' looking for beginning of value"),
        (r#"{"backupPVC": {"Fast_SSD": {"storageClass": "b"}}}"#, false, r#"backupPVC[Fast_SSD]: Invalid value: "Fast_SSD": a lowercase RFC 1123 subdomain"#),
    ];
    for (value, allowed, fragment) in cases {
        let answer = create(&server, &client, &configmap_with(value));
        assert_eq!(answer["allowed"], allowed, "{value}: {answer}");
        let said = if allowed {
            strings(&answer["warnings"]).join("\n")
        } else {
            answer["status"]["message"].as_str().unwrap_or_default().to_string()
        };
        assert!(said.contains(fragment), "{value}: {said}");
    }
}

/// With `--velero-version 1.16.0` the messages say what node-agent 1.16 does: it ignores an
/// undecodable config rather than failing to start, and reads only loadAffinity[0].
#[test]
fn messages_follow_the_velero_version() {
    let (_certs, server, client) = start_with(&["--velero-version", "1.16.0"]);
    let typed = create(&server, &client, &configmap_with(r#"{"loadConcurrency": {"globalConfig": "2"}}"#));
    assert_eq!(typed["allowed"], false, "{typed}");
    let message = typed["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("(node-agent 1.16.0 logs a warning and ignores the whole config on this)"), "{message}");
    assert!(!message.contains("fails to start"), "{message}");
    let syntax = create(&server, &client, &configmap_with("{\"a\": 1,}"));
    let message = syntax["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("(node-agent 1.16.0 logs a warning and ignores the whole config on invalid JSON)"),
        "{message}"
    );
    let two = create(
        &server,
        &client,
        &configmap_with(
            r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a"}}, "storageClass": "gp3"}, {"nodeSelector": {"matchLabels": {"zone": "b"}}}]}"#,
        ),
    );
    assert_eq!(two["allowed"], true, "{two}");
    assert_mentions(
        &strings(&two["warnings"]),
        &["data[config]: loadAffinity[1]: node-agent of Velero 1.16.0 reads only loadAffinity[0] and gives it to every data-mover pod"],
        "the 1.16 warnings",
    );
}

/// An UPDATE whose change node-agent will keep undoing (it applies its start-up settings and
/// the webhook only adds) warns per setting with the restart command; new values the webhook
/// applies itself need none.
#[test]
fn updates_node_agent_keeps_undoing_are_warned_with_the_restart_command() {
    let (_certs, server, client) = start();
    let url = server.url("/validate");
    let restart =
        "(the webhook only adds to what node-agent applies); run kubectl -n velero rollout restart daemonset/node-agent";
    let before = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a"}}}],
        "podResources": {"cpuRequest": "1", "cpuLimit": "2", "memoryRequest": "1Gi", "memoryLimit": "2Gi"},
        "priorityClassName": "backup", "podLabels": {"team": "a", "cost": "x"}, "podAnnotations": {"note": "y"}}"#;
    let cases: [(&str, Vec<String>); 4] = [
        (
            r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a", "role": "backup"}}}],
                "podResources": {"cpuRequest": "2", "cpuLimit": "4", "memoryRequest": "1Gi", "memoryLimit": "2Gi"},
                "priorityClassName": "other", "podLabels": {"team": "b", "cost": "x"}, "podAnnotations": {"note": "z"}}"#,
            vec![],
        ),
        (
            r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "b"}}}],
                "podResources": {"cpuRequest": "1", "cpuLimit": "2", "memoryRequest": "1Gi", "memoryLimit": "2Gi"},
                "priorityClassName": "backup", "podLabels": {"team": "a", "cost": "x"}, "podAnnotations": {"note": "y"}}"#,
            vec![format!(
                "loadAffinity: node-agent keeps putting its start-up selector into new pods, ANDed with the new one {restart}"
            )],
        ),
        (
            r#"{"podLabels": {"team": "a"}}"#,
            vec![
                format!("loadAffinity: node-agent keeps putting its start-up selector into new pods, ANDed with the new one {restart}"),
                format!("podResources: removed, but node-agent keeps giving new pods the old ones {restart}"),
                format!("priorityClassName: removed, but node-agent keeps giving new pods the old class {restart}"),
                format!("podLabels[cost]: removed, but node-agent keeps putting the old value on new pods {restart}"),
                format!("podAnnotations[note]: removed, but node-agent keeps putting the old value on new pods {restart}"),
            ],
        ),
        (before, vec![]),
    ];
    for (after, want) in cases {
        let answer = review(
            &client,
            &url,
            &configmap_review("UPDATE", Some(&configmap_with(after)), Some(&configmap_with(before))),
        );
        assert_eq!(answer["allowed"], true, "{answer}");
        assert_eq!(strings(&answer["warnings"]), want, "{after}");
    }
}
