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

/// Installs once what `marker` says is installed when it holds `want`: under `lock_name` (tests
/// sharing a client build it once; the second waits, then finds it ready), `install` runs only
/// when the marker differs, and its failure is a `SKIP:` (a failure under CI) with `fix`.
fn installed(
    lock_name: &str,
    marker: &Path,
    want: &[u8],
    fix: &str,
    install: impl FnOnce() -> Result<(), String>,
) -> bool {
    std::fs::create_dir_all(dir()).expect("test-clients directory");
    let lock = std::fs::File::create(dir().join(format!("{lock_name}.lock"))).expect("lock file");
    lock.lock().expect("lock");
    if std::fs::read(marker).is_ok_and(|m| m == want) {
        return true;
    }
    match install() {
        Ok(()) => {
            std::fs::write(marker, want).expect("marker");
            true
        }
        Err(e) => require_that(false, &e, fix),
    }
}

/// The output of a finished command, as an error naming it when it failed.
fn ran(what: &str, out: std::io::Result<std::process::Output>) -> Result<(), String> {
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("{what} failed: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => Err(format!("{what} cannot run: {e}")),
    }
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
    let dir = dir().join(name);
    let ready =
        installed(name, &dir.join("installed-spec"), spec.as_bytes(), "PyPI must be reachable", || {
            let _ = std::fs::remove_dir_all(&dir);
            ran("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(&dir).output())?;
            let pip = Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(&specs)
                .output();
            ran(&format!("pip install {spec}"), pip)
        });
    ready.then_some(dir)
}

/// The npm clients of `tests/npm/package.json` (locked by its `package-lock.json`), installed
/// with `npm ci` into `tests/npm/node_modules`: what `tests/run` does, done here once when a
/// test finds them missing or installed from another lock. `None` after a `SKIP:` line when
/// npm is unavailable outside CI.
pub fn npm_modules() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("tests/npm");
    if !require("npm", "install Node.js and npm (tests/run does)") {
        return None;
    }
    let want = std::fs::read(root.join("package-lock.json")).expect("tests/npm/package-lock.json");
    let marker = root.join("node_modules/.installed-lock");
    let ready = installed("npm", &marker, &want, "the npm registry must be reachable", || {
        ran(
            "npm ci",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&root)
                .output(),
        )
    });
    ready.then(|| root.join("node_modules"))
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
