//! The typed values configuration keys hold, each with its one text form: what the file, the
//! environment and flags write, and what `postagent config` prints back. Parsing a value is
//! validating it; after [`super::Config::load`] nothing re-parses a string.

use serde::{Deserialize, Deserializer, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A listener address: TCP `HOST:PORT` or a unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let (host, port) =
            s.rsplit_once(':').ok_or_else(|| format!("{s:?} is neither HOST:PORT nor unix:PATH"))?;
        if host.is_empty() {
            return Err(format!("{s:?} has no host; write 127.0.0.1:{port} or [::]:{port}"));
        }
        port.parse::<u16>().map_err(|_| format!("{s:?} has no valid port"))?;
        Ok(Self::Tcp(s.to_owned()))
    }

    /// How Postfix names this listener in `main.cf` (`inet:HOST:PORT`, `unix:PATH`): a unix
    /// path under `queue_dir` is written relative to it, as chrooted daemons (which run in
    /// the queue directory) see it.
    pub fn postfix_endpoint(&self, queue_dir: &str) -> String {
        match self {
            Self::Tcp(a) => format!("inet:{a}"),
            Self::Unix(p) => match p.strip_prefix(queue_dir) {
                Ok(relative) => format!("unix:{}", relative.display()),
                Err(_) => format!("unix:{}", p.display()),
            },
        }
    }
}

/// Postfix's usual `queue_directory`.
pub const POSTFIX_QUEUE_DIR: &str = "/var/spool/postfix";

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `250ms`, `5s`, `2m`, `1h`, `7d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// The shortest text [`parse_duration`] reads back as `d` (whole milliseconds).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms == 0 { "0s".into() } else { format!("{ms}ms") }
}

/// A comma-separated list of durations; empty means "no retries".
pub fn parse_schedule(s: &str) -> Option<Vec<Duration>> {
    if s.trim().is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(parse_duration).collect()
}

/// The mode of a unix socket we create, written in octal (`0660`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(pub u32);

impl FromStr for SocketMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        u32::from_str_radix(s.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not an octal mode like 0660"))
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// A DNS server: `IP` (port 53) or `IP:PORT`.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().map_err(|_| format!("{s:?} is not IP or IP:PORT"))
}

/// Hides the password of a database URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let base = match base.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}:<redacted>@{host}")
        }
        _ => base.to_owned(),
    };
    // libpq also takes the password as a parameter: `?password=…`.
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
                _ => kv.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{base}?{q}"),
        None => format!("{scheme}://{base}"),
    }
}

/// serde through a value's text form (`FromStr` and `Display`).
pub mod text {
    use super::*;

    pub fn serialize<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.trim().parse().map_err(serde::de::Error::custom)
    }
}

/// As [`text`], where the empty string means "none" (a role switched off, a default derived).
pub mod optional {
    use super::*;

    pub fn serialize<T: fmt::Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        match text.trim() {
            "" => Ok(None),
            t => t.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration as `250ms`, `5s`, `2m`, `1h`, `7d`.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a duration (e.g. 250ms, 5s, 2m)"))
        })
    }
}

/// A retry schedule: durations separated by commas.
pub mod schedule {
    use super::*;

    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let parts: Vec<String> = list.iter().map(|d| format_duration(*d)).collect();
        s.serialize_str(&parts.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        parse_schedule(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a comma-separated list of durations (e.g. 1m,5m,1h)"
            ))
        })
    }
}

/// A DNS server (`IP` or `IP:PORT`); empty means the system resolver.
pub mod dns_server {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "" => Ok(None),
            t => parse_dns_server(t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_as_written() {
        for (text, d) in [
            ("250ms", Duration::from_millis(250)),
            ("5s", Duration::from_secs(5)),
            ("10m", Duration::from_secs(600)),
            ("3d", Duration::from_secs(3 * 86400)),
            ("1500ms", Duration::from_millis(1500)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Some(d), "{text}");
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(Duration::from_secs(72 * 3600)), "3d");
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }

    #[test]
    fn socket_modes_and_dns_servers() {
        assert_eq!("0660".parse::<SocketMode>(), Ok(SocketMode(0o660)));
        assert_eq!(SocketMode(0o600).to_string(), "0600");
        assert!("0999".parse::<SocketMode>().is_err());
        assert!("01777".parse::<SocketMode>().is_err());
        assert_eq!(parse_dns_server("127.0.0.2"), Ok("127.0.0.2:53".parse().expect("addr")));
        assert_eq!(parse_dns_server("[::1]:5353"), Ok("[::1]:5353".parse().expect("addr")));
        assert!(parse_dns_server("dns.example").is_err());
    }
}
