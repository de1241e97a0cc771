//! Kubernetes name and label grammars, ported from apimachinery (`content.IsLabelKey`,
//! `content.IsLabelValue`, `validation.IsDNS1123Subdomain`, ...). Each check returns Go's
//! messages verbatim, in Go's order, and an empty list when the value is valid, so callers can
//! wrap them in `FieldError`s that read exactly like the API server's.
//!
//! The checker needs qualified names, label values and DNS-1123 subdomains; the DNS-1123 and
//! DNS-1035 label and prefixed-key checks are compiled for the vectors only (`names.json` pins
//! the grammar they share with the others).
//!
//! The regexes are matched by hand: every grammar here is one or more `first (inner* last)?`
//! tokens over ASCII, which a byte scan decides exactly (including RE2's `$`, which does not
//! match before a trailing newline). Lengths are bytes, as Go's `len`.

use std::borrow::Cow;

const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character";
const LABEL_KEY_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
const LABEL_KEY_MAX_LENGTH: usize = 63;

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Longest label value Kubernetes accepts, in bytes.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

#[cfg(test)]
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
#[cfg(test)]
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
     alphanumeric characters or '-', and must start and end with an alphanumeric character";
#[cfg(test)]
const DNS1123_LABEL_MAX_LENGTH: usize = 63;

const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower \
     case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Longest DNS-1123 subdomain (object names such as node names), in bytes.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

#[cfg(test)]
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
#[cfg(test)]
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric \
     characters or '-', start with an alphabetic character, and end with an alphanumeric character";
#[cfg(test)]
const DNS1035_LABEL_MAX_LENGTH: usize = 63;

/// Go has two `MaxLenError`s: `content`'s says "bytes" (label keys and values, and the prefix of
/// a label key), `util/validation`'s says "characters" (the public DNS checks). Both count bytes.
#[derive(Clone, Copy)]
enum LenUnit {
    Bytes,
    Characters,
}

fn max_len_error(max: usize, unit: LenUnit) -> String {
    let word = match unit {
        LenUnit::Bytes => "bytes",
        LenUnit::Characters => "characters",
    };
    format!("must be no more than {max} {word}")
}

/// Go's `RegexError`, including its two spaces before each "or".
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    let examples = if examples.is_empty() { String::new() } else { format!("e.g. {}", examples.join(" or ")) };
    format!("{msg} ({examples}regex used for validation is '{re}')")
}

const EMPTY_ERROR: &str = "must be non-empty";

/// Matches `first (inner* last)?`, the shape shared by every grammar in this module.
fn is_token(s: &[u8], first: fn(u8) -> bool, inner: fn(u8) -> bool, last: fn(u8) -> bool) -> bool {
    let Some((&head, rest)) = s.split_first() else {
        return false;
    };
    first(head)
        && match rest.split_last() {
            None => true,
            Some((&tail, middle)) => last(tail) && middle.iter().all(|&b| inner(b)),
        }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_label_inner(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_lower_alnum_dash(b: u8) -> bool {
    is_lower_alnum(b) || b == b'-'
}

#[cfg(test)]
fn is_lower(b: u8) -> bool {
    b.is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_label_key(s: &[u8]) -> bool {
    is_token(s, is_alnum, is_label_inner, is_alnum)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &[u8]) -> bool {
    is_token(s, is_lower_alnum, is_lower_alnum_dash, is_lower_alnum)
}

/// DNS-1123 labels joined by single dots; the labels themselves are not length-limited here.
fn matches_dns1123_subdomain(s: &[u8]) -> bool {
    s.split(|&b| b == b'.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
#[cfg(test)]
fn matches_dns1035_label(s: &[u8]) -> bool {
    is_token(s, is_lower, is_lower_alnum_dash, is_lower_alnum)
}

/// Go's `IsQualifiedName` (= `content.IsLabelKey`): an optional DNS-1123 subdomain prefix and
/// `/`, then a name of at most 63 bytes. Used for label keys, annotation keys and selector keys.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let mut parts = value.split('/');
    let name = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => name,
        (Some(prefix), Some(name), None) => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {EMPTY_ERROR}"));
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix.as_bytes(), LenUnit::Bytes)
                        .into_iter()
                        .map(|msg| format!("prefix part {msg}")),
                );
            }
            name
        }
        _ => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES)
            )]
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {EMPTY_ERROR}"));
    } else if name.len() > LABEL_KEY_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(LABEL_KEY_MAX_LENGTH, LenUnit::Bytes)));
    }
    if !matches_label_key(name.as_bytes()) {
        errs.push(format!("name part {}", regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES)));
    }
    errs
}

