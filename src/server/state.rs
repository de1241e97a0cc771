//! What the request handlers share: the live config, what is known about the cluster,
//! readiness, and metrics. Reads are a lock-free-in-practice `RwLock` read plus an `Arc` clone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::registry::Registry;

use crate::admission::{Decision, Request};
use crate::config::model::NodeAgentConfig;
use crate::config::validate::Environment;
use crate::config::version::VeleroVersion;
use crate::metrics::Metrics;
use crate::validating::{review_configmap, Target};

/// The config the mutating webhook applies, and which load it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveConfig {
    /// Counts successful loads from 1; 0 means nothing was loaded (no settings).
    pub generation: u64,
    pub config: NodeAgentConfig,
}

pub struct AppState {
    pub target: Target,
    pub metrics: Metrics,
    pub registry: Registry,
    velero_version: RwLock<Option<VeleroVersion>>,
    priority_classes: RwLock<Option<Arc<HashSet<String>>>>,
    live: RwLock<Arc<LiveConfig>>,
    config_read: AtomicBool,
    shutting_down: AtomicBool,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

impl AppState {
    pub fn new(target: Target, velero_version: Option<VeleroVersion>) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        Self {
            target,
            metrics,
            registry,
            velero_version: RwLock::new(velero_version),
            priority_classes: RwLock::new(None),
            live: RwLock::new(Arc::new(LiveConfig::default())),
            config_read: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn validate(&self, request: &Request) -> Decision {
        let classes = read(&self.priority_classes);
        let env = Environment { velero_version: read(&self.velero_version), priority_classes: classes.as_deref() };
        review_configmap(request, &self.target, &env)
    }

    pub async fn mutate(&self, _request: &Request) -> Decision {
        Decision::allow()
    }

    pub fn live_config(&self) -> Arc<LiveConfig> {
        read(&self.live)
    }

    /// Installs a newly loaded config (or none, for a missing ConfigMap) and marks the source read.
    pub fn set_live_config(&self, live: LiveConfig) {
        self.metrics.config_generation.set(live.generation as i64);
        write(&self.live, Arc::new(live));
        self.config_read.store(true, Ordering::SeqCst);
    }

    /// The source was read, but gave nothing usable: keep serving what we have.
    pub fn mark_config_read(&self) {
        self.config_read.store(true, Ordering::SeqCst);
    }

    pub fn set_velero_version(&self, version: Option<VeleroVersion>) {
        write(&self.velero_version, version);
    }

    pub fn set_priority_classes(&self, classes: Option<Arc<HashSet<String>>>) {
        write(&self.priority_classes, classes);
    }

    pub fn priority_classes(&self) -> Option<Arc<HashSet<String>>> {
        read(&self.priority_classes)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Ready once the config source was read and until shutdown begins. (The certificate is
    /// loaded before the listener exists, so a listening server always has one.)
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if !self.config_read.load(Ordering::SeqCst) {
            return Err("config source not read yet");
        }
        Ok(())
    }
}
