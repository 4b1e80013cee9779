//! Hot reload of the configuration, on SIGHUP and when the configuration file changes (see
//! [`triggers`]). The configuration is read and validated again: an invalid one changes
//! nothing; in a valid one, the keys under [`RELOADABLE`] but not [`FIXED`] take effect at
//! once (rate-limit, quota and health-check defaults, login throttling, the log filter) and
//! any other changed key is named in a warning as needing a restart. Each reload is logged and audited as `config.reloaded` with the names
//! of the keys (never their values) changed, applied and needing a restart, or the error.

pub mod triggers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::{json, Value};

use crate::changes::audit::AuditEntry;
use crate::config::{Config, LimitsConfig, ValidConfig};
use crate::domain::live::Live;
use crate::identity::address_failures::AddressFailures;
use crate::identity::lockout::LockoutPolicy;
use crate::limits::quota::QuotaPolicy;
use crate::routing::pool::HealthCheckSettings;
use crate::store::Store;

/// The sections whose keys a reload applies.
pub const RELOADABLE: &[&str] = &["limits", "quotas", "login", "log", "pools.health_check"];

/// Keys of those sections that are read once at start (sizes of what the process built).
pub const FIXED: &[&str] = &[
    "limits.max_envoys",
    "limits.refusal_audits_per_minute",
    "log.format",
];

/// Sets the process's log filter while it runs (`log.level`).
pub trait LogFilter: Send + Sync {
    /// Replaces the filter with `filter` (already validated), or with the one the process
    /// started with when `None`.
    fn set(&self, filter: Option<&str>) -> Result<(), String>;
}

/// The settings a reload replaces, shared with whatever reads them.
#[derive(Clone)]
pub struct LiveSettings {
    pub limits: Live<LimitsConfig>,
    /// The health checks of pools without settings of their own.
    pub default_health_check: Live<HealthCheckSettings>,
    pub quotas: Live<QuotaPolicy>,
    pub lockout: Live<LockoutPolicy>,
    pub address_failures: AddressFailures,
}

impl LiveSettings {
    fn apply(&self, config: &ValidConfig) {
        let login = &config.raw.login;
        self.limits.set(config.raw.limits.clone());
        self.default_health_check.set(config.raw.pools.health_check);
        self.quotas.set(config.quota_policy);
        self.lockout.set(login.lockout_policy());
        self.address_failures.set_budget(
            login.address_failures_per_hour,
            login.address_failures_burst,
        );
    }
}

/// The log filter when neither `log.level` nor `TOLLGATE_LOG` sets one.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// What one reload did: the keys by name, as written in the YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    pub changed: Vec<String>,
    pub applied: Vec<String>,
    pub needs_restart: Vec<String>,
    /// Why the configuration was refused; then nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reloads the configuration from where the process read it at start.
pub struct Reloader {
    file: Option<PathBuf>,
    /// The configuration in effect, as JSON: what a reload compares against.
    running: Mutex<Value>,
    live: LiveSettings,
    log: Arc<dyn LogFilter>,
    store: Arc<dyn Store>,
}

impl Reloader {
    pub fn new(
        file: Option<PathBuf>,
        running: &ValidConfig,
        live: LiveSettings,
        log: Arc<dyn LogFilter>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            file,
            running: Mutex::new(encoded(running)),
            live,
            log,
            store,
        }
    }

    /// Reads, validates and applies the configuration once; logs and audits the result.
    pub async fn reload(&self) -> Reloaded {
        let reloaded = match Config::load(self.file.as_deref()) {
            Ok(config) => self.apply(&config),
            Err(error) => Reloaded {
                error: Some(error.to_string()),
                ..Reloaded::default()
            },
        };
        report(&reloaded);
        let target = self.file.as_ref().map_or_else(
            || "environment".to_string(),
            |file| file.display().to_string(),
        );
        let audit = AuditEntry::new(None, "config.reloaded", &target, json!(reloaded));
        if let Err(error) = self.store.record_audit(&audit).await {
            tracing::warn!(%error, "cannot audit a configuration reload");
        }
        reloaded
    }

    fn apply(&self, config: &ValidConfig) -> Reloaded {
        let new = encoded(config);
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = changed_keys(&running, &new);
        let (applied, needs_restart): (Vec<String>, Vec<String>) =
            changed.iter().cloned().partition(|key| reloadable(key));
        if applied.iter().any(|key| section(key) == "log") {
            if let Err(error) = self.log.set(Some(&config.raw.log.level)) {
                tracing::warn!(%error, "cannot change the log filter");
            }
        }
        if !applied.is_empty() {
            self.live.apply(config);
            for key in &applied {
                take_leaf(&mut running, &new, key);
            }
        }
        Reloaded {
            changed,
            applied,
            needs_restart,
            error: None,
        }
    }
}

