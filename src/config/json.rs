//! A strict JSON parser that keeps the line and column of every value and key.
//!
//! serde_json throws positions away and silently keeps the last of two equal keys;
//! a ConfigMap checker has to point at the exact character and report duplicates,
//! so the config value is parsed here into a small tree instead. It accepts exactly
//! what Go's `encoding/json` accepts (RFC 8259) and words its errors the same way.
//!
//! The tree borrows from the text: a key or string without escapes, and every number, is a
//! slice of it, so a fresh check copies only what the decoded config keeps.

use std::borrow::Cow;
use std::fmt;

use crate::k8s::field::go_quote;

/// A 1-based line and column, counted in characters (not bytes), as editors show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A parsed JSON value and where it starts, borrowing from the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub pos: Pos,
    pub value: Value<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// The literal as written, so integer checks see `2.0` and `1e3` as Go does.
    Number(&'a str),
    /// Borrowed unless the string holds an escape.
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Members in document order, duplicates included.
    Object(Vec<Member<'a>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member<'a> {
    /// Borrowed unless the key holds an escape.
    pub key: Cow<'a, str>,
    pub key_pos: Pos,
    pub value: Node<'a>,
}

impl Value<'_> {
    /// The JSON type name as Go's unmarshal errors name it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// A syntax error at a position, worded as Go's `json.SyntaxError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

/// Deeper nesting than any node-agent config needs; the cap keeps recursion off the stack's edge.
pub const MAX_DEPTH: usize = 64;

/// Parses one JSON document; trailing non-whitespace is an error.
pub fn parse(text: &str) -> Result<Node<'_>, SyntaxError> {
    let mut parser = Parser { rest: text, line: 1, column: 1 };
    parser.skip_whitespace();
    let node = parser.value(0)?;
    parser.skip_whitespace();
    match parser.peek() {
        None => Ok(node),
        Some(c) => Err(parser.error(format!("invalid character {} after top-level value", quote_char(c)))),
    }
}

/// A cursor over the text not yet read, so runs of plain characters can be copied as slices.
struct Parser<'a> {
    rest: &'a str,
    line: u32,
    column: u32,
}

