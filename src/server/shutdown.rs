//! Shutdown on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C), as linkerd's kubert does
//! it (`kubert/src/shutdown.rs`): the first signal drains every task made from the one
//! [`Drain`] (the listeners, the watches); a second one before the work is done is an error
//! the caller returns at once, for an operator pressing Ctrl-C again or anyone who will not
//! wait for the drain.

use std::future::Future;
use std::pin::Pin;

use futures::{Stream, StreamExt};

use super::drain::{self, Drain, Trigger};

/// A second signal came before the drain was done.
#[derive(Debug, thiserror::Error)]
#[error("a second shutdown signal: stopped without draining")]
pub struct Aborted;

/// Watches the signals, and drains on the first.
pub struct Shutdown {
    signals: Pin<Box<dyn Stream<Item = ()> + Send>>,
    trigger: Trigger,
}

/// The shutdown of this process, by SIGTERM or SIGINT, and the drain it signals. Needs a
/// running tokio runtime.
pub fn on_signals() -> (Shutdown, Drain) {
    let signals = futures::stream::unfold(Signals::new(), |mut signals| async move {
        signals.next().await;
        Some(((), signals))
    });
    with_signals(signals)
}

/// A shutdown by each item of `signals`.
pub fn with_signals(signals: impl Stream<Item = ()> + Send + 'static) -> (Shutdown, Drain) {
    let (trigger, drain) = drain::channel();
    (Shutdown { signals: Box::pin(signals), trigger }, drain)
}

impl Shutdown {
    /// Runs `work` to its end: at the first signal every [`Drain`] is told to stop, and `work`
    /// (which should stop on its own drain) runs on; a second signal gives up on it. The drain
    /// is signalled as well when `work` ends first, so nothing made from it outlives the call.
    pub async fn run<T>(mut self, work: impl Future<Output = T>) -> Result<T, Aborted> {
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => return Ok(done),
            Some(()) = self.signals.next() => {}
        }
        tracing::info!("shutdown signal: draining");
        self.trigger.drain();
        tokio::select! {
            done = work => Ok(done),
            Some(()) = self.signals.next() => {
                tracing::warn!("second shutdown signal: stopping without draining");
                Err(Aborted)
            }
        }
    }
}

/// SIGTERM and SIGINT, as many times as they come.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .inspect_err(
                    |err| tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server"),
                )
                .ok();
            Self { term }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            tokio::select! {
                () = ctrl_c() => {},
                _ = term.recv() => {},
            }
            return;
        }
        ctrl_c().await;
    }
}

/// Resolves on SIGINT; never, when it cannot be listened for (a failed listener is no signal).
async fn ctrl_c() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %err, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    #[tokio::test]
    async fn work_that_ends_first_is_the_answer_and_drains() {
        let (_signal, signals) = mpsc::unbounded::<()>();
        let (shutdown, drain) = with_signals(signals);
        assert_eq!(shutdown.run(async { 7 }).await.ok(), Some(7));
        drain.signaled().await;
    }

    #[tokio::test]
    async fn the_first_signal_drains_and_the_work_runs_to_its_end() {
        let (signal, signals) = mpsc::unbounded::<()>();
        let (shutdown, drain) = with_signals(signals);
        let work = async move {
            drain.signaled().await;
            "drained"
        };
        let _ = signal.unbounded_send(());
        assert_eq!(shutdown.run(work).await.ok(), Some("drained"));
    }

    #[tokio::test]
    async fn a_second_signal_is_an_error() {
        let (signal, signals) = mpsc::unbounded::<()>();
        let (shutdown, _drain) = with_signals(signals);
        let _ = signal.unbounded_send(());
        let _ = signal.unbounded_send(());
        assert!(shutdown.run(std::future::pending::<()>()).await.is_err());
    }
}
