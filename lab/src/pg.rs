//! A throwaway PostgreSQL cluster per test process (or per test, if a test needs its own).
//!
//! Why a real cluster and not SQLite-in-PG-clothing: postagent's SQL runs on PostgreSQL in
//! production, and the differences (types, locking, `RETURNING`, errors) are exactly what
//! tests must catch. A cluster with `fsync=off` starts in ~1 s; each test then takes its own
//! fresh database from [`PgCluster::create_database`], so tests never see each other's rows.
//!
//! The API is synchronous (`std::process`) on purpose: it works from a plain `#[test]`, from
//! any tokio runtime flavour, and from a `static` initialiser.
//!
//! Recipe (measured in the team's postfix-lab notes (shared/postfix-lab.md) §6): `initdb` refuses to run as root, so as
//! root every server-side command runs via `runuser -u postgres --`, and the data and socket
//! dirs are pre-created and chowned to `postgres` (initdb cannot create them under a
//! root-owned parent). The server listens on a unix socket only (`listen_addresses=''`), so
//! the "port" merely names the socket file and nothing is exposed on the network.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::Context as _;

use crate::{run, sh_quote};

/// A running PostgreSQL cluster in its own temp dir, reachable over a unix socket.
///
/// Dropping a cluster obtained from [`PgCluster::start`] stops it and deletes its files.
/// The one from [`PgCluster::shared`] lives in a `static` and is never dropped; a watchdog
/// process stops and deletes it once the test process has exited.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    data_dir: PathBuf,
    sock_dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Flushes its WAL at every commit, as a production server does; test clusters skip
    /// that (they are thrown away), benchmarks that compare backends must not.
    durable: bool,
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// The newest installed server's `bin` dir: the highest-numbered
    /// `/usr/lib/postgresql/<version>/bin` that holds `initdb` (Debian layout; several major
    /// versions can be installed side by side).
    pub fn bin_dir() -> Option<PathBuf> {
        let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .max_by_key(|(v, _)| *v)
            .map(|(_, bin)| bin)
    }

    /// True when PostgreSQL is installed. When not: panics in CI, else prints `SKIP:` and
    /// returns false (see [`crate::require_that`]).
    pub fn available() -> bool {
        crate::require_that(
            Self::bin_dir().is_some(),
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)",
            "install the postgresql package",
        )
    }

    /// Creates and starts a new cluster (initdb + `pg_ctl start -w`, which returns only once
    /// the server accepts connections). Takes about 1 s, more under load.
    pub fn start() -> anyhow::Result<PgCluster> {
        Self::start_with(false)
    }

    /// [`Self::start`] with PostgreSQL's durable defaults (`fsync`, `synchronous_commit`,
    /// `full_page_writes` on), for benchmarks that compare it with SQLite's durable commits.
    pub fn start_durable() -> anyhow::Result<PgCluster> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> anyhow::Result<PgCluster> {
        let t0 = Instant::now();
        let bin_dir = Self::bin_dir().context("PostgreSQL is not installed")?;
        let dir = crate::world_traversable_tempdir("pg")?;
        let as_postgres = crate::is_root();
        let cluster = PgCluster {
            data_dir: dir.join("data"),
            sock_dir: dir.join("s"),
            dir,
            bin_dir,
            port: crate::free_port()?,
            as_postgres,
            durable,
        };
        // From here on, `cluster`'s Drop cleans up whatever was created if a step fails.
        cluster.init_and_start()?;
        tracing::debug!(dir = %cluster.dir.display(), elapsed = ?t0.elapsed(), "PostgreSQL cluster started");
        Ok(cluster)
    }

    fn init_and_start(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(&self.data_dir)?;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir(&self.sock_dir)?;
        if self.as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&self.data_dir).arg(&self.sock_dir))?;
        }
        run(self.server_cmd("initdb").arg("-D").arg(&self.data_dir).args([
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "-U",
            "postgres",
        ]))?;
        // The socket path is SOCKDIR/.s.PGSQL.PORT and must fit sockaddr_un (~107 bytes).
        let sock_path_len = self.sock_dir.as_os_str().len() + "/.s.PGSQL.65535".len();
        anyhow::ensure!(sock_path_len < 100, "socket dir path too long: {}", self.sock_dir.display());
        self.start_server()?;
        // Covers the shared cluster (never dropped) and a test process that dies abnormally.
        crate::spawn_watchdog(&self.data_dir, &self.stop_script())?;
        Ok(())
    }

    /// The postmaster's process id (the first line of `postmaster.pid`), while it runs; its
    /// children are the backends, so its process tree is the server's whole CPU cost.
    pub fn server_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping the cluster, so a test can see what
    /// postagent does while its database is unreachable. [`Self::start_server`] brings it back.
    pub fn stop_server(&self) -> anyhow::Result<()> {
        run(self.server_cmd("pg_ctl").arg("-D").arg(&self.data_dir).args(["-m", "fast", "-w", "stop"]))
            .map(drop)
    }

    /// `pg_ctl start -w`: returns once the server accepts connections.
    pub fn start_server(&self) -> anyhow::Result<()> {
        let fast =
            if self.durable { "" } else { " -c fsync=off -c synchronous_commit=off -c full_page_writes=off" };
        let opts = format!(
            "-c listen_addresses='' -k {} -p {}{fast}",
            sh_quote(&self.sock_dir.to_string_lossy()),
            self.port
        );
        // The log goes inside the data dir: it is the only dir the postgres user may write.
        // pg_ctl's own output goes to a file too, so no daemon can ever hold our pipes open.
        let log = self.data_dir.join("server.log");
        let status = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("pg_ctl start failed ({status}); server log:\n{log}");
        }
        Ok(())
    }

    /// A command that runs `bin_dir/tool`, as the `postgres` user when we are root.
    fn server_cmd(&self, tool: &str) -> Command {
        let exe = self.bin_dir.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Shell snippet that stops the server and deletes the cluster dir (for the watchdog).
    fn stop_script(&self) -> String {
        let pg_ctl = sh_quote(&self.bin_dir.join("pg_ctl").to_string_lossy());
        let data = sh_quote(&self.data_dir.to_string_lossy());
        let prefix = if self.as_postgres { "runuser -u postgres -- " } else { "" };
        format!(
            "{prefix}{pg_ctl} -D {data} -m immediate -w stop >/dev/null 2>&1; rm -rf {}",
            sh_quote(&self.dir.to_string_lossy())
        )
    }

    /// The per-process shared cluster, started on first use.
    ///
    /// Returns `None` when PostgreSQL is not installed and we are not in CI (after printing
    /// `SKIP:`), so tests do `let Some(pg) = PgCluster::shared() else { return };`.
    /// Panics when PostgreSQL is absent in CI, or when it is installed but fails to start
    /// (a broken installation must not look like a skipped test). Every later call after a
    /// failed start panics with the same message instead of retrying.
    pub fn shared() -> Option<&'static PgCluster> {
        static SHARED: OnceLock<Option<Result<PgCluster, String>>> = OnceLock::new();
        let slot = SHARED.get_or_init(|| {
            Self::bin_dir()?;
            Some(Self::start().map_err(|e| format!("{e:#}")))
        });
        match slot {
            None => {
                Self::available();
                None
            }
            Some(Ok(cluster)) => Some(cluster),
            Some(Err(e)) => panic!("cannot start the shared PostgreSQL cluster: {e}"),
        }
    }

    /// Creates a fresh, empty database with a unique name (pid + counter, so clusters and
    /// processes never clash) and returns its sqlx URL (see [`PgCluster::url`]).
    pub fn create_database(&self) -> anyhow::Result<String> {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// The sqlx URL of database `db`, over the unix socket:
    /// `postgres://postgres@localhost/DB?host=SOCKDIR&port=PORT`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@localhost/{db}?host={}&port={}", self.sock_dir.display(), self.port)
    }

    /// Runs one SQL command with `psql` in database `db` and returns its unaligned,
    /// tuples-only output (handy for assertions that bypass the code under test).
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        run(Command::new(self.bin_dir.join("psql"))
            .arg("-h")
            .arg(&self.sock_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .env_remove("PGOPTIONS"))
    }

    /// The unix-socket directory (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.sock_dir
    }

    /// The port that names the socket file `.s.PGSQL.<port>`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (holds `server.log`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl PgCluster {
    /// The postmaster's pid, from the first line of `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pidfile = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let pid = self.postmaster_pid();
        // `immediate`: nothing to preserve, and it is the fastest stop.
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // `pg_ctl -w stop` returns once postmaster.pid is gone, a moment before the process
        // itself has exited; wait for that too, so "dropped" means "not running".
        if let Some(pid) = pid {
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while crate::process_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        // Removing the data dir also tells the watchdog to exit.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_cluster_creates_distinct_databases() {
        let Some(pg) = PgCluster::shared() else { return };
        let a = pg.create_database().expect("create db a");
        let b = pg.create_database().expect("create db b");
        assert_ne!(a, b);
        assert!(a.starts_with("postgres://postgres@localhost/t"), "{a}");
        assert!(a.contains(&format!("host={}&port={}", pg.socket_dir().display(), pg.port())), "{a}");
        let db = a.split('/').nth(3).and_then(|s| s.split('?').next()).expect("db name");
        pg.psql(db, "CREATE TABLE t (id int primary key, v text)").expect("create table");
        pg.psql(db, "INSERT INTO t VALUES (1, 'x')").expect("insert");
        assert_eq!(pg.psql(db, "SELECT v FROM t").expect("select").trim(), "x");
        assert_eq!(pg.psql(db, "SHOW fsync").expect("show").trim(), "off");
        // Many tests create their databases at the same moment.
        let urls: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| pg.create_database().expect("concurrent create"))).collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let unique: std::collections::HashSet<&String> = urls.iter().collect();
        assert_eq!(unique.len(), urls.len());
        let version = pg.psql(db, "SHOW server_version_num").expect("version");
        assert!(version.trim().parse::<u32>().expect("numeric") >= 150000, "{version}");
    }

    #[test]
    fn own_cluster_is_stopped_and_removed_on_drop() {
        if !PgCluster::available() {
            return;
        }
        let t0 = Instant::now();
        let pg = PgCluster::start().expect("start cluster");
        eprintln!("cluster start took {:?}", t0.elapsed());
        let url = pg.create_database().expect("create db");
        assert!(url.contains("?host=/tmp/pg"), "{url}");
        let pid = pg.postmaster_pid().expect("postmaster.pid");
        let dir = pg.dir.clone();
        assert!(crate::process_alive(pid));
        let t1 = Instant::now();
        drop(pg);
        eprintln!("cluster stop took {:?}", t1.elapsed());
        assert!(!crate::process_alive(pid), "postmaster {pid} still running");
        assert!(!dir.exists(), "{} not removed", dir.display());
    }
}
