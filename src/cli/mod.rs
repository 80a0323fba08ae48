//! The agent developer's command line: client commands that talk to a postagent (or e2a)
//! over `/v1` with an API key, the way e2a's own CLI does, so a shell harness, a CI job or a
//! person can send, read, review and bridge mail without writing HTTP by hand.
//!
//! Nothing here reads the server's configuration: a client runs on any machine, knows only a
//! base URL and a key, and finds them in its flags, then `E2A_*` variables, then its own
//! file ([`config`]), then the defaults of a local `postagent serve`.
//!
//! Every command ends in an [`Exit`]: the stable exit codes of e2a's CLI, so scripts can
//! branch on the status instead of parsing output.

mod account;
mod bridge;
pub mod config;
mod http;
pub mod listen;
mod mail;
pub mod output;
mod read;
mod reviews;

pub use http::Api;

use clap::{Args, Subcommand};
use std::fmt;

/// The base URL of a `postagent serve` on its defaults.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The exit codes scripts branch on. Frozen, as e2a's are: new codes may be added, none is
/// ever renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Network, server (5xx), rate limit or another transient failure: a retry may help.
    Error = 1,
    /// Bad flags or arguments, or nothing configured to act on.
    Usage = 2,
    /// The send was accepted but is held for review: nothing was delivered yet.
    Held = 3,
    /// Bad credentials, or a key whose scope does not allow the operation.
    Auth = 4,
    /// A permanent request error (not found, invalid, conflict, refused by policy): the same
    /// call cannot succeed.
    Request = 5,
    /// A bounded wait (`listen --once --until`) ended without a matching message.
    Timeout = 6,
    /// A message that was stored failed to send (Postfix refused it, or it was rejected).
    SendFailed = 7,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What the API said when it refused a call.
#[derive(Debug, Clone)]
pub struct ApiRefusal {
    pub status: u16,
    pub code: String,
    pub request_id: String,
    pub details: serde_json::Value,
}

/// A command that did not succeed: what to tell the user, and how to exit.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    pub api: Option<ApiRefusal>,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError { exit, message: message.into(), api: None }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// The error as one JSON object, for `--json` callers (written to stderr).
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"message": self.message, "exit_code": self.exit.code()});
        if let Some(a) = &self.api {
            error["code"] = a.code.clone().into();
            error["status"] = a.status.into();
            error["request_id"] = a.request_id.clone().into();
            if !a.details.is_null() {
                error["details"] = a.details.clone();
            }
        }
        serde_json::json!({ "error": error })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(a) = &self.api {
            write!(f, " ({}, HTTP {}", a.code, a.status)?;
            if !a.request_id.is_empty() {
                write!(f, ", request {}", a.request_id)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

pub type Outcome = Result<Exit, CliError>;

/// Where the client connects and how it prints: taken by every client command after its
/// name, and by its subcommands (`postagent messages --json list` and `postagent messages
/// list --json` both work).
#[derive(Args, Clone, Default)]
pub struct Conn {
    /// The deployment's base URL [env: E2A_URL; default: the client file's `url`, else
    /// http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The API key [env: E2A_API_KEY; default: the client file's `api_key`].
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// The agent to act as [env: E2A_AGENT_EMAIL; default: the client file's `agent_email`].
    #[arg(long, global = true, value_name = "EMAIL")]
    pub agent: Option<String>,
    /// Print JSON for scripts: one object per line (lists and streams: one line per item).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The key never reaches a log or a panic message.
impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("agent", &self.agent)
            .field("json", &self.json)
            .finish()
    }
}

/// The resolved connection: flags, then environment, then the client file, then defaults.
pub struct Session {
    pub api: Api,
    pub out: output::Out,
    agent: Option<String>,
}

impl Session {
    pub fn open(conn: &Conn) -> Result<Session, CliError> {
        let settings = config::Settings::load(conn)?;
        let key = settings.api_key.value.clone().ok_or_else(|| {
            CliError::usage(
                "no API key: pass --api-key, set E2A_API_KEY, or run `postagent config set api_key <key>`",
            )
        })?;
        let api = Api::new(&settings.url.value.clone().unwrap_or_else(|| DEFAULT_URL.into()), &key)?;
        Ok(Session { api, out: output::Out::new(conn.json), agent: settings.agent_email.value.clone() })
    }

    /// The configured agent, if any (flag, environment or file).
    pub fn configured_agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// The agent to act as: the configured one, else the one an agent key is bound to, else a
    /// usage error naming the ways to choose one.
    pub async fn agent(&self) -> Result<String, CliError> {
        if let Some(a) = &self.agent {
            return Ok(a.clone());
        }
        if self.api.key().starts_with("e2a_agt_") {
            let account = self.api.get("/v1/account").await?;
            if let Some(a) = account["agent_email"].as_str() {
                return Ok(a.to_owned());
            }
        }
        Err(CliError::usage(
            "no agent: pass --agent, set E2A_AGENT_EMAIL, or run `postagent config set agent_email <email>`",
        ))
    }

    /// `explicit` when given, else [`Self::agent`].
    pub async fn agent_or(&self, explicit: Option<&str>) -> Result<String, CliError> {
        match explicit {
            Some(a) => Ok(a.to_owned()),
            None => self.agent().await,
        }
    }
}

/// The client commands, flattened into `postagent`'s command list.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Show who the API key is: account, scope, bound agent, limits.
    Whoami {
        #[command(flatten)]
        conn: Conn,
    },
    /// List, create, show, rename, delete and restore agents (an account key).
    Agents {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: account::AgentsCmd,
    },
    /// List, create and revoke API keys (an account key).
    Keys {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: account::KeysCmd,
    },
    /// Show or change an agent's protection: review of outbound and inbound mail, holds.
    Protection {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: account::ProtectionCmd,
    },
    /// List, add, show and verify the account's domains.
    Domains {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: account::DomainsCmd,
    },
    /// Send an email as the agent.
    Send {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: mail::SendArgs,
    },
    /// Reply to a message, in its conversation.
    Reply {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: mail::ReplyArgs,
    },
    /// Forward a message (with its attachments) to new recipients.
    Forward {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: mail::ForwardArgs,
    },
    /// List the agent's messages, or show one.
    Messages {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: read::MessagesCmd,
    },
    /// List a message's attachments, or save one.
    Attachments {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: read::AttachmentsCmd,
    },
    /// The review queue: list held messages, show one, approve (with edits) or reject.
    Reviews {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: reviews::ReviewsCmd,
    },
    /// Follow the agent's inbox over the WebSocket stream: print each message, POST it to a
    /// local URL, or answer it with a model through an OpenAI Responses endpoint.
    Listen {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: listen::ListenArgs,
    },
}