impl<'a> Parser<'a> {
    fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.column }
    }

    fn error(&self, message: String) -> SyntaxError {
        SyntaxError { message, pos: self.pos() }
    }

    fn eof(&self) -> SyntaxError {
        self.error("unexpected end of JSON input".to_string())
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_whitespace(&mut self) {
        let mut skipped = 0;
        for &byte in self.rest.as_bytes() {
            match byte {
                b'\n' => {
                    self.line += 1;
                    self.column = 1;
                }
                b' ' | b'\t' | b'\r' => self.column += 1,
                _ => break,
            }
            skipped += 1;
        }
        self.rest = &self.rest[skipped..];
    }

    fn peek_or_eof(&self) -> Result<char, SyntaxError> {
        self.peek().ok_or_else(|| self.eof())
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("exceeded max depth of {MAX_DEPTH} nested arrays and objects")));
        }
        let pos = self.pos();
        let c = self.peek_or_eof()?;
        let value = match c {
            '{' => self.object(depth)?,
            '[' => self.array(depth)?,
            '"' => Value::String(self.string()?),
            't' => self.literal("true", Value::Bool(true))?,
            'f' => self.literal("false", Value::Bool(false))?,
            'n' => self.literal("null", Value::Null)?,
            '-' | '0'..='9' => Value::Number(self.number()?),
            c => return Err(self.error(format!("invalid character {} looking for beginning of value", quote_char(c)))),
        };
        Ok(Node { pos, value })
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>, SyntaxError> {
        for want in word.chars() {
            match self.peek() {
                None => return Err(self.eof()),
                Some(c) if c == want => {
                    self.bump();
                }
                Some(c) => {
                    return Err(self.error(format!(
                        "invalid character {} in literal {word} (expecting {})",
                        quote_char(c),
                        quote_char(want)
                    )))
                }
            }
        }
        Ok(value)
    }

    fn number(&mut self) -> Result<&'a str, SyntaxError> {
        let start = self.rest;
        if self.peek() == Some('-') {
            self.bump();
        }
        match self.peek() {
            Some('0') => {
                self.bump();
            }
            Some(c) if c.is_ascii_digit() => self.digits(),
            Some(c) => return Err(self.error(format!("invalid character {} in numeric literal", quote_char(c)))),
            None => return Err(self.eof()),
        }
        if self.peek() == Some('.') {
            self.bump();
            self.require_digit("after decimal point in numeric literal")?;
        }
        if let Some('e' | 'E') = self.peek() {
            self.bump();
            if let Some('+' | '-') = self.peek() {
                self.bump();
            }
            self.require_digit("in exponent of numeric literal")?;
        }
        Ok(&start[..start.len() - self.rest.len()])
    }

    fn require_digit(&mut self, context: &str) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                self.digits();
                Ok(())
            }
            Some(c) => Err(self.error(format!("invalid character {} {context}", quote_char(c)))),
            None => Err(self.eof()),
        }
    }

    /// Skips a run of ASCII digits (one line, one column per byte).
    fn digits(&mut self) {
        let run = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        self.advance_within_line(run);
    }

    /// Moves past `bytes` bytes that hold no newline.
    fn advance_within_line(&mut self, bytes: usize) {
        let (run, rest) = self.rest.split_at(bytes);
        self.column += run.chars().count() as u32;
        self.rest = rest;
    }

    /// A string literal: a slice of the text when it holds no escape, else decoded into a copy.
    fn string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        self.bump(); // opening quote
        let mut out: Option<String> = None;
        loop {
            // Plain characters up to the next quote, backslash or control character, taken whole.
            let plain = self.rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(self.rest.len());
            let rest = self.rest;
            let run = &rest[..plain];
            self.advance_within_line(plain);
            let Some(c) = self.peek() else { return Err(self.eof()) };
            match c {
                '"' => {
                    self.bump();
                    return Ok(match out {
                        None => Cow::Borrowed(run),
                        Some(mut copy) => {
                            copy.push_str(run);
                            Cow::Owned(copy)
                        }
                    });
                }
                '\\' => {
                    self.bump();
                    let copy = out.get_or_insert_with(String::new);
                    copy.push_str(run);
                    copy.push(self.escape()?);
                }
                c => return Err(self.error(format!("invalid character {} in string literal", quote_char(c)))),
            }
        }
    }

    fn escape(&mut self) -> Result<char, SyntaxError> {
        match decode_escape(self.rest.chars()) {
            Ok((c, len)) => {
                for _ in 0..len {
                    self.bump();
                }
                Ok(c)
            }
            Err(EscapeError::End) => Err(self.eof()),
            Err(EscapeError::Invalid { at, c }) => {
                for _ in 0..at {
                    self.bump();
                }
                let what = if at == 0 { "string escape code" } else { "\\u hexadecimal character escape" };
                Err(self.error(format!("invalid character {} in {what}", quote_char(c))))
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, SyntaxError> {
        self.bump(); // [
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                Some(c) => return Err(self.error(format!("invalid character {} after array element", quote_char(c)))),
                None => return Err(self.eof()),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, SyntaxError> {
        self.bump(); // {
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            let key_pos = self.pos();
            match self.peek() {
                Some('"') => {}
                Some(c) => {
                    return Err(self.error(format!(
                        "invalid character {} looking for beginning of object key string",
                        quote_char(c)
                    )))
                }
                None => return Err(self.eof()),
            }
            let key = self.string()?;
            self.skip_whitespace();
            match self.peek() {
                Some(':') => {
                    self.bump();
                }
                Some(c) => return Err(self.error(format!("invalid character {} after object key", quote_char(c)))),
                None => return Err(self.eof()),
            }
            self.skip_whitespace();
            let value = self.value(depth + 1)?;
            members.push(Member { key, key_pos, value });
            self.skip_whitespace();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                Some(c) => {
                    return Err(self.error(format!("invalid character {} after object key:value pair", quote_char(c))))
                }
                None => return Err(self.eof()),
            }
        }
    }
}

/// Why an escape does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeError {
    /// The text ends inside it.
    End,
    /// Character `c`, `at` characters after the backslash, cannot be there.
    Invalid { at: usize, c: char },
}

