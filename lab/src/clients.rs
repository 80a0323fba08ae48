//! The Python clients the test suite drives (the e2a SDK at the versions postagent promises,
//! standardwebhooks, dkimpy, the MCP SDK), listed once in `tests/clients.txt`: one venv per line,
//! `<name> <pip spec>…`. `tests/run` installs them all up front; a test that finds its venv
//! missing or built for other specs builds it itself, once, under a lock shared by every test
//! binary.

use crate::{require, require_that};
use std::path::{Path, PathBuf};
use std::process::Command;

const LIST: &str = include_str!("../../tests/clients.txt");

/// Where the venvs live: `$POSTAGENT_TEST_CLIENTS`, else `<workspace>/target/test-clients`
/// (where `tests/run` puts them).
pub fn dir() -> PathBuf {
    std::env::var_os("POSTAGENT_TEST_CLIENTS").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("target/test-clients")
    })
}

/// The pip specs of venv `name` in `tests/clients.txt`.
pub fn specs(name: &str) -> Option<Vec<&'static str>> {
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&name))
        .map(|words| words[1..].to_vec())
}

/// The venv `name` of `tests/clients.txt`, ready (its `installed-spec` marker holds the specs
/// joined by spaces, exactly as `tests/run` writes it). `None` after a `SKIP:` line when
/// Python or PyPI is unavailable outside CI.
///
/// # Panics
/// When `name` is not in `tests/clients.txt` (a test's mistake).
pub fn venv(name: &str) -> Option<PathBuf> {
    let specs = specs(name).unwrap_or_else(|| panic!("{name} is not in tests/clients.txt"));
    let spec = specs.join(" ");
    if !require("python3", "install Python 3 with the venv module (tests/run does)") {
        return None;
    }
    let root = dir();
    std::fs::create_dir_all(&root).expect("test-clients directory");
    let dir = root.join(name);
    let marker = dir.join("installed-spec");
    // Tests sharing a venv build it once: the second waits on this lock, then finds it ready.
    let lock = std::fs::File::create(root.join(format!("{name}.lock"))).expect("lock file");
    lock.lock().expect("lock");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == spec) {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3").args(["-m", "venv"]).arg(&dir).status();
    if !require_that(made.is_ok_and(|s| s.success()), "python3 -m venv failed", "install python3-venv") {
        return None;
    }
    let pip = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(&specs)
        .output()
        .expect("run pip");
    if !require_that(
        pip.status.success(),
        &format!("pip install {spec} failed: {}", String::from_utf8_lossy(&pip.stderr)),
        "PyPI must be reachable",
    ) {
        return None;
    }
    std::fs::write(&marker, &spec).expect("marker");
    Some(dir)
}

/// The npm clients of `tests/npm/package.json` (locked by its `package-lock.json`), installed
/// with `npm ci` into `tests/npm/node_modules`: what `tests/run` does, done here once, under a
/// lock, when a test finds them missing or older than the lock. `None` after a `SKIP:` line
/// when npm is unavailable outside CI.
pub fn npm_modules() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("tests/npm");
    if !require("npm", "install Node.js and npm (tests/run does)") {
        return None;
    }
    std::fs::create_dir_all(dir()).expect("test-clients directory");
    let lock = std::fs::File::create(dir().join("npm.lock")).expect("lock file");
    lock.lock().expect("lock");
    let marker = root.join("node_modules/.installed-lock");
    let want = std::fs::read(root.join("package-lock.json")).expect("tests/npm/package-lock.json");
    if std::fs::read(&marker).is_ok_and(|m| m == want) {
        return Some(root.join("node_modules"));
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&root)
        .output()
        .expect("run npm");
    if !require_that(
        out.status.success(),
        &format!("npm ci failed: {}", String::from_utf8_lossy(&out.stderr)),
        "the npm registry must be reachable",
    ) {
        return None;
    }
    std::fs::write(&marker, &want).expect("marker");
    Some(root.join("node_modules"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_is_pinned() {
        for name in [
            "sdk-5.3.0",
            "sdk-5.8.1",
            "mail-5.3.0",
            "mail-5.8.1",
            "webhooks-5.3.0",
            "dkimpy",
            "mcp",
            "langchain",
        ] {
            let specs = specs(name).unwrap_or_else(|| panic!("{name} listed"));
            assert!(!specs.is_empty() && specs.iter().all(|s| s.contains("==")), "{name}: {specs:?}");
        }
        assert_eq!(specs("nope"), None);
    }
}