/// Runs one client command; the exit status to leave with.
pub async fn run(command: ClientCommand) -> Exit {
    let json = match &command {
        ClientCommand::Whoami { conn }
        | ClientCommand::Agents { conn, .. }
        | ClientCommand::Keys { conn, .. }
        | ClientCommand::Protection { conn, .. }
        | ClientCommand::Domains { conn, .. }
        | ClientCommand::Send { conn, .. }
        | ClientCommand::Reply { conn, .. }
        | ClientCommand::Forward { conn, .. }
        | ClientCommand::Messages { conn, .. }
        | ClientCommand::Attachments { conn, .. }
        | ClientCommand::Reviews { conn, .. }
        | ClientCommand::Listen { conn, .. } => conn.json,
    };
    report(dispatch(command).await, json)
}

async fn dispatch(command: ClientCommand) -> Outcome {
    match command {
        ClientCommand::Whoami { conn } => account::whoami(&Session::open(&conn)?).await,
        ClientCommand::Agents { conn, cmd } => account::agents(&Session::open(&conn)?, cmd).await,
        ClientCommand::Keys { conn, cmd } => account::keys(&Session::open(&conn)?, &conn, cmd).await,
        ClientCommand::Protection { conn, cmd } => account::protection(&Session::open(&conn)?, cmd).await,
        ClientCommand::Domains { conn, cmd } => account::domains(&Session::open(&conn)?, cmd).await,
        ClientCommand::Send { conn, args } => mail::send(&Session::open(&conn)?, args).await,
        ClientCommand::Reply { conn, args } => mail::reply(&Session::open(&conn)?, args).await,
        ClientCommand::Forward { conn, args } => mail::forward(&Session::open(&conn)?, args).await,
        ClientCommand::Messages { conn, cmd } => read::messages(&Session::open(&conn)?, cmd).await,
        ClientCommand::Attachments { conn, cmd } => read::attachments(&Session::open(&conn)?, cmd).await,
        ClientCommand::Reviews { conn, cmd } => reviews::run(&Session::open(&conn)?, cmd).await,
        ClientCommand::Listen { conn, args } => listen::run(Session::open(&conn)?, args).await,
    }
}

/// Prints a failure on stderr (as JSON for `--json` callers) and turns it into the exit code.
pub fn report(outcome: Outcome, json: bool) -> Exit {
    match outcome {
        Ok(exit) => exit,
        Err(e) => {
            if json {
                eprintln!("{}", e.to_json());
            } else {
                // The message may be the server's (or a model's) words: one clean line.
                eprintln!("postagent: {}", output::clean(e.to_string(), true));
            }
            e.exit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_api_code_status_and_request() {
        let mut e = CliError::new(Exit::Request, "message msg_1 not found");
        assert_eq!(e.to_string(), "message msg_1 not found");
        e.api = Some(ApiRefusal {
            status: 404,
            code: "not_found".into(),
            request_id: "req_abc".into(),
            details: serde_json::Value::Null,
        });
        assert_eq!(e.to_string(), "message msg_1 not found (not_found, HTTP 404, request req_abc)");
        let j = e.to_json();
        assert_eq!(j["error"]["code"], "not_found");
        assert_eq!(j["error"]["exit_code"], 5);
        assert_eq!(j["error"]["request_id"], "req_abc");
        assert!(j["error"].get("details").is_none());
    }

    #[test]
    fn exit_codes_are_e2as() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Error,
            Exit::Usage,
            Exit::Held,
            Exit::Auth,
            Exit::Request,
            Exit::Timeout,
            Exit::SendFailed,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
