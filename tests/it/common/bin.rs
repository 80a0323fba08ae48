//! Running the `postagent` binary as an operator would: a command, or `serve` in the
//! background with its log lines and announced address.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_postagent");

pub fn postagent(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("POSTAGENT_") {
            cmd.env_remove(k);
        }
    }
    // Never the host's /etc/postagent/postagent.toml (an empty file is the defaults); a
    // test's own --config still wins over this.
    cmd.env("POSTAGENT_CONFIG", "/dev/null");
    cmd
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    postagent(dir, args).output().expect("run postagent")
}

/// `postagent ARGS` in `dir` with `input` on its stdin (e.g. `verify < message.eml`).
pub fn run_with_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = postagent(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postagent");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait for postagent")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `postagent serve`, its log lines, and the address it announced.
pub struct Server {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line logged so far (stderr), for assertions over the whole log.
    log: Arc<Mutex<Vec<String>>>,
    pub addr: String,
    /// The milter's and the LMTP server's addresses, when those roles run on TCP.
    pub milter_addr: Option<String>,
    pub lmtp_addr: Option<String>,
}

impl Server {
    /// Starts `postagent ARGS`. A `serve` that names no milter, LMTP or socketmap listener
    /// gets each on 127.0.0.1:0 (a `milter` its socketmap), so tests never fight over the
    /// default ports.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let mut args: Vec<&str> = args.to_vec();
        let defaults: &[&str] = match args.first() {
            Some(&"serve") => &["--milter-listen", "--lmtp-listen", "--socketmap-listen"],
            Some(&"milter") => &["--socketmap-listen"],
            _ => &[],
        };
        for flag in defaults {
            if !args.contains(flag) {
                args.extend([*flag, "127.0.0.1:0"]);
            }
        }
        let child =
            postagent(dir, &args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn");
        Self::watch(child, &args)
    }

    /// `postagent ARGS` started as systemd starts a socket-activated service: `listeners`
    /// (name, socket) handed over as fds 3, 4, … (`postagent_lab::activation`). The caller
    /// keeps the sockets, so they outlive this process.
    pub fn start_activated<S: std::os::fd::AsFd>(
        dir: &Path,
        args: &[&str],
        listeners: &[(&str, &S)],
    ) -> Self {
        let child = postagent_lab::activation::spawn(std::path::Path::new(BIN), args, listeners, |cmd| {
            cmd.current_dir(dir).env_remove("RUST_LOG").env("POSTAGENT_CONFIG", "/dev/null");
            for (k, _) in std::env::vars() {
                if k.starts_with("POSTAGENT_") {
                    cmd.env_remove(k);
                }
            }
            cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        })
        .expect("spawn");
        Self::watch(child, args)
    }

    /// Follows a started `postagent`'s log until its listeners are up.
    fn watch(mut child: Child, args: &[&str]) -> Self {
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().expect("log lock").push(line.clone());
                // The receiver may be gone (the Server was dropped); keep draining stderr.
                let _ = tx.send(line);
            }
        });
        let mut server = Self { child, lines, log, addr: String::new(), milter_addr: None, lmtp_addr: None };
        let wants_api = args.iter().any(|a| *a == "serve" || *a == "api");
        let ready = if wants_api { "API listening on" } else { "listening on" };
        loop {
            let line = server.wait_for("listening on");
            let addr = line
                .rsplit("listening on ")
                .next()
                .and_then(|a| a.split_whitespace().next())
                .unwrap_or("")
                .to_owned();
            if line.contains("milter listening on") {
                server.milter_addr = Some(addr);
            } else if line.contains("LMTP listening on") {
                server.lmtp_addr = Some(addr);
            } else if line.contains("API listening on") {
                server.addr = addr;
            }
            if line.contains(ready) {
                break server;
            }
        }
    }

    pub fn wait_for(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("postagent never logged {needle:?} ({e}); it logged:\n{}", seen.join("\n")),
            }
        }
    }

    /// Everything logged so far, one line per line.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit: its stderr reaches end-of-file when it does, which
    /// closes the log channel; no polling.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("postagent did not exit after the signal"),
            }
        }
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
