//! Logging: stderr (journald picks it up under systemd) or syslog with facility `mail`, so
//! postagent's lines land in `/var/log/mail.log` beside Postfix's and one
//! `grep QUEUEID /var/log/mail.log` tells a message's whole story. Plain or JSON. The level
//! can be changed at runtime (SIGHUP re-reads `log_level`).

use postagent_core::Config;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, OnceLock};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter_for(level: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("log_level {level:?}: {e}"))
}

pub fn init(config: &Config) -> anyhow::Result<()> {
    // RUST_LOG wins over the configured level, for one-off debugging.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => filter_for(&config.log_level)?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let json = config.log_format == postagent_core::vocab::LogFormat::Json;
    let fmt = tracing_subscriber::fmt::layer();
    let syslog = if config.log_target == postagent_core::vocab::LogTarget::Syslog {
        match Syslog::connect(&config.syslog_socket, config.syslog_facility.as_str()) {
            Ok(w) => Some(w),
            Err(e) => {
                // A host without a syslog daemon still gets its logs, and is told why.
                eprintln!("postagent: {e:#}; logging to stderr instead");
                None
            }
        }
    } else {
        None
    };
    let layer = if let Some(writer) = syslog {
        // syslog stamps time and host itself.
        if json {
            fmt.json().with_current_span(false).without_time().with_writer(writer).boxed()
        } else {
            fmt.with_target(false).with_ansi(false).without_time().with_writer(writer).boxed()
        }
    } else if json {
        fmt.json().with_current_span(false).with_writer(std::io::stderr).boxed()
    } else {
        fmt.with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed()
    };
    tracing_subscriber::registry().with(filter).with(layer).try_init().map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// Replaces the level filter of the running process (SIGHUP).
pub fn set_level(level: &str) -> anyhow::Result<()> {
    let filter = filter_for(level)?;
    let handle = FILTER.get().ok_or_else(|| anyhow::anyhow!("logging is not set up"))?;
    handle.reload(filter).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The syslog facility codes of RFC 5424 that make sense for a mail daemon.
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "mail" => 2,
        "daemon" => 3,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// Writes each log line as one datagram to the local syslog socket, in the BSD format every
/// syslogd (rsyslog, syslog-ng, journald's socket) accepts: `<PRI>postagent[PID]: message`.
#[derive(Clone)]
struct Syslog {
    socket: Arc<UnixDatagram>,
    facility: u8,
}

impl Syslog {
    fn connect(path: &std::path::Path, facility: &str) -> anyhow::Result<Self> {
        let facility = facility_code(facility).ok_or_else(|| {
            anyhow::anyhow!("syslog_facility {facility:?}: use mail, daemon or local0..local7")
        })?;
        let socket = UnixDatagram::unbound()?;
        socket
            .connect(path)
            .map_err(|e| anyhow::anyhow!("cannot connect to the syslog socket {}: {e}", path.display()))?;
        // A stuck syslogd must never stall a mail transaction: a line that cannot be sent at
        // once is dropped.
        socket.set_nonblocking(true)?;
        Ok(Self { socket: Arc::new(socket), facility })
    }
}

/// One line under construction; sent when the formatter drops it.
struct Line {
    socket: Arc<UnixDatagram>,
    pri: u8,
    buf: Vec<u8>,
}

impl std::io::Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let mut datagram = Vec::with_capacity(text.len() + 32);
        let _ = write!(datagram, "<{}>postagent[{}]: {text}", self.pri, std::process::id());
        // A full or absent syslogd must never stall or crash the mail path.
        let _ = self.socket.send(&datagram);
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { socket: self.socket.clone(), pri: self.facility * 8 + 6, buf: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line { socket: self.socket.clone(), pri: pri(self.facility, *meta.level()), buf: Vec::new() }
    }
}

/// `<PRI>` = facility × 8 + severity (RFC 5424 §6.2.1).
fn pri(facility: u8, level: tracing::Level) -> u8 {
    let severity = match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    };
    facility * 8 + severity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_syslog_socket_with_facility_mail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        let syslog = Syslog::connect(&path, "mail").expect("connect");
        let mut line = syslog.make_writer();
        line.write_all(b"4dQ1xk0sYzz9sWL: stored msg=msg_1\n").expect("write");
        drop(line);
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]);
        // mail (2) * 8 + informational (6) = 22
        assert_eq!(got, format!("<22>postagent[{}]: 4dQ1xk0sYzz9sWL: stored msg=msg_1", std::process::id()));
        assert_eq!(pri(2, tracing::Level::ERROR), 19);
        assert_eq!(pri(2, tracing::Level::WARN), 20);
        assert_eq!(pri(2, tracing::Level::DEBUG), 23);
        assert!(facility_code("kern").is_none());
        assert!(Syslog::connect(std::path::Path::new("/nonexistent/log.sock"), "mail").is_err());
    }
}
