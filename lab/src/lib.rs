//! The postagent lab: real local twins of what postagent plugs into: a throwaway PostgreSQL
//! Postfix instance ([`postfix`]) and an authoritative loopback DNS server ([`dns`]).
//!
//! The point of this crate is that tests talk to the *real* software postagent plugs into,
//! not to mocks, while still running many tests in parallel on one machine: everything binds
//! to 127.0.0.1 with port 0 or a freshly picked free port, and lives in its own temp dir.
//!
//! External tools (Postfix, PostgreSQL, dig) may be missing on a developer machine. Tests
//! call [`require`] (or the module helpers built on it) first: on a laptop a missing tool is
//! a visible `SKIP:` line and an early return, in CI it is a hard failure, so CI can never go
//! green by silently skipping everything.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod activation;
pub mod browser;
pub mod clients;
pub mod dkimpy;
pub mod dns;
pub mod lmtp_sink;
pub mod mail_lab;
pub mod pg;
pub mod postfix;
pub mod receiver;
pub mod smtp;

pub use dns::DnsServer;
pub use pg::PgCluster;
pub use postfix::{PostfixBuilder, PostfixInstance};

/// True when running in CI (`CI=true` or `CI=1`, the convention of GitHub Actions, GitLab and
/// most other runners). In CI a missing external tool fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Checks that an external tool is installed. `tool` is an absolute path (checked as is) or a
/// bare name (looked up on `PATH`); `why` tells the reader how to get it, e.g.
/// `"install the postfix package"`.
///
/// Returns true when present. When absent: panics in CI (see [`in_ci`]), otherwise prints a
/// `SKIP:` line to stderr and returns false so the test can `return` early:
///
/// ```no_run
/// if !postagent_lab::require("dig", "install the dnsutils package") {
///     return;
/// }
/// ```
pub fn require(tool: &str, why: &str) -> bool {
    require_that(find_tool(tool).is_some(), &format!("{tool} is not installed"), why)
}

/// The general form of [`require`]: `present` is the outcome of any check, `what` describes
/// the failed condition (e.g. `"PostgreSQL is not installed"`), `why` how to fix it.
/// Panics in CI when `present` is false; otherwise prints `SKIP: …` and returns false.
pub fn require_that(present: bool, what: &str, why: &str) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("CI=true and {what}: {why}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    eprintln!("SKIP: {test}: {what}: {why}");
    false
}

/// Resolves `tool` like a shell would: a path containing `/` must exist and be executable,
/// a bare name is searched on `PATH`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when this process runs as root. Postfix's `master` must start as root; PostgreSQL
/// refuses root, so [`pg`] switches to the `postgres` user only when this is true.
///
/// The owner of `/proc/self` is the effective uid, which avoids a libc dependency.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// True while process `pid` exists and is not a zombie (an exited daemon whose parent has not
/// reaped it yet is as good as gone for a test that checks nothing was left running).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: `pid (comm) state ...`; comm may contain spaces or parens, so split at the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Only for daemons that must be told a port number in their config (Postfix, PostgreSQL,
/// postagent behind a lab Postfix). Chosen at random *below* the kernel's ephemeral range
/// (`ip_local_port_range`): the client sockets of tests running in parallel take their ports
/// from that range, so none of them can grab this one before the daemon binds it (a port
/// from `bind(0)` could, and did). A port is handed out once per process, so two tests that
/// pick before either daemon binds never share one. Falls back to `bind(0)` when no such
/// range is left.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    static ISSUED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    if ephemeral_low > LOW + 1000 {
        let span = u64::from(ephemeral_low - LOW);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        // A cheap mix of time, pid and call count: distinct processes start far apart.
        let mut x = (nanos as u64)
            ^ (u64::from(std::process::id()) << 32)
            ^ CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = LOW + u16::try_from(x % span).unwrap_or(0);
            let mut issued = ISSUED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !issued.contains(&port)
                && TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
            {
                issued.push(port);
                return Ok(port);
            }
        }
    }
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(l.local_addr()?.port())
}

/// Creates a fresh directory `/tmp/<prefix>XXXXXX` with mode 0755 and returns it (not
/// auto-deleted; the owner removes it).
///
/// Always `/tmp`, never `$TMPDIR`: daemons that drop privileges (`postgres`, `postfix`) must
/// traverse every parent, and the path must stay short for unix-socket paths (~107 bytes).
pub(crate) fn world_traversable_tempdir(prefix: &str) -> anyhow::Result<PathBuf> {
    Ok(traversable_tempdir(prefix)?.keep())
}

/// A temporary directory under /tmp that other users (Postfix's, PostgreSQL's) may enter,
/// removed when dropped.
pub fn traversable_tempdir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Quotes `s` for `sh` (single quotes, embedded `'` escaped).
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r#"'\''"#))
}

