//! An independent DKIM signer: Python's dkimpy from PyPI in a venv under the target
//! directory, with an RSA key made by the openssl CLI. Independent of mail-auth, so a pass is
//! interoperability, not a round trip through one library.

use crate::{require, require_that};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SPEC: &str = "dkimpy==1.1.8";

/// The venv with dkimpy under `cache_dir` (a test's `CARGO_TARGET_TMPDIR`), built once and
/// shared by tests (and test binaries) through a lock file. `None` (after a `SKIP:` line)
/// when Python is unavailable outside CI.
pub fn venv(cache_dir: &Path) -> Option<PathBuf> {
    if !require("python3", "install Python 3 with the venv module") {
        return None;
    }
    let dir = cache_dir.join("dkimpy-venv");
    let marker = dir.join("installed-spec");
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("lock file");
    lock.lock().expect("lock");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == SPEC) {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3").args(["-m", "venv"]).arg(&dir).status();
    if !require_that(made.is_ok_and(|s| s.success()), "python3 -m venv failed", "install python3-venv") {
        return None;
    }
    let pip = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", SPEC])
        .output()
        .expect("run pip");
    let stderr = String::from_utf8_lossy(&pip.stderr);
    if !require_that(
        pip.status.success(),
        &format!("pip install {SPEC} failed: {stderr}"),
        "PyPI must be reachable",
    ) {
        return None;
    }
    std::fs::write(&marker, SPEC).expect("marker");
    Some(dir)
}

/// A fresh 2048-bit RSA key: (PEM private key path, base64 public key for `p=`).
pub fn rsa_key(dir: &Path) -> Option<(PathBuf, String)> {
    if !require("openssl", "install the openssl package") {
        return None;
    }
    let key = dir.join("dkim.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .expect("openssl genrsa");
    assert!(made.success(), "openssl genrsa failed");
    let public =
        Command::new("openssl").args(["rsa", "-pubout", "-in"]).arg(&key).output().expect("openssl rsa");
    assert!(public.status.success(), "openssl rsa -pubout failed");
    let pem = String::from_utf8(public.stdout).expect("pem is ascii");
    let p: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Some((key, p))
}

/// How dkimpy signs: `canon` is `header/body` canonicalisation; `length` adds `l=`.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pub domain: &'a str,
    pub selector: &'a str,
    pub canon: &'a str,
    pub length: bool,
}

/// `message` (CRLF) with a DKIM-Signature by dkimpy prepended.
pub fn sign(venv: &Path, key: &Path, o: Options<'_>, message: &str) -> String {
    let script = "import sys, dkim\n\
        key = open(sys.argv[1], 'rb').read()\n\
        msg = sys.stdin.buffer.read()\n\
        h, b = sys.argv[4].split('/')\n\
        sig = dkim.sign(msg, sys.argv[3].encode(), sys.argv[2].encode(), key,\n\
            canonicalize=(h.encode(), b.encode()),\n\
            include_headers=[b'from', b'to', b'subject', b'date', b'message-id'],\n\
            length=(sys.argv[5] == 'l'))\n\
        sys.stdout.buffer.write(sig + msg)\n";
    let mut child = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(script)
        .arg(key)
        .arg(o.domain)
        .arg(o.selector)
        .arg(o.canon)
        .arg(if o.length { "l" } else { "-" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().expect("stdin").write_all(message.as_bytes()).expect("write message");
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "dkimpy failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("signed message is text")
}
