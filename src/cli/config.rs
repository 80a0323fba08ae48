//! The client's own settings: `url`, `api_key` and `agent_email`, each from a flag, else an
//! `E2A_*` variable (the names e2a's CLI and SDKs read, so existing environments work), else
//! the client file, else a default. The file is TOML, private to its user (written 0600 in a
//! 0700 directory, atomically), and has nothing to do with the server's postagent.toml.

use super::{CliError, Conn, Exit, Outcome};
use clap::{Subcommand, ValueEnum};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One client setting.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// The deployment's base URL (http:// or https://).
    #[value(name = "url")]
    Url,
    /// The API key.
    #[value(name = "api_key")]
    ApiKey,
    /// The agent commands act as when no --agent is given.
    #[value(name = "agent_email")]
    AgentEmail,
}

impl Key {
    const ALL: [Key; 3] = [Key::Url, Key::ApiKey, Key::AgentEmail];

    pub fn name(self) -> &'static str {
        match self {
            Key::Url => "url",
            Key::ApiKey => "api_key",
            Key::AgentEmail => "agent_email",
        }
    }

    /// The environment variables that set it, strongest first. `E2A_API_URL` is what
    /// `postagent listen` and `mcp` read before the client file existed.
    fn env(self) -> &'static [&'static str] {
        match self {
            Key::Url => &["E2A_URL", "E2A_API_URL"],
            Key::ApiKey => &["E2A_API_KEY"],
            Key::AgentEmail => &["E2A_AGENT_EMAIL"],
        }
    }

    fn check(self, value: &str) -> Result<(), CliError> {
        let ok = match self {
            Key::Url => value.starts_with("http://") || value.starts_with("https://"),
            Key::ApiKey => !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control()),
            Key::AgentEmail => value.contains('@') && !value.chars().any(char::is_whitespace),
        };
        if ok { Ok(()) } else { Err(CliError::usage(format!("{value:?} is not a valid {}", self.name()))) }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File,
    Default,
    Unset,
}

#[derive(Debug, Clone)]
pub struct Setting {
    pub value: Option<String>,
    pub source: Source,
}

/// The effective client settings.
pub struct Settings {
    pub url: Setting,
    pub api_key: Setting,
    pub agent_email: Setting,
    pub file: Option<PathBuf>,
}

impl Settings {
    /// Flags, then the environment, then the file, then the defaults.
    pub fn load(conn: &Conn) -> Result<Settings, CliError> {
        Self::load_from(conn, |k| std::env::var(k).ok(), default_path())
    }

    fn load_from(
        conn: &Conn,
        env: impl Fn(&str) -> Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Settings, CliError> {
        let table = match &file {
            Some(p) => read_file(p)?,
            None => toml::Table::new(),
        };
        let pick = |key: Key, flag: Option<&String>| -> Setting {
            if let Some(v) = flag.filter(|v| !v.is_empty()) {
                return Setting { value: Some(v.clone()), source: Source::Flag };
            }
            for name in key.env() {
                if let Some(v) = env(name).filter(|v| !v.is_empty()) {
                    return Setting { value: Some(v), source: Source::Env(name) };
                }
            }
            if let Some(v) = table.get(key.name()).and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
                return Setting { value: Some(v.to_owned()), source: Source::File };
            }
            if key == Key::Url {
                return Setting { value: Some(super::DEFAULT_URL.into()), source: Source::Default };
            }
            Setting { value: None, source: Source::Unset }
        };
        Ok(Settings {
            url: pick(Key::Url, conn.url.as_ref()),
            api_key: pick(Key::ApiKey, conn.api_key.as_ref()),
            agent_email: pick(Key::AgentEmail, conn.agent.as_ref()),
            file,
        })
    }

    fn get(&self, key: Key) -> &Setting {
        match key {
            Key::Url => &self.url,
            Key::ApiKey => &self.api_key,
            Key::AgentEmail => &self.agent_email,
        }
    }
}

