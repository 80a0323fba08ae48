//! The one listener type of every role (API, milter, LMTP, socketmap, metrics): TCP or a
//! unix socket, bound with the configured accept backlog, and a unix socket with the mode and
//! group a chrooted Postfix needs; or handed over by systemd ([`Inherited`]), so the socket
//! outlives the process and Postfix's connections wait in its backlog through a restart.

use crate::config::ListenAddr;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A connection [`Listener::accept`] took: TCP with its peer, or a unix socket's.
#[derive(Debug)]
pub enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

/// How sockets are bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// Connections the kernel queues before we accept them (capped by `net.core.somaxconn`).
    pub backlog: u32,
    /// Mode of a unix socket we create.
    pub mode: u32,
    /// Group given to a unix socket we create; `None` leaves the process's group.
    pub gid: Option<u32>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self { backlog: 4096, mode: 0o660, gid: None }
    }
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Listener {
    /// Binds `addr`. A stale unix socket left by a crash is replaced (anything else at that
    /// path is refused); a new one gets the mode and group of `opts`.
    pub async fn bind(addr: &ListenAddr, opts: &SocketOptions) -> io::Result<Listener> {
        let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
        match addr {
            ListenAddr::Tcp(a) => {
                let found = tokio::net::lookup_host(a.as_str())
                    .await
                    .map_err(|e| context(e, format!("cannot resolve {a}")))?;
                let mut last =
                    io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{a} names no address"));
                for sa in found {
                    let socket = if sa.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()?
                    } else {
                        tokio::net::TcpSocket::new_v6()?
                    };
                    // As std and tokio do: a restart may rebind while old connections linger.
                    socket.set_reuseaddr(true)?;
                    match socket.bind(sa).and_then(|()| socket.listen(opts.backlog)) {
                        Ok(l) => return Ok(Listener::Tcp(l)),
                        Err(e) => last = context(e, format!("cannot listen on {sa}")),
                    }
                }
                Err(last)
            }
            ListenAddr::Unix(path) => {
                use std::os::unix::fs::PermissionsExt;
                remove_stale_socket(path)?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| context(e, format!("cannot create {}", dir.display())))?;
                }
                let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
                let bound = socket2::SockAddr::unix(path)
                    .and_then(|sa| socket.bind(&sa))
                    .and_then(|()| socket.listen(backlog))
                    .and_then(|()| socket.set_nonblocking(true));
                bound.map_err(|e| context(e, format!("cannot listen on unix:{}", path.display())))?;
                let l = UnixListener::from_std(std::os::unix::net::UnixListener::from(
                    std::os::fd::OwnedFd::from(socket),
                ))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.mode))
                    .map_err(|e| context(e, format!("cannot chmod {}", path.display())))?;
                if let Some(gid) = opts.gid {
                    std::os::unix::fs::chown(path, None, Some(gid))
                        .map_err(|e| context(e, format!("cannot give {} to group {gid}", path.display())))?;
                }
                Ok(Listener::Unix(l))
            }
        }
    }

    /// Where it listens: `IP:PORT` (the port really bound, for port 0) or `unix:PATH`.
    pub fn local(&self) -> String {
        match self {
            Self::Tcp(l) => l.local_addr().map_or_else(|e| format!("tcp (unknown: {e})"), |a| a.to_string()),
            Self::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix socket".to_owned()),
        }
    }

    /// The next connection. TCP ones get `TCP_NODELAY`: the roles answer in small writes,
    /// which Nagle and the peer's delayed ACK would stall by ~40 ms each (postfix-lab.md §8).
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, %peer, "cannot set TCP_NODELAY");
                }
                Ok(Accepted::Tcp(stream, peer))
            }
            Self::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }

    /// The path of a unix socket (removed when the process stops).
    pub fn unix_path(&self) -> Option<PathBuf> {
        match self {
            Self::Tcp(_) => None,
            Self::Unix(l) => l.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf)),
        }
    }
}

/// Listening sockets handed over by systemd socket activation (sd_listen_fds(3)): when
/// `LISTEN_PID` names this process, `LISTEN_FDS` sockets from fd 3 on, each named by
/// `LISTEN_FDNAMES` (`FileDescriptorName=` of its `.socket` unit: `api`, `milter`, `lmtp`,
/// `socketmap`, `metrics`). A role whose name is there takes that socket instead of binding.
pub struct Inherited {
    fds: listenfd::ListenFd,
    names: Vec<String>,
}

