//! A private Postfix instance per test: its own config, queue, log and 127.0.0.1 port.
//!
//! Why the real Postfix: postagent plugs into an existing Postfix as a milter and an LMTP
//! next hop, and the behaviours that matter (milter protocol details, `tempfail` defaults,
//! deferral and retry, per-recipient LMTP replies) are Postfix's, not ours.
//!
//! The recipe is the team's postfix-lab notes (shared/postfix-lab.md) §1.2, measured on the project's machine: as root,
//! no chroot, an empty `main.cf` filled with `postconf -c DIR -e`, `master.cf` copied from
//! Debian's `master.cf.dist`, smtpd only on `127.0.0.1:PORT`, logging to a file (no syslog),
//! no DNS. Instances are independent, so tests can run many of them in parallel.
//!
//! Setup is synchronous (it runs `postconf`/`postfix` commands and never needs the caller's
//! runtime); the waits are `async` because a test's LMTP sink or milter usually runs as a task
//! on the same (often single-threaded) tokio runtime, which a blocking wait would starve.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{run, sh_quote};

const POSTFIX: &str = "/usr/sbin/postfix";
const POSTCONF: &str = "/usr/sbin/postconf";
const POSTQUEUE: &str = "/usr/sbin/postqueue";
const MASTER_CF_DIST: &str = "/usr/share/postfix/master.cf.dist";
/// Queue directories that hold messages not yet delivered (or not yet picked up).
const QUEUE_DIRS: [&str; 5] = ["incoming", "active", "deferred", "hold", "maildrop"];
const POLL: Duration = Duration::from_millis(50);

/// Checks that Postfix can run here: the binaries exist and we are root (Postfix's `master`
/// must start as root). Panics in CI when not, otherwise prints `SKIP:` and returns false.
pub fn require_postfix() -> bool {
    crate::require(POSTFIX, "install the postfix package")
        && crate::require(POSTCONF, "install the postfix package")
        && crate::require_that(
            Path::new(MASTER_CF_DIST).is_file(),
            &format!("{MASTER_CF_DIST} is missing"),
            "install the postfix package",
        )
        && crate::require_that(crate::is_root(), "not running as root", "Postfix's master must start as root")
}

/// Configures a private Postfix instance; [`PostfixBuilder::start`] creates and starts it.
#[derive(Debug, Clone, Default)]
pub struct PostfixBuilder {
    relay_domains: Vec<String>,
    transports: Vec<(String, String)>,
    milter: Option<String>,
    main_cf: Vec<(String, String)>,
    master_services: Vec<String>,
    smtp_port: Option<u16>,
    chrooted: bool,
}

