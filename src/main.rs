//! `postagent`: one binary for every role and for the operator's tooling.
//!
//! `main` only parses flags, loads the configuration, sets up logging and hands over to a
//! command; the libraries do the work.

mod admin;
mod doctor;
mod lab;
mod listen;
mod mcp_stdio;
mod postfix;
mod verify;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use postagent::{logging, serve};
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

/// The flags every command takes besides the configuration keys (which [`with_key_flags`]
/// adds, one `--key-with-dashes` per key of [`Config`]).
#[derive(Args, Default)]
struct GlobalFlags {
    /// Configuration file (default: /etc/postagent/postagent.toml when it exists).
    #[arg(long, global = true, env = "POSTAGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Configuration overrides from the command line, `(key, value)`, in key order.
    #[arg(skip)]
    keys: Vec<(String, String)>,
}

const KEY_HEADING: &str =
    "Configuration (each flag is also a key in postagent.toml(5) and a POSTAGENT_* variable)";

/// One global flag per configuration key, so a new key is a flag without another edit.
fn with_key_flags(mut command: clap::Command) -> clap::Command {
    for key in Config::keys() {
        let flag = key.replace('_', "-");
        command = command.arg(
            clap::Arg::new(key.clone())
                .long(flag)
                .value_name("VALUE")
                .global(true)
                .help_heading(KEY_HEADING)
                .help(format!("Sets {key} (see postagent.toml(5))")),
        );
    }
    command
}

/// Parses the command line: the derived commands plus one flag per configuration key.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = with_key_flags(Cli::command()).get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.global.keys = Config::keys()
        .into_iter()
        .filter_map(|key| matches.get_one::<String>(&key).cloned().map(|v| (key, v)))
        .collect();
    cli
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
    /// Serve MCP over stdio for a host that launches a local process: each message goes to a
    /// running postagent's /mcp with the API key.
    Mcp(mcp_stdio::McpArgs),
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
    // Sockets handed over by systemd, taken before any thread starts (it clears LISTEN_*).
    postagent_core::net::Inherited::capture();
    let cli = parse_cli();
    if let Command::Verify { secret_file, max_age, recipient } = &cli.command {
        // Synchronous, no logging set-up, no database: usable on any host holding the secret.
        return verify::run(&cli.global, secret_file.as_deref(), *max_age, recipient.as_deref());
    }
    let flags = cli.global.keys.clone();
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
            Command::Mcp(args) => mcp_stdio::run(args, config.public_url()).await,
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