/// Decodes the JSON escape whose backslash was just read, from the characters after it:
/// the character it stands for and how many characters it took. A UTF-16 surrogate pair
/// (`\ud83d\ude00`) joins into one character; a lone surrogate becomes U+FFFD, as Go does.
/// The parser and the manifest reader's position maps both decode escapes with this.
pub fn decode_escape(mut after: impl Iterator<Item = char> + Clone) -> Result<(char, usize), EscapeError> {
    let c = after.next().ok_or(EscapeError::End)?;
    if c != 'u' {
        return simple_escape(c).map(|decoded| (decoded, 1)).ok_or(EscapeError::Invalid { at: 0, c });
    }
    let high = hex4(&mut after, 1)?;
    if (0xD800..0xDC00).contains(&high) {
        let mut lookahead = after;
        if lookahead.next() == Some('\\') && lookahead.next() == Some('u') {
            if let Ok(low) = hex4(&mut lookahead, 0) {
                if (0xDC00..0xE000).contains(&low) {
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return Ok((char::from_u32(code).unwrap_or('\u{FFFD}'), 11));
                }
            }
        }
    }
    Ok((char::from_u32(high).unwrap_or('\u{FFFD}'), 5))
}

/// Four hex digits; `first` is the index after the backslash of the first one, for the error.
fn hex4(chars: &mut impl Iterator<Item = char>, first: usize) -> Result<u32, EscapeError> {
    (0..4).try_fold(0u32, |code, i| {
        let c = chars.next().ok_or(EscapeError::End)?;
        let digit = c.to_digit(16).ok_or(EscapeError::Invalid { at: first + i, c })?;
        Ok(code * 16 + digit)
    })
}

/// The character a one-letter JSON escape (`\n`, `\"`, ...) stands for; `None` for `u` and
/// anything invalid.
fn simple_escape(c: char) -> Option<char> {
    Some(match c {
        '"' => '"',
        '\\' => '\\',
        '/' => '/',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        _ => return None,
    })
}

