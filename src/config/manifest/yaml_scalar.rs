//! YAML scalars re-decoded from their raw text, each character with where it was written:
//! plain, single- and double-quoted flow scalars (with YAML's line folding) and literal or
//! folded block scalars, mirroring saphyr's scanner so that the result can be checked against
//! the value the parser read.

use super::{to_u32, Decoded, Text};
use crate::config::json::Pos;

/// The index of a value's first character (quote, block indicator, or plain text) after its key
/// ends: past the `:`, separation, comments and properties (`&anchor`, `!tag`).
pub(super) fn value_start(text: &Text, key_end: usize) -> Option<usize> {
    let mut i = skip_separation(text, key_end);
    if text.get(i)? != ':' {
        return None;
    }
    i = skip_separation(text, i + 1);
    while matches!(text.get(i)?, '&' | '!') {
        while text.get(i).is_some_and(|c| !matches!(c, ' ' | '\t' | '\n' | '\r')) {
            i += 1;
        }
        i = skip_separation(text, i);
    }
    Some(i)
}

fn skip_separation(text: &Text, mut i: usize) -> usize {
    loop {
        match text.get(i) {
            Some(' ' | '\t' | '\n' | '\r') => i += 1,
            Some('#') if i == 0 || text.is_blank(i - 1) || text.is_break(i - 1) => {
                while text.get(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// Decodes the scalar written at `start` (its style told by the first character) and returns
/// where the position just past it is. `end` is the parser's end of a plain scalar; `parent_indent`
/// the indentation of the mapping holding a block scalar.
pub(super) fn yaml_scalar(text: &Text, start: usize, end: usize, parent_indent: usize) -> Option<(Decoded, Pos)> {
    match text.get(start)? {
        '"' | '\'' => {
            let (decoded, close) = quoted(text, start)?;
            Some((decoded, text.pos(close)))
        }
        '|' | '>' => block(text, start, parent_indent),
        '*' => None,
        _ => Some((plain(text, start, end), text.pos(end))),
    }
}

/// The folding of line breaks and white space in flow scalars (YAML 1.2 §6.5, §7.3): trailing
/// and leading blanks around a break are dropped, a single break becomes a space, and each
/// empty line a `\n`. Mirrors saphyr's scanner.
#[derive(Default)]
struct Folding {
    blanks: Vec<usize>,
    leading_break: Option<usize>,
    trailing_breaks: Vec<usize>,
    after_break: bool,
}

impl Folding {
    fn blank(&mut self, i: usize) {
        if !self.after_break {
            self.blanks.push(i);
        }
    }

    fn line_break(&mut self, i: usize) {
        if self.after_break {
            self.trailing_breaks.push(i);
        } else {
            self.blanks.clear();
            self.leading_break = Some(i);
            self.after_break = true;
        }
    }

    /// A `\` before a line break: the break is dropped and the blanks before it are kept.
    fn escaped_break(&mut self, text: &Text, out: &mut Decoded) {
        self.flush(text, out);
        self.after_break = true;
    }

    /// Emits what the pending blanks and breaks fold to, before the next content character.
    fn flush(&mut self, text: &Text, out: &mut Decoded) {
        if self.after_break {
            match self.leading_break {
                Some(i) if self.trailing_breaks.is_empty() => out.push(' ', text.pos(i)),
                _ => self.trailing_breaks.iter().for_each(|&i| out.push('\n', text.pos(i))),
            }
        } else {
            self.blanks.iter().for_each(|&i| out.push(text.get(i).unwrap_or(' '), text.pos(i)));
        }
        *self = Folding::default();
    }
}

fn plain(text: &Text, start: usize, end: usize) -> Decoded {
    let mut out = Decoded::new();
    let mut folding = Folding::default();
    let mut i = start;
    while i < end {
        if text.is_blank(i) {
            folding.blank(i);
            i += 1;
        } else if text.is_break(i) {
            folding.line_break(i);
            i += text.break_len(i);
        } else {
            folding.flush(text, &mut out);
            out.push(text.get(i).unwrap_or(' '), text.pos(i));
            i += 1;
        }
    }
    out
}

/// A single- or double-quoted scalar opening at `start`; returns the closing quote's index too.
fn quoted(text: &Text, start: usize) -> Option<(Decoded, usize)> {
    let quote = text.get(start)?;
    let mut out = Decoded::new();
    let mut folding = Folding::default();
    let mut i = start + 1;
    loop {
        let c = text.get(i)?;
        if text.is_blank(i) {
            folding.blank(i);
            i += 1;
        } else if text.is_break(i) {
            folding.line_break(i);
            i += text.break_len(i);
        } else if quote == '\'' && c == '\'' && text.get(i + 1) == Some('\'') {
            folding.flush(text, &mut out);
            out.push('\'', text.pos(i));
            i += 2;
        } else if c == quote {
            folding.flush(text, &mut out);
            return Some((out, i));
        } else if quote == '"' && c == '\\' && text.is_break(i + 1) {
            folding.escaped_break(text, &mut out);
            i += 1 + text.break_len(i + 1);
        } else if quote == '"' && c == '\\' {
            folding.flush(text, &mut out);
            let (decoded, len) = yaml_escape(text, i)?;
            out.push(decoded, text.pos(i));
            i += len;
        } else {
            folding.flush(text, &mut out);
            out.push(c, text.pos(i));
            i += 1;
        }
    }
}

/// One double-quoted escape at `i` (the backslash), as saphyr decodes it.
fn yaml_escape(text: &Text, i: usize) -> Option<(char, usize)> {
    let digits = match text.get(i + 1)? {
        'x' => 2,
        'u' => 4,
        'U' => 8,
        c => {
            let decoded = match c {
                '0' => '\0',
                'a' => '\u{7}',
                'b' => '\u{8}',
                't' | '\t' => '\t',
                'n' => '\n',
                'v' => '\u{b}',
                'f' => '\u{c}',
                'r' => '\r',
                'e' => '\u{1b}',
                ' ' => ' ',
                '"' => '"',
                '/' => '/',
                '\\' => '\\',
                'N' => '\u{85}',
                '_' => '\u{a0}',
                'L' => '\u{2028}',
                'P' => '\u{2029}',
                _ => return None,
            };
            return Some((decoded, 2));
        }
    };
    Some((char::from_u32(hex(text, i + 2, digits)?)?, 2 + digits))
}

#[derive(PartialEq)]
enum Chomping {
    Strip,
    Clip,
    Keep,
}

/// A literal (`|`) or folded (`>`) block scalar whose indicator is at `start`, mirroring saphyr's
/// scanner. The position past a literal block is its next line at the block's indentation, so
/// inner (L, C) is always file (first content line + L - 1, indentation + C).
fn block(text: &Text, start: usize, parent_indent: usize) -> Option<(Decoded, Pos)> {
    let literal = text.get(start)? == '|';
    let mut chomping = Chomping::Clip;
    let mut increment = 0;
    let mut i = start + 1;
    for _ in 0..2 {
        match text.get(i) {
            Some('+') => chomping = Chomping::Keep,
            Some('-') => chomping = Chomping::Strip,
            Some(c @ '1'..='9') => increment = c.to_digit(10).and_then(|d| usize::try_from(d).ok())?,
            _ => break,
        }
        i += 1;
    }
    while text.get(i).is_some() && !text.is_break(i) {
        i += 1; // blanks and a comment
    }
    if text.is_break(i) {
        i += text.break_len(i);
    }
    let header_line = text.pos(start).line;

    let mut out = Decoded::new();
    let mut trailing_breaks = Vec::new();
    let (indent, mut column) = if increment > 0 {
        let indent = parent_indent + increment;
        (indent, skip_indent(text, &mut i, indent, &mut trailing_breaks))
    } else {
        // Auto-detected: the deepest of the leading empty lines and the first content line.
        let mut deepest = 0;
        loop {
            let mut column = 0;
            while text.get(i) == Some(' ') {
                i += 1;
                column += 1;
            }
            deepest = column.max(deepest);
            if !text.is_break(i) {
                break (deepest.max(parent_indent + 1), column);
            }
            trailing_breaks.push(i);
            i += text.break_len(i);
        }
    };

    let mut leading_break: Option<usize> = None;
    let mut leading_blank = false;
    while column == indent && text.get(i).is_some() && !text.is_break(i) {
        let trailing_blank = text.is_blank(i);
        match leading_break {
            Some(b) if !literal && !leading_blank && !trailing_blank && trailing_breaks.is_empty() => {
                out.push(' ', text.pos(b))
            }
            Some(b) if literal || leading_blank || trailing_blank => out.push('\n', text.pos(b)),
            _ => {}
        }
        trailing_breaks.drain(..).for_each(|b| out.push('\n', text.pos(b)));
        leading_blank = trailing_blank;
        while let Some(c) = text.get(i).filter(|_| !text.is_break(i)) {
            out.push(c, text.pos(i));
            i += 1;
            column += 1;
        }
        if !text.is_break(i) {
            break;
        }
        leading_break = Some(i);
        i += text.break_len(i);
        column = skip_indent(text, &mut i, indent, &mut trailing_breaks);
    }
    if chomping != Chomping::Strip {
        if let Some(b) = leading_break {
            out.push('\n', text.pos(b));
        }
        if text.get(i).is_none() && column >= indent.max(1) {
            out.push('\n', text.pos(i));
        }
    }
    if chomping == Chomping::Keep {
        trailing_breaks.drain(..).for_each(|b| out.push('\n', text.pos(b)));
    }
    let end = if literal {
        Pos { line: header_line + out.inner.line, column: to_u32(indent) + out.inner.column }
    } else {
        text.pos(i)
    };
    Some((out, end))
}

/// Skips the indentation of block scalar lines and records the breaks of empty lines; returns the
/// column reached on the first line with content.
fn skip_indent(text: &Text, i: &mut usize, indent: usize, breaks: &mut Vec<usize>) -> usize {
    loop {
        let mut column = 0;
        while column < indent && text.get(*i) == Some(' ') {
            *i += 1;
            column += 1;
        }
        if !text.is_break(*i) {
            return column;
        }
        breaks.push(*i);
        *i += text.break_len(*i);
    }
}

fn hex(text: &Text, start: usize, digits: usize) -> Option<u32> {
    (start..start + digits).try_fold(0u32, |code, i| Some(code * 16 + text.get(i)?.to_digit(16)?))
}
