//! Python venvs with packages from PyPI (the e2a SDK, standardwebhooks), cached under the
//! target directory between runs.

use super::bin::text;
use postagent_lab::{require, require_that};
use std::path::{Path, PathBuf};

/// A venv with `specs` installed, cached under the target directory between runs.
pub fn venv(tag: &str, specs: &[&str]) -> Option<PathBuf> {
    let spec = specs.join(" ");
    if !require("python3", "install Python 3 with the venv module") {
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("e2a-venv-{tag}"));
    let marker = dir.join("installed-spec");
    // Tests sharing a venv build it once: the second waits on this lock, then finds it ready.
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("lock file");
    lock.lock().expect("lock");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == spec) {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&dir).status();
    if !require_that(made.is_ok_and(|s| s.success()), "python3 -m venv failed", "install python3-venv") {
        return None;
    }
    let pip = std::process::Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(specs)
        .output()
        .expect("run pip");
    let installed = pip.status.success();
    if !require_that(
        installed,
        &format!("pip install {spec} failed: {}", text(&pip.stderr)),
        "PyPI must be reachable",
    ) {
        return None;
    }
    std::fs::write(&marker, &spec).expect("marker");
    Some(dir)
}

/// Starts `tests/sdk/<script>` with the venv's Python, pointed at a postagent API with the
/// environment the e2a SDK reads (`E2A_API_KEY`, `E2A_API_URL`); stdin, stdout and stderr are
/// piped for a line protocol with the test, and the child dies with the test.
pub fn spawn_script(venv: &Path, script: &str, key: &str, api_url: &str) -> tokio::process::Child {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    tokio::process::Command::new(venv.join("bin/python"))
        .arg(path)
        .env("E2A_API_KEY", key)
        .env("E2A_API_URL", api_url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python")
}
