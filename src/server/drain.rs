//! The one drain signal of the server: its listeners and its background tasks (config and
//! certificate watches) are told to stop when shutdown comes (`shutdown`), and are awaited,
//! rather than aborted from outside.

use std::future::Future;

use tokio::sync::watch;

/// Tells every [`Drain`] made from it to stop. Dropping it does too, so a task can never
/// outlive the server that started it.
pub struct Trigger(watch::Sender<bool>);

/// The receiving side, one clone per task.
#[derive(Clone)]
pub struct Drain(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Drain) {
    let (sender, receiver) = watch::channel(false);
    (Trigger(sender), Drain(receiver))
}

impl Trigger {
    pub fn drain(&self) {
        // No receiver left means every task is already gone.
        let _ = self.0.send(true);
    }
}

impl Drain {
    /// Resolves once the drain is signalled; a dropped trigger is a drain too.
    pub async fn signaled(mut self) {
        let _ = self.0.wait_for(|drained| *drained).await;
    }

    /// Runs `work` until it ends or the drain is signalled, whichever comes first; the work
    /// stops at an await point, between two steps of its loop.
    pub async fn run<F: Future<Output = ()>>(self, work: F) {
        tokio::select! {
            () = work => {}
            () = self.signaled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drained_task_stops_and_can_be_awaited() {
        let (trigger, drain) = channel();
        let task = tokio::spawn(drain.run(std::future::pending()));
        trigger.drain();
        assert!(task.await.is_ok(), "the task ended by itself, not by abort");
    }

    #[tokio::test]
    async fn dropping_the_trigger_drains_too() {
        let (trigger, drain) = channel();
        let task = tokio::spawn(drain.run(std::future::pending()));
        drop(trigger);
        assert!(task.await.is_ok());
    }

    #[tokio::test]
    async fn work_that_ends_first_ends_the_task() {
        let (_trigger, drain) = channel();
        drain.run(async {}).await;
    }
}