/// Quotes a character as Go's `quoteChar` does in json errors: `'x'`, `'\n'`, `'\''`. Go's
/// scanner reads bytes, so a non-ASCII character is named by its first byte read as a rune: a
/// byte order mark (EF BB BF) is `'ï'`, as node-agent's log says.
fn quote_char(c: char) -> String {
    let mut utf8 = [0u8; 4];
    let first = c.encode_utf8(&mut utf8).as_bytes().first().copied().unwrap_or_default();
    match char::from(first) {
        '\'' => "'\\''".to_string(),
        '"' => "'\"'".to_string(),
        byte => {
            let quoted = go_quote(&byte.to_string());
            let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or(&quoted);
            format!("'{inner}'")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn keeps_positions_of_values_and_keys() {
        let node = parse("{\n  \"a\": [1, \"x\"],\n  \"b\": null\n}").expect("valid");
        let Value::Object(members) = node.value else { panic!("object") };
        assert_eq!(members[0].key_pos, at(2, 3));
        assert_eq!(members[0].value.pos, at(2, 8));
        let Value::Array(items) = &members[0].value.value else { panic!("array") };
        assert_eq!(items[1].pos, at(2, 12));
        assert_eq!(items[1].value, Value::String("x".into()));
        assert_eq!(members[1].value.pos, at(3, 8));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let node = parse("{\"é€\": 1}").expect("valid");
        let Value::Object(members) = node.value else { panic!("object") };
        assert_eq!(members[0].value.pos, at(1, 8));
    }

    #[test]
    fn positions_after_escapes_and_multibyte_runs_count_characters() {
        let node = parse("{\"k\": \"é\\u00e9\\n€\", \"n\": -1.5e+3,\n\t\"z\":0}").expect("valid");
        let Value::Object(members) = node.value else { panic!("object") };
        assert_eq!(members[0].value.value, Value::String("éé\n€".into()));
        assert_eq!((members[1].key_pos, members[1].value.pos), (at(1, 21), at(1, 26)));
        assert_eq!(members[1].value.value, Value::Number("-1.5e+3"));
        assert_eq!((members[2].key_pos, members[2].value.pos), (at(2, 2), at(2, 6)));
    }

    #[test]
    fn keeps_duplicate_keys_and_number_literals() {
        let node = parse(r#"{"a": 2.0, "a": 1e3}"#).expect("valid");
        let Value::Object(members) = node.value else { panic!("object") };
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].value.value, Value::Number("2.0"));
        assert_eq!(members[1].value.value, Value::Number("1e3"));
    }

    #[test]
    fn one_escape_decoder_for_the_parser_and_the_position_maps() {
        let cases = [
            ("n", Ok(('\n', 1))),
            ("u00e9x", Ok(('é', 5))),
            ("ud83d\\ude00", Ok(('😀', 11))),
            ("ud83dx", Ok(('\u{FFFD}', 5))),
            ("ud83d\\u0041", Ok(('\u{FFFD}', 5))),
            ("x", Err(EscapeError::Invalid { at: 0, c: 'x' })),
            ("u12g4", Err(EscapeError::Invalid { at: 3, c: 'g' })),
            ("u12", Err(EscapeError::End)),
            ("", Err(EscapeError::End)),
        ];
        for (after, want) in cases {
            assert_eq!(decode_escape(after.chars()), want, "{after:?}");
        }
    }

    #[test]
    fn strings_borrow_unless_they_hold_an_escape() {
        // (literal, decoded, borrowed from the text)
        let cases = [
            (r#""plain""#, "plain", true),
            (r#""""#, "", true),
            (r#""é€ x""#, "é€ x", true),
            (r#""a\nb""#, "a\nb", false),
            (r#""\u00e9""#, "é", false),
            (r#""tail\"""#, "tail\"", false),
        ];
        for (literal, want, borrowed) in cases {
            let node = parse(literal).expect("valid");
            let Value::String(s) = &node.value else { panic!("string") };
            assert_eq!((s.as_ref(), matches!(s, Cow::Borrowed(_))), (want, borrowed), "{literal}");
        }
        let node = parse(r#"{"k\u0031": 1, "k2": -2.5e3}"#).expect("valid");
        let Value::Object(members) = &node.value else { panic!("object") };
        let keys: Vec<(&str, bool)> =
            members.iter().map(|m| (m.key.as_ref(), matches!(m.key, Cow::Borrowed(_)))).collect();
        assert_eq!(keys, [("k1", false), ("k2", true)]);
        assert_eq!(members[1].value.value, Value::Number("-2.5e3"));
    }

    #[test]
    fn decodes_escapes() {
        let node = parse(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800""#).expect("valid");
        assert_eq!(node.value, Value::String("a\"\\/\u{8}\u{c}\n\r\té😀\u{FFFD}".into()));
    }

    #[test]
    fn syntax_errors_read_like_go() {
        let cases: &[(&str, &str, Pos)] = &[
            ("", "unexpected end of JSON input", at(1, 1)),
            ("   \n ", "unexpected end of JSON input", at(2, 2)),
            ("\u{feff}{}", "invalid character 'ï' looking for beginning of value", at(1, 1)),
            // Go names a non-ASCII character by its first byte, read as a rune.
            ("é", "invalid character 'Ã' looking for beginning of value", at(1, 1)),
            ("{\"a\": \u{a0}1}", "invalid character 'Â' looking for beginning of value", at(1, 7)),
            ("[1\u{7}]", "invalid character '\\a' after array element", at(1, 3)),
            ("{\"a\": 1,}", "invalid character '}' looking for beginning of object key string", at(1, 9)),
            ("{\"a\" 1}", "invalid character '1' after object key", at(1, 6)),
            ("{\"a\": 1 \"b\"}", "invalid character '\"' after object key:value pair", at(1, 9)),
            ("[1 2]", "invalid character '2' after array element", at(1, 4)),
            ("{\"a\": tru}", "invalid character '}' in literal true (expecting 'e')", at(1, 10)),
            ("{\"a\": 01}", "invalid character '1' after object key:value pair", at(1, 8)),
            ("{\"a\": 1.}", "invalid character '}' after decimal point in numeric literal", at(1, 9)),
            ("{\"a\": -x}", "invalid character 'x' in numeric literal", at(1, 8)),
            ("{\"a\": \"x\ny\"}", "invalid character '\\n' in string literal", at(1, 9)),
            ("\"\\x\"", "invalid character 'x' in string escape code", at(1, 3)),
            ("\"\\u12g4\"", "invalid character 'g' in \\u hexadecimal character escape", at(1, 6)),
            ("{} {}", "invalid character '{' after top-level value", at(1, 4)),
            ("loadAffinity:\n- a", "invalid character 'l' looking for beginning of value", at(1, 1)),
            ("{\"a\": [1,", "unexpected end of JSON input", at(1, 10)),
        ];
        for (input, message, pos) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!((err.message.as_str(), err.pos), (*message, *pos), "input {input:?}");
        }
    }

    #[test]
    fn nesting_is_capped_instead_of_overflowing_the_stack() {
        let deep = "[".repeat(10_000);
        let err = parse(&deep).expect_err("too deep");
        assert!(err.message.contains("exceeded max depth"), "{}", err.message);
    }
}
