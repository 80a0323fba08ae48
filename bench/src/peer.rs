//! The milters bench/inbound compares postagent with, on unix sockets as Debian ships them:
//!
//! - [`PeerStack`]: Debian's OpenDKIM (verify only) and OpenDMARC, the stack sysadmins run
//!   today, set up as ../shared/peer-stack.md measured it (its pitfalls are cited where they
//!   shape a line);
//! - [`NullMilter`]: `bench-nullmilter`, an indymilter that takes every header and body chunk
//!   and does nothing: what any milter that verifies DKIM must at least cost Postfix.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPENDKIM: &str = "/usr/sbin/opendkim";
const OPENDMARC: &str = "/usr/sbin/opendmarc";
const PUBLIC_SUFFIX_LIST: &str = "/usr/share/publicsuffix/public_suffix_list.dat";

/// A milter process listening on a unix socket.
struct Milter {
    child: Child,
    socket: PathBuf,
}

impl Milter {
    fn spawn(command: &mut Command, socket: PathBuf, log: &Path) -> anyhow::Result<Milter> {
        let log = std::fs::File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {:?}", command.get_program()))?;
        let mut milter = Milter { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&milter.socket).is_err() {
            if let Some(status) = milter.child.try_wait()? {
                anyhow::bail!("{:?} exited with {status} before listening", command.get_program());
            }
            anyhow::ensure!(Instant::now() < deadline, "nothing listens on {}", milter.socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(milter)
    }

    fn smtpd_milter(&self) -> String {
        format!("unix:{}", self.socket.display())
    }
}

impl Drop for Milter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OpenDKIM (verify) then OpenDMARC, each on a unix socket in a private directory.
pub struct PeerStack {
    opendkim: Milter,
    opendmarc: Milter,
    _dir: tempfile::TempDir,
}

impl PeerStack {
    /// Starts both, resolving through the DNS server on 127.0.0.1:53. `authserv_id` is
    /// Postfix's `myhostname`, so OpenDMARC trusts OpenDKIM's Authentication-Results.
    pub fn start(authserv_id: &str) -> anyhow::Result<PeerStack> {
        for tool in [OPENDKIM, OPENDMARC, "/usr/bin/unshare"] {
            anyhow::ensure!(Path::new(tool).exists(), "{tool} is missing: apt install opendkim opendmarc");
        }
        let dir = crate::world_traversable_tempdir()?;
        let d = dir.path();
        // Both default to treating 127.0.0.1 as internal (OpenDKIM would sign instead of
        // verify, OpenDMARC would skip): pitfalls 2 and 3. A list without it keeps both checking.
        std::fs::write(d.join("internal-hosts"), "192.0.2.1\n")?;
        std::fs::write(
            d.join("opendkim.conf"),
            format!(
                "Mode v\nSocket local:{d}/opendkim.sock\nPidFile {d}/opendkim.pid\nBackground no\n\
                 Syslog no\nAuthservID {authserv_id}\nNameservers 127.0.0.1\n\
                 InternalHosts {d}/internal-hosts\nCanonicalization relaxed/simple\n\
                 OversignHeaders From\nUMask 0000\n",
                d = d.display()
            ),
        )?;
        std::fs::write(
            d.join("opendmarc.conf"),
            format!(
                "Socket local:{d}/opendmarc.sock\nPidFile {d}/opendmarc.pid\nBackground false\n\
                 Syslog false\nAuthservID {authserv_id}\nTrustedAuthservIDs {authserv_id}\n\
                 IgnoreAuthenticatedClients true\nIgnoreHosts {d}/internal-hosts\n\
                 SPFSelfValidate true\nPublicSuffixList {PUBLIC_SUFFIX_LIST}\nUMask 0000\n",
                d = d.display()
            ),
        )?;
        let opendkim = Milter::spawn(
            Command::new(OPENDKIM).arg("-f").arg("-x").arg(d.join("opendkim.conf")),
            d.join("opendkim.sock"),
            &d.join("opendkim.log"),
        )?;
        // OpenDMARC resolves through libresolv, which reads /etc/resolv.conf: a private mount
        // namespace gets a resolv.conf naming 127.0.0.1 bound over it; the host's file is
        // never touched (pitfall 10). `exec` keeps the PID opendmarc's.
        std::fs::write(d.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
        let script = format!(
            "mount --bind {d}/resolv.conf /etc/resolv.conf && exec {OPENDMARC} -f -c {d}/opendmarc.conf",
            d = d.display()
        );
        let opendmarc = Milter::spawn(
            Command::new("/usr/bin/unshare").args(["-m", "sh", "-c", &script]),
            d.join("opendmarc.sock"),
            &d.join("opendmarc.log"),
        )?;
        Ok(PeerStack { opendkim, opendmarc, _dir: dir })
    }

    /// `smtpd_milters`: OpenDKIM first, so OpenDMARC finds its verdict.
    pub fn smtpd_milters(&self) -> String {
        format!("{}, {}", self.opendkim.smtpd_milter(), self.opendmarc.smtpd_milter())
    }

    pub fn pids(&self) -> [u32; 2] {
        [self.opendkim.child.id(), self.opendmarc.child.id()]
    }
}

/// `bench-nullmilter` on a unix socket.
pub struct NullMilter {
    milter: Milter,
    _dir: tempfile::TempDir,
}

impl NullMilter {
    pub fn start(bin: &Path) -> anyhow::Result<NullMilter> {
        let dir = crate::world_traversable_tempdir()?;
        let socket = dir.path().join("null.sock");
        let milter =
            Milter::spawn(Command::new(bin).arg(&socket), socket.clone(), &dir.path().join("null.log"))?;
        Ok(NullMilter { milter, _dir: dir })
    }

    pub fn smtpd_milter(&self) -> String {
        self.milter.smtpd_milter()
    }

    pub fn pid(&self) -> u32 {
        self.milter.child.id()
    }
}