fn report(reloaded: &Reloaded) {
    if let Some(error) = &reloaded.error {
        tracing::warn!(%error, "configuration reload refused; nothing changed");
        return;
    }
    for key in &reloaded.needs_restart {
        tracing::warn!(
            key,
            "configuration key changed but needs a restart to take effect"
        );
    }
    tracing::info!(
        applied = ?reloaded.applied,
        needs_restart = ?reloaded.needs_restart,
        "configuration reloaded"
    );
}

fn encoded(config: &ValidConfig) -> Value {
    serde_json::to_value(&config.raw).unwrap_or_else(|_| unreachable!("the configuration encodes"))
}

/// Whether a reload applies the dotted `key`.
fn reloadable(key: &str) -> bool {
    let within = |section: &&str| {
        key.strip_prefix(*section)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    RELOADABLE.iter().any(within) && !FIXED.contains(&key)
}

/// The top-level section of a dotted key.
fn section(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}

/// Sets the leaf at the dotted `key` of `running` to its value in `new`, or removes it
/// when `new` has none; a path that is not made of objects in `running` is left as it is.
fn take_leaf(running: &mut Value, new: &Value, key: &str) {
    let mut path: Vec<&str> = key.split('.').collect();
    let Some(leaf) = path.pop() else { return };
    let (mut into, mut from) = (running, Some(new));
    for name in path {
        from = from.and_then(|value| value.get(name));
        match into.get_mut(name) {
            Some(next) => into = next,
            None => return,
        }
    }
    let Some(fields) = into.as_object_mut() else {
        return;
    };
    match from.and_then(|value| value.get(leaf)) {
        Some(value) => {
            fields.insert(leaf.to_string(), value.clone());
        }
        None => {
            fields.remove(leaf);
        }
    }
}

/// The dotted keys whose values differ between `old` and `new`, in order.
fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let (mut old_keys, mut new_keys) = (BTreeMap::new(), BTreeMap::new());
    flatten("", old, &mut old_keys);
    flatten("", new, &mut new_keys);
    let mut changed: Vec<String> = new_keys
        .iter()
        .filter(|(key, value)| old_keys.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect();
    changed.extend(
        old_keys
            .keys()
            .filter(|key| !new_keys.contains_key(*key))
            .cloned(),
    );
    changed.sort();
    changed
}

/// Every leaf of `value` (a scalar or a list) under its dotted key.
fn flatten<'a>(prefix: &str, value: &'a Value, leaves: &mut BTreeMap<String, &'a Value>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&key, field, leaves);
            }
        }
        leaf => {
            leaves.insert(prefix.to_string(), leaf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_named_by_their_dotted_path() {
        let old =
            json!({"http": {"listen": "127.0.0.1:1"}, "quotas": {"defaults": {"a": 1, "b": null}}});
        let new =
            json!({"http": {"listen": "127.0.0.1:2"}, "quotas": {"defaults": {"a": 1, "b": 5}}});
        assert_eq!(
            changed_keys(&old, &new),
            ["http.listen", "quotas.defaults.b"]
        );
        assert!(changed_keys(&new, &new).is_empty());
    }

    #[test]
    fn a_reload_takes_the_changed_leaves_it_applies_and_keeps_the_fixed_ones() {
        assert!(reloadable("limits.user.requests_per_minute"));
        assert!(!reloadable("limits.max_envoys"));
        assert!(!reloadable("http.listen"));
        assert!(reloadable("pools.health_check.interval_secs"));
        assert!(!reloadable("pools.max_backends"));
        assert!(!reloadable("logins.x"));
        assert!(!reloadable("log.format"));
        let mut running = json!({"limits": {"max_envoys": 1, "user": {"burst": 2, "gone": 3}}});
        let new = json!({"limits": {"max_envoys": 9, "user": {"burst": 5}}});
        for key in ["limits.user.burst", "limits.user.gone"] {
            take_leaf(&mut running, &new, key);
        }
        assert_eq!(
            running,
            json!({"limits": {"max_envoys": 1, "user": {"burst": 5}}})
        );
        let mut scalar = json!({"a": 1});
        take_leaf(&mut scalar, &json!({"a": {"b": 2}}), "a.b");
        assert_eq!(
            scalar,
            json!({"a": 1}),
            "a path through a scalar is left alone"
        );
    }
}
