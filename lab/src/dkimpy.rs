//! An independent DKIM signer: Python's dkimpy from PyPI (the `dkimpy` venv of
//! [`crate::clients`]), with an RSA key made by the openssl CLI. Independent of mail-auth, so a pass is
//! interoperability, not a round trip through one library.

use crate::require;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