/// Go's `IsPrefixedLabelKey`: a qualified name that must carry a domain prefix
/// (`example.com/key`, not `key`).
#[cfg(test)]
pub fn is_prefixed_label_key(value: &str) -> Vec<String> {
    let errs = is_qualified_name(value);
    if errs.is_empty() && !value.contains('/') {
        return vec!["must include a prefix (e.g. 'example.com/key')".to_string()];
    }
    errs
}

/// Go's `IsValidLabelValue` (= `content.IsLabelValue`): empty, or up to 63 bytes of the label
/// name grammar. Used for label values and selector values.
pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH, LenUnit::Bytes));
    }
    if !value.is_empty() && !matches_label_key(value.as_bytes()) {
        errs.push(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

fn dns1123_subdomain_errors(value: &[u8], unit: LenUnit) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH, unit));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Go's `validation.IsDNS1123Subdomain`: lower-case DNS labels joined by dots, at most 253
/// bytes in all. Most object names (node names included) follow it.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    dns1123_subdomain_errors(value.as_bytes(), LenUnit::Characters)
}

/// Go's `validation.IsDNS1123Label`: one lower-case DNS label of at most 63 bytes. A valid
/// subdomain that is not a label gets Go's short "must not contain dots".
#[cfg(test)]
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH, LenUnit::Characters));
    }
    if !matches_dns1123_label(value.as_bytes()) {
        if matches_dns1123_subdomain(value.as_bytes()) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Go's `validation.IsDNS1035Label`: like a DNS-1123 label but starting with a letter
/// (Service names and the like).
#[cfg(test)]
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH, LenUnit::Characters));
    }
    if !matches_dns1035_label(value.as_bytes()) {
        errs.push(regex_error(DNS1035_LABEL_ERR_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Go's `NameIsDNSSubdomain`, which core validation uses for node names (`ValidateNodeName`).
/// With `prefix` (a `generateName`), a trailing dash is allowed, as Go's `maskTrailingDash` does.
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    let name = if prefix { mask_trailing_dash(name) } else { Cow::Borrowed(name.as_bytes()) };
    dns1123_subdomain_errors(&name, LenUnit::Characters)
}

/// Go's `maskTrailingDash`: `name[:len(name)-2] + "a"` when `name` is longer than one byte and
/// ends with `-`. It drops two bytes, so it works on bytes (it may split a UTF-8 sequence, which
/// then fails the grammar, as in Go).
fn mask_trailing_dash(name: &str) -> Cow<'_, [u8]> {
    match name.as_bytes().strip_suffix(b"-").and_then(<[u8]>::split_last) {
        Some((_, stem)) => {
            let mut masked = stem.to_vec();
            masked.push(b'a');
            Cow::Owned(masked)
        }
        None => Cow::Borrowed(name.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const QUALIFIED_REGEX_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const SUBDOMAIN_REGEX_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const DNS1035_REGEX_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

    #[test]
    fn regex_error_formats_like_go() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "msg (regex used for validation is 're')"),
            (&["a"], "msg (e.g. 'a', regex used for validation is 're')"),
            (&["a", "b", "c"], "msg (e.g. 'a',  or 'b',  or 'c', regex used for validation is 're')"),
        ];
        for (examples, want) in cases {
            assert_eq!(regex_error("msg", "re", examples), *want);
        }
    }

    #[test]
    fn token_matcher_edges() {
        let cases: &[(&str, bool, bool, bool)] = &[
            // (input, label key grammar, DNS-1123 label, DNS-1035 label)
            ("a", true, true, true),
            ("1", true, true, false),
            ("A", true, false, false),
            ("a-1", true, true, true),
            ("a_1", true, false, false),
            ("a.1", true, false, false),
            ("-", false, false, false),
            ("a-", false, false, false),
            ("", false, false, false),
            ("a\n", false, false, false),
            ("é", false, false, false),
        ];
        for &(input, key, dns1123, dns1035) in cases {
            let bytes = input.as_bytes();
            assert_eq!(matches_label_key(bytes), key, "label key {input:?}");
            assert_eq!(matches_dns1123_label(bytes), dns1123, "dns1123 {input:?}");
            assert_eq!(matches_dns1035_label(bytes), dns1035, "dns1035 {input:?}");
        }
    }

    #[test]
    fn qualified_name_messages() {
        let long_prefix = format!("{}.com/x", "a".repeat(250));
        let long_bad_prefix = format!("{}_/x", "a".repeat(253));
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("example.com/Key_1", vec![]),
            ("Example.com/k", vec![format!("prefix part {SUBDOMAIN_REGEX_MSG}")]),
            (&long_prefix, vec!["prefix part must be no more than 253 bytes".to_string()]),
            (
                &long_bad_prefix,
                vec![
                    "prefix part must be no more than 253 bytes".to_string(),
                    format!("prefix part {SUBDOMAIN_REGEX_MSG}"),
                ],
            ),
            ("/-", vec!["prefix part must be non-empty".to_string(), QUALIFIED_REGEX_MSG.to_string()]),
        ];
        for (input, want) in cases {
            assert_eq!(is_qualified_name(input), want, "{input:?}");
        }
    }

    #[test]
    fn dns1035_label_messages() {
        let cases: Vec<(String, Vec<String>)> = vec![
            ("abc-1".to_string(), vec![]),
            ("1abc".to_string(), vec![DNS1035_REGEX_MSG.to_string()]),
            ("a.b".to_string(), vec![DNS1035_REGEX_MSG.to_string()]),
            ("a".repeat(64), vec!["must be no more than 63 characters".to_string()]),
        ];
        for (input, want) in cases {
            assert_eq!(is_dns1035_label(&input), want, "{input:?}");
        }
    }

    #[test]
    fn name_is_dns_subdomain_masks_only_with_prefix() {
        assert_eq!(name_is_dns_subdomain("node-", true), Vec::<String>::new());
        assert_eq!(name_is_dns_subdomain("node-", false), vec![SUBDOMAIN_REGEX_MSG]);
        // Dropping two bytes splits "é"; the leftover byte fails the grammar as in Go.
        assert_eq!(name_is_dns_subdomain("é-", true), vec![SUBDOMAIN_REGEX_MSG]);
    }

    // ---- names.json: every case of every section ----

    const NAMES_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors/names.json"));

    type Check = fn(&str) -> Vec<String>;

    const CHECKS: &[(&str, Check)] = &[
        ("qualified_name", is_qualified_name),
        ("label_value", is_label_value),
        ("dns1123_subdomain", is_dns1123_subdomain),
        ("dns1123_label", is_dns1123_label),
        ("dns1035_label", is_dns1035_label),
        ("prefixed_label_key", is_prefixed_label_key),
    ];

    fn strings(value: &Value) -> Vec<String> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("expected an array, got {value}"))
            .iter()
            .map(|s| s.as_str().unwrap_or_else(|| panic!("expected a string, got {s}")).to_string())
            .collect()
    }

    fn str_field<'v>(value: &'v Value, key: &str) -> &'v str {
        value[key].as_str().unwrap_or_else(|| panic!("missing string {key:?} in {value}"))
    }

    /// Checks one validator against one section; returns (cases checked, failures).
    fn check_section(name: &str, check: Check, section: &Value) -> (usize, Vec<String>) {
        let mut checked = 0;
        let mut failures = Vec::new();
        let object = section.as_object().unwrap_or_else(|| panic!("{name}: not an object"));
        for (key, list) in object {
            match key.as_str() {
                "source" => {}
                "valid" | "invalid" => {
                    let want_valid = key == "valid";
                    for input in strings(list) {
                        checked += 1;
                        let got = check(&input);
                        if got.is_empty() != want_valid {
                            failures.push(format!("{name}/{key} {input:?}: got {got:?}"));
                        }
                    }
                }
                "invalid_errors" | "derived" => {
                    for case in list.as_array().unwrap_or_else(|| panic!("{name}/{key}")) {
                        checked += 1;
                        let input = str_field(case, "in");
                        let want = strings(&case["errors"]);
                        let got = check(input);
                        let verdict_ok = case.get("valid").is_none_or(|v| v.as_bool() == Some(got.is_empty()));
                        if got != want || !verdict_ok {
                            failures.push(format!(
                                "{name}/{key} {input:?}:\n  want {want:?} (valid: {})\n  got  {got:?}",
                                case.get("valid").unwrap_or(&Value::Null)
                            ));
                        }
                    }
                }
                other => failures.push(format!("{name}: unknown list {other:?} not checked")),
            }
        }
        (checked, failures)
    }

    #[test]
    fn names_json_vectors() {
        let vectors: Value = serde_json::from_str(NAMES_JSON).expect("names.json parses");
        let mut checked = 0;
        let mut failures = Vec::new();
        for (section, body) in vectors.as_object().expect("top-level object") {
            if section == "_meta" {
                continue;
            }
            if section == "object_name_prefix_masking" {
                for case in body["cases"].as_array().expect("masking cases") {
                    checked += 1;
                    let input = str_field(case, "in");
                    let want = str_field(case, "masked");
                    let got = mask_trailing_dash(input);
                    if *got != *want.as_bytes() {
                        failures.push(format!(
                            "{section} {input:?}: want {want:?}, got {:?}",
                            String::from_utf8_lossy(&got)
                        ));
                    }
                }
                continue;
            }
            match CHECKS.iter().find(|(name, _)| name == section) {
                Some(&(name, check)) => {
                    let (n, f) = check_section(name, check, body);
                    checked += n;
                    failures.extend(f);
                }
                None => failures.push(format!("section {section:?} has no validator")),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {checked} names.json cases disagree:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(checked > 400, "only {checked} names.json cases found");
        println!("names.json: {checked} cases agree");
    }
}
