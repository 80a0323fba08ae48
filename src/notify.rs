//! systemd readiness (`Type=notify`): `READY=1` once every listener is bound and every role
//! runs, `RELOADING=1` around a SIGHUP reload, `STOPPING=1` on the way out. Nothing happens
//! when `NOTIFY_SOCKET` is unset (not under systemd).

use std::os::unix::net::UnixDatagram;

/// Sends `state` to systemd's notification socket, if there is one.
pub fn notify(state: &str) {
    if let Ok(path) = std::env::var("NOTIFY_SOCKET")
        && let Err(e) = notify_to(&path, state)
    {
        tracing::warn!("cannot notify systemd ({path}): {e}");
    }
}

/// Sends `state` to the socket at `path` (`@name` is an abstract socket, systemd's usual).
fn notify_to(path: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        notify_to(path.to_str().expect("utf-8"), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        assert!(notify_to("/nonexistent/notify.sock", "READY=1").is_err());
    }
}
