//! Starting a program as systemd starts a socket-activated service (sd_listen_fds(3)): the
//! caller binds and keeps the listening sockets, the program gets them as fds 3, 4, … with
//! `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` set. Because the caller keeps them, they
//! outlive the program: connections made while it is down wait in the kernel's backlog for
//! the next one, which is what a `.socket` unit gives a service that crashes and restarts.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::{Child, Command};

/// Where the sockets are parked in the wrapper shell before they move to 3, 4, …: well above
/// them, so moving one never overwrites another.
const PARK: i32 = 200;

/// Spawns `bin args…` with `listeners` (name, socket) handed over, through a bash wrapper
/// that puts them in place and execs `bin` (so `LISTEN_PID`, the wrapper's `$$`, is `bin`'s
/// pid). `configure` adds to the command (stdio, environment) before it starts.
pub fn spawn<S: AsFd>(
    bin: &Path,
    args: &[&str],
    listeners: &[(&str, &S)],
    configure: impl FnOnce(&mut Command),
) -> std::io::Result<Child> {
    let mut park = Vec::new();
    let mut place = Vec::new();
    let mut close = Vec::new();
    for (i, (_, socket)) in listeners.iter().enumerate() {
        let fd = socket.as_fd().as_raw_fd();
        let parked = PARK + i32::try_from(i).unwrap_or(0);
        park.push(format!("{parked}<&{fd}"));
        place.push(format!("{}<&{parked}", 3 + i));
        close.push(format!("{parked}<&-"));
    }
    let names: Vec<&str> = listeners.iter().map(|(n, _)| *n).collect();
    let script = format!(
        "exec {}; exec {}; exec {}; export LISTEN_FDS={} LISTEN_FDNAMES={} LISTEN_PID=$$; exec \"$0\" \"$@\"",
        park.join(" "),
        place.join(" "),
        close.join(" "),
        listeners.len(),
        names.join(":"),
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg(bin).args(args);
    configure(&mut cmd);
    // Inherited only by this child: close-on-exec is cleared for the spawn and set again.
    let refs: Vec<socket2::SockRef<'_>> = listeners.iter().map(|(_, s)| socket2::SockRef::from(*s)).collect();
    for r in &refs {
        r.set_cloexec(false)?;
    }
    let child = cmd.spawn();
    for r in &refs {
        r.set_cloexec(true)?;
    }
    child
}
