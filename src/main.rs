//! `postagent`: one binary for every role and for the operator's tooling.
//!
//! `main` only parses flags, loads the configuration, sets up logging and hands over to a
//! command; the libraries do the work.

mod admin;
mod doctor;
mod lab;
mod mcp_stdio;
mod postfix;
mod verify;

use anyhow::Context;
use clap::{Parser, Subcommand};
use postagent::{cli, logging, serve};
use postagent_core::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "postagent", version, about = "Authenticated email inboxes for AI agents, on your Postfix")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The server's flags, read from the command line: the configuration file and one override
/// per configuration key. Only the operator's commands take them ([`SERVER_COMMANDS`]); the
/// client commands never read the server's configuration.
#[derive(Default)]
struct GlobalFlags {
    /// `--config` (or `POSTAGENT_CONFIG`).
    config: Option<PathBuf>,
    /// Configuration overrides from the command line, `(key, value)`, in key order.
    keys: Vec<(String, String)>,
}

const KEY_HEADING: &str =
    "Configuration (each flag is also a key in postagent.toml(5) and a POSTAGENT_* variable)";

/// The commands that run or administer the server, and so take its configuration flags.
const SERVER_COMMANDS: &[&str] =
    &["serve", "api", "milter", "lmtp", "worker", "admin", "doctor", "postfix", "config", "lab", "verify"];

/// `--config` and one flag per configuration key (so a new key is a flag without another
/// edit); `global` makes them reach a command's own subcommands.
fn with_key_flags(mut command: clap::Command, global: bool) -> clap::Command {
    command = command.arg(
        clap::Arg::new("config")
            .long("config")
            .env("POSTAGENT_CONFIG")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .global(global)
            .help("Configuration file (default: /etc/postagent/postagent.toml when it exists)"),
    );
    for key in Config::keys() {
        let flag = key.replace('_', "-");
        command = command.arg(
            clap::Arg::new(key.clone())
                .long(flag)
                .value_name("VALUE")
                .global(global)
                .help_heading(KEY_HEADING)
                .help(format!("Sets {key} (see postagent.toml(5))")),
        );
    }
    command
}

/// The whole command line: the derived commands, the server flags on the root (before the
/// command, as in `postagent --config F serve`) and on each server command.
fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut command = with_key_flags(Cli::command(), false);
    for name in SERVER_COMMANDS {
        command = command.mut_subcommand(*name, |sub| with_key_flags(sub, true));
    }
    command
}

/// Parses the command line and collects the server flags given at either level (the
/// command's own win).
fn parse_cli() -> (Cli, GlobalFlags) {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = matches.subcommand().map(|(_, m)| m);
    let pick = |id: &str| -> Option<String> {
        sub.and_then(|m| m.try_get_one::<String>(id).ok().flatten().cloned())
            .or_else(|| matches.try_get_one::<String>(id).ok().flatten().cloned())
    };
    let config = sub
        .and_then(|m| m.try_get_one::<PathBuf>("config").ok().flatten().cloned())
        .or_else(|| matches.try_get_one::<PathBuf>("config").ok().flatten().cloned());
    let keys = Config::keys().into_iter().filter_map(|key| pick(&key).map(|v| (key, v))).collect();
    (cli, GlobalFlags { config, keys })
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
    /// Print the server's effective configuration (secrets redacted) and exit; with
    /// get|set|unset|list|path, manage the client's own settings file instead.
    Config {
        #[command(subcommand)]
        client: Option<cli::config::ConfigCmd>,
    },
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
    #[command(flatten)]
    Client(Box<cli::ClientCommand>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // Sockets handed over by systemd, taken before any thread starts (it clears LISTEN_*).
    postagent_core::net::Inherited::capture();
    let (cli, global) = parse_cli();
    let command = match cli.command {
        Command::Client(c) => return client(*c),
        Command::Config { client: Some(c) } => return ExitCode::from(cli::config::run(c).code()),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "postagent", &mut script);
            cli::output::bytes(&script);
            return ExitCode::SUCCESS;
        }
        Command::Mcp(args) => return mcp(args),
        other => other,
    };
    if let Command::Verify { secret_file, max_age, recipient } = &command {
        // Synchronous, no logging set-up, no database: usable on any host holding the secret.
        return verify::run(&global, secret_file.as_deref(), *max_age, recipient.as_deref());
    }
    let flags = global.keys.clone();
    if let Command::Lab(args) = command {
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
    let (config, file) = match Config::load(global.config.as_deref(), std::env::vars(), &flags) {
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
    let config_path = global.config.clone();
    let reload_flags = flags.clone();
    let reload: serve::Reload = std::sync::Arc::new(move || {
        Config::load(config_path.as_deref(), std::env::vars(), &reload_flags)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    });
    let result = runtime.block_on(async move {
        let serve = |roles| serve::run(config.clone(), file.clone(), roles, reload.clone());
        match command {
            Command::Serve => serve(serve::Roles::all()).await,
            Command::Api => serve(serve::Roles::api_only()).await,
            Command::Milter => serve(serve::Roles::milter_only()).await,
            Command::Lmtp => serve(serve::Roles::lmtp_only()).await,
            Command::Worker => serve(serve::Roles::worker_only()).await,
            Command::Admin(cmd) => admin::run(config, cmd).await,
            Command::Postfix(cmd) => postfix::run(config, cmd).await,
            Command::Doctor(args) => doctor::run(config, file, args).await,
            Command::Config { .. } => {
                println!("{config:#?}");
                Ok(())
            }
            Command::Verify { .. }
            | Command::Lab(_)
            | Command::Client(_)
            | Command::Completions { .. }
            | Command::Mcp(_) => Ok(()),
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

/// A client command: its own runtime, no server configuration, no logging set-up (it
/// speaks on stdout and stderr itself), and e2a's exit codes.
fn client(command: cli::ClientCommand) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => ExitCode::from(rt.block_on(cli::run(command)).code()),
        Err(e) => {
            eprintln!("postagent: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `postagent mcp`: the stdio bridge, a client too; its log lines go to stderr, since stdout
/// carries the protocol.
fn mcp(args: mcp_stdio::McpArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(mcp_stdio::run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postagent mcp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        // clap's own checks (unique names, valid requires/conflicts) over every command,
        // with the server flags added at both levels.
        super::command().debug_assert();
    }
}
