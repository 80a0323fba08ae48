//! Logging to stderr (journald picks it up under systemd), plain or JSON.

use postagent_core::Config;
use tracing_subscriber::EnvFilter;

pub fn init(config: &Config) -> anyhow::Result<()> {
    // RUST_LOG wins over the configured level, for one-off debugging.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&config.log_level)
            .map_err(|e| anyhow::anyhow!("log_level {:?}: {e}", config.log_level))?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = if config.log_format == "json" {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.with_target(false).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("{e}"))
}