impl PostfixBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a domain Postfix accepts mail for and relays onwards (repeatable).
    pub fn relay_domain(mut self, domain: &str) -> Self {
        self.relay_domains.push(domain.to_owned());
        self
    }

    /// Routes `domain` to `next_hop`, e.g. `lmtp:inet:127.0.0.1:2424` (repeatable; written as
    /// one `inline:{ … }` `transport_maps`, so no `postmap` step is needed).
    pub fn transport(mut self, domain: &str, next_hop: &str) -> Self {
        self.transports.push((domain.to_owned(), next_hop.to_owned()));
        self
    }

    /// Sets `smtpd_milters` (e.g. `inet:127.0.0.1:8891`), with `non_smtpd_milters` empty and
    /// `milter_default_action = tempfail`, so a dead milter defers mail instead of letting it
    /// through unchecked, which is how postagent is meant to be deployed.
    pub fn milter(mut self, milter: &str) -> Self {
        self.milter = Some(milter.to_owned());
        self
    }

    /// Sets any `main.cf` parameter; applied after (and overriding) the builder's defaults.
    pub fn main_cf(mut self, key: &str, value: &str) -> Self {
        self.main_cf.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Appends a service entry to `master.cf`, e.g.
    /// `"127.0.0.1:2587 inet n - n - - smtpd -o milter_macro_daemon_name=ORIGINATING"`.
    /// Continuation lines (`"\n  -o key=value"`) are allowed. Its chroot column is forced to
    /// `n` like every other service.
    pub fn master_cf_service(mut self, line: &str) -> Self {
        self.master_services.push(line.to_owned());
        self
    }

    /// Runs smtpd, cleanup and lmtp chrooted in the queue directory, as Debian ships them,
    /// with the files they read there (`/etc/services`, `hosts`, `resolv.conf`, `localtime`,
    /// `nsswitch.conf`) copied in the way Debian's postfix start-up does. Milter and LMTP
    /// sockets must then live under the queue directory and be named relative to it.
    pub fn chrooted(mut self) -> Self {
        self.chrooted = true;
        self
    }

    /// Listens for SMTP on `127.0.0.1:port` instead of a freshly picked free port (for a
    /// lab a person types commands against; tests leave it unset).
    pub fn smtp_port(mut self, port: u16) -> Self {
        self.smtp_port = Some(port);
        self
    }

    /// The `main.cf` settings: the lab recipe's defaults, then the builder's, then overrides
    /// from [`PostfixBuilder::main_cf`] (a later value for the same key replaces an earlier
    /// one in place).
    fn settings(&self, base: &Path) -> Vec<(String, String)> {
        let b = base.display();
        let mut s: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| match s.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v,
            None => s.push((k.to_owned(), v)),
        };
        set("compatibility_level", "3.6".into());
        set("queue_directory", format!("{b}/spool"));
        set("data_directory", format!("{b}/data"));
        set("mail_owner", "postfix".into());
        set("setgid_group", "postdrop".into());
        set("myhostname", "mx.postagent.test".into());
        set("mydomain", "postagent.test".into());
        // Nothing is delivered locally: every accepted domain is relayed.
        set("mydestination", String::new());
        set("local_recipient_maps", String::new());
        set("alias_maps", String::new());
        set("alias_database", String::new());
        set("inet_interfaces", "127.0.0.1".into());
        set("inet_protocols", "ipv4".into());
        set("mynetworks", "127.0.0.0/8".into());
        set("relay_domains", self.relay_domains.join(", "));
        let transports = if self.transports.is_empty() {
            String::new()
        } else {
            let entries: Vec<String> = self.transports.iter().map(|(d, t)| format!("{d}={t}")).collect();
            format!("inline:{{ {} }}", entries.join(", "))
        };
        set("transport_maps", transports);
        // No DNS at all: /etc/resolv.conf on the test machines points at a dead server.
        set("smtp_dns_support_level", "disabled".into());
        set("smtp_host_lookup", "native".into());
        set("lmtp_host_lookup", "native".into());
        set("smtpd_peername_lookup", "no".into());
        // Postfix 3.7 logs without syslog through postlogd; the prefix list must cover the file.
        set("maillog_file", format!("{b}/log/maillog"));
        set("maillog_file_prefixes", format!("{b}"));
        set("smtputf8_enable", "no".into());
        set("biff", "no".into());
        set("readme_directory", "no".into());
        // Defaults are 300 s/300 s/4000 s: a deferred message would outlive any test.
        set("queue_run_delay", "1s".into());
        set("minimal_backoff_time", "1s".into());
        set("maximal_backoff_time", "1s".into());
        // Default 1 s: pauses submissions when the queue manager lags, which only slows tests.
        set("in_flow_delay", "0s".into());
        if let Some(m) = &self.milter {
            set("smtpd_milters", m.clone());
            set("non_smtpd_milters", String::new());
            set("milter_default_action", "tempfail".into());
        }
        for (k, v) in &self.main_cf {
            set(k, v.clone());
        }
        s
    }

    /// Creates the instance under a fresh `/tmp/pfXXXXXX` and starts it; returns once the
    /// SMTP port accepts connections. About 1–3 s (mostly `postfix start`'s integrity check).
    pub fn start(self) -> anyhow::Result<PostfixInstance> {
        let t0 = Instant::now();
        let base = crate::world_traversable_tempdir("pf")?;
        let mut inst = PostfixInstance {
            config_dir: base.join("etc"),
            smtp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            base,
        };
        // From here on, `inst`'s Drop stops and deletes whatever was created if a step fails.
        self.create(&inst)?;
        // A port that was free when picked can be taken before master binds it; then retry
        // with another one (only the smtp service line changes).
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match self.smtp_port {
                Some(port) => port,
                None => crate::free_port()?,
            };
            inst.postconf(&["-F", "-e", &format!("smtp/inet/service = 127.0.0.1:{port}")])?;
            inst.smtp_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match inst.start_master() {
                Ok(()) => break,
                Err(e)
                    if attempt < 3
                        && self.smtp_port.is_none()
                        && inst.busy_inet_ports().contains(&inst.smtp_addr) =>
                {
                    tracing::debug!(error = %e, port, "postfix port taken, retrying");
                }
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(dir = %inst.base.display(), addr = %inst.smtp_addr, elapsed = ?t0.elapsed(), "Postfix started");
        Ok(inst)
    }

    fn create(&self, inst: &PostfixInstance) -> anyhow::Result<()> {
        let base = &inst.base;
        for d in ["etc", "spool", "data", "log"] {
            std::fs::create_dir(base.join(d))?;
        }
        // Without this `postfix check` warns "not owned by postfix: .../data/."
        run(Command::new("chown").arg("postfix:postfix").arg(base.join("data")))?;
        std::fs::write(inst.config_dir.join("main.cf"), "")?;
        let mut master =
            std::fs::read_to_string(MASTER_CF_DIST).with_context(|| format!("reading {MASTER_CF_DIST}"))?;
        for service in &self.master_services {
            if !master.ends_with('\n') {
                master.push('\n');
            }
            master.push_str(service.trim_end());
            master.push('\n');
        }
        std::fs::write(inst.config_dir.join("master.cf"), master)?;
        let settings: Vec<String> = self.settings(base).iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let mut args = vec!["-e"];
        args.extend(settings.iter().map(String::as_str));
        inst.postconf(&args)?;
        // After appending the extra services, so they run unchrooted too (paths are absolute
        // and outside any chroot).
        inst.postconf(&["-F", "-e", "*/*/chroot = n"])?;
        if self.chrooted {
            inst.postconf(&[
                "-F",
                "-e",
                "smtp/inet/chroot = y",
                "cleanup/unix/chroot = y",
                "lmtp/unix/chroot = y",
            ])?;
            let etc = base.join("spool/etc");
            std::fs::create_dir_all(&etc)?;
            for f in ["services", "hosts", "resolv.conf", "localtime", "nsswitch.conf", "host.conf"] {
                let src = Path::new("/etc").join(f);
                if src.exists() {
                    std::fs::copy(&src, etc.join(f))
                        .with_context(|| format!("copying {} into the chroot", src.display()))?;
                }
            }
        }
        // The watchdog stops and removes the instance if the test process dies without
        // dropping it (killed, aborted, or the instance was leaked).
        let etc = sh_quote(&inst.config_dir.to_string_lossy());
        let cleanup =
            format!("{POSTFIX} -c {etc} stop >/dev/null 2>&1; rm -rf {}", sh_quote(&base.to_string_lossy()));
        crate::spawn_watchdog(base, &cleanup)?;
        Ok(())
    }
}

