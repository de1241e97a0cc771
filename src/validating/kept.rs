//! Recent config checks by ConfigMap contents, all made in one environment, least recently used
//! first out. The same contents come back again and again (see [`ContentsCheck`]): a `kubectl
//! apply` retried by the API server after conflicts is checked once, and an UPDATE's old
//! contents are usually the last write's new ones. A hash picks the candidates; contents are
//! then compared in full.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::{CheckEnv, ContentsCheck};
use crate::config::configmap::ConfigMapData;
use crate::config::kind::Kind;

/// How many recent config checks a server keeps (16 writers of the one ConfigMap, each retried
/// by the API server while the others commit, bring a few dozen contents at once), and how many
/// bytes of ConfigMap contents at most: real configs are a few KiB, and a 1 MiB ConfigMap is
/// checked, not kept.
const KEPT_CHECKS: usize = 64;
const KEPT_CHECK_BYTES: usize = 256 * 1024;

#[derive(Default)]
pub(super) struct KeptChecks {
    env: CheckEnv,
    /// Least recently used first.
    checks: VecDeque<KeptCheck>,
    bytes: usize,
}

struct KeptCheck {
    hash: u64,
    kind: Kind,
    contents: Arc<ConfigMapData>,
    check: Arc<ContentsCheck>,
}

/// The hash that picks the kept checks `contents` of `kind` may have.
pub(super) fn hash(kind: Kind, contents: &ConfigMapData) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (kind, contents).hash(&mut hasher);
    hasher.finish()
}

impl KeptChecks {
    /// The kept check of `contents` (its `hash`), now the most recently used; checks kept in
    /// another environment are dropped.
    pub(super) fn get(
        &mut self,
        env: &CheckEnv,
        hash: u64,
        kind: Kind,
        contents: &ConfigMapData,
    ) -> Option<Arc<ContentsCheck>> {
        if self.env != *env {
            *self = KeptChecks { env: env.clone(), ..KeptChecks::default() };
            return None;
        }
        let at = self.checks.iter().position(|k| k.hash == hash && k.kind == kind && *k.contents == *contents)?;
        let kept = self.checks.remove(at)?;
        let check = kept.check.clone();
        self.checks.push_back(kept);
        Some(check)
    }

    /// Keeps a check made in `env`, dropping the least recently used to stay within the bounds.
    pub(super) fn keep(
        &mut self,
        env: &CheckEnv,
        hash: u64,
        kind: Kind,
        contents: &Arc<ConfigMapData>,
        check: &Arc<ContentsCheck>,
    ) {
        let bytes = contents.bytes();
        if self.env != *env || bytes > KEPT_CHECK_BYTES || self.get(env, hash, kind, contents).is_some() {
            return;
        }
        while self.checks.len() >= KEPT_CHECKS || self.bytes + bytes > KEPT_CHECK_BYTES {
            let Some(oldest) = self.checks.pop_front() else { break };
            self.bytes -= oldest.contents.bytes();
        }
        self.checks.push_back(KeptCheck { hash, kind, contents: contents.clone(), check: check.clone() });
        self.bytes += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::version::VeleroVersion;

    /// The bounds: at most KEPT_CHECKS checks and KEPT_CHECK_BYTES of contents, the least
    /// recently used out first; contents larger than the bound are checked and never kept.
    #[test]
    fn kept_checks_stay_within_their_bounds() {
        let env = CheckEnv::default();
        let contents = |value: String| {
            Arc::new(ConfigMapData { data: [("config".to_string(), value)].into(), binary_keys: Vec::new() })
        };
        let check = Arc::new(ContentsCheck::default());
        let mut kept = KeptChecks::default();
        let keep =
            |kept: &mut KeptChecks, kind: Kind, c: &Arc<ConfigMapData>| kept.keep(&env, hash(kind, c), kind, c, &check);
        let get = |kept: &mut KeptChecks, kind: Kind, c: &Arc<ConfigMapData>| kept.get(&env, hash(kind, c), kind, c);
        for n in 0..KEPT_CHECKS {
            keep(&mut kept, Kind::NodeAgent, &contents(n.to_string()));
        }
        assert!(get(&mut kept, Kind::NodeAgent, &contents("0".into())).is_some(), "used again: now the most recent");
        keep(&mut kept, Kind::NodeAgent, &contents(KEPT_CHECKS.to_string()));
        assert_eq!(kept.checks.len(), KEPT_CHECKS);
        assert!(get(&mut kept, Kind::NodeAgent, &contents("1".into())).is_none(), "the least recently used is dropped");
        assert!(get(&mut kept, Kind::NodeAgent, &contents("0".into())).is_some());
        assert!(get(&mut kept, Kind::RepoMaintenance, &contents("2".into())).is_none(), "kinds are apart");

        let half = contents("x".repeat(KEPT_CHECK_BYTES / 2));
        keep(&mut kept, Kind::NodeAgent, &half);
        keep(&mut kept, Kind::NodeAgent, &contents("y".repeat(KEPT_CHECK_BYTES / 2)));
        assert!(kept.bytes <= KEPT_CHECK_BYTES, "{} bytes kept", kept.bytes);
        assert_eq!(kept.bytes, kept.checks.iter().map(|k| k.contents.bytes()).sum::<usize>());
        assert!(get(&mut kept, Kind::NodeAgent, &half).is_none(), "older contents make room");
        let too_large = contents("z".repeat(KEPT_CHECK_BYTES));
        keep(&mut kept, Kind::NodeAgent, &too_large);
        assert!(get(&mut kept, Kind::NodeAgent, &too_large).is_none());

        let other = CheckEnv { velero_version: Some(VeleroVersion::new(1, 18, 1)), ..CheckEnv::default() };
        let last = contents("y".repeat(KEPT_CHECK_BYTES / 2));
        assert!(kept.get(&other, hash(Kind::NodeAgent, &last), Kind::NodeAgent, &last).is_none());
        assert_eq!((kept.checks.len(), kept.bytes), (0, 0), "another environment drops every kept check");
    }
}
