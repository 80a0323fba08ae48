//! `postagent`: one binary for every role and for the operator's tooling.
//!
//! `main` only parses flags, loads the configuration, sets up logging and hands over to a
//! command; the libraries do the work.

mod admin;
mod doctor;
mod lab;
mod listen;
mod logging;
mod notify;
mod postfix;
mod serve;
mod verify;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use postagent_core::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "postagent", version, about = "Authenticated email inboxes for AI agents, on your Postfix")]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

/// Configuration overrides; each is also a key in the TOML file and a `POSTAGENT_*` variable.
#[derive(Args, Default)]
struct GlobalFlags {
    /// Configuration file (default: /etc/postagent/postagent.toml when it exists).
    #[arg(long, global = true, env = "POSTAGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the SQLite file and the generated secret.
    #[arg(long, global = true)]
    data_dir: Option<String>,
    /// sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// REST API listener: HOST:PORT or unix:PATH.
    #[arg(long, global = true)]
    api_listen: Option<String>,
    /// Milter listener: HOST:PORT or unix:PATH.
    #[arg(long, global = true)]
    milter_listen: Option<String>,
    /// LMTP listener: HOST:PORT or unix:PATH.
    #[arg(long, global = true)]
    lmtp_listen: Option<String>,
    /// Base URL clients use to reach the API.
    #[arg(long, global = true)]
    public_url: Option<String>,
    /// Domain on which agents may be created by slug.
    #[arg(long, global = true)]
    shared_domain: Option<String>,
    /// File holding the deployment HMAC secret (created when absent).
    #[arg(long, global = true)]
    hmac_secret_file: Option<String>,
    /// DNS server for lookups, IP or IP:PORT (default: the system resolver).
    #[arg(long, global = true)]
    dns_server: Option<String>,
    /// Host name agent domains must point their MX at.
    #[arg(long, global = true)]
    mail_hostname: Option<String>,
    /// Upper bound of one DNS lookup, e.g. 5s.
    #[arg(long, global = true)]
    dns_timeout: Option<String>,
    /// Grace for in-flight requests after SIGTERM/SIGINT, e.g. 30s.
    #[arg(long, global = true)]
    shutdown_timeout: Option<String>,
    /// Pooled database connections per process.
    #[arg(long, global = true)]
    database_max_connections: Option<String>,
    /// Largest message the milter and the LMTP server accept, in bytes.
    #[arg(long, global = true)]
    max_message_bytes: Option<String>,
    /// Webhook URL rules: production (HTTPS, public addresses) or development (also http://
    /// and loopback receivers).
    #[arg(long, global = true)]
    webhook_mode: Option<String>,
    /// Delays between webhook tries, e.g. 1m,5m,15m.
    #[arg(long, global = true)]
    webhook_retry_schedule: Option<String>,
    /// Upper bound of one webhook POST, e.g. 15s.
    #[arg(long, global = true)]
    webhook_timeout: Option<String>,
    /// Postfix's originating listener for outbound mail, HOST:PORT.
    #[arg(long, global = true)]
    submission_relay: Option<String>,
    /// Delays between submission tries after a temporary failure, e.g. 1m,5m,1h.
    #[arg(long, global = true)]
    submission_retry_schedule: Option<String>,
    /// How often expired review holds are swept, e.g. 60s.
    #[arg(long, global = true)]
    hold_sweep_interval: Option<String>,
    /// Prometheus metrics listener, HOST:PORT (loopback); empty disables it.
    #[arg(long, global = true)]
    metrics_listen: Option<String>,
    /// stderr or syslog.
    #[arg(long, global = true)]
    log_target: Option<String>,
    /// WebSocket keepalive ping interval, e.g. 30s.
    #[arg(long, global = true)]
    ws_ping_interval: Option<String>,
    /// plain or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// A tracing filter such as info or postagent=debug.
    #[arg(long, global = true)]
    log_level: Option<String>,
}