/// A running private Postfix. Dropping it runs `postfix -c DIR stop`, waits for `master` to
/// exit, and deletes the instance directory.
#[derive(Debug)]
pub struct PostfixInstance {
    base: PathBuf,
    config_dir: PathBuf,
    smtp_addr: SocketAddr,
}

impl PostfixInstance {
    /// See [`require_postfix`].
    pub fn available() -> bool {
        require_postfix()
    }

    /// `postfix start` (its output goes to `log/start.out`, never to our pipes: `master`
    /// daemonizes and a child holding a pipe would hang whoever reads it), then a bounded
    /// wait until the SMTP port accepts connections.
    fn start_master(&self) -> anyhow::Result<()> {
        let out_path = self.base.join("log").join("start.out");
        let out = std::fs::File::create(&out_path)?;
        let status = Command::new(POSTFIX)
            .arg("-c")
            .arg(&self.config_dir)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()?;
        if !status.success() {
            // master's own fatal errors (e.g. a failed bind) are lost: it has detached from
            // stderr and postlogd is not running yet. Name the likely culprit ourselves.
            let busy: Vec<String> = self.busy_inet_ports().iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "postfix start failed ({status}); inet listeners already in use: [{}]\n{}\nmaillog:\n{}",
                busy.join(", "),
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                self.read_log()
            );
        }
        // `master -w` returns after binding its listeners, so this normally succeeds at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&self.smtp_addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "Postfix does not listen on {} after start; maillog:\n{}",
                    self.smtp_addr,
                    self.read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `ip:port` inet services of master.cf that cannot be bound right now (used after a
    /// failed start, when Postfix itself does not say why).
    fn busy_inet_ports(&self) -> Vec<SocketAddr> {
        let master = std::fs::read_to_string(self.config_dir.join("master.cf")).unwrap_or_default();
        master
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (name, kind) = (f.next()?, f.next()?);
                (kind == "inet").then(|| name.parse::<SocketAddr>().ok()).flatten()
            })
            .filter(|a| std::net::TcpListener::bind(a).is_err())
            .collect()
    }

    /// The address of the smtpd listener (`127.0.0.1:PORT`).
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp_addr
    }

    /// The instance's config directory (`main.cf`, `master.cf`), for `-c`.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The queue directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.base.join("spool")
    }

    /// The instance's mail log (written by postlogd).
    pub fn log_path(&self) -> PathBuf {
        self.base.join("log").join("maillog")
    }

    /// The whole mail log so far (empty if not yet written).
    pub fn read_log(&self) -> String {
        std::fs::read(self.log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Runs `postconf -c DIR ARGS…` and returns its stdout, e.g. `postconf(&["-h",
    /// "relay_domains"])` or `postconf(&["-e", "smtpd_milters = …"])` (then [`Self::reload`]).
    pub fn postconf(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run(Command::new(POSTCONF).arg("-c").arg(&self.config_dir).args(args))?;
        self.backdate_config()?;
        Ok(out)
    }

    /// Sets the mtime of main.cf and master.cf 10 s into the past.
    ///
    /// Why: Postfix's config loader (`dict_load_file_xt`) refuses to read a file modified
    /// within the last second ("it may still be being written") and polls every 0.3 s until it
    /// is older. Right after `postconf -e` that makes `postfix start` and `postfix reload`
    /// stall for ~2 s each. Our edits are complete when `postconf` returns, so the wait buys
    /// nothing.
    fn backdate_config(&self) -> anyhow::Result<()> {
        let past = std::time::SystemTime::now() - Duration::from_secs(10);
        for f in ["main.cf", "master.cf"] {
            let path = self.config_dir.join(f);
            if path.exists() {
                std::fs::File::options().write(true).open(&path)?.set_modified(past)?;
            }
        }
        Ok(())
    }

    /// Runs `postfix -c DIR ARGS…` (stdout returned; must not be `start`, which daemonizes).
    pub fn postfix(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new(POSTFIX).arg("-c").arg(&self.config_dir).args(args))
    }

    /// `postfix reload`: re-reads main.cf/master.cf after a [`Self::postconf`] edit.
    ///
    /// Asynchronous by Postfix's design: already-running daemons finish "at their earliest
    /// convenience", so a session opened right after may still see the old settings (seen
    /// under load). When a test needs the new settings on its very next session, use
    /// [`Self::restart`].
    pub fn reload(&self) -> anyhow::Result<()> {
        self.postfix(&["reload"]).map(drop)
    }

    /// Stops and starts the instance (same port, same queue): afterwards every process runs
    /// the current config. About 0.2 s.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop()?;
        self.start_master()
    }

    /// `postqueue -f`: retry every deferred message now instead of at the next queue run.
    pub fn flush(&self) -> anyhow::Result<()> {
        run(Command::new(POSTQUEUE).arg("-c").arg(&self.config_dir).arg("-f")).map(drop)
    }

    /// `postqueue -p`: the human-readable queue listing (for failure messages).
    pub fn queue_listing(&self) -> String {
        run(Command::new(POSTQUEUE).arg("-c").arg(&self.config_dir).arg("-p"))
            .unwrap_or_else(|e| format!("{e:#}"))
    }

    /// True when no message is queued: no file under incoming, active, deferred, hold or
    /// maildrop (delivered and bounced messages leave the queue entirely).
    pub fn queue_is_empty(&self) -> bool {
        let spool = self.spool_dir();
        QUEUE_DIRS.iter().all(|d| count_files(&spool.join(d)) == 0)
    }

    /// Waits (polling every 50 ms) until [`Self::queue_is_empty`]. The error carries the
    /// queue listing and the log, which is what one needs to see why mail is stuck.
    pub async fn wait_queue_empty(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.queue_is_empty() {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "Postfix queue not empty after {timeout:?}:\n{}\nmaillog:\n{}",
                    self.queue_listing(),
                    self.read_log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Waits (polling every 50 ms) until the mail log contains `needle`; returns the first
    /// line that contains it.
    pub async fn wait_log_contains(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        self.wait_log_line(&[needle], timeout).await
    }

    /// Waits (polling every 50 ms) until one line of the mail log contains every one of
    /// `needles` (e.g. a queue id, `to=<…>` and `status=sent`); returns that line.
    pub async fn wait_log_line(&self, needles: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.read_log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return Ok(line.to_owned());
            }
            if Instant::now() > deadline {
                anyhow::bail!("no Postfix log line contains all of {needles:?} after {timeout:?}:\n{log}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (polling every 50 ms) until `master` has created the unix service socket at
    /// `rel` under the queue directory (it does so while it reloads, and says nothing when).
    pub async fn wait_service_socket(&self, rel: &str, timeout: Duration) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::FileTypeExt;
        let path = self.spool_dir().join(rel);
        let deadline = Instant::now() + timeout;
        loop {
            if std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
                return Ok(path);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "master created no socket {} within {timeout:?}:\n{}",
                    path.display(),
                    self.read_log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The pid of the running `master`, if any.
    pub fn master_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.spool_dir().join("pid").join("master.pid")).ok()?;
        let pid: u32 = pid.trim().parse().ok()?;
        crate::process_alive(pid).then_some(pid)
    }

    /// `postfix stop`, then waits (up to 10 s) until `master` has exited. Files stay until
    /// drop, so a test can still read the log. Idempotent.
    pub fn stop(&self) -> anyhow::Result<()> {
        let Some(pid) = self.master_pid() else { return Ok(()) };
        let result = self.postfix(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while crate::process_alive(pid) {
            if Instant::now() > deadline {
                anyhow::bail!("Postfix master {pid} still running 10 s after stop ({result:?})");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        result.map(drop)
    }
}

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping Postfix");
        }
        // Removing the dir also tells the watchdog to exit.
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lmtp_sink::Delivered;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use crate::lmtp_sink::sink as lmtp_sink;
    use crate::smtp::Smtp;

    fn alive(pid: u32) -> bool {
        crate::process_alive(pid)
    }

    #[tokio::test]
    async fn relays_to_lmtp_and_drains() {
        if !require_postfix() {
            return;
        }
        let (lmtp, mut delivered) = lmtp_sink().await;
        let t0 = Instant::now();
        let pf = PostfixBuilder::new()
            .relay_domain("agents.test")
            .relay_domain("other.test")
            .transport("agents.test", &format!("lmtp:inet:{lmtp}"))
            .main_cf("myhostname", "mx.relay.test")
            .start()
            .expect("start postfix");
        eprintln!("postfix create+start took {:?}", t0.elapsed());
        assert_eq!(pf.postconf(&["-h", "myhostname"]).expect("postconf").trim(), "mx.relay.test");
        assert_eq!(
            pf.postconf(&["-h", "relay_domains"]).expect("postconf").trim(),
            "agents.test, other.test"
        );

        let (mut smtp, banner) = Smtp::connect_raw(pf.smtp_addr()).await;
        assert!(banner.starts_with("220 mx.relay.test"), "{banner}");
        let ehlo = smtp.cmd("EHLO client.example.org").await;
        assert!(ehlo.starts_with("250"), "{ehlo}");
        let t1 = Instant::now();
        let queued = smtp
            .send(
                "alice@example.org",
                &["bob@agents.test", "carol@agents.test"],
                "From: alice@example.org\r\nTo: bob@agents.test\r\nSubject: hi\r\n\r\nhello\r\n.leading dot\r\n",
            )
            .await;
        assert!(queued.contains("queued as"), "{queued}");
        let quit = smtp.cmd("QUIT").await;
        assert!(quit.starts_with("221"), "{quit}");

        let msg = tokio::time::timeout(Duration::from_secs(20), delivered.recv())
            .await
            .unwrap_or_else(|_| panic!("no LMTP delivery; maillog:\n{}", pf.read_log()))
            .expect("sink alive");
        eprintln!("DATA → LMTP receipt took {:?}", t1.elapsed());
        assert_eq!(msg.mail_from.to_ascii_uppercase(), "MAIL FROM:<ALICE@EXAMPLE.ORG>", "{msg:?}");
        let rcpts: Vec<&str> = msg.rcpts.iter().map(|r| r.split_whitespace().nth(1).unwrap_or("")).collect();
        assert_eq!(rcpts, ["TO:<bob@agents.test>", "TO:<carol@agents.test>"], "{msg:?}");
        assert!(msg.data.contains("Subject: hi\r\n"), "{msg:?}");
        assert!(msg.data.contains("\r\n.leading dot\r\n"), "dot-unstuffing: {msg:?}");
        assert!(msg.data.contains("Received: from client.example.org"), "{msg:?}");

        pf.wait_queue_empty(Duration::from_secs(20)).await.expect("queue drains");
        let line = pf.wait_log_contains("status=sent", Duration::from_secs(10)).await.expect("sent logged");
        assert!(line.contains("relay=127.0.0.1"), "{line}");

        let log = pf.read_log();
        assert!(!log.contains("warning:"), "the recipe should configure Postfix cleanly:\n{log}");
        let pid = pf.master_pid().expect("master running");
        let config_dir = pf.config_dir().to_owned();
        let base = pf.base.clone();
        let t2 = Instant::now();
        drop(pf);
        eprintln!("postfix stop+cleanup took {:?}", t2.elapsed());
        assert!(!alive(pid), "master {pid} survived drop");
        assert!(!base.exists());
        let status = Command::new(POSTFIX).arg("-c").arg(&config_dir).arg("status").output().expect("status");
        assert!(!status.status.success());
    }

    #[tokio::test]
    async fn lmtp_down_defers_then_flush_delivers() {
        if !require_postfix() {
            return;
        }
        // Reserve a port with nothing listening yet.
        let port = crate::free_port().expect("port");
        let pf = PostfixBuilder::new()
            .relay_domain("agents.test")
            .transport("agents.test", &format!("lmtp:inet:127.0.0.1:{port}"))
            .start()
            .expect("start postfix");
        let (mut smtp, _) = Smtp::connect_raw(pf.smtp_addr()).await;
        smtp.cmd("HELO c.test").await;
        smtp.send("a@example.org", &["x@agents.test"], "Subject: deferred\r\n\r\nbody\r\n").await;
        pf.wait_log_contains("status=deferred", Duration::from_secs(20)).await.expect("deferred");
        assert!(!pf.queue_is_empty());
        assert!(pf.wait_queue_empty(Duration::from_millis(200)).await.is_err());

        let (lmtp, mut delivered) = lmtp_sink_on(port).await;
        assert_eq!(lmtp.port(), port);
        pf.flush().expect("flush");
        let msg = tokio::time::timeout(Duration::from_secs(20), delivered.recv())
            .await
            .unwrap_or_else(|_| panic!("no delivery after flush; maillog:\n{}", pf.read_log()))
            .expect("sink");
        assert!(msg.data.contains("Subject: deferred"));
        pf.wait_queue_empty(Duration::from_secs(20)).await.expect("drained");
        pf.stop().expect("stop");
        let status = pf.postfix(&["status"]);
        assert!(status.is_err(), "postfix status after stop: {status:?}");
    }

    /// Like [`lmtp_sink`] but on a given port (for the deferred-then-available case).
    async fn lmtp_sink_on(port: u16) -> (SocketAddr, mpsc::UnboundedReceiver<Delivered>) {
        // Start the normal sink, then forward the fixed port to it: keeps one sink
        // implementation.
        let (inner, rx) = lmtp_sink().await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind lmtp port");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(inner).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        (addr, rx)
    }

    #[test]
    fn busy_listener_is_named_in_the_error() {
        if !require_postfix() {
            return;
        }
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = PostfixBuilder::new()
            .master_cf_service(&format!("{addr} inet n - n - - smtpd"))
            .start()
            .expect_err("the extra listener's port is taken");
        assert!(format!("{err:#}").contains(&format!("already in use: [{addr}]")), "{err:#}");
    }

    #[tokio::test]
    async fn dead_milter_tempfails_and_extra_listener_works() {
        if !require_postfix() {
            return;
        }
        let dead_milter = crate::free_port().expect("port");
        let submission = crate::free_port().expect("port");
        let pf = PostfixBuilder::new()
            .relay_domain("agents.test")
            .milter(&format!("inet:127.0.0.1:{dead_milter}"))
            .master_cf_service(&format!(
                "127.0.0.1:{submission} inet n - n - - smtpd\n  -o syslog_name=postfix/originating\n  -o smtpd_milters=\n  -o milter_macro_daemon_name=ORIGINATING"
            ))
            .start()
            .expect("start postfix");
        assert_eq!(pf.postconf(&["-h", "milter_default_action"]).expect("postconf").trim(), "tempfail");

        let (mut smtp, _) = Smtp::connect_raw(pf.smtp_addr()).await;
        smtp.cmd("EHLO c.test").await;
        let r = smtp.cmd("MAIL FROM:<a@example.org>").await;
        assert!(r.starts_with("451 4.7.1"), "dead milter must tempfail: {r}");
        smtp.cmd("QUIT").await;

        // Config edits: reload is accepted (but asynchronous); restart makes them certain.
        pf.postconf(&["-e", "smtpd_milters ="]).expect("postconf -e");
        pf.reload().expect("reload");
        pf.wait_log_contains("reload -- version", Duration::from_secs(10)).await.expect("reloaded");
        let pid = pf.master_pid().expect("master");
        pf.restart().expect("restart");
        assert_ne!(pf.master_pid().expect("new master"), pid);
        let (mut smtp, _) = Smtp::connect_raw(pf.smtp_addr()).await;
        smtp.cmd("EHLO c.test").await;
        let r = smtp.cmd("MAIL FROM:<a@example.org>").await;
        assert!(r.starts_with("250"), "after reload without milter: {r}");

        // The extra service bypasses the milter (smtpd_milters= override) and accepts mail.
        let (mut sub, banner) = Smtp::connect_raw(SocketAddr::from((Ipv4Addr::LOCALHOST, submission))).await;
        assert!(banner.starts_with("220"), "{banner}");
        sub.cmd("EHLO c.test").await;
        let r = sub.cmd("MAIL FROM:<a@example.org>").await;
        assert!(r.starts_with("250"), "{r}");
        let master_cf = std::fs::read_to_string(pf.config_dir().join("master.cf")).expect("master.cf");
        assert!(master_cf.contains("milter_macro_daemon_name=ORIGINATING"));
        assert!(
            !master_cf.lines().any(|l| !l.starts_with('#') && l.split_whitespace().nth(4) == Some("y")),
            "chroot left on:\n{master_cf}"
        );
    }
}
