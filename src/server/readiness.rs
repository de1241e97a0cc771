//! `/readyz`: ready once the config source was read, until shutdown begins. Its own handle,
//! so the config source, the shutdown sequence and the probe share two flags and nothing else.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Readiness {
    config_read: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    /// The config source was read once, whatever it held (a missing or invalid config counts,
    /// or the validating webhook could never admit the fix).
    pub fn mark_config_read(&self) {
        self.config_read.store(true, Ordering::SeqCst);
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// SIGTERM was received: the pod is on its way out.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Ready, or why not. (The certificate is loaded before the listener exists, so a
    /// listening server always has one.)
    pub fn check(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if !self.config_read.load(Ordering::SeqCst) {
            return Err("config source not read yet");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_between_the_first_read_and_shutdown() {
        let readiness = Readiness::default();
        assert_eq!(readiness.check(), Err("config source not read yet"));
        readiness.mark_config_read();
        assert_eq!(readiness.check(), Ok(()));
        assert!(!readiness.shutting_down());
        readiness.begin_shutdown();
        assert_eq!(readiness.check(), Err("shutting down"));
        assert!(readiness.shutting_down());
    }
}