/// `$POSTAGENT_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/postagent/client.toml`, else
/// `~/.config/postagent/client.toml`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("POSTAGENT_CLIENT_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base =
        std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("postagent").join("client.toml"))
}

/// Largest client file read (it holds three short strings).
const MAX_FILE_BYTES: u64 = 64 * 1024;

fn read_file(path: &Path) -> Result<toml::Table, CliError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(toml::Table::new()),
        Err(e) => return Err(CliError::usage(format!("cannot read {}: {e}", path.display()))),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(CliError::usage(format!("{} is larger than {MAX_FILE_BYTES} bytes", path.display())));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table =
        text.parse().map_err(|e| CliError::usage(format!("{} is not valid TOML: {e}", path.display())))?;
    if table.contains_key(Key::ApiKey.name()) && meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "postagent: warning: {} holds an API key and is readable by others; run chmod 600 on it",
            path.display()
        );
    }
    Ok(table)
}

/// Writes `table` to `path`: a private temporary file in the same directory, then a rename,
/// so a crash never leaves half a file and the key is never readable by others.
fn write_file(path: &Path, table: &toml::Table) -> Result<(), CliError> {
    let fail =
        |e: std::io::Error| CliError::new(Exit::Error, format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    let text = toml::to_string(table).map_err(|e| CliError::new(Exit::Error, e.to_string()))?;
    let tmp = dir.join(format!(".client.toml.{}", std::process::id()));
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(fail)?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// `postagent config get|set|unset|list|path`: the client file. (Bare `postagent config`
/// prints the server's configuration.)
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print a client setting's effective value (flag, environment, file or default).
    Get { key: Key },
    /// Save a client setting in the client file (`-`: read the value from stdin, so a key
    /// stays out of the shell's history and the process list).
    Set { key: Key, value: String },
    /// Remove a client setting from the client file.
    Unset { key: Key },
    /// Show every client setting, where it comes from, and the file (the key redacted).
    List {
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the client file's path.
    Path,
}

pub fn run(cmd: ConfigCmd) -> Exit {
    let json = matches!(cmd, ConfigCmd::List { json: true });
    super::report(run_with(cmd, &Conn::default()), json)
}

fn run_with(cmd: ConfigCmd, conn: &Conn) -> Outcome {
    let settings = Settings::load(conn)?;
    let file = || {
        settings.file.clone().ok_or_else(|| {
            CliError::usage("no client file: set HOME, XDG_CONFIG_HOME or POSTAGENT_CLIENT_CONFIG")
        })
    };
    match cmd {
        ConfigCmd::Get { key } => match &settings.get(key).value {
            Some(v) => {
                super::output::line(v);
                Ok(Exit::Ok)
            }
            None => Err(CliError::new(Exit::Request, format!("{} is not set", key.name()))),
        },
        ConfigCmd::Set { key, value } => {
            let value = if value == "-" { read_stdin_line()? } else { value };
            key.check(&value)?;
            let path = file()?;
            let mut table = read_file(&path)?;
            table.insert(key.name().into(), toml::Value::String(value));
            write_file(&path, &table)?;
            eprintln!("postagent: {} saved in {}", key.name(), path.display());
            Ok(Exit::Ok)
        }
        ConfigCmd::Unset { key } => {
            let path = file()?;
            let mut table = read_file(&path)?;
            if table.remove(key.name()).is_some() {
                write_file(&path, &table)?;
            }
            Ok(Exit::Ok)
        }
        ConfigCmd::List { json } => {
            let shown = |key: Key| {
                let s = settings.get(key);
                let value =
                    s.value.as_deref().map(|v| if key == Key::ApiKey { redact(v) } else { v.to_owned() });
                let from = match &s.source {
                    Source::Flag => "flag".to_owned(),
                    Source::Env(name) => format!("env {name}"),
                    Source::File => "file".into(),
                    Source::Default => "default".into(),
                    Source::Unset => "unset".into(),
                };
                (key.name(), value, from)
            };
            let file = settings.file.as_ref().map(|p| p.display().to_string());
            if json {
                let mut obj = serde_json::Map::new();
                for key in Key::ALL {
                    let (name, value, from) = shown(key);
                    obj.insert(name.into(), serde_json::json!({"value": value, "source": from}));
                }
                obj.insert("file".into(), serde_json::json!(file));
                super::output::line(&serde_json::Value::Object(obj).to_string());
            } else {
                for key in Key::ALL {
                    let (name, value, from) = shown(key);
                    super::output::line(&format!(
                        "{name:<12} {:<40} ({from})",
                        value.unwrap_or_else(|| "-".into())
                    ));
                }
                super::output::line(&format!("{:<12} {}", "file", file.unwrap_or_else(|| "-".into())));
            }
            Ok(Exit::Ok)
        }
        ConfigCmd::Path => {
            super::output::line(&file()?.display().to_string());
            Ok(Exit::Ok)
        }
    }
}

/// One line from stdin, without its line end.
fn read_stdin_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::stdin().lock().take(MAX_FILE_BYTES), &mut line)
        .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The key's public prefix (what the API lists as `key_prefix`), never the secret part.
fn redact(key: &str) -> String {
    let prefix: String = key.chars().take(16).collect();
    format!("{prefix}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn flags_beat_environment_beats_file_beats_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "url = \"http://file\"\napi_key = \"file-key\"\nagent_email = \"f@x.test\"\n")
            .expect("write");
        let none = Conn::default();
        let s = Settings::load_from(&none, env(&[]), Some(path.clone())).expect("load");
        assert_eq!((s.url.value.as_deref(), s.url.source.clone()), (Some("http://file"), Source::File));
        let s = Settings::load_from(
            &none,
            env(&[("E2A_API_URL", "http://old"), ("E2A_API_KEY", "")]),
            Some(path.clone()),
        )
        .expect("load");
        assert_eq!(s.url.source, Source::Env("E2A_API_URL"));
        assert_eq!(s.api_key.value.as_deref(), Some("file-key"), "an empty variable is unset");
        let s = Settings::load_from(
            &none,
            env(&[("E2A_URL", "http://new"), ("E2A_API_URL", "http://old")]),
            None,
        )
        .expect("load");
        assert_eq!(s.url.value.as_deref(), Some("http://new"));
        let flags =
            Conn { url: Some("http://flag".into()), agent: Some("a@x.test".into()), ..Conn::default() };
        let s = Settings::load_from(&flags, env(&[("E2A_URL", "http://new")]), Some(path)).expect("load");
        assert_eq!(
            (s.url.value.as_deref(), s.agent_email.source.clone()),
            (Some("http://flag"), Source::Flag)
        );
        let s = Settings::load_from(&none, env(&[]), None).expect("load");
        assert_eq!(
            (s.url.value.as_deref(), s.url.source.clone()),
            (Some(crate::cli::DEFAULT_URL), Source::Default)
        );
        assert_eq!(s.api_key.source, Source::Unset);
    }

    #[test]
    fn the_file_is_written_private_and_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("client.toml");
        let mut t = toml::Table::new();
        t.insert("api_key".into(), toml::Value::String("e2a_acct_x".into()));
        write_file(&path, &t).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(path.parent().expect("dir")).expect("meta").permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert_eq!(read_file(&path).expect("read")["api_key"].as_str(), Some("e2a_acct_x"));
        assert_eq!(
            std::fs::read_dir(path.parent().expect("dir")).expect("ls").count(),
            1,
            "no temporary left"
        );
        std::fs::write(&path, "url = [").expect("write");
        assert_eq!(read_file(&path).expect_err("bad toml").exit, Exit::Usage);
    }

    #[test]
    fn values_are_checked_and_keys_redacted() {
        assert!(Key::Url.check("ftp://x").is_err());
        assert!(Key::AgentEmail.check("nobody").is_err());
        assert!(Key::ApiKey.check("a b").is_err());
        assert!(Key::ApiKey.check("e2a_acct_1234").is_ok());
        assert_eq!(redact("e2a_acct_0123456789abcdef"), "e2a_acct_0123456…");
    }
}