/// Starts a detached `sh` that waits until this test process has exited (or `guard_dir` has
/// been removed by a normal cleanup), then runs `cleanup` (a shell snippet).
///
/// Why: a daemon started by a test outlives the test process if the test is killed, aborts,
/// or (for a `static`) simply never drops its handle. The watchdog polls `kill -0` every 0.5 s,
/// which costs nothing, and lives in its own process group so a Ctrl-C that kills the test
/// run does not kill the watchdog before it has cleaned up.
pub(crate) fn spawn_watchdog(guard_dir: &Path, cleanup: &str) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "while kill -0 {pid} 2>/dev/null && [ -d {dir} ]; do sleep 0.5; done; {cleanup}",
        pid = std::process::id(),
        dir = sh_quote(&guard_dir.to_string_lossy()),
    );
    // Never inherit our stdout/stderr: a lingering child holding the pipe would make whoever
    // reads the test output (cargo, CI, `| tee`) wait for it.
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(())
}

/// Runs a command to completion, capturing its output; an error carries the command line,
/// exit status, stdout and stderr so failures in test setup are self-explanatory.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| anyhow::anyhow!("cannot run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        anyhow::bail!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("/bin/sh").is_some());
        assert!(find_tool("definitely-not-a-tool-xyz").is_none());
        assert!(find_tool("/nonexistent/tool").is_none());
    }

    #[test]
    fn require_present_is_true() {
        assert!(require("sh", "install a shell"));
        assert!(require_that(true, "unused", "unused"));
    }

    #[test]
    #[ignore = "run only as a child process by missing_tool_skips_locally_and_fails_in_ci"]
    fn require_child() {
        if std::env::var_os("POSTAGENT_TESTSUPPORT_REQUIRE_CHILD").is_none() {
            return;
        }
        assert!(!require("postagent-no-such-tool", "install nothing"));
    }

    #[test]
    fn missing_tool_skips_locally_and_fails_in_ci() {
        let run_child = |ci: Option<&str>| {
            let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
            cmd.args(["--exact", "tests::require_child", "--ignored", "--nocapture"])
                .env("POSTAGENT_TESTSUPPORT_REQUIRE_CHILD", "1")
                .env_remove("CI");
            if let Some(ci) = ci {
                cmd.env("CI", ci);
            }
            let out = cmd.stdin(Stdio::null()).output().expect("run child");
            (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let (ok, stderr) = run_child(None);
        assert!(
            ok && stderr.contains(
                "SKIP: tests::require_child: postagent-no-such-tool is not installed: install nothing"
            ),
            "{stderr}"
        );
        for ci in ["true", "1"] {
            let (ok, stderr) = run_child(Some(ci));
            assert!(
                !ok && stderr
                    .contains("CI=true and postagent-no-such-tool is not installed: install nothing"),
                "{stderr}"
            );
        }
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r#"'it'\''s'"#);
    }

    /// Child half of [`watchdog_cleans_up_after_abort`]: starts the shared PostgreSQL cluster
    /// and a Postfix instance, reports them, and aborts so no destructor runs.
    #[test]
    #[ignore = "run only as a child process by watchdog_cleans_up_after_abort"]
    fn watchdog_child() {
        if std::env::var_os("POSTAGENT_TESTSUPPORT_WATCHDOG_CHILD").is_none() {
            return;
        }
        let pg = PgCluster::shared().expect("postgres");
        println!("PGPID {}", pg.postmaster_pid().expect("postmaster pid"));
        println!("DIR {}", pg.data_dir().display());
        let pf = PostfixBuilder::new().start().expect("postfix");
        println!("PFPID {}", pf.master_pid().expect("master pid"));
        println!("DIR {}", pf.config_dir().display());
        std::mem::forget(pf);
        std::process::abort();
    }

    /// A test process that dies without running destructors (abort, SIGKILL, a `static`)
    /// must not leave a postmaster or a Postfix master running, nor their temp dirs.
    #[test]
    fn watchdog_cleans_up_after_abort() {
        if !pg::PgCluster::available() || !postfix::require_postfix() {
            return;
        }
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "tests::watchdog_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("POSTAGENT_TESTSUPPORT_WATCHDOG_CHILD", "1")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run child");
        assert!(!out.status.success(), "child should have aborted");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| -> Vec<String> {
            // libtest prints "test name ... " before the child's first line.
            stdout.lines().filter_map(|l| l.split_once(key)).map(|(_, v)| v.trim().to_owned()).collect()
        };
        let pids: Vec<u32> =
            field("PGPID ").iter().chain(&field("PFPID ")).map(|p| p.parse().expect("pid")).collect();
        let dirs = field("DIR ");
        assert_eq!((pids.len(), dirs.len()), (2, 2), "child output:\n{stdout}");
        // The watchdog polls every 0.5 s; the stop itself takes well under a second.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while pids.iter().any(|&p| process_alive(p)) || dirs.iter().any(|d| Path::new(d).exists()) {
            assert!(
                std::time::Instant::now() < deadline,
                "watchdog did not clean up: pids {pids:?} dirs {dirs:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_port().expect("free port"), 0);
    }
}
