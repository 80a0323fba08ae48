//! SIGHUP: re-read the configuration, apply what can change in place, name what cannot.

use anyhow::Context;
use postagent_core::Config;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};

/// Re-reads the configuration the way the process first read it (SIGHUP).
pub type Reload = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Settings a SIGHUP applies to the running process; every other change needs a restart.
const RELOADABLE: &[&str] = &["log_level"];

/// Compares the running configuration with a re-read one: applies what can change in place,
/// reports what needs a restart (by key only: values may be secrets), and returns the
/// configuration now in force.
pub fn apply_reload(running: &Config, new: Config) -> Config {
    let (old, fresh) = (running.table(), new.table());
    let changed: Vec<String> =
        fresh.iter().filter(|(k, v)| old.get(k.as_str()) != Some(v)).map(|(k, _)| k.clone()).collect();
    if changed.is_empty() {
        tracing::info!("configuration reloaded: nothing changed");
        return new;
    }
    let mut applied = running.clone();
    if changed.iter().any(|k| k == "log_level") {
        match crate::logging::set_level(&new.log_level) {
            Ok(()) => {
                tracing::info!(
                    "configuration reloaded: log_level {:?} -> {:?}",
                    running.log_level,
                    new.log_level
                );
                applied.log_level = new.log_level.clone();
            }
            Err(e) => tracing::warn!("configuration reload: log_level not applied: {e:#}"),
        }
    }
    let restart: Vec<&str> = changed.iter().map(String::as_str).filter(|k| !RELOADABLE.contains(k)).collect();
    if !restart.is_empty() {
        tracing::warn!(
            "configuration reloaded: {} changed but only take effect after a restart (systemctl restart postagent); still running with the old values",
            restart.join(", ")
        );
    }
    applied
}

/// Waits for SIGHUP and reloads, until the process stops.
pub(super) fn reload_on_hangup(config: Config, reload: Reload) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        let mut running = config;
        while hup.recv().await.is_some() {
            crate::notify::notify("RELOADING=1");
            match reload() {
                Ok(new) => running = apply_reload(&running, new),
                Err(e) => {
                    tracing::warn!("configuration reload refused: {e}; keeping the running configuration")
                }
            }
            crate::notify::notify("READY=1");
        }
    });
    Ok(())
}
