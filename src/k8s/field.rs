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

/// Go's `field.Path.Child`: `parent.name`; an empty `parent` stands for the root.
pub fn child(parent: &str, name: &str) -> String {
    Path::Text(parent).child(name).render()
}

/// Go's `field.Path.Index`: `parent[i]`.
pub fn index(parent: &str, i: usize) -> String {
    Path::Text(parent).index(i).render()
}

/// Go's `field.Path.Key`: `parent[key]`, the key as it is (unquoted, as apimachinery writes it).
pub fn key(parent: &str, key: &str) -> String {
    Path::Text(parent).key(key).render()
}

/// A field path not yet written out: each step borrows its parent on the stack. The decoder
/// walks every value of a config and only a few need their path as text (for a finding, or
/// for the position table, which writes it into one buffer), so none is allocated on the way.
#[derive(Debug, Clone, Copy)]
pub enum Path<'p> {
    /// A path already written out; empty for the root.
    Text(&'p str),
    /// `parent.name`, or `name` when the parent is empty.
    Child(&'p Path<'p>, &'p str),
    /// `parent[i]`.
    Index(&'p Path<'p>, usize),
    /// `parent[key]`.
    Key(&'p Path<'p>, &'p str),
}

impl<'p> Path<'p> {
    /// The root, the whole value.
    pub const ROOT: Path<'static> = Path::Text("");

    pub fn child(&'p self, name: &'p str) -> Path<'p> {
        Path::Child(self, name)
    }

    pub fn index(&'p self, i: usize) -> Path<'p> {
        Path::Index(self, i)
    }

    pub fn key(&'p self, key: &'p str) -> Path<'p> {
        Path::Key(self, key)
    }

    /// Appends the path as text to `out`.
    pub fn write_to(&self, out: &mut String) {
        match *self {
            Path::Text(text) => out.push_str(text),
            Path::Child(parent, name) => {
                let start = out.len();
                parent.write_to(out);
                if out.len() > start {
                    out.push('.');
                }
                out.push_str(name);
            }
            Path::Index(parent, i) => {
                parent.write_to(out);
                out.push('[');
                push_decimal(out, i);
                out.push(']');
            }
            Path::Key(parent, key) => {
                parent.write_to(out);
                out.push('[');
                out.push_str(key);
                out.push(']');
            }
        }
    }

    /// The path as text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.text_len());
        self.write_to(&mut out);
        out
    }

    /// The length of the text, so rendering allocates once.
    fn text_len(&self) -> usize {
        match *self {
            Path::Text(text) => text.len(),
            Path::Child(parent, name) => {
                let parent = parent.text_len();
                parent + usize::from(parent > 0) + name.len()
            }
            Path::Index(parent, i) => parent.text_len() + 2 + i.checked_ilog10().unwrap_or(0) as usize + 1,
            Path::Key(parent, key) => parent.text_len() + 2 + key.len(),
        }
    }
}

/// Appends `n` in decimal digits; an index is written for every list item a rule checks, and
/// the formatting machinery costs several times what the digits do.
fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
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
    fn lazy_paths_render_as_written_ones() {
        let root = Path::ROOT;
        let top = root.child("loadAffinity");
        let item = top.index(10);
        let selector = item.child("nodeSelector");
        let labels = selector.child("matchLabels");
        let entry = labels.key("app.kubernetes.io/name");
        let held = Path::Text("backupPVC");
        let empty = Path::Text("");
        let empty_child = empty.child("");
        let cases: [(Path, &str); 9] = [
            (root, ""),
            (top, "loadAffinity"),
            (item, "loadAffinity[10]"),
            (selector, "loadAffinity[10].nodeSelector"),
            (entry, "loadAffinity[10].nodeSelector.matchLabels[app.kubernetes.io/name]"),
            (root.index(0), "[0]"),
            (root.index(usize::MAX), "[18446744073709551615]"),
            (held.key(""), "backupPVC[]"),
            (empty_child.child("x"), "x"),
        ];
        for (path, want) in cases {
            let mut appended = String::from(">");
            path.write_to(&mut appended);
            assert_eq!((path.render(), path.text_len(), appended), (want.to_string(), want.len(), format!(">{want}")));
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
