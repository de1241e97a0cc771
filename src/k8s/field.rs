//! Field errors rendered exactly as apimachinery's `field.Error.Error()`, so our
//! messages read like the API server's own (`spec.x: Invalid value: "y": detail`).

use std::fmt;

/// What is wrong with a field; the variants and their words are apimachinery's `ErrorType`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Invalid value: <value>: <detail>`
    Invalid { value: String, detail: String },
    /// `Required value: <detail>`
    Required { detail: String },
    /// `Forbidden: <detail>`
    Forbidden { detail: String },
    /// `Unsupported value: <value>: supported values: "a", "b"`
    NotSupported { value: String, supported: Vec<String> },
    /// `Duplicate value: <value>`
    Duplicate { value: String },
    /// `Too long: may not be more than <max> bytes`
    TooLong { max_bytes: usize },
}

/// One problem at one field path, e.g. `matchExpressions[0].operator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub kind: FieldErrorKind,
}

impl FieldError {
    /// `Invalid value` for a string value, quoted as Go's `%q` does.
    pub fn invalid(path: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self::invalid_raw(path, go_quote(value), detail)
    }

    /// `Invalid value` for a value that is already rendered (numbers, booleans: unquoted).
    pub fn invalid_raw(path: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { path: path.into(), kind: FieldErrorKind::Invalid { value: value.into(), detail: detail.into() } }
    }

    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { path: path.into(), kind: FieldErrorKind::Required { detail: detail.into() } }
    }

    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { path: path.into(), kind: FieldErrorKind::Forbidden { detail: detail.into() } }
    }

    /// `Unsupported value` for a string value; `supported` is listed sorted, as Go does.
    pub fn not_supported(path: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let mut supported: Vec<String> = supported.iter().map(|s| s.to_string()).collect();
        supported.sort();
        Self { path: path.into(), kind: FieldErrorKind::NotSupported { value: go_quote(value), supported } }
    }

    /// `Unsupported value` listing `supported` in the order given, as Go's `field.NotSupported`
    /// does when its caller passes a fixed list (taint effects, toleration operators).
    pub fn not_supported_in_order(path: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let supported = supported.iter().map(|s| s.to_string()).collect();
        Self { path: path.into(), kind: FieldErrorKind::NotSupported { value: go_quote(value), supported } }
    }

    pub fn duplicate(path: impl Into<String>, value: &str) -> Self {
        Self { path: path.into(), kind: FieldErrorKind::Duplicate { value: go_quote(value) } }
    }

    pub fn too_long(path: impl Into<String>, max_bytes: usize) -> Self {
        Self { path: path.into(), kind: FieldErrorKind::TooLong { max_bytes } }
    }

    /// Everything after `path: `, i.e. Go's `ErrorBody()`.
    pub fn body(&self) -> String {
        match &self.kind {
            FieldErrorKind::Invalid { value, detail } => with_detail(format!("Invalid value: {value}"), detail),
            FieldErrorKind::Required { detail } => with_detail("Required value".to_string(), detail),
            FieldErrorKind::Forbidden { detail } => with_detail("Forbidden".to_string(), detail),
            FieldErrorKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
                format!("Unsupported value: {value}: supported values: {}", list.join(", "))
            }
            FieldErrorKind::Duplicate { value } => format!("Duplicate value: {value}"),
            FieldErrorKind::TooLong { max_bytes } => format!("Too long: may not be more than {max_bytes} bytes"),
        }
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

/// Quotes a string as Go's `strconv.Quote` (`%q`) does for the characters config values hold.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `field.Path.Child`: `parent.name`; an empty `parent` stands for the root. Field
/// paths are built for every decoded value, so they are concatenated rather than formatted.
pub fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        return name.to_string();
    }
    concat(&[parent, ".", name])
}

/// Go's `field.Path.Index`: `parent[i]`.
pub fn index(parent: &str, i: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(parent.len() + 4);
    out.push_str(parent);
    // Writing into a String cannot fail.
    let _ = write!(out, "[{i}]");
    out
}

/// Go's `field.Path.Key`: `parent[key]`, the key as it is (unquoted, as apimachinery writes it).
pub fn key(parent: &str, key: &str) -> String {
    concat(&[parent, "[", key, "]"])
}

fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|p| out.push_str(p));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_apimachinery() {
        let cases = [
            (FieldError::invalid("a.b", "x\"y", "bad"), r#"a.b: Invalid value: "x\"y": bad"#),
            (
                FieldError::invalid_raw("n", "0", "must be greater than 0"),
                "n: Invalid value: 0: must be greater than 0",
            ),
            (FieldError::required("v", ""), "v: Required value"),
            (FieldError::forbidden("v", "no"), "v: Forbidden: no"),
            (
                FieldError::not_supported("op", "in", &["In", "Exists"]),
                r#"op: Unsupported value: "in": supported values: "Exists", "In""#,
            ),
            (FieldError::duplicate("sc", "gp3"), r#"sc: Duplicate value: "gp3""#),
            (FieldError::too_long("ann", 262144), "ann: Too long: may not be more than 262144 bytes"),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn paths_read_like_field_path() {
        let cases = [
            (child("", "loadAffinity"), "loadAffinity"),
            (child("a", "b"), "a.b"),
            (index("loadAffinity", 0), "loadAffinity[0]"),
            (index("a.b", 12345), "a.b[12345]"),
            (key("podLabels", "app.kubernetes.io/name"), "podLabels[app.kubernetes.io/name]"),
            (key("a", ""), "a[]"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
