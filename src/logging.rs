//! Log set-up and the JSON line format.
//!
//! The server logs one line per admission, so the line format is on the hot path.
//! tracing-subscriber's JSON formatter sends every field through serde and `fmt::Write` one
//! piece at a time (about 22k instructions a line, 5 % of a `/mutate` review). `JsonLines`
//! writes the same flattened shape (`timestamp`, `level`, the fields, `target`) straight
//! into the line buffer.
//!
//! The finished line is not written on the request path either: with a `write(2)` per line
//! to a file, a `/mutate` review cost 13 % more CPU and the server answered half as many
//! (bench/RESULTS.md, issue 25). The line goes over a bounded channel to a writer thread,
//! which writes what has queued up in one `write(2)`.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Lines the writer thread may lag behind by before a logging thread waits for it. The channel
/// allocates its slots up front (32 bytes each), so the default of 128,000 would add 4 MB of
/// resident memory; 4,096 lines are a quarter of a second of reviews at full load.
const QUEUED_LINES: usize = 4096;
/// The writer thread's buffer: the lines queued at one wake-up go out in one `write(2)`.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Keeps the writer thread: dropping it writes out every queued line (waiting at most a
/// second for a blocked stderr), so the process holds it until it exits.
pub type Guard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber: `filter` is a `RUST_LOG`-style directive string.
///
/// Not lossy: when the writer thread falls [`QUEUED_LINES`] behind (stderr blocked), a logging
/// thread waits, as it waited on `write(2)` before, rather than drop an admission's line.
pub fn init(json: bool, filter: tracing_subscriber::EnvFilter) -> Guard {
    let (writer, guard) = writer_thread(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if json {
        builder.with_ansi(false).event_format(JsonLines).init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    guard
}

/// The writer thread over `out`, and its guard.
fn writer_thread<W: std::io::Write + Send + 'static>(out: W) -> (tracing_appender::non_blocking::NonBlocking, Guard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, out))
}

/// One JSON object per event: `{"timestamp":…,"level":…,<fields>,"target":…}`, plus
/// `"spans"` (name and fields of each enclosing span, outermost first) inside spans.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", metadata.level())?;
        let mut fields = JsonFields { out: &mut writer, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        if let Some(scope) = ctx.event_scope() {
            writer.write_str(",\"spans\":[")?;
            for (i, span) in scope.from_root().enumerate() {
                writer.write_str(if i == 0 { "\"" } else { ",\"" })?;
                let mut escaped = Escaped(&mut writer);
                escaped.write_str(span.name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>().filter(|f| !f.is_empty()) {
                    write!(escaped, "{{{fields}}}")?;
                }
                writer.write_char('"')?;
            }
            writer.write_char(']')?;
        }
        writer.write_str(",\"target\":\"")?;
        Escaped(&mut writer).write_str(metadata.target())?;
        writer.write_str("\"}\n")
    }
}

/// Writes each field as `,"name":value`.
struct JsonFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    /// Writes `,"name":` and then the value, unless an earlier write failed.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .out
                .write_str(",\"")
                .and_then(|()| Escaped(&mut *self.out).write_str(field.name()))
                .and_then(|()| self.out.write_str("\":"))
                .and_then(|()| value(self.out));
        }
    }
}

/// Writes a JSON string whose inside `inside` writes (escaped as it goes).
fn quoted(out: &mut Writer<'_>, inside: impl FnOnce(&mut Escaped<'_, Writer<'_>>) -> fmt::Result) -> fmt::Result {
    out.write_char('"')?;
    inside(&mut Escaped(&mut *out))?;
    out.write_char('"')
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| quoted(out, |inside| inside.write_str(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| if value.is_finite() { write!(out, "{value}") } else { out.write_str("null") });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| quoted(out, |inside| write!(inside, "{value:?}")));
    }
}

/// A `fmt::Write` that escapes what it is given as the inside of a JSON string.
struct Escaped<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = captured.0.lock().map(|out| String::from_utf8_lossy(&out).into_owned()).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
    }

    /// A test double: a sink that takes 2 ms a write, so lines queue up behind it.
    struct Slow(Captured);

    impl std::io::Write for Slow {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(2));
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines are queued faster than the slow sink takes them; dropping the guard (what `main`
    /// does last) still writes every one, in order, before it returns.
    #[test]
    fn dropping_the_guard_writes_every_queued_line() {
        let captured = Captured::default();
        let (writer, guard) = writer_thread(Slow(captured.clone()));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(writer)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..500_u64 {
                tracing::info!(n, "admission");
            }
        });
        drop(guard);
        let text = captured.0.lock().map(|out| String::from_utf8_lossy(&out).into_owned()).unwrap_or_default();
        let numbers: Vec<u64> = text
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .filter_map(|line| line["n"].as_u64())
            .collect();
        assert_eq!(numbers, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn writes_one_json_object_per_event_with_every_field_type() {
        let lines = lines(|| {
            let error = std::io::Error::other("disk \"full\"");
            tracing::info!(uid = "u-1", allowed = true, warnings = 2_u64, delta = -3_i64, ratio = 0.5, nan = f64::NAN,
                name = %"a\tb\u{1}", error = %error, "admission");
            let span = tracing::info_span!("reload", file = "tls.crt");
            span.in_scope(|| tracing::warn!("line \"two\"\nwith a break"));
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = &lines[0];
        assert!(first["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
        let fields = serde_json::json!({"level": "INFO", "message": "admission", "uid": "u-1", "allowed": true,
            "warnings": 2, "delta": -3, "ratio": 0.5, "nan": null, "name": "a\tb\u{1}", "error": "disk \"full\"",
            "target": "node_agent_webhook::logging::tests"});
        for (key, want) in fields.as_object().into_iter().flatten() {
            assert_eq!(&first[key], want, "{key} in {first}");
        }
        let second = &lines[1];
        assert_eq!(second["level"], "WARN");
        assert_eq!(second["message"], "line \"two\"\nwith a break");
        assert_eq!(second["spans"], serde_json::json!(["reload{file=\"tls.crt\"}"]));
    }
}