impl GlobalFlags {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("data_dir", &self.data_dir),
            ("database_url", &self.database_url),
            ("api_listen", &self.api_listen),
            ("milter_listen", &self.milter_listen),
            ("lmtp_listen", &self.lmtp_listen),
            ("public_url", &self.public_url),
            ("shared_domain", &self.shared_domain),
            ("hmac_secret_file", &self.hmac_secret_file),
            ("dns_server", &self.dns_server),
            ("mail_hostname", &self.mail_hostname),
            ("dns_timeout", &self.dns_timeout),
            ("shutdown_timeout", &self.shutdown_timeout),
            ("database_max_connections", &self.database_max_connections),
            ("max_message_bytes", &self.max_message_bytes),
            ("webhook_mode", &self.webhook_mode),
            ("webhook_retry_schedule", &self.webhook_retry_schedule),
            ("webhook_timeout", &self.webhook_timeout),
            ("submission_relay", &self.submission_relay),
            ("submission_retry_schedule", &self.submission_retry_schedule),
            ("hold_sweep_interval", &self.hold_sweep_interval),
            ("metrics_listen", &self.metrics_listen),
            ("log_target", &self.log_target),
            ("ws_ping_interval", &self.ws_ping_interval),
            ("log_format", &self.log_format),
            ("log_level", &self.log_level),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (the default for a single host).
    Serve,
    /// Run the REST API role alone.
    Api,
    /// Run the milter role alone (SPF/DKIM/DMARC, signed headers, RCPT checks).
    Milter,
    /// Run the LMTP delivery role alone.
    Lmtp,
    /// Run the webhook delivery worker alone (any number of replicas may run it).
    Worker,
    /// Follow an agent's inbox over the WebSocket stream: print each message, or POST it to
    /// a local URL (for agents without a public URL).
    Listen(listen::ListenArgs),
    /// Operator tasks against the configured database.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Check a live installation end to end; each finding says what is wrong and the fix.
    Doctor(doctor::DoctorArgs),
    /// Plug postagent into Postfix (main.cf and master.cf via postconf), or unplug it.
    #[command(subcommand)]
    Postfix(postfix::PostfixCommand),
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Start a private Postfix, a test DNS zone and every postagent role on loopback, and
    /// print the swaks command that delivers a verified message (needs root and Debian's
    /// postfix package; the system's Postfix is never touched).
    Lab(lab::LabArgs),
    /// Check the signed X-E2A-Auth-* headers of a delivered message read from stdin.
    Verify {
        /// The deployment secret (default: the configured hmac_secret_file).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Refuse signatures older than this many seconds.
        #[arg(long)]
        max_age: Option<i64>,
        /// Also check that the set names this envelope recipient.
        #[arg(long)]
        recipient: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Verify { secret_file, max_age, recipient } = &cli.command {
        // Synchronous, no logging set-up, no database: usable on any host holding the secret.
        return verify::run(&cli.global, secret_file.as_deref(), *max_age, recipient.as_deref());
    }
    let flags = cli.global.pairs();
    if let Command::Lab(args) = cli.command {
        // The lab makes its own configuration (no file, no environment) and logging.
        return match tokio::runtime::Runtime::new() {
            Ok(rt) => match rt.block_on(lab::run(args, flags)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("postagent lab: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("postagent: cannot start the async runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (config, file) = match Config::load(cli.global.config.as_deref(), std::env::vars(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postagent: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(&config) {
        eprintln!("postagent: cannot set up logging: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new().context("cannot start the async runtime") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("postagent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP re-reads the configuration exactly as it was first read: same file, same
    // environment, same flags.
    let config_path = cli.global.config.clone();
    let reload_flags = flags.clone();
    let reload: serve::Reload = std::sync::Arc::new(move || {
        Config::load(config_path.as_deref(), std::env::vars(), &reload_flags)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    });
    let result = runtime.block_on(async move {
        let serve = |roles| serve::run(config.clone(), file.clone(), roles, reload.clone());
        match cli.command {
            Command::Serve => serve(serve::Roles::all()).await,
            Command::Api => serve(serve::Roles::api_only()).await,
            Command::Milter => serve(serve::Roles::milter_only()).await,
            Command::Lmtp => serve(serve::Roles::lmtp_only()).await,
            Command::Worker => serve(serve::Roles::worker_only()).await,
            Command::Listen(args) => listen::run(args, config.public_url()).await,
            Command::Admin(cmd) => admin::run(config, cmd).await,
            Command::Postfix(cmd) => postfix::run(config, cmd).await,
            Command::Doctor(args) => doctor::run(config, file, args).await,
            Command::Config => {
                println!("{config:#?}");
                Ok(())
            }
            Command::Verify { .. } | Command::Lab(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("postagent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