/// What [`Inherited::capture`] took from the environment, for the roles to take from.
static INHERITED: std::sync::Mutex<Option<Inherited>> = std::sync::Mutex::new(None);

impl Inherited {
    /// Takes the handed-over sockets out of the environment (reading it also clears the
    /// `LISTEN_*` variables, which must happen before any other thread runs: call it first
    /// thing in `main`). [`Inherited::take_captured`] hands them out later.
    pub fn capture() {
        let inherited = Self::from_env();
        if let Ok(mut slot) = INHERITED.lock() {
            *slot = Some(inherited);
        }
    }

    /// [`Inherited::take`] on what [`Inherited::capture`] took; `None` without it.
    pub fn take_captured(name: &str, addr: &ListenAddr) -> io::Result<Option<Listener>> {
        match INHERITED.lock() {
            Ok(mut slot) => match slot.as_mut() {
                Some(inherited) => inherited.take(name, addr),
                None => Ok(None),
            },
            Err(_) => Ok(None),
        }
    }

    /// What the environment hands over (nothing outside socket activation).
    fn from_env() -> Self {
        let fds = listenfd::ListenFd::from_env();
        let names = std::env::var("LISTEN_FDNAMES")
            .map(|n| n.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        Self { fds, names }
    }

    /// The socket named `name`, as `addr` says it is (TCP or unix); `None` when systemd
    /// handed over none by that name.
    pub fn take(&mut self, name: &str, addr: &ListenAddr) -> io::Result<Option<Listener>> {
        let Some(index) = self.names.iter().position(|n| n == name).filter(|i| *i < self.fds.len()) else {
            return Ok(None);
        };
        let mismatch = |kind: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("systemd's {name} socket (fd {}) is not a {kind} listener as {addr} says", index + 3),
            )
        };
        let listener = match addr {
            ListenAddr::Tcp(_) => {
                let l = self.fds.take_tcp_listener(index)?.ok_or_else(|| mismatch("TCP"))?;
                l.set_nonblocking(true)?;
                Listener::Tcp(TcpListener::from_std(l)?)
            }
            ListenAddr::Unix(_) => {
                let l = self.fds.take_unix_listener(index)?.ok_or_else(|| mismatch("unix"))?;
                l.set_nonblocking(true)?;
                Listener::Unix(UnixListener::from_std(l)?)
            }
        };
        // The configured address is what Postfix is told (setup, doctor): a socket unit that
        // listens elsewhere is a mistake worth a line, though it is served.
        let configured = match addr {
            ListenAddr::Tcp(a) => a.clone(),
            ListenAddr::Unix(p) => format!("unix:{}", p.display()),
        };
        if listener.local() != configured {
            tracing::warn!(
                "systemd's {name} socket listens on {}, but the configuration says {configured}",
                listener.local()
            );
        }
        Ok(Some(listener))
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| context(e, format!("cannot remove stale socket {}", path.display()))),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; refusing to replace it", path.display()),
        )),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_port_zero_and_unix_sockets_with_mode() {
        let l = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".into()), &SocketOptions::default())
            .await
            .expect("tcp");
        assert!(l.local().starts_with("127.0.0.1:") && !l.local().ends_with(":0"), "{}", l.local());
        assert_eq!(l.unix_path(), None);

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/x.sock");
        let opts = SocketOptions { mode: 0o600, ..SocketOptions::default() };
        let l = Listener::bind(&ListenAddr::Unix(path.clone()), &opts).await.expect("unix");
        assert_eq!(l.unix_path().as_deref(), Some(path.as_path()));
        assert_eq!(l.local(), format!("unix:{}", path.display()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        drop(l);
        // The socket file left behind is stale: binding again replaces it.
        let _again = Listener::bind(&ListenAddr::Unix(path.clone()), &opts).await.expect("rebind");
        // A regular file is never replaced.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let err = Listener::bind(&ListenAddr::Unix(file), &opts).await.expect_err("not a socket");
        assert!(err.to_string().contains("is not a socket"), "{err}");
    }

    #[tokio::test]
    async fn the_backlog_queues_connections_before_accept() {
        let opts = SocketOptions { backlog: 512, ..SocketOptions::default() };
        let l = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".into()), &opts).await.expect("tcp");
        let addr = l.local();
        // 300 connections complete their handshake without a single accept(): more than the
        // 128 a default-backlog unix listener or an old somaxconn would queue.
        let mut conns = Vec::new();
        for _ in 0..300 {
            let c = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            .expect("queued, not dropped")
            .expect("connect");
            conns.push(c);
        }
        assert_eq!(conns.len(), 300);
    }
}
