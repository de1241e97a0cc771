//! Per-connection read deadlines, as Go's `http.Server` applies them (`ReadHeaderTimeout`,
//! `IdleTimeout`): a new connection must start a request within the header timeout, a
//! request's headers must arrive within the header timeout of its first byte, and a kept-alive
//! connection may sit idle between requests for the (much longer) idle timeout.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its
//! next request, so it would cut off the API server's idle connections after a few seconds;
//! this wrapper replaces it. Request bodies are bounded by the request timeout in the handler.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected, no byte of a request yet.
    Fresh,
    /// A response was written; waiting for the next request.
    Idle,
    /// Reading request headers (HTTP/1.1) since the first byte.
    Headers,
    /// Headers complete (or HTTP/2): the handler and request timeout are in charge.
    Busy,
}

/// Wraps a connection's IO with the deadlines above.
pub struct TimedIo<T> {
    inner: T,
    http1: bool,
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Phase,
    phase_since: Instant,
    /// The last bytes read, to find the blank line that ends headers across reads.
    tail: [u8; 3],
    sleep: Pin<Box<Sleep>>,
}

impl<T> TimedIo<T> {
    /// `http1` enables header tracking; HTTP/2 connections only get the idle deadline.
    pub fn new(inner: T, http1: bool, header_timeout: Duration, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            http1,
            header_timeout,
            idle_timeout,
            phase: Phase::Fresh,
            phase_since: now,
            tail: [0; 3],
            sleep: Box::pin(tokio::time::sleep_until(now + header_timeout)),
        }
    }

    fn enter(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.phase_since = Instant::now();
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Fresh | Phase::Headers => Some(self.phase_since + self.header_timeout),
            Phase::Idle => Some(self.phase_since + self.idle_timeout),
            Phase::Busy => None,
        }
    }

    /// A response is being written: the connection is idle until the next request starts.
    fn wrote(&mut self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) && self.http1 {
            self.enter(Phase::Idle);
        }
    }

    /// Tracks the request phase from the bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Fresh | Phase::Idle) {
            self.tail = [0; 3];
            self.enter(if self.http1 { Phase::Headers } else { Phase::Busy });
        }
        if self.phase == Phase::Headers && ends_headers(&mut self.tail, bytes) {
            self.enter(Phase::Busy);
        }
    }
}

/// Whether `bytes` (following `tail`) contain the `\r\n\r\n` that ends HTTP/1 headers.
fn ends_headers(tail: &mut [u8; 3], bytes: &[u8]) -> bool {
    let mut window = u32::from_be_bytes([0, tail[0], tail[1], tail[2]]);
    for &b in bytes {
        window = (window << 8) | u32::from(b);
        if window == u32::from_be_bytes(*b"\r\n\r\n") {
            return true;
        }
    }
    let [_, a, b, c] = window.to_be_bytes();
    *tail = [a, b, c];
    false
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some(deadline) = self.deadline() else { return Poll::Pending };
                if self.sleep.deadline() != deadline {
                    self.sleep.as_mut().reset(deadline);
                }
                match self.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no complete request headers within the deadline ({:?})", self.phase),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    /// Forwarded, or h2 would write HEADERS and DATA as two TLS records and two syscalls.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Parses a Go-style duration as operators write them in manifests and as the API server
/// sends `?timeout=`: `500ms`, `5s`, `1m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_headers_across_reads() {
        let cases: &[(&[&[u8]], bool)] = &[
            (&[b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"], true),
            (&[b"GET / HTTP/1.1\r\nhost: x\r\n", b"\r\n"], true),
            (&[b"GET / HTTP/1.1\r\nhost: x\r", b"\n\r", b"\n"], true),
            (&[b"GET / HTTP/1.1\r\nhost: x\r\n"], false),
            (&[b"\r\n\r", b"x\n"], false),
        ];
        for (reads, want) in cases {
            let mut tail = [0; 3];
            let found = reads.iter().any(|r| ends_headers(&mut tail, r));
            assert_eq!(found, *want, "{reads:?}");
        }
    }
}
